"""conv2d and its gradients: im2col / col2im kernels of our own around cuBLAS GEMMs, with the
layout of core/ops/conv.py (columns (N, C·KH·KW, OH·OW) per chunk of samples, in the planned
`cols` workspace). Padding is handled inside the kernels, so `xpad` is never needed.

col2im gathers (one thread per input pixel, summing the columns that cover it in kernel-offset
order) rather than scattering with atomics: deterministic, and the same additions in the same
order as the numpy compute."""
from __future__ import annotations

from string import Template

import numpy as np

from core.ops.base import OPS, scratch

from ..csrc import index_type, prelude
from ..launch import blocks_for, index_scalar
from . import blas
from .common import all_float, fallback, kernel

_DECODE = """    IDX t = i;
    const int ox = t % OW; t /= OW;
    const int oy = t % OH; t /= OH;"""

IM2COL = Template("""$prelude
#define KH $kh
#define KW $kw
#define S $s
#define P $p
// cols[n][c][ki][kj][oy][ox] = x[n][c][oy*S+ki-P][ox*S+kj-P], 0 outside the image
extern "C" __global__ void loom_im2col(const T* x, T* cols, IDX total, int C, int H, int W,
                                       int OH, int OW) {
  for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (IDX)gridDim.x * blockDim.x) {
$decode
    const int kj = t % KW; t /= KW;
    const int ki = t % KH; t /= KH;
    const IDX plane = t;  // n * C + c
    const int y = oy * S + ki - P, xx = ox * S + kj - P;
    cols[i] = (y >= 0 && y < H && xx >= 0 && xx < W) ? x[(plane * H + y) * W + xx] : (T)0;
  }
}
""")

COL2IM = Template("""$prelude
#define KH $kh
#define KW $kw
#define S $s
#define P $p
// dx[n][c][y][x] = sum over the (ki, kj) whose window covers it, in (ki, kj) order
extern "C" __global__ void loom_col2im(const T* cols, T* dx, IDX total, int C, int H, int W,
                                       int OH, int OW) {
  for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (IDX)gridDim.x * blockDim.x) {
    IDX t = i;
    const int xx = t % W; t /= W;
    const int y = t % H; t /= H;
    const IDX plane = t;  // n * C + c
    T acc = (T)0;
    for (int ki = 0; ki < KH; ++ki) {
      const int yy = y + P - ki;
      if (yy < 0 || yy % S != 0 || yy / S >= OH) continue;
      for (int kj = 0; kj < KW; ++kj) {
        const int xs = xx + P - kj;
        if (xs < 0 || xs % S != 0 || xs / S >= OW) continue;
        acc = acc + cols[((plane * KH + ki) * KW + kj) * OH * OW + (IDX)(yy / S) * OW + xs / S];
      }
    }
    dx[i] = acc;
  }
}
""")

SUM_BATCH = Template("""$prelude
// out[j] (+)= sum over b of parts[b][j]: the per-sample weight gradients of a chunk
extern "C" __global__ void loom_sum_batch(const T* parts, T* out, int nb, IDX m) {
  for (IDX j = (IDX)blockIdx.x * blockDim.x + threadIdx.x; j < m; j += (IDX)gridDim.x * blockDim.x) {
    T acc = parts[j];
    for (int b = 1; b < nb; ++b) acc = acc + parts[(IDX)b * m + j];
    out[j] = $result;
  }
}
""")


def im2col_source(dtype, kh, kw, s, p, index):
    return "loom_im2col", IM2COL.substitute(prelude=prelude(dtype, index), kh=kh, kw=kw, s=s,
                                            p=p, decode=_DECODE)


def col2im_source(dtype, kh, kw, s, p, index):
    return "loom_col2im", COL2IM.substitute(prelude=prelude(dtype, index), kh=kh, kw=kw, s=s, p=p)


def sum_batch_source(dtype, accumulate, index):
    result = "out[j] + acc" if accumulate else "acc"
    return "loom_sum_batch", SUM_BATCH.substitute(prelude=prelude(dtype, index), result=result)


# ---- launches -------------------------------------------------------------------------------

def _window(attrs, w_shape):
    return w_shape[2], w_shape[3], attrs["stride"], attrs["padding"]


def _im2col(x, cols, window, oh, ow):
    n, c, h, w = x.shape
    total = cols.size
    index = index_type(total, x.size)
    k = kernel(("im2col", x.dtype.char, *window, index), im2col_source, x.dtype, *window, index)
    k(blocks_for(total), (256,), (x, cols, index_scalar(index)(total), *_ints(c, h, w, oh, ow)))


