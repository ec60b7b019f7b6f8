"""Sums along the last axis by einsum, for log-softmax and trailing-axis reductions.
numpy's add.reduce visits short rows one inner loop at a time; einsum's sum-of-products loop
runs along them: a (768, 128) row sum took 43 µs by add.reduce against 16 by einsum, (12288,
64) (attention scores) 430 against 150. Each row's sum is computed the same way wherever the
row sits, so an op split over threads by rows keeps its bits (a BLAS matrix-vector product
with a ones vector, faster still, does not: its kernels treat rows by their position in a
group of four or eight). Every backend takes this path, so the stand-in device keeps the
numpy backend's bits; rows longer than MAX_WIDTH keep add.reduce's pairwise summation.
Softmax and layer norm sum by add.reduce instead: compiled loops repeat its order
(ops/native_loops.py), where einsum's depends on the SIMD width numpy dispatched to."""
from __future__ import annotations

MAX_WIDTH = 4096


def trailing_width(x, axes, out) -> int:
    """The row length when summing the C-contiguous float array x over its trailing `axes`
    into the C-contiguous out is a row sum by einsum, else 0."""
    ndim = x.ndim
    if not axes or tuple(axes) != tuple(range(ndim - len(axes), ndim)):
        return 0
    if x.dtype.kind != "f" or not (x.flags.c_contiguous and out.flags.c_contiguous):
        return 0
    width = 1
    for a in axes:
        width *= x.shape[a]
    return width if 0 < width <= MAX_WIDTH and out.size * width == x.size else 0


def sum_rows(xp, x, width, out):
    """out = the sums of x's rows of `width` elements (see trailing_width)."""
    # cupy's einsum takes no out=; numpy writes the same bits either way
    out.reshape(-1)[...] = xp.einsum("ij->i", x.reshape(-1, width))


def last_axis_sum(xp, x, keepdims=False):
    """Σ of x over its last axis, as a new array."""
    out = xp.empty(x.shape[:-1] + ((1,) if keepdims else ()), x.dtype)
    width = trailing_width(x, (x.ndim - 1,), out) if x.ndim else 0
    if width:
        sum_rows(xp, x, width, out)
    else:
        xp.sum(x, axis=-1, keepdims=keepdims, out=out)
    return out
