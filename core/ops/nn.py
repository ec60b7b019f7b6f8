"""Neural-network ops: softmax family, losses, metrics, dropout, batch norm."""
from __future__ import annotations

import numpy as np

from .. import distributed
from ..errors import ShapeError
from ..graph import Node
from . import native, rows
from .base import OpDef, first_dtype, make, normalize_axes, not_differentiable, register
from .comm_ops import allreduce
from .elementwise import add, div, exp, mul, neg, oneslike, sqrt, sub
from .reduce import reduce_mean, reduce_sum


def softmax(x, axis=-1, name=None): return make("softmax", x, name=name, axis=int(axis))
def log_softmax(x, axis=-1, name=None): return make("log_softmax", x, name=name, axis=int(axis))


def _max_shifted(xp, x, axis, out):
    """out = x - max(x, axis): the shift that keeps exp finite."""
    xp.subtract(x, xp.max(x, axis=axis, keepdims=True), out=out)


def _sum_along(xp, x, axis):
    """Σ of x along axis, keeping it (the last axis by einsum: core/ops/rows.py)."""
    if axis in (-1, x.ndim - 1):
        return rows.last_axis_sum(xp, x, keepdims=True)
    return xp.sum(x, axis=axis, keepdims=True)


def _softmax(xp, ins, attrs, out):
    """exp(x - max) / its sum. The sum is numpy's add.reduce (a pairwise sum in a fixed
    order), so the compiled loops (ops/native_loops.py) can repeat it bit for bit."""
    x, axis = ins[0], attrs["axis"]
    if _rows_for_loops(axis, x, out):
        _softmax_native(x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]))
        return
    _max_shifted(xp, x, axis, out)
    xp.exp(out, out=out)
    out /= xp.sum(out, axis=axis, keepdims=True)


def _rows_for_loops(axis, *arrays) -> bool:
    """Whether the compiled loops take these arrays: rows along the last axis (of a rank of 2
    or more), host arrays of one float dtype."""
    x = arrays[0]
    return axis in (-1, x.ndim - 1) and x.ndim >= 2 and native.usable(*arrays)


def _softmax_native(x, out):
    """Two compiled passes around numpy's exp, instead of five numpy calls (the max and the
    sum along short rows are slow in numpy: 190 and 110 µs on attention's (3072, 64))."""
    native.kernel("softmax_shift")(x, out)
    np.exp(out, out=out)
    native.kernel("softmax_divide")(out, native.ZERO_ONE[out.dtype], native.pairwise_tree(out.shape[1]))


def _log_softmax(xp, ins, attrs, out):
    _max_shifted(xp, ins[0], attrs["axis"], out)
    out -= xp.log(_sum_along(xp, xp.exp(out), attrs["axis"]))


def _softmax_grad(n, g):
    return [make("softmax_grad", n, g, axis=n.attrs["axis"])]


def _softmax_grad_compute(xp, ins, attrs, out):
    """y * (g - Σ g y) along the axis: one op, not the four (mul, sum, sub, mul) it was; on
    the last axis one compiled pass (attention's (3072, 64): 0.6 ms → 0.1)."""
    y, g = ins
    axis = attrs["axis"]
    if _rows_for_loops(axis, y, g, out):
        width = y.shape[-1]
        native.kernel("softmax_grad")(y.reshape(-1, width), g.reshape(-1, width), out.reshape(-1, width),
                                      native.ZERO_ONE[y.dtype], native.pairwise_tree(width))
        return
    dot = xp.sum(g * y, axis=axis, keepdims=True)
    xp.subtract(g, dot, out=out)  # out may be g's buffer: g is read here last
    out *= y


def _softmax_grad_grad(n, G):
    """Second order. Towards g, the same map on G (its Jacobian is symmetric); towards y,
    G (g - Σ g y) - g Σ G y."""
    y, g = n.inputs
    ax = n.attrs["axis"]
    dot = reduce_sum(mul(g, y), ax, keepdims=True)
    towards_y = sub(mul(G, sub(g, dot)), mul(g, reduce_sum(mul(G, y), ax, keepdims=True)))
    return [towards_y, make("softmax_grad", y, G, axis=ax)]


def _log_softmax_grad(n, g):
    ax = n.attrs["axis"]
    return [sub(g, mul(exp(n), reduce_sum(g, ax, keepdims=True)))]


def _later_axis(attrs, ndim) -> bool:
    """Rows of the first axis are independent where the softmax runs along another axis."""
    return normalize_axes(attrs["axis"], ndim) != (0,)


