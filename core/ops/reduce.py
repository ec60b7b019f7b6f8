"""Reductions, broadcasting and the one op that sums a gradient back to an input's shape."""
from __future__ import annotations

from functools import partial

from . import rows
from .base import OpDef, broadcast_shapes, make, normalize_axes, register, same_as_input
from ..errors import ShapeError


def reduce_sum(x, axis=None, keepdims=False, name=None):
    return make("reduce_sum", x, name=name, axis=_axis_attr(axis), keepdims=bool(keepdims))


def reduce_mean(x, axis=None, keepdims=False, name=None):
    return make("reduce_mean", x, name=name, axis=_axis_attr(axis), keepdims=bool(keepdims))


def broadcast_to(x, shape, name=None):
    return make("broadcast_to", x, name=name, shape=tuple(int(s) for s in shape))


def sum_to_like(g, x, name=None):
    """Sum `g` over the axes numpy broadcasting added, so it has x's shape."""
    return make("sum_to_like", g, x, name=name)


def expand_like(g, x, axis, keepdims, name=None):
    """Undo a reduction: put back the reduced axes of `g` and broadcast to x's shape."""
    return make("expand_like", g, x, name=name, axis=axis, keepdims=keepdims)


def _axis_attr(axis):
    if axis is None or isinstance(axis, (int, str)):
        return axis
    return tuple(int(a) for a in axis)


