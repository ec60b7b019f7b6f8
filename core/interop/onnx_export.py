"""ONNX export of a graph's inference model (`core.inference`: outputs, inputs and weights),
its batch axis symbolic ("N"), checked by ONNX's full checker before it is returned.

Each core op is translated by one rule in `RULES` (loom op -> fn(node, names, ctx) -> ONNX
nodes, `names` the node's input value names). Composites (batch norm in eval mode, Linear,
attention) arrive as primitives, so they need no rule of their own."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..atomic import atomic_write
from ..errors import LoomError
from ..graph import topological_order
from ..inference import PROBE, inference_graph, parameter_values, probe_shapes
from ..ops.base import normalize_axes

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization
BATCH_DIM = "N"
INT64_MAX = np.iinfo(np.int64).max
# GELU's constants, as core/ops/sequence.py computes it: -2u = x (K0 + K1 x^2)
GELU_K0 = -2.0 * math.sqrt(2.0 / math.pi)
GELU_K1 = GELU_K0 * 0.044715


class ExportError(LoomError):
    """The graph cannot be exported: an op without an ONNX rule, an opset out of range, a
    batch axis ONNX could not keep symbolic."""


# ---- export ----------------------------------------------------------------------------------

def export_model(doc, checkpoint=None, opset=DEFAULT_OPSET) -> onnx.ModelProto:
    """The inference model as a checked ONNX model at `opset`."""
    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= top:
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET} to {top}")
    graph = inference_graph(doc)
    params = parameter_values(doc, graph.built, checkpoint)
    ctx = Context(graph, params, int(opset))
    for node in topological_order(list(graph.outputs.values())):
        ctx.translate(node)
    model = ctx.model(doc.name)
    onnx.checker.check_model(model, full_check=True)  # a failure here is a bug in a rule
    return model


def export_file(doc, out_path, checkpoint=None, opset=DEFAULT_OPSET) -> onnx.ModelProto:
    """Write the model atomically; returns it (for a summary)."""
    model = export_model(doc, checkpoint, opset)
    data = model.SerializeToString()
    atomic_write(out_path, lambda f: f.write(data), binary=True)
    return model


def _weak(node) -> bool:
    """A Python-number constant: it takes the dtype of the values it meets."""
    return node.op == "constant" and not isinstance(node.attrs["value"], np.ndarray)


class Context:
    """What the rules share: value names, inferred shapes and dtypes (at batch PROBE), the
    parameter values, and the ONNX nodes, initializers and inputs made so far."""

    def __init__(self, graph, params, opset):
        self.graph, self.params, self.opset = graph, params, opset
        # core Node -> ONNX value name; inputs and outputs keep theirs (npz keys)
        self.names: dict = {node: name for name, node in graph.inputs.items()}
        self.used: set = {*graph.inputs, *graph.outputs}
        self.nodes, self.initializers, self.inputs = [], [], []
        self._scalars: dict = {}
        self.shapes, self.dtypes = probe_shapes(graph.outputs.values())

    # ---- names and values
    def name(self, node) -> str:
        if node not in self.names:
            self.names[node] = self.fresh(node.name)
        return self.names[node]

    def fresh(self, base) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def where(self, node) -> str:
        """The document node a core node was built for (error messages name it)."""
        return self.graph.built.node_of.get(node.name, node.name)

    def tmp(self, node, suffix) -> str:
        return self.fresh(f"{self.name(node)}/{suffix}")

    def shape(self, node) -> tuple:
        return self.shapes[node]

    def dtype(self, node) -> np.dtype:
        return np.dtype(self.dtypes[node])

    def const(self, hint, array) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def scalar(self, value, dtype) -> str:
        """A 0-d initializer, one per (value, dtype)."""
        key = (repr(value), np.dtype(dtype).name)
        if key not in self._scalars:
            self._scalars[key] = self.const(f"const_{key[1]}_{len(self._scalars)}",
                                            np.asarray(value, dtype=dtype))
        return self._scalars[key]

    def input_names(self, node) -> list:
        """Value names of the node's inputs, Python-number constants made tensors of the
        dtype they take in this node."""
        return [self.scalar(i.attrs["value"], _scalar_dtype(self, node, k)) if _weak(i)
                else self.name(i) for k, i in enumerate(node.inputs)]

    # ---- translation
    def translate(self, node):
        if _weak(node):
            return  # made per consumer, in its dtype (input_names)
        rule = RULES.get(node.op)
        if rule is None:
            raise ExportError(f"node {self.where(node)}: op {node.op!r} has no ONNX export "
                              f"rule: this graph cannot be exported to ONNX yet")
        for made in rule(node, self.input_names(node), self):
            if not made.name:
                made.name = made.output[0]
            self.nodes.append(made)

    def model(self, name) -> onnx.ModelProto:
        outputs = []
        for out_name, node in self.graph.outputs.items():
            self.nodes.append(helper.make_node("Identity", [self.name(node)], [out_name],
                                               name=f"output/{out_name}"))
            outputs.append(self.value_info(out_name, node))
        graph = helper.make_graph(self.nodes, name or "loom", self.inputs, outputs,
                                  initializer=self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="Loom",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        model.doc_string = "exported by Loom (main.py export): the inference graph"
        return model

    def value_info(self, name, node):
        elem = helper.np_dtype_to_tensor_dtype(self.dtype(node))
        return helper.make_tensor_value_info(name, elem, _symbolic(self.shape(node)))


def _symbolic(shape):
    """Probe-batch dims as "N"; other batch multiples (N*T after a reshape) left unnamed."""
    return [BATCH_DIM if d == PROBE else None if d % PROBE == 0 and d else d for d in shape]


# (op, input index) -> the dtype a Python number takes there; elsewhere the output's dtype
SCALAR_DTYPES = {("where", 0): np.bool_, ("gather", 1): np.int64}


def _scalar_dtype(ctx, node, index):
    if (node.op, index) in SCALAR_DTYPES:
        return SCALAR_DTYPES[node.op, index]
    out = ctx.dtypes.get(node)
    return np.dtype(out) if isinstance(out, np.dtype) else np.float32


# ---- rules -----------------------------------------------------------------------------------

RULES: dict = {}


def rule(*ops):
    def register(fn):
        for op in ops:
            if op in RULES:
                raise ValueError(f"duplicate ONNX rule for {op}")
            RULES[op] = fn
        return fn
    return register


def _node(op, ins, out, **attrs):
    return helper.make_node(op, list(ins), [out], **attrs)


def _same_op(onnx_op):
    """The ONNX op of the same meaning, inputs as they are."""
    return lambda node, names, ctx: [_node(onnx_op, names, ctx.name(node))]


for _loom, _onnx in {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "neg": "Neg",
                     "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
                     "sigmoid": "Sigmoid", "relu": "Relu", "erf": "Erf", "pow": "Pow"}.items():
    rule(_loom)(_same_op(_onnx))

# Ops no inference graph holds: gradients, optimizer updates, data-parallel gradient sums,
# losses and metrics (dropped with the loss), dropout's mask (eval mode has none). Every other op needs a rule (a test
# walks the op table).
TRAINING_ONLY = {
    "accuracy", "softmax_cross_entropy", "softmax_cross_entropy_grad", "dropout_mask",
    "adam_update", "momentum_update", "nesterov_update", "sgd_update",
    "batch_mean_grad", "broadcast_like", "concat_part", "expand_like", "reshape_like",
    "sum_to_like", "slice_grad", "relu_grad", "sigmoid_grad", "tanh_grad", "gelu_grad",
    "gather_grad", "layer_norm_grad", "layer_norm_gamma_grad", "softmax_grad", "conv2d_grad_input",
    "conv2d_grad_weight", "max_pool2d_grad", "max_pool2d_grad_transpose", "avg_pool2d_grad",
    "lrn_grad", "reduce_max_grad", "allreduce", "allreduce_start", "allreduce_wait", "bucket_part"}


@rule("placeholder")
def _placeholder(node, names, ctx):
    ctx.inputs.append(ctx.value_info(ctx.name(node), node))
    return []


@rule("parameter")
def _parameter(node, names, ctx):
    value = np.asarray(ctx.params[node.name], dtype=node.attrs["dtype"])
    ctx.initializers.append(numpy_helper.from_array(value, ctx.name(node)))
    return []


@rule("constant")
def _constant(node, names, ctx):  # arrays only: Python numbers are typed per consumer
    ctx.initializers.append(numpy_helper.from_array(np.asarray(node.attrs["value"]), ctx.name(node)))
    return []


@rule("power")
def _power(node, names, ctx):
    p, out = node.attrs["p"], ctx.name(node)
    if p == 2.0:  # as Loom computes it: x * x, exact
        return [_node("Mul", [names[0], names[0]], out)]
    return [_node("Pow", [names[0], ctx.scalar(p, ctx.dtype(node))], out)]


@rule("matmul")
def _matmul(node, names, ctx):
    made, operands = [], []
    for i, flag in enumerate((node.attrs["trans_A"], node.attrs["trans_B"])):
        if not flag:
            operands.append(names[i])
            continue
        rank = len(ctx.shape(node.inputs[i]))
        perm = [*range(rank - 2), rank - 1, rank - 2]
        operands.append(ctx.tmp(node, "T" + "AB"[i]))
        made.append(_node("Transpose", [names[i]], operands[-1], perm=perm))
    return made + [_node("MatMul", operands, ctx.name(node))]


@rule("softmax", "log_softmax")
def _softmax(node, names, ctx):
    op = "Softmax" if node.op == "softmax" else "LogSoftmax"
    return [_node(op, names, ctx.name(node), axis=node.attrs["axis"])]


REDUCTIONS = {"reduce_sum": ("ReduceSum", 13), "reduce_mean": ("ReduceMean", 18),
              "reduce_max": ("ReduceMax", 18)}  # loom op -> (ONNX op, opset where axes became an input)


@rule(*REDUCTIONS)
def _reduce(node, names, ctx):
    axes = list(normalize_axes(node.attrs["axis"], len(ctx.shape(node.inputs[0]))))
    keep = int(node.attrs["keepdims"])
    op, axes_input_from = REDUCTIONS[node.op]
    if ctx.opset >= axes_input_from:
        axes_name = ctx.const(f"{ctx.name(node)}/axes", np.asarray(axes, dtype=np.int64))
        return [_node(op, [names[0], axes_name], ctx.name(node), keepdims=keep)]
    return [_node(op, names, ctx.name(node), axes=axes, keepdims=keep)]


@rule("reshape")
def _reshape(node, names, ctx):
    target = _batch_free_target(node, ctx)
    shape = ctx.const(f"{ctx.name(node)}/shape", np.asarray(target, dtype=np.int64))
    return [_node("Reshape", [names[0], shape], ctx.name(node))]


def _batch_free_target(node, ctx) -> list:
    """The target shape with batch-sized dims as 0 (copy the input's, same axis) or -1
    (infer): the model must not bake in the batch its shapes were inferred at."""
    target, src = list(node.attrs["shape"]), ctx.shape(node.inputs[0])
    for i, d in enumerate(target):
        if d <= 0 or d % PROBE:
            continue
        if i < len(src) and src[i] == d:
            target[i] = 0
        elif -1 not in target:
            target[i] = -1
        else:
            raise ExportError(f"node {ctx.where(node)}: reshape to {tuple(node.attrs['shape'])} "
                              f"has two batch-sized axes: ONNX cannot express it with a "
                              f"symbolic batch")
    return target


@rule("transpose")
def _transpose(node, names, ctx):
    rank = len(ctx.shape(node.inputs[0]))
    axes = node.attrs["axes"]
    perm = list(reversed(range(rank))) if axes is None else [a % rank for a in axes]
    return [_node("Transpose", names, ctx.name(node), perm=perm)]


@rule("concat")
def _concat(node, names, ctx):
    return [_node("Concat", names, ctx.name(node), axis=node.attrs["axis"])]


@rule("slice")
def _slice(node, names, ctx):
    begin, end = node.attrs["begin"], node.attrs["end"]
    ends = [INT64_MAX if e is None else e for e in end]
    starts = [0 if b is None else b for b in begin]
    base = ctx.name(node)
    arrays = [ctx.const(f"{base}/{what}", np.asarray(v, dtype=np.int64))
              for what, v in (("starts", starts), ("ends", ends), ("axes", range(len(begin))))]
    return [_node("Slice", [names[0], *arrays], base)]


@rule("broadcast_to")
def _broadcast_to(node, names, ctx):
    shape = ctx.const(f"{ctx.name(node)}/shape",
                      np.asarray(_expand_target(node, ctx), dtype=np.int64))
    return [_node("Expand", [names[0], shape], ctx.name(node))]


def _expand_target(node, ctx) -> list:
    """Expand broadcasts both ways: a batch-sized target dim becomes 1 where the input
    brings the batch itself."""
    target, src = list(node.attrs["shape"]), ctx.shape(node.inputs[0])
    lead = len(target) - len(src)
    for i, d in enumerate(target):
        if d % PROBE == 0:
            if i < lead or src[i - lead] != d:
                raise ExportError(f"node {ctx.where(node)}: broadcast to a batch-sized axis "
                                  f"the input lacks: ONNX needs it from the input")
            target[i] = 1
    return target


def _pool_attrs(node):
    k, s, p = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4}


@rule("conv2d")
def _conv(node, names, ctx):
    kh, kw = ctx.shape(node.inputs[1])[2:]
    s, p = node.attrs["stride"], node.attrs["padding"]
    return [_node("Conv", names, ctx.name(node), kernel_shape=[kh, kw], strides=[s, s],
                  pads=[p] * 4)]


@rule("max_pool2d")
def _max_pool(node, names, ctx):  # Loom pads with -inf: as ONNX ignores padding
    return [_node("MaxPool", names, ctx.name(node), **_pool_attrs(node))]


@rule("avg_pool2d")
def _avg_pool(node, names, ctx):  # Loom divides by k*k, padding counted as zeros
    return [_node("AveragePool", names, ctx.name(node), count_include_pad=1, **_pool_attrs(node))]


@rule("gather")
def _gather(node, names, ctx):
    return [_node("Gather", names, ctx.name(node), axis=node.attrs["axis"])]


@rule("where")
def _where(node, names, ctx):
    cond = names[0]
    made = []
    if not _weak(node.inputs[0]) and ctx.dtype(node.inputs[0]) != np.bool_:
        cond = ctx.tmp(node, "cond")  # Loom reads a non-bool condition as != 0
        made.append(_node("Cast", [names[0]], cond, to=onnx.TensorProto.BOOL))
    return made + [_node("Where", [cond, *names[1:]], ctx.name(node))]


@rule("layer_norm")
def _layer_norm(node, names, ctx):
    return [_node("LayerNormalization", names, ctx.name(node), axis=-1,
                  epsilon=node.attrs["eps"])]


@rule("gelu")
def _gelu(node, names, ctx):
    form = node.attrs["approximate"]
    if ctx.opset >= 20:
        return [_node("Gelu", names, ctx.name(node), approximate="tanh" if form == "tanh" else "none")]
    return GELU_FORMS[form](node, names[0], ctx)


def _gelu_tanh(node, x, ctx):
    """x / (1 + exp(x (K0 + K1 x^2))) = 0.5 x (1 + tanh(u)): the form Loom computes."""
    dt = ctx.dtype(node)
    t = [ctx.tmp(node, s) for s in ("sq", "a", "b", "m", "e", "d")]
    return [_node("Mul", [x, x], t[0]), _node("Mul", [t[0], ctx.scalar(GELU_K1, dt)], t[1]),
            _node("Add", [t[1], ctx.scalar(GELU_K0, dt)], t[2]), _node("Mul", [t[2], x], t[3]),
            _node("Exp", [t[3]], t[4]), _node("Add", [t[4], ctx.scalar(1.0, dt)], t[5]),
            _node("Div", [x, t[5]], ctx.name(node))]


def _gelu_erf(node, x, ctx):
    """0.5 x (1 + erf(x / sqrt 2))."""
    dt = ctx.dtype(node)
    t = [ctx.tmp(node, s) for s in ("scaled", "erf", "one_plus", "half")]
    return [_node("Mul", [x, ctx.scalar(1.0 / math.sqrt(2.0), dt)], t[0]), _node("Erf", [t[0]], t[1]),
            _node("Add", [t[1], ctx.scalar(1.0, dt)], t[2]),
            _node("Mul", [x, ctx.scalar(0.5, dt)], t[3]), _node("Mul", [t[3], t[2]], ctx.name(node))]


GELU_FORMS = {"tanh": _gelu_tanh, "erf": _gelu_erf}


@rule("oneslike", "zeroslike")
def _filled_like(node, names, ctx):
    shape = ctx.tmp(node, "shape")
    value = numpy_helper.from_array(np.asarray([node.op == "oneslike"], dtype=ctx.dtype(node)))
    return [_node("Shape", names[:1], shape),
            _node("ConstantOfShape", [shape], ctx.name(node), value=value)]


@rule("lrn")
def _lrn(node, names, ctx):  # the same definition: alpha / size times the window's sum
    a = node.attrs
    return [_node("LRN", names, ctx.name(node), size=a["size"], alpha=a["alpha"],
                  beta=a["beta"], bias=a["bias"])]


@rule("pad")
def _pad(node, names, ctx):  # the same layout: every axis's start, then every axis's end
    dtype = ctx.dtype(node)
    value = -np.inf if node.attrs["lowest"] else node.attrs["value"]
    pads = ctx.const(f"{ctx.name(node)}/pads", np.asarray(node.attrs["pads"], dtype=np.int64))
    return [_node("Pad", [names[0], pads, ctx.scalar(value, dtype)], ctx.name(node), mode="constant")]


@rule("argmax")
def _argmax(node, names, ctx):
    return [_node("ArgMax", names, ctx.name(node), axis=node.attrs["axis"], keepdims=0)]
