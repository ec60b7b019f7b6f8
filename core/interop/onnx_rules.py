"""The ONNX op table: one translation rule per op type (`TRANSLATE`), and a numpy evaluation
for the ops a constant subgraph is made of (`FOLD`). This module holds the arithmetic and
network ops; onnx_shapes the ones that move or make data, and what rules work with.

Loom's own layer kinds are preferred where they match (Conv2D, Linear, BatchNorm, LayerNorm,
MaxPool2D...), so an imported model reads and trains like one drawn in Loom; op nodes (the
"Ops" palette) take the rest."""
from __future__ import annotations

import math
from functools import reduce

import numpy as np

from ..limits import MAX_INT
from ..ops.interop_ops import erf_values
from .onnx_shapes import (SHAPE_CONSTANT_INPUTS, SHAPE_FOLDS, SHAPE_RULES, Const, Refusal, Wire,
                          axes_arg, fit_axis, fits, guard, norm_axis, reshape_to)


# ---- elementwise -------------------------------------------------------------------------

def _binary(kind):
    return lambda cx: [cx.emit(kind, {}, cx.input(0), cx.input(1))]


def _unary(kind):
    return lambda cx: [cx.emit(kind, {}, cx.input(0))]


def _sum(cx):
    parts = [v for v in cx.inputs if v is not None]
    return [reduce(lambda a, b: cx.emit("Add", {}, a, b), parts)]


def _pow(cx):
    base, exponent = cx.input(0), cx.input(1)
    if isinstance(exponent, Const):
        if exponent.value.size == 1 and exponent.value.ndim <= len(cx.shape(base)):
            return [cx.emit("power", {"p": float(exponent.value.reshape(()))}, base)]
        # an integer exponent (ONNX allows one) computes in the base's type
        exponent = Const(exponent.value.astype(cx.dtype(base)), exponent.name, batch=exponent.batch)
    return [cx.emit("pow", {}, base, exponent)]


def _divide(a, b):
    if a.dtype.kind in "iu":  # ONNX truncates integer division towards zero
        with np.errstate(divide="ignore"):
            return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)
    return a / b


# ---- matrix products -------------------------------------------------------------------------

def _matmul(cx):
    a, b = cx.input(0), cx.input(1)
    sa, sb = cx.shape(a), cx.shape(b)
    if len(sa) == 1 or len(sb) == 1:
        return [_matmul_vectors(cx, a, b, sa, sb)]
    if isinstance(b, Const) and len(sb) == 2 and len(sa) in (2, 3) and isinstance(a, Wire):
        return [_linear(cx, a, b.value)]
    return [cx.emit("matmul", {}, a, b)]


def _linear(cx, a, weight):
    """A Linear layer, with the bias the MatMul's only user adds when there is one (how
    exporters, Loom's included, write a Linear layer: MatMul then Add)."""
    width = weight.shape[1]
    add, bias = _added_bias(cx, (1, width))
    attrs = {"out_features": width, "bias": bias is not None}
    params = {"weight": weight, **({} if bias is None else {"bias": bias.reshape(width)})}
    return _fused(cx, add, cx.layer("Linear", attrs, a, **params))


def _added_bias(cx, shape):
    """(the Add node, its constant broadcast to `shape`) when the node's only user adds a
    constant that broadcasts to `shape` (a bias per column or per channel), else Nones."""
    add = cx.sole_user(0)
    if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
        return None, None
    others = [name for name in add.input if name != cx.proto.output[0]]
    value = cx.known(others[0]) if len(others) == 1 else None
    if not isinstance(value, Const) or value.batch or value.value.dtype.kind != "f":
        return None, None
    c = value.value
    if c.ndim > len(shape) or np.broadcast_shapes(c.shape, shape) != tuple(shape):
        return None, None
    return add, np.broadcast_to(c, shape)


def _fused(cx, add, y):
    if add is not None:
        cx.fuse(add, y)
    return y


def _matmul_vectors(cx, a, b, sa, sb):
    """numpy's rule for 1-D operands: a vector becomes a one-row (or one-column) matrix, and
    that axis is dropped from the result."""
    a2 = reshape_to(cx, a, (1, sa[0])) if len(sa) == 1 else a
    b2 = reshape_to(cx, b, (sb[0], 1)) if len(sb) == 1 else b
    y = cx.emit("matmul", {}, a2, b2)
    shape = list(cx.shape(y))
    if len(sb) == 1:
        shape.pop(-1)
    if len(sa) == 1:
        shape.pop(-1 if len(sb) == 1 else -2)
    return reshape_to(cx, y, shape)


