"""GEMMs through cuBLAS, transposes passed as flags and never materialised.

cuBLAS is column-major; a row-major matrix X (r×c) is, to it, Xᵀ with leading dimension c.
So C = op(A)·op(B) (row-major, m×n) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ: B goes first, each
operand's flag is 'T' exactly when its own transpose is asked for, ldc = n. A batch of
matrices is one strided-batched call; a 2-D operand is shared by every entry (stride 0). An
operand may also be `Blocks`: matrices inside a larger buffer, with their own leading
dimension and batch stride (a convolution chunk's per-sample column blocks, read in place).
`gemm_args` is that mapping as a pure function (tested against a column-major reference
on the host); `gemm` makes the call. No device memory is allocated (scalars are host ones),
so a captured step may contain it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import all_float, fallback

_ONE = {np.dtype(np.float32): np.ones(1, np.float32), np.dtype(np.float64): np.ones(1, np.float64)}
_ZERO = {d: np.zeros(1, d) for d in _ONE}


@dataclass(frozen=True)
class GemmArgs:
    """cuBLAS (strided-batched) GEMM arguments, in its order; 'first' is the B operand."""
    trans_first: bool
    trans_second: bool
    m: int
    n: int
    k: int
    ld_first: int
    stride_first: int
    ld_second: int
    stride_second: int
    ldc: int
    stride_c: int
    batch: int


@dataclass(frozen=True)
class Blocks:
    """`shape` (batch, rows, cols) row-major matrices inside the C-contiguous `array`, the
    first at its start: `ld` elements from a row to the next, `stride` from a matrix to the
    next. E.g. the per-sample (C·KH·KW, OH·OW) blocks of a chunk's (C·KH·KW, m·OH·OW)
    columns: ld m·OH·OW, stride OH·OW, so a batched GEMM reads them without a copy."""
    array: object
    shape: tuple
    ld: int
    stride: int


def layout(x):
    """(array, shape, leading dimension, batch stride) of a GEMM operand: Blocks as given, a
    C-contiguous array as its own rows (stride 0 when 2-D: shared by the batch)."""
    if isinstance(x, Blocks):
        return x.array, tuple(x.shape), x.ld, x.stride
    return x, tuple(x.shape), x.shape[-1], 0 if x.ndim == 2 else x.shape[-2] * x.shape[-1]


def gemm_args(a_shape, b_shape, out_shape, trans_a=False, trans_b=False, *, ld_a=None,
              stride_a=None, ld_b=None, stride_b=None) -> GemmArgs:
    """out[i] = op(a[i]) @ op(b[i]) for row-major operands (2-D a or b shared); an operand's
    leading dimension and batch stride default to those of a C-contiguous array."""
    rows, cols = out_shape[-2:]
    k = a_shape[-2] if trans_a else a_shape[-1]
    batch = out_shape[0] if len(out_shape) == 3 else 1

    def stride(shape, given):
        if given is not None:
            return given
        return 0 if len(shape) == 2 else shape[-2] * shape[-1]
    return GemmArgs(trans_b, trans_a, cols, rows, k, b_shape[-1] if ld_b is None else ld_b,
                    stride(b_shape, stride_b), a_shape[-1] if ld_a is None else ld_a,
                    stride(a_shape, stride_a), cols, rows * cols, batch)


def operand_args(a, b, out, trans_a=False, trans_b=False) -> GemmArgs:
    """gemm_args of operands given as arrays or Blocks."""
    _, a_shape, ld_a, stride_a = layout(a)
    _, b_shape, ld_b, stride_b = layout(b)
    return gemm_args(a_shape, b_shape, out.shape, trans_a, trans_b, ld_a=ld_a,
                     stride_a=stride_a, ld_b=ld_b, stride_b=stride_b)


def gemm(a, b, out, trans_a=False, trans_b=False):
    """out = op(a) @ op(b), batched over out's first axis when out is 3-D; a and b are
    C-contiguous arrays or Blocks."""
    from cupy.cuda import device
    from cupy_backends.cuda.libs import cublas
    g = operand_args(a, b, out, trans_a, trans_b)
    a, b = layout(a)[0], layout(b)[0]
    handle = device.get_cublas_handle()
    op = {False: cublas.CUBLAS_OP_N, True: cublas.CUBLAS_OP_T}
    one, zero = _ONE[out.dtype].ctypes.data, _ZERO[out.dtype].ctypes.data
    single = out.dtype == np.float32
    mode = cublas.getPointerMode(handle)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    try:
        if out.ndim == 2:
            (cublas.sgemm if single else cublas.dgemm)(
                handle, op[g.trans_first], op[g.trans_second], g.m, g.n, g.k, one,
                b.data.ptr, g.ld_first, a.data.ptr, g.ld_second, zero, out.data.ptr, g.ldc)
        else:
            (cublas.sgemmStridedBatched if single else cublas.dgemmStridedBatched)(
                handle, op[g.trans_first], op[g.trans_second], g.m, g.n, g.k, one,
                b.data.ptr, g.ld_first, g.stride_first, a.data.ptr, g.ld_second, g.stride_second,
                zero, out.data.ptr, g.ldc, g.stride_c, g.batch)
    finally:
        cublas.setPointerMode(handle, mode)


def matmul(xp, ins, attrs, out, ws=None):
    a, b = ins
    if a.ndim != 2 or b.ndim != 2 or 0 in (*a.shape, *b.shape) or \
            not all_float(out.dtype, a, b, out):
        return fallback("matmul", xp, ins, attrs, out)  # mixed dtypes, odd layouts, empty
    gemm(a, b, out, attrs["trans_A"], attrs["trans_B"])


KERNELS = {"matmul": matmul}


def examples() -> dict:
    return {}  # no generated source: the GEMMs are cuBLAS's
