"""Every user-facing primitive op as a node kind (category "Ops"), generated from a table:
op name -> (input ports, attribute specs). Gradient helpers are not offered. Also the
`Constant` kind: a fixed tensor whose value comes from the graph's weights file (what an
imported model's constants become)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import ShapeError
from ..graph import constant
from .base import AttrSpec, LayerKind, Port, register
from .common import numel

X = (Port("x"),)
AB = (Port("a"), Port("b"))
AXIS = AttrSpec("axis", "int", -1, min=-4, max=4)
AXES = AttrSpec("axes", "ints", [], help="several axes at once (when given, axis is not used)")
KEEP = AttrSpec("keepdims", "bool", False)
POOL = (AttrSpec("kernel", "int", 2, min=1), AttrSpec("stride", "int", 2, min=1),
        AttrSpec("padding", "int", 0, min=0))

OP_NODES = {
    "add": (AB, ()), "sub": (AB, ()), "mul": (AB, ()), "div": (AB, ()),
    "neg": (X, ()), "relu": (X, ()), "sigmoid": (X, ()), "tanh": (X, ()),
    "exp": (X, ()), "log": (X, ()), "sqrt": (X, ()), "erf": (X, ()),
    "power": (X, (AttrSpec("p", "float", 2.0),)), "pow": (AB, ()),
    "matmul": (AB, (AttrSpec("trans_A", "bool", False), AttrSpec("trans_B", "bool", False))),
    "softmax": (X, (AXIS,)), "log_softmax": (X, (AXIS,)),
    "reduce_sum": (X, (AXIS, AXES, KEEP)), "reduce_mean": (X, (AXIS, AXES, KEEP)),
    "reduce_max": (X, (AXIS, AXES, KEEP)),
    "transpose": (X, (AttrSpec("axes", "ints", [], help="the new order of the axes; empty "
                               "reverses them"),)),
    "reshape": (X, (AttrSpec("shape", "ints", [-1], help="full target shape, -1 = infer"),)),
    "broadcast_to": (X, (AttrSpec("shape", "ints", [1], min=1),)),
    "oneslike": (X, ()), "zeroslike": (X, ()),
    "argmax": (X, (AXIS,)),
    "softmax_cross_entropy": ((Port("logits"), Port("labels", "label")), ()),
    "accuracy": ((Port("logits"), Port("labels", "label")), ()),
    "concat": (AB, (AttrSpec("axis", "int", 1, min=-4, max=4),)),
    "conv2d": ((Port("x"), Port("w")), (AttrSpec("stride", "int", 1, min=1), AttrSpec("padding", "int", 0, min=0))),
    "max_pool2d": (X, POOL), "avg_pool2d": (X, POOL),
    "slice": (X, (AttrSpec("begin", "ints", [0]), AttrSpec("end", "ints", [1]))),
    "gather": ((Port("table"), Port("ids", optional=True, help="integer ids (or the indices attribute)")),
               (AttrSpec("axis", "int", 0, min=-4, max=4),
                AttrSpec("indices", "ints", [], help="fixed ids, used when ids is not connected"),
                AttrSpec("indices_shape", "ints", [], min=1, help="the shape of the fixed ids"))),
    "where": ((Port("cond"), Port("a"), Port("b")), ()),
    "layer_norm": ((Port("x"), Port("gamma"), Port("beta")), (AttrSpec("eps", "float", 1e-5, min=1e-12, max=1.0),)),
    "gelu": (X, (AttrSpec("approximate", "choice", "tanh", choices=("tanh", "erf")),)),
    "lrn": (X, (AttrSpec("size", "int", 5, min=1, help="channels in each window"),
                AttrSpec("alpha", "float", 1e-4), AttrSpec("beta", "float", 0.75),
                AttrSpec("bias", "float", 1.0))),
    "pad": (X, (AttrSpec("pads", "ints", [0, 0], min=0, help="entries before each axis, then "
                         "after each axis"),
                AttrSpec("value", "float", 0.0, help="what the border holds"),
                AttrSpec("lowest", "bool", False, help="a border of -infinity instead (what "
                         "max pooling pads with)"))),
}

OUTPUT_TYPE = {"softmax_cross_entropy": "loss", "accuracy": "metric"}


def _plain(fn, args, attrs):
    return fn(*args, **attrs)


def _reduce(fn, args, attrs):
    return fn(*args, axis=tuple(attrs["axes"]) or attrs["axis"], keepdims=attrs["keepdims"])


def _transpose(fn, args, attrs):
    return fn(*args, axes=tuple(attrs["axes"]) or None)


def _gather(fn, args, attrs):
    """ids from the port, else from the fixed indices (an imported model's constant ids)."""
    if len(args) == 2:
        return fn(*args, axis=attrs["axis"])
    if not attrs["indices"]:
        raise ShapeError("connect ids or give the indices attribute")
    ids = np.array(attrs["indices"], dtype=np.int64)
    if numel(attrs["indices_shape"]) != ids.size:
        raise ShapeError(f"indices_shape {attrs['indices_shape']} does not hold "
                         f"{ids.size} indices")
    return fn(args[0], constant(ids.reshape(attrs["indices_shape"])), axis=attrs["axis"])


# how an op's node passes its inputs and attributes to the builder (default: as they are)
CALLS = {"concat": lambda fn, args, attrs: fn(args, **attrs), "reduce_sum": _reduce,
         "reduce_mean": _reduce, "reduce_max": _reduce, "transpose": _transpose, "gather": _gather}


def _op_builder(name, ports):
    fn, call = getattr(ops, name), CALLS.get(name, _plain)

    def build(ctx, attrs, ins):
        args = [ins[p.name] for p in ports if not p.optional or p.name in ins]  # KeyError: not connected
        return {"out": call(fn, args, attrs)}
    return build


for _name, (_ports, _attrs) in OP_NODES.items():
    register(LayerKind(_name, "Ops", _ports, (Port("out", OUTPUT_TYPE.get(_name, "data")),), _attrs,
                       _op_builder(_name, _ports),
                       (lambda i, o, a: numel(o["out"]) * i["a"][-1 if not a.get("trans_A") else 0])
                       if _name == "matmul" else None,
                       help=ops.OPS[_name].doc))


def _build_constant(ctx, attrs, ins):
    # a parameter the optimizer never updates: its value is loaded like any weight
    return {"out": ctx.param("value", tuple(attrs["shape"]), init="zeros", trainable=False)}


register(LayerKind(
    "Constant", "Data", (), (Port("out", "data"),),
    (AttrSpec("shape", "ints", [1], min=1, help="full shape (no batch axis)"),),
    _build_constant, help="A fixed tensor (an imported model's constant): its value comes from "
    "the graph's weights file, and training leaves it as it is"))