def _reduced_shape(shapes, attrs):
    shape = shapes[0]
    axes = normalize_axes(attrs["axis"], len(shape))
    if attrs["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _cached_axes(attrs, ndim):
    """Axes normalised once per rank (computes run every step; attrs live as long as the node)."""
    cache = attrs.setdefault("_axes", {})
    if ndim not in cache:
        cache[ndim] = normalize_axes(attrs["axis"], ndim)
    return cache[ndim]


def _reduce_add(xp, x, axes, keepdims, out):
    width = rows.trailing_width(x, axes, out)
    if width:  # rows summed by einsum (core/ops/rows.py)
        rows.sum_rows(xp, x, width, out)
        return
    # numpy's ufunc reduce skips np.sum's Python wrapper: it matters on small tensors
    reduce = getattr(getattr(xp, "add", None), "reduce", None) if xp.__name__ == "numpy" else None
    if reduce is not None:
        reduce(x, axis=axes, keepdims=keepdims, out=out)
    else:
        xp.sum(x, axis=axes, keepdims=keepdims, out=out)


def _sum(xp, ins, attrs, out):
    _reduce_add(xp, ins[0], _cached_axes(attrs, ins[0].ndim), attrs["keepdims"], out)


def _mean(xp, ins, attrs, out):
    x = ins[0]
    axes = _cached_axes(attrs, x.ndim)
    _reduce_add(xp, x, axes, attrs["keepdims"], out)
    out *= 1.0 / _count(x.shape, axes)


def _count(node_shape, reduced):
    n = 1
    for i in reduced:
        n *= node_shape[i]
    return n


def _sum_grad(n, g):
    return [expand_like(g, n.inputs[0], n.attrs["axis"], n.attrs["keepdims"])]


def _mean_grad(n, g):
    # The count is only known once shapes are; expand_like divides by it (attr `mean`).
    return [make("expand_like", g, n.inputs[0], axis=n.attrs["axis"],
                 keepdims=n.attrs["keepdims"], mean=True)]


def _bind_reduce(mean):
    """Fast path: axes and the 1/count scale are fixed once bound."""
    def bind(xp, ins, attrs, out):
        x = ins[0]
        axes = _cached_axes(attrs, x.ndim)
        if xp.__name__ != "numpy":
            return partial(_mean if mean else _sum, xp, ins, attrs, out)
        width = rows.trailing_width(x, axes, out)
        reduce = (partial(rows.sum_rows, xp, x, width, out) if width
                  else partial(xp.add.reduce, x, axis=axes, keepdims=attrs["keepdims"], out=out))
        if not mean:
            return reduce
        scale = partial(xp.multiply, out, 1.0 / _count(x.shape, axes), out=out)
        return lambda: (reduce(), scale())
    return bind


register(OpDef("reduce_sum", "reduction", _reduced_shape, _sum, _sum_grad, bind=_bind_reduce(False),
               doc="sum over axis (None = all), optionally keeping reduced axes"))
register(OpDef("reduce_mean", "reduction", _reduced_shape, _mean, _mean_grad, bind=_bind_reduce(True),
               doc="mean over axis (None = all), optionally keeping reduced axes"))


def _expand_shape(shapes, attrs):
    g, x = shapes
    if _reduced_shape([x], attrs) != tuple(g):
        raise ShapeError(f"gradient of shape {g} does not match a reduction of {x}")
    return tuple(x)


def _expand(xp, ins, attrs, out):
    g, x = ins
    axes = _cached_axes(attrs, x.ndim)
    if not attrs["keepdims"]:
        g = xp.expand_dims(g, axes)
    if attrs.get("mean"):
        xp.multiply(g, 1.0 / _count(x.shape, axes), out=out)  # broadcasts into out
    else:
        out[...] = g


def _bind_expand(xp, ins, attrs, out):
    """Fast path: g viewed once with the reduced axes put back, then one broadcasting call."""
    g, x = ins
    axes = _cached_axes(attrs, x.ndim)
    if not attrs["keepdims"]:
        g = g.reshape(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    if attrs.get("mean"):
        return partial(xp.multiply, g, 1.0 / _count(x.shape, axes), out=out)
    return partial(xp.copyto, out, g)


def _expand_grad(n, g):
    # d/dg of (broadcast g [/count]) is the matching reduction; x is read for its shape only.
    reducer = reduce_mean if n.attrs.get("mean") else reduce_sum
    return [reducer(g, n.attrs["axis"], n.attrs["keepdims"]), None]


register(OpDef("expand_like", "broadcast", _expand_shape, _expand, _expand_grad, shape_only=(1,),
               bind=_bind_expand,
               doc="gradient of a reduction: re-insert reduced axes, broadcast to x's shape"))


# ---- broadcasting --------------------------------------------------------------------------

def _broadcast_to_shape(shapes, attrs):
    target = attrs["shape"]
    if broadcast_shapes(shapes[0], target) != tuple(target):
        raise ShapeError(f"cannot broadcast {shapes[0]} to {target}")
    return tuple(target)


register(OpDef("broadcast_to", "broadcast", _broadcast_to_shape,
               lambda xp, ins, a, out: xp.copyto(out, xp.broadcast_to(ins[0], a["shape"])),
               lambda n, g: [sum_to_like(g, n.inputs[0])], identity_when=same_as_input,
               doc="broadcast x to a shape"))


def _sum_to_shape(shapes, attrs):
    g, x = shapes
    if broadcast_shapes(g, x) != tuple(g):
        raise ShapeError(f"gradient of shape {g} cannot be summed to {x}")
    return tuple(x)


def sum_to(xp, g, shape, out):
    """Sum g down to `shape` (numpy broadcasting rules), writing into out without a temporary."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    if not axes:
        xp.copyto(out, g)
    elif all(d != 1 for d in shape):  # only leading axes go: no keepdims view needed
        _reduce_add(xp, g, axes, False, out)
    else:
        _reduce_add(xp, g, axes, True, out.reshape((1,) * lead + tuple(shape)))


def _bind_sum_to(xp, ins, attrs, out):
    """Fast path: shapes are fixed once bound, so the reduction axes are computed here once."""
    g, x = ins
    if xp.__name__ != "numpy":
        return partial(sum_to, xp, g, x.shape, out)
    lead = g.ndim - x.ndim
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(x.shape) if d == 1 and g.shape[lead + i] != 1)
    if not axes:
        return partial(xp.copyto, out, g)
    return partial(xp.add.reduce, g, axis=axes, keepdims=True,
                   out=out.reshape((1,) * lead + tuple(x.shape)))


def broadcast_like(g, ref, name=None):
    return make("broadcast_like", g, ref, name=name)


register(OpDef("sum_to_like", "reduction", _sum_to_shape,
               lambda xp, ins, a, out: sum_to(xp, ins[0], ins[1].shape, out),
               lambda n, g: [broadcast_like(g, n.inputs[0]), None], shape_only=(1,),
               bind=_bind_sum_to, identity_when=same_as_input,
               doc="sum a broadcast gradient back to x's shape"))


def _broadcast_like_shape(shapes, attrs):
    return _broadcast_to_shape(shapes[:1], {"shape": tuple(shapes[1])})


register(OpDef("broadcast_like", "broadcast", _broadcast_like_shape,
               lambda xp, ins, a, out: xp.copyto(out, xp.broadcast_to(ins[0], ins[1].shape)),
               lambda n, g: [sum_to_like(g, n.inputs[0]), None],
               shape_only=(1,), identity_when=same_as_input, doc="broadcast x to the shape of ref"))
