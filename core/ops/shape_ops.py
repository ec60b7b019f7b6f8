"""Injective ops that move data without arithmetic: reshape, transpose, concat, slice."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from . import native
from .base import OpDef, make, register, same_as_input


def reshape(x, shape, name=None):
    return make("reshape", x, name=name, shape=tuple(int(s) for s in shape))


def reshape_like(x, ref, name=None):
    return make("reshape_like", x, ref, name=name)


def transpose(x, axes=None, name=None):
    return make("transpose", x, name=name, axes=None if axes is None else tuple(axes))


def concat(xs, axis=0, name=None):
    return make("concat", *xs, name=name, axis=int(axis))


def slice(x, begin, end, name=None):  # noqa: A001 - the op's name in the table
    """x[begin[0]:end[0], begin[1]:end[1], ...]; end None means to the end of that axis."""
    return make("slice", x, name=name, begin=tuple(begin), end=tuple(end))


# ---- reshape ------------------------------------------------------------------------------

def _reshape_shape(shapes, attrs):
    src, target = shapes[0], list(attrs["shape"])
    size = int(np.prod(src))
    if target.count(-1) > 1:
        raise ShapeError(f"reshape target {tuple(target)} has more than one -1")
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {tuple(src)} to {tuple(target)}")
        target[target.index(-1)] = size // known
    if int(np.prod(target)) != size:
        raise ShapeError(f"cannot reshape {tuple(src)} ({size} elements) to {tuple(target)}")
    return tuple(target)


def _copy_reshaped(xp, ins, attrs, out):
    if xp.may_share_memory(out, ins[0]):  # the planner gave both one buffer: already there
        return
    xp.copyto(out, ins[0].reshape(out.shape))


register(OpDef("reshape", "injective", _reshape_shape, _copy_reshaped,
               lambda n, g: [reshape_like(g, n.inputs[0])], inplace=(0,), reinterprets=True,
               identity_when=same_as_input, doc="same elements, new shape (one -1 allowed)"))


def _reshape_like_shape(shapes, attrs):
    return _reshape_shape(shapes[:1], {"shape": shapes[1]})


register(OpDef("reshape_like", "injective", _reshape_like_shape, _copy_reshaped,
               lambda n, g: [reshape_like(g, n.inputs[0]), None], shape_only=(1,),
               inplace=(0,), reinterprets=True, identity_when=same_as_input,
               doc="reshape x to the shape of ref"))


# ---- transpose ----------------------------------------------------------------------------

def _axes(attrs, ndim):
    axes = attrs["axes"]
    return tuple(reversed(range(ndim))) if axes is None else tuple(a % ndim for a in axes)


def _transpose_shape(shapes, attrs):
    shape = shapes[0]
    axes = _axes(attrs, len(shape))
    if sorted(axes) != list(range(len(shape))):
        raise ShapeError(f"transpose axes {attrs['axes']} are not a permutation of rank {len(shape)}")
    return tuple(shape[a] for a in axes)


def _transpose_grad(n, g):
    axes = n.attrs["axes"]
    if axes is None:
        return [transpose(g, None)]  # reversing is its own inverse
    return [transpose(g, inverse_axes(axes))]


def inverse_axes(axes) -> tuple:
    """The permutation that undoes `axes`. A permutation lists every axis once, so its length
    is the rank: negative axes are normalised before inverting (argsort of (-1, 0) would
    invert the wrong permutation)."""
    return tuple(int(i) for i in np.argsort([a % len(axes) for a in axes]))


def _transpose(xp, ins, attrs, out):
    x = ins[0]
    axes = _axes(attrs, x.ndim)
    if xp is np and _swap_native(x, axes, out):
        return
    xp.copyto(out, xp.transpose(x, axes))


def _swap_native(x, axes, out) -> bool:
    """Two neighbouring axes swapped, the last one kept (attention's (N, T, H, D) <-> (N, H,
    T, D)): a compiled copy of D-long rows (ops/native_loops.py), on host arrays. numpy's
    strided copy took 24.5 µs for (12, 64, 4, 32) alone, this 12. Returns whether it ran."""
    moved = [k for k, a in enumerate(axes) if a != k]
    if (len(moved) != 2 or moved[1] != moved[0] + 1 or moved[1] == x.ndim - 1
            or not native.usable(x, out)):
        return False
    k = moved[0]
    a, b, c = math.prod(x.shape[:k]), x.shape[k], x.shape[k + 1]
    d = math.prod(x.shape[k + 2:])
    native.kernel("swap_axes")(x.reshape(a, b, c, d), out.reshape(a, c, b, d))
    return True


register(OpDef("transpose", "injective", _transpose_shape, _transpose,
               _transpose_grad, doc="permute axes (None reverses them)"))


# ---- concat and its gradient --------------------------------------------------------------

def _concat_shape(shapes, attrs):
    first = shapes[0]
    axis = attrs["axis"] % len(first)
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis):
            raise ShapeError(f"cannot concatenate {tuple(first)} and {tuple(s)} on axis {axis}")
    total = sum(s[axis] for s in shapes)
    return tuple(total if i == axis else d for i, d in enumerate(first))


def _concat(xp, ins, attrs, out):
    xp.concatenate(ins, axis=attrs["axis"] % out.ndim, out=out)


def _concat_grad(n, g):
    return [make("concat_part", g, *n.inputs, axis=n.attrs["axis"], index=i)
            for i in range(len(n.inputs))]


register(OpDef("concat", "injective", _concat_shape, _concat, _concat_grad,
               doc="join along an axis"))


def _part_bounds(shapes, attrs):
    axis = attrs["axis"] % len(shapes[0])
    start = sum(s[axis] for s in shapes[1:1 + attrs["index"]])
    return axis, start, start + shapes[1 + attrs["index"]][axis]


def _part_shape(shapes, attrs):
    return tuple(shapes[1 + attrs["index"]])


def _part(xp, ins, attrs, out):
    axis, start, stop = _part_bounds([i.shape for i in ins], attrs)
    index = [np.s_[:]] * out.ndim
    index[axis] = np.s_[start:stop]
    xp.copyto(out, ins[0][tuple(index)])


def _part_grad(n, g):
    # Only the gradient flowing to the concatenated gradient matters; parts are shape-only.
    parts = n.inputs[1:]
    grads = [g if i == n.attrs["index"] else make("zeroslike", p) for i, p in enumerate(parts)]
    return [concat(grads, n.attrs["axis"])] + [None] * len(parts)


register(OpDef("concat_part", "injective", _part_shape, _part, _part_grad,
               shape_only=tuple(range(1, 64)), doc="the slice of a concat's gradient for input i"))


# ---- slice --------------------------------------------------------------------------------

def _slices(attrs, shape):
    begin, end = attrs["begin"], attrs["end"]
    if len(begin) > len(shape) or len(end) != len(begin):
        raise ShapeError(f"slice begin {begin} / end {end} do not fit shape {tuple(shape)}")
    return tuple(np.s_[b:e] for b, e in zip(begin, end))


def _slice_shape(shapes, attrs):
    shape = shapes[0]
    index = _slices(attrs, shape)
    sizes = [len(range(*s.indices(d))) for s, d in zip(index, shape)]
    if any(n == 0 for n in sizes):
        raise ShapeError(f"slice {attrs['begin']}:{attrs['end']} of {tuple(shape)} is empty")
    return tuple(sizes) + tuple(shape[len(index):])


def _slice_grad(n, g):
    return [make("slice_grad", g, n.inputs[0], begin=n.attrs["begin"], end=n.attrs["end"])]


register(OpDef("slice", "injective", _slice_shape,
               lambda xp, ins, a, out: xp.copyto(out, ins[0][_slices(a, ins[0].shape)]),
               _slice_grad, doc="a contiguous block x[begin:end] per axis"))


def _slice_grad_compute(xp, ins, attrs, out):
    g, x = ins
    out.fill(0)
    out[_slices(attrs, x.shape)] = g


register(OpDef("slice_grad", "injective", lambda s, a: tuple(s[1]), _slice_grad_compute,
               lambda n, g: [make("slice", g, begin=n.attrs["begin"], end=n.attrs["end"]), None],
               shape_only=(1,), doc="scatter a slice's gradient into zeros of x's shape"))