def _gemm(cx):
    """alpha op(A) op(B) + beta C: a Linear layer where B is a constant and A is not
    transposed (alpha folded into the weight, a row C into its bias)."""
    a, b, c = cx.input(0), cx.input(1), cx.input(2)
    alpha, beta = float(cx.attr("alpha", 1.0)), float(cx.attr("beta", 1.0))
    trans_a, trans_b = bool(cx.attr("transA", 0)), bool(cx.attr("transB", 0))
    if isinstance(b, Const) and not trans_a and isinstance(a, Wire):
        w = (b.value.T if trans_b else b.value) * b.value.dtype.type(alpha)
        row = _row_bias(c, w.shape[1], beta)
        params = {"weight": w, **({"bias": row} if row is not None else {})}
        y = cx.layer("Linear", {"out_features": w.shape[1], "bias": row is not None}, a, **params)
        return [y if c is None or row is not None else _add_scaled(cx, y, c, beta)]
    y = cx.emit("matmul", {"trans_A": trans_a, "trans_B": trans_b}, a, b)
    if alpha != 1.0:
        y = cx.emit("mul", {}, y, cx.scalar(alpha, y))
    return [y if c is None else _add_scaled(cx, y, c, beta)]


def _row_bias(c, width, beta):
    """C as a Linear bias (width,) when it is a constant that broadcasts along the rows."""
    if not isinstance(c, Const) or np.broadcast_shapes(c.value.shape, (1, width)) != (1, width):
        return None
    return np.broadcast_to(c.value, (1, width)).reshape(width) * c.value.dtype.type(beta)


def _add_scaled(cx, y, c, beta):
    if isinstance(c, Const):
        c = Const(c.value * c.value.dtype.type(beta), c.name, c.trainable)
    elif beta != 1.0:
        c = cx.emit("mul", {}, c, cx.scalar(beta, c))
    return cx.emit("add", {}, y, c)


# ---- convolution and pooling -----------------------------------------------------------------

def _same(name, values, what):
    if len(set(values)) != 1:
        raise Refusal(f"{name} {list(values)}: Loom's {what} takes the same value on both axes")
    return int(values[0])