def _same(shapes, attrs):
    normalize_axes(attrs["axis"], len(shapes[0]))
    return tuple(shapes[0])


register(OpDef("softmax", "opaque", _same, _softmax, _softmax_grad, inplace=(0,), rows=_later_axis,
               doc="exp(x) / sum(exp(x)) along axis, max-shifted"))
register(OpDef("softmax_grad", "opaque", lambda s, a: _same(s[:1], a), _softmax_grad_compute,
               _softmax_grad_grad, inplace=(1,), rows=_later_axis,
               dtype=lambda d, a: np.result_type(*d), doc="g's gradient through softmax: y (g - Σ g y)"))
register(OpDef("log_softmax", "opaque", _same, _log_softmax, _log_softmax_grad, inplace=(0,),
               rows=_later_axis,
               doc="x - logsumexp(x) along axis"))


# ---- softmax cross-entropy ------------------------------------------------------------------

def softmax_cross_entropy(logits, labels, name=None):
    """Mean over every row of -log softmax(logits)[label]. Logits are (..., classes): (N, C)
    for a classifier, (N, T, V) for a sequence model; labels are int ids of the leading shape
    or one-hot of the logits' shape."""
    return make("softmax_cross_entropy", logits, labels, name=name)


def _sce_shape(shapes, attrs):
    logits, labels = shapes
    if len(logits) < 2:
        raise ShapeError(f"logits must be (batch, ..., classes), got {tuple(logits)}")
    if tuple(labels) not in (tuple(logits[:-1]), tuple(logits)):
        raise ShapeError(f"labels {tuple(labels)} fit neither ids {tuple(logits[:-1])} "
                         f"nor one-hot {tuple(logits)}")
    return ()


def _rows(logits, labels):
    """Logits as (rows, classes) and labels as ids (rows,) or one-hot (rows, classes)."""
    classes = logits.shape[-1]
    flat = logits.reshape(-1, classes)
    return flat, labels.reshape(-1) if labels.ndim < logits.ndim else labels.reshape(-1, classes)


def _log_probs(xp, logits):
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    return shifted - xp.log(rows.last_axis_sum(xp, xp.exp(shifted), keepdims=True))


def _sce(xp, ins, attrs, out):
    logits, labels = _rows(*ins)
    logp = _log_probs(xp, logits)
    if labels.ndim == 1:
        picked = logp[xp.arange(len(labels)), labels.astype(np.int64)]
        out[...] = -xp.mean(picked)
    else:
        out[...] = -xp.sum(logp * labels) / logits.shape[0]


def _sce_grad_compute(xp, ins, attrs, out):
    logits, labels = _rows(*ins[:2])
    g = ins[2]
    rows = out.reshape(logits.shape)  # out is a contiguous buffer: a view
    _softmax(xp, [logits], {"axis": 1}, rows)
    if labels.ndim == 1:
        rows[xp.arange(len(labels)), labels.astype(np.int64)] -= 1
    else:
        rows -= labels
    rows *= g / logits.shape[0]


def _sce_grad_grad(n, G):
    """Second order: out = (s - y) * g / rows with s = softmax(logits). Towards the logits
    it is softmax's Jacobian applied to G, scaled by g / rows; towards g, <G, (s - y) / rows>;
    towards (soft) labels, -G * g / rows."""
    logits, labels, g = n.inputs
    s = softmax(logits, axis=-1)
    scale = batch_mean_grad(g, logits, rows=True)
    return [mul(_softmax_grad(s, G)[0], scale), mul(neg(G), scale),
            reduce_sum(mul(G, make("softmax_cross_entropy_grad", logits, labels, oneslike(g))))]


register(OpDef("softmax_cross_entropy", "opaque", _sce_shape, _sce,
               lambda n, g: [make("softmax_cross_entropy_grad", *n.inputs, g), None],
               dtype=first_dtype, doc="mean cross-entropy of softmax(logits) and labels"))
register(OpDef("softmax_cross_entropy_grad", "opaque", lambda s, a: tuple(s[0]),
               _sce_grad_compute, _sce_grad_grad, dtype=first_dtype,
               doc="(softmax(logits) - onehot(labels)) * g / rows"))


def batch_mean_grad(g, x, rows=False, name=None):
    """g / (x's batch size), or / (x's number of rows, every axis but the last, with
    rows=True): the gradient of a mean, for gradient rules built before shapes are known."""
    return make("batch_mean_grad", g, x, name=name, rows=bool(rows))