def _col2im(cols, dx, window, oh, ow):
    n, c, h, w = dx.shape
    total = dx.size
    index = index_type(total, cols.size)
    k = kernel(("col2im", dx.dtype.char, *window, index), col2im_source, dx.dtype, *window, index)
    k(blocks_for(total), (256,), (cols, dx, index_scalar(index)(total), *_ints(c, h, w, oh, ow)))


def _sum_batch(parts, out, accumulate):
    nb, m = parts.shape[0], out.size
    index = index_type(parts.size)
    k = kernel(("sum_batch", out.dtype.char, accumulate, index), sum_batch_source, out.dtype,
               accumulate, index)
    k(blocks_for(m), (256,), (parts, out, *_ints(nb), index_scalar(index)(m)))


def _ints(*values):
    return [np.int32(v) for v in values]


def _chunks(n, size):
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _workspace(op_name, xp, ins, attrs, out, ws):
    return ws if ws is not None else scratch(OPS[op_name].workspace, xp, ins, attrs, out)


# ---- the ops --------------------------------------------------------------------------------

def conv2d(xp, ins, attrs, out, ws=None):
    x, w = ins
    if not all_float(out.dtype, x, w, out):
        return fallback("conv2d", xp, ins, attrs, out, ws)
    ws = _workspace("conv2d", xp, ins, attrs, out, ws)
    n, o, oh, ow = out.shape
    w2d, window = w.reshape(o, -1), _window(attrs, w.shape)
    for a, b in _chunks(n, ws["cols"].shape[0]):
        cols = ws["cols"][:b - a]
        _im2col(x[a:b], cols, window, oh, ow)
        blas.gemm(w2d, cols, out[a:b].reshape(b - a, o, oh * ow))  # W·cols per sample, W shared


def conv2d_grad_input(xp, ins, attrs, out, ws=None):
    gy, w, x = ins
    if not all_float(out.dtype, gy, w, out):
        return fallback("conv2d_grad_input", xp, ins, attrs, out, ws)
    ws = _workspace("conv2d_grad_input", xp, ins, attrs, out, ws)
    n, o, oh, ow = gy.shape
    w2d, window = w.reshape(o, -1), _window(attrs, w.shape)
    for a, b in _chunks(n, ws["cols"].shape[0]):
        dcols = ws["cols"][:b - a]
        blas.gemm(w2d, gy[a:b].reshape(b - a, o, oh * ow), dcols, trans_a=True)  # Wᵀ·gy
        _col2im(dcols, out[a:b], window, oh, ow)


def conv2d_grad_weight(xp, ins, attrs, out, ws=None):
    gy, x, w = ins
    if not all_float(out.dtype, gy, x, out):
        return fallback("conv2d_grad_weight", xp, ins, attrs, out, ws)
    ws = _workspace("conv2d_grad_weight", xp, ins, attrs, out, ws)
    n, o, oh, ow = gy.shape
    window = _window(attrs, w.shape)
    for k, (a, b) in enumerate(_chunks(n, ws["cols"].shape[0])):
        cols = ws["cols"][:b - a]
        _im2col(x[a:b], cols, window, oh, ow)
        per_sample = ws["per_sample"][:b - a]
        blas.gemm(gy[a:b].reshape(b - a, o, oh * ow), cols, per_sample, trans_b=True)  # gy·colsᵀ
        _sum_batch(per_sample, out, accumulate=k > 0)


KERNELS = {"conv2d": conv2d, "conv2d_grad_input": conv2d_grad_input,
           "conv2d_grad_weight": conv2d_grad_weight}


def examples() -> dict:
    """Every kernel in both dtypes (5×5, padding 2); stride 2 without padding and 64-bit
    indexing in float32."""
    out = {}
    for dtype, configs in (("float32", ((5, 1, 2), (3, 2, 0))), ("float64", ((5, 1, 2),))):
        for kh, s, p in configs:
            out[f"im2col/{dtype}/k{kh}s{s}p{p}"] = im2col_source(dtype, kh, kh, s, p, "int")[1]
            out[f"col2im/{dtype}/k{kh}s{s}p{p}"] = col2im_source(dtype, kh, kh, s, p, "int")[1]
        for accumulate in (False, True):
            out[f"sum_batch/{dtype}/{accumulate}"] = sum_batch_source(dtype, accumulate, "int")[1]
    out["im2col/float32/long"] = im2col_source("float32", 3, 3, 1, 1, "long long")[1]
    return out
