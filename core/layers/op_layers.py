"""Every user-facing primitive op as a node kind (category "Ops"), generated from a table:
op name -> (input ports, attribute specs). Gradient helpers are not offered."""
from __future__ import annotations

from .. import ops
from .base import AttrSpec, LayerKind, Port, register
from .common import numel

X = (Port("x"),)
AB = (Port("a"), Port("b"))
AXIS = AttrSpec("axis", "int", -1, min=-4, max=4)
KEEP = AttrSpec("keepdims", "bool", False)

OP_NODES = {
    "add": (AB, ()), "sub": (AB, ()), "mul": (AB, ()), "div": (AB, ()),
    "neg": (X, ()), "relu": (X, ()), "sigmoid": (X, ()), "tanh": (X, ()),
    "exp": (X, ()), "log": (X, ()), "sqrt": (X, ()),
    "power": (X, (AttrSpec("p", "float", 2.0),)),
    "matmul": (AB, (AttrSpec("trans_A", "bool", False), AttrSpec("trans_B", "bool", False))),
    "softmax": (X, (AXIS,)), "log_softmax": (X, (AXIS,)),
    "reduce_sum": (X, (AXIS, KEEP)), "reduce_mean": (X, (AXIS, KEEP)),
    "transpose": (X, ()),
    "reshape": (X, (AttrSpec("shape", "ints", [-1], help="full target shape, -1 = infer"),)),
    "broadcast_to": (X, (AttrSpec("shape", "ints", [1], min=1),)),
    "oneslike": (X, ()), "zeroslike": (X, ()),
    "argmax": (X, (AXIS,)),
    "softmax_cross_entropy": ((Port("logits"), Port("labels", "label")), ()),
    "accuracy": ((Port("logits"), Port("labels", "label")), ()),
    "concat": (AB, (AttrSpec("axis", "int", 1, min=-4, max=4),)),
    "conv2d": ((Port("x"), Port("w")), (AttrSpec("stride", "int", 1, min=1), AttrSpec("padding", "int", 0, min=0))),
    "max_pool2d": (X, (AttrSpec("kernel", "int", 2, min=1), AttrSpec("stride", "int", 2, min=1))),
    "avg_pool2d": (X, (AttrSpec("kernel", "int", 2, min=1), AttrSpec("stride", "int", 2, min=1))),
    "slice": (X, (AttrSpec("begin", "ints", [0]), AttrSpec("end", "ints", [1]))),
    "gather": ((Port("table"), Port("ids")), (AttrSpec("axis", "int", 0, min=-4, max=4),)),
    "where": ((Port("cond"), Port("a"), Port("b")), ()),
    "layer_norm": ((Port("x"), Port("gamma"), Port("beta")), (AttrSpec("eps", "float", 1e-5, min=1e-12, max=1.0),)),
    "gelu": (X, (AttrSpec("approximate", "choice", "tanh", choices=("tanh", "erf")),)),
}

OUTPUT_TYPE = {"softmax_cross_entropy": "loss", "accuracy": "metric"}


def _op_builder(name, ports):
    fn = getattr(ops, name)

    def build(ctx, attrs, ins):
        args = [ins[p.name] for p in ports]
        if name == "concat":
            return {"out": fn(args, **attrs)}
        return {"out": fn(*args, **attrs)}
    return build


for _name, (_ports, _attrs) in OP_NODES.items():
    register(LayerKind(_name, "Ops", _ports, (Port("out", OUTPUT_TYPE.get(_name, "data")),), _attrs,
                       _op_builder(_name, _ports),
                       (lambda i, o, a: numel(o["out"]) * i["a"][-1 if not a.get("trans_A") else 0])
                       if _name == "matmul" else None,
                       help=ops.OPS[_name].doc))