def _batch_mean_grad(xp, ins, attrs, out):
    x = ins[1]
    count = x.size // x.shape[-1] if attrs.get("rows") else x.shape[0]
    xp.multiply(ins[0], 1.0 / count, out=out)


register(OpDef("batch_mean_grad", "opaque", lambda s, a: tuple(s[0]), _batch_mean_grad,
               lambda n, g: [batch_mean_grad(g, n.inputs[1], n.attrs.get("rows", False)), None],
               shape_only=(1,), dtype=first_dtype, inplace=(0,),
               doc="g divided by the batch size (or the row count) of x"))


def mse(pred, target, name=None):
    """Mean squared error, built from primitives so every order of gradient works."""
    diff = sub(pred, target)
    return reduce_mean(mul(diff, diff), name=name)


# ---- metrics ----------------------------------------------------------------------------------

def argmax(x, axis=-1, name=None): return make("argmax", x, name=name, axis=int(axis))
def accuracy(logits, labels, name=None): return make("accuracy", logits, labels, name=name)


def _argmax_shape(shapes, attrs):
    ax = normalize_axes(attrs["axis"], len(shapes[0]))[0]
    return tuple(d for i, d in enumerate(shapes[0]) if i != ax)


register(OpDef("argmax", "reduction", _argmax_shape,
               lambda xp, ins, a, out: xp.argmax(ins[0], axis=a["axis"], out=out),
               not_differentiable, dtype=lambda d, a: np.dtype(np.int64),
               doc="index of the largest value along axis"))


def _accuracy(xp, ins, attrs, out):
    logits, labels = _rows(*ins)
    ids = labels if labels.ndim == 1 else xp.argmax(labels, axis=1)
    out[...] = xp.mean(xp.argmax(logits, axis=1) == ids)


register(OpDef("accuracy", "opaque", _sce_shape, _accuracy, not_differentiable,
               dtype=first_dtype, doc="fraction of rows (positions) whose argmax equals the label"))


# ---- dropout -------------------------------------------------------------------------------------

def dropout(x, rate=0.5, training=True, seed=0, name=None):
    """Inverted dropout: y = x * mask / (1 - rate). In eval mode it is x itself."""
    if not training or rate == 0:
        return x
    mask = make("dropout_mask", x, rate=float(rate), seed=int(seed))
    return mul(x, mask, name=name)


def _dropout_mask(xp, ins, attrs, out):
    # One generator per node, created on first use: the same seed gives the same masks.
    rng = attrs.setdefault("_rng", {}).setdefault(xp.__name__, xp.random.default_rng(attrs["seed"]))
    keep = 1.0 - attrs["rate"]
    out[...] = _draw(rng, out.shape, out.dtype)
    xp.less(out, keep, out=out)
    out *= 1.0 / keep


def _draw(rng, shape, dtype):
    """Uniform numbers for a mask; in a data-parallel step, this rank's rows of the global
    batch's draw (the masks do not depend on how many ranks share the batch)."""
    shard = distributed.current_shard()
    if shard is None or not shape or shape[0] != shard[1] - shard[0]:
        return rng.random(shape, dtype=dtype)
    start, stop, batch = shard
    return rng.random((batch, *shape[1:]), dtype=dtype)[start:stop]


register(OpDef("dropout_mask", "elementwise", lambda s, a: tuple(s[0]), _dropout_mask,
               not_differentiable, shape_only=(0,), random=True,
               doc="random keep-mask scaled by 1/(1-rate), seeded"))


# ---- batch norm (composite: its gradient comes from the primitives') ------------------------------

def batch_norm(x, gamma, beta, running_mean=None, running_var=None, training=True,
               eps=1e-5, sync=False, name=None):
    """Normalise over every axis but 1 (channels/features). In training mode the batch
    statistics are exposed as `y.extras["mean"]`, `["var"]` so the trainer can keep
    running averages; in eval mode `running_mean`/`running_var` nodes are used. sync: in a
    data-parallel step the statistics are the global batch's (allreduced over the ranks)."""
    axes = "all_but_1"  # resolved once the rank is known
    over_batch = allreduce if sync else (lambda v: v)
    if training:
        mean = over_batch(reduce_mean(x, axis=axes, keepdims=True))
        centered = sub(x, mean)
        var = over_batch(reduce_mean(mul(centered, centered), axis=axes, keepdims=True))
    else:
        mean, var = running_mean, running_var
        centered = sub(x, mean)
    y = add(mul(gamma, div(centered, sqrt(add(var, eps)))), beta, name=name)
    if isinstance(y, Node):
        y.extras.update(mean=mean, var=var)
    return y