def _pads(cx, spatial, kernels, stride):
    """(before, after) padding per spatial axis, from pads or auto_pad (`kernels`: the
    window's size along each axis)."""
    auto = cx.attr("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0] * len(spatial), [0] * len(spatial)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((-(-n // stride) - 1) * stride + k - n, 0) for n, k in zip(spatial, kernels)]
        small = [t // 2 for t in totals]  # SAME_UPPER puts the odd one at the end
        large = [t - h for t, h in zip(totals, small)]
        return (small, large) if auto == "SAME_UPPER" else (large, small)
    pads = [int(p) for p in cx.attr("pads", [0] * 2 * len(spatial))]
    if any(p < 0 for p in pads):
        raise Refusal(f"negative pads {pads}")
    return pads[:len(spatial)], pads[len(spatial):]


def _padded(cx, x, before, after, limit, lowest=False):
    """(input, padding) for a layer that pads each side equally by at most `limit`: the
    padding itself where it is, else a pad node before it and no padding."""
    if len(set(before + after)) == 1 and before[0] <= limit:
        return x, before[0]
    pads = [0, 0, *before, 0, 0, *after]
    return cx.emit("pad", {"pads": pads, "lowest": lowest}, x), 0


def _no_dilation(cx, what):
    dilations = cx.attr("dilations", [1, 1])
    if any(d != 1 for d in dilations):
        raise Refusal(f"dilations {list(dilations)}: Loom's {what} is not dilated")


def _image(cx, x, what):
    shape = cx.shape(x)
    if len(shape) != 4:
        raise Refusal(f"{len(shape) - 2}-D {what}: Loom's works on 2-D images (N, C, H, W)")
    return shape


def _conv(cx):
    x, w, b = cx.input(0), cx.input(1), cx.input(2)
    xs, ws = _image(cx, x, "convolution"), cx.shape(w)
    if cx.attr("group", 1) != 1:
        raise Refusal(f"group {cx.attr('group')}: Loom's convolution has no groups")
    _no_dilation(cx, "convolution")
    stride = _same("strides", cx.attr("strides", [1, 1]), "convolution")
    x, pad = _padded(cx, x, *_pads(cx, xs[2:], ws[2:], stride), limit=MAX_INT)
    attrs = {"out_channels": ws[0], "kernel": ws[2], "stride": stride, "padding": pad,
             "bias": b is not None}
    weights = isinstance(w, Const) and (b is None or isinstance(b, Const))
    if ws[2] == ws[3] and weights and fits("Conv2D", attrs):
        return [_conv_layer(cx, x, attrs, w.value, None if b is None else b.value)]
    # the layer's kernel is square; the op takes any (kh, kw), e.g. Inception's 1x7 and 7x1
    y = cx.emit("conv2d", {"stride": stride, "padding": pad}, x, w)
    return [y if b is None else cx.emit("add", {}, y, reshape_to(cx, b, (ws[0], 1, 1)))]


def _conv_layer(cx, x, attrs, weight, bias):
    """A Conv2D layer; without a bias of its own, with the one its only user adds."""
    add = None
    if bias is None:
        add, bias = _added_bias(cx, (1, weight.shape[0], 1, 1))
    params = {"weight": weight, **({} if bias is None else {"bias": bias.reshape(-1, 1, 1)})}
    return _fused(cx, add, cx.layer("Conv2D", {**attrs, "bias": bias is not None}, x, **params))


def _pool(layer, op, average):
    def rule(cx):
        x = cx.input(0)
        xs = _image(cx, x, "pooling")
        k = _same("kernel_shape", cx.attr("kernel_shape", []), "pooling")
        s = _same("strides", cx.attr("strides", [1, 1]), "pooling")
        _no_dilation(cx, "pooling")
        before, after = _pads(cx, xs[2:], [k, k], s)
        extra = [_ceil_extra(n, k, s, b, a) if cx.attr("ceil_mode", 0) else 0
                 for n, b, a in zip(xs[2:], before, after)]
        after = [a + e for a, e in zip(after, extra)]
        if average and not cx.attr("count_include_pad", 0) and any(before + after):
            return [_average_of_valid(cx, x, before, after, k, s)]
        if average and any(extra):
            raise Refusal("ceil_mode=1 with count_include_pad=1: Loom's average has no "
                          "partial windows")
        x, pad = _padded(cx, x, before, after, limit=k // 2, lowest=not average)
        attrs = {"kernel": k, "stride": s, "padding": pad}
        return [cx.emit(layer if fits(layer, attrs) else op, attrs, x)]
    return rule


def _ceil_extra(n, k, s, before, after):
    """Padding at the end that makes Loom's windows (rounded down) those of ceil_mode=1."""
    span = n + before + after - k
    windows = -(-span // s) + 1
    if (windows - 1) * s >= n + before:  # a last window starting in the end padding is dropped
        windows -= 1
    return max((windows - 1) * s - span, 0)


def _average_of_valid(cx, x, before, after, k, s):
    """count_include_pad=0: the sum over each window's real entries over their number, as
    avg_pool(x padded with zeros) / avg_pool(ones padded with zeros)."""
    pads = {"pads": [0, 0, *before, 0, 0, *after]}
    attrs = {"kernel": k, "stride": s, "padding": 0}
    total = cx.emit("avg_pool2d", attrs, cx.emit("pad", pads, x))
    count = cx.emit("avg_pool2d", attrs, cx.emit("pad", pads, cx.emit("oneslike", {}, x)))
    return cx.emit("div", {}, total, count)


def _global_average(cx):
    x = cx.input(0)
    rank = len(cx.shape(x))
    return [cx.emit("reduce_mean", {"axes": list(range(2, rank)), "keepdims": True}, x)]


# ---- normalisation -------------------------------------------------------------------------

def _batch_norm(cx):
    if cx.attr("training_mode", 0) or cx.attr("is_test", 1) == 0:
        raise Refusal("training mode (batch statistics as outputs) is not supported")
    if cx.attr("spatial", 1) != 1:
        raise Refusal("spatial=0 (statistics per position) is not supported")
    x = cx.input(0)
    xs = cx.shape(x)
    values = [cx.const(i, what) for i, what in
              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance"))]
    shape = (xs[1], *[1] * (len(xs) - 2))  # Loom keeps (C, 1, 1) for images
    names = ("gamma", "beta", "running_mean", "running_var")
    params = {n: v.reshape(shape) for n, v in zip(names, values)}
    return [cx.layer("BatchNorm", {"eps": float(cx.attr("epsilon", 1e-5))}, x, **params)]


def _layer_norm(cx):
    """Over the axes from `axis` on: a LayerNorm on those axes flattened into one."""
    x, scale, bias = cx.input(0), cx.input(1), cx.input(2)
    xs = tuple(cx.shape(x))
    axis = norm_axis(cx.attr("axis", -1), len(xs))
    inner = xs[axis:]
    if any(cx.is_batch(d) for d in inner):
        raise Refusal(f"axis {axis} normalises over the batch axis")
    if not isinstance(scale, Const) or not (bias is None or isinstance(bias, Const)):
        raise Refusal("the scale and bias must be constants (a LayerNorm's weights)")
    width = math.prod(inner)
    gamma = np.broadcast_to(scale.value, inner).reshape(width)
    beta = np.zeros_like(gamma) if bias is None else np.broadcast_to(bias.value, inner).reshape(width)
    eps = float(cx.attr("epsilon", 1e-5))
    flat = reshape_to(cx, x, (*xs[:axis], width))
    y = cx.layer("LayerNorm", {"eps": eps}, flat, gamma=gamma.copy(), beta=beta.copy())
    if not (cx.wants(1) or cx.wants(2)):
        return [reshape_to(cx, y, xs)]
    return [reshape_to(cx, y, xs), *_statistics(cx, x, list(range(axis, len(xs))), eps)]


def _statistics(cx, x, axes, eps):
    """LayerNormalization's optional outputs, the mean and 1 / sqrt(variance + eps), with
    the normalised axes kept (training-time outputs: op nodes, computed only if used)."""
    over = {"axes": axes, "keepdims": True}
    mean = cx.emit("reduce_mean", over, x)
    centred = cx.emit("sub", {}, x, mean)
    var = cx.emit("reduce_mean", over, cx.emit("mul", {}, centred, centred))
    return [mean, cx.emit("power", {"p": -0.5}, cx.emit("add", {}, var, cx.scalar(eps, var)))]


def _softmax(kind):
    """Opset 13 on: along one axis. Before: over every axis from `axis` on, as a 2-D matrix."""
    def rule(cx):
        x = cx.input(0)
        xs = cx.shape(x)
        rank = len(xs)
        if cx.opset >= 13:
            axis = norm_axis(cx.attr("axis", -1), rank)
            return [cx.emit(kind, {"axis": fit_axis(axis, rank)}, x)]
        axis = norm_axis(cx.attr("axis", 1), rank)
        if axis == rank - 1:
            return [cx.emit(kind, {"axis": -1}, x)]
        flat = reshape_to(cx, x, (math.prod(xs[:axis]), math.prod(xs[axis:])))
        return [reshape_to(cx, cx.emit(kind, {"axis": -1}, flat), xs)]
    return rule


def _lrn(cx):
    attrs = {"size": int(cx.attr("size")), "alpha": float(cx.attr("alpha", 1e-4)),
             "beta": float(cx.attr("beta", 0.75)), "bias": float(cx.attr("bias", 1.0))}
    return [cx.emit("lrn", attrs, cx.input(0))]


# ---- reductions --------------------------------------------------------------------------

def reduce_axes(cx, rank, since):
    """Sorted axes to reduce, or None for "none at all" (noop_with_empty_axes)."""
    axes = axes_arg(cx, since)
    if not axes:
        return None if cx.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({norm_axis(a, rank) for a in axes})


def _reduce(kind, since):
    def rule(cx):
        x = cx.input(0)
        rank = len(cx.shape(x))
        axes = reduce_axes(cx, rank, since)
        if axes is None:
            return [x]
        keep = bool(cx.attr("keepdims", 1))
        one = {"axis": fit_axis(axes[0], rank)} if len(axes) == 1 else {"axes": axes}
        return [cx.emit(kind, {**one, "keepdims": keep}, x)]
    return rule


def _fold_reduce(fn, since):
    def fold(cx, x, *_):
        axes = reduce_axes(cx, x.ndim, since)
        if axes is None:
            return [x]
        return [fn(x, axis=tuple(axes), keepdims=bool(cx.attr("keepdims", 1))).astype(x.dtype)]
    return fold


def _argmax(cx):
    if cx.attr("select_last_index", 0):
        raise Refusal("select_last_index=1: Loom's argmax picks the first of equal largest")
    x = cx.input(0)
    xs = cx.shape(x)
    axis = norm_axis(cx.attr("axis", 0), len(xs))
    y = cx.emit("argmax", {"axis": fit_axis(axis, len(xs))}, x)  # int64 ids, the axis dropped
    return [reshape_to(cx, y, (*xs[:axis], 1, *xs[axis + 1:])) if cx.attr("keepdims", 1) else y]


def _fold_argmax(cx, x):
    axis = norm_axis(cx.attr("axis", 0), x.ndim)
    return [np.argmax(x, axis=axis, keepdims=bool(cx.attr("keepdims", 1)))]


def _dropout(cx):
    x = cx.input(0)
    if cx.opset < 12:
        ratio = float(cx.attr("ratio", 0.5))
    else:
        ratio = float(cx.const(1, "ratio").reshape(())) if cx.input(1) is not None else 0.5
    if ratio == 0:
        return [x]
    return [cx.emit("Dropout", {"rate": ratio, "seed": abs(int(cx.attr("seed", 0)))}, x)]


# ---- the tables ------------------------------------------------------------------------------

TRANSLATE = {
    **SHAPE_RULES,
    "Add": _binary("Add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"),
    "Sum": _sum, "Pow": _pow, "MatMul": _matmul, "Gemm": _gemm,
    "Relu": _unary("ReLU"), "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"),
    "Exp": _unary("exp"), "Log": _unary("log"), "Sqrt": _unary("sqrt"), "Neg": _unary("neg"),
    "Erf": _unary("erf"), "Reciprocal": lambda cx: [cx.emit("power", {"p": -1.0}, cx.input(0))],
    "Softmax": _softmax("Softmax"), "LogSoftmax": _softmax("log_softmax"),
    "ReduceSum": _reduce("reduce_sum", 13), "ReduceMean": _reduce("reduce_mean", 18),
    "ReduceMax": _reduce("reduce_max", 18), "ArgMax": _argmax, "Dropout": _dropout, "Conv": _conv,
    "MaxPool": _pool("MaxPool2D", "max_pool2d", average=False),
    "AveragePool": _pool("AvgPool2D", "avg_pool2d", average=True),
    "GlobalAveragePool": _global_average, "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm, "LRN": _lrn,
}


def _broadcasting(fn):
    def fold(cx, a, b):
        guard(math.prod(np.broadcast_shapes(a.shape, b.shape)))
        return [fn(a, b)]
    return fold


def _elementwise(fn):
    return lambda cx, a: [fn(a)]


def _fold_sum(cx, *xs):
    xs = [x for x in xs if x is not None]
    guard(math.prod(np.broadcast_shapes(*(x.shape for x in xs))))
    return [reduce(np.add, xs)]


def _fold_matmul(cx, a, b):
    inner = max(a.shape[-1] if a.ndim else 1, 1)
    guard((a.size // inner) * (b.size // inner))  # no less than the result's size
    return [np.matmul(a, b)]


# numpy evaluations, used where every input of a node is a constant (ONNX semantics)
FOLD = {
    **SHAPE_FOLDS,
    "Add": _broadcasting(np.add), "Sub": _broadcasting(np.subtract),
    "Mul": _broadcasting(np.multiply), "Div": _broadcasting(_divide),
    "Pow": _broadcasting(lambda a, b: np.power(a, b).astype(a.dtype)),
    "Neg": _elementwise(np.negative), "Exp": _elementwise(np.exp), "Log": _elementwise(np.log),
    "Sqrt": _elementwise(np.sqrt), "Reciprocal": _elementwise(np.reciprocal),
    "Relu": _elementwise(lambda a: np.maximum(a, 0)),
    "Sigmoid": _elementwise(lambda a: 1 / (1 + np.exp(-a))), "Tanh": _elementwise(np.tanh),
    "Erf": _elementwise(lambda a: erf_values(np, a, np.empty_like(a))),
    "Sum": _fold_sum, "MatMul": _fold_matmul,
    "ReduceSum": _fold_reduce(np.sum, 13), "ReduceMean": _fold_reduce(np.mean, 18),
    "ReduceMax": _fold_reduce(np.max, 18), "ArgMax": _fold_argmax,
}

# inputs the import needs as constants (shapes, axes, indices) or makes a layer's weights
# when they are: the conformance backend passes such graph inputs as constants
CONSTANT_INPUTS = {
    **SHAPE_CONSTANT_INPUTS,
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "Dropout": (1, 2), "Pow": (1,), "Conv": (1, 2),
    "Gemm": (1, 2), "MatMul": (1,), "BatchNormalization": (1, 2, 3, 4),
    "LayerNormalization": (1, 2),
}
