"""conv2d and its gradients: im2col / col2im kernels of our own around cuBLAS GEMMs, with the
algorithm and workspace of core/ops/conv.py branch by branch. A chunk of m samples has its
columns as one (C·KH·KW, m·OH·OW) matrix in the planned `cols` buffer (column = sample·OH·OW +
pixel), so one GEMM covers the chunk; small images then transpose the (O, m, OH·OW) result
into NCHW, large ones (`per_sample_gemms`) read each sample's block of columns in place with a
strided-batched GEMM straight into its output. (The CPU orders small images' columns
batch-innermost, for numpy's copy loops; a kernel computes each column wherever it lies, so
the GPU keeps the sample-major order and one transposition rule.) Padding is handled inside
the kernels, so `xpad` and `xt` are never needed.

col2im gathers (one thread per input pixel, summing the columns that cover it in kernel-offset
order) rather than scattering with atomics: deterministic, and the same additions in the same
order as the numpy compute."""
from __future__ import annotations

from string import Template

import numpy as np

from core.ops.base import OPS, scratch
from core.ops.conv import grad_input_as_convolution

from ..csrc import index_type, prelude
from ..launch import blocks_for, index_scalar
from . import blas
from .common import all_float, fallback, kernel

LOOP = """  for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (IDX)gridDim.x * blockDim.x) {"""

IM2COL = Template("""$prelude
#define KH $kh
#define KW $kw
#define S $s
#define P $p
// cols[c][ki][kj][n][oy][ox] = x[n][c][oy*S+ki-P][ox*S+kj-P], 0 outside the image: the N
// samples' columns as one (C*KH*KW, N*OH*OW) matrix
extern "C" __global__ void loom_im2col(const T* x, T* cols, IDX total, int N, int C, int H,
                                       int W, int OH, int OW) {
$loop
    IDX t = i;
    const int ox = t % OW; t /= OW;
    const int oy = t % OH; t /= OH;
    const int n = t % N; t /= N;
    const int kj = t % KW; t /= KW;
    const int ki = t % KH; t /= KH;
    const int c = (int)t;
    const int y = oy * S + ki - P, xx = ox * S + kj - P;
    const bool inside = y >= 0 && y < H && xx >= 0 && xx < W;
    cols[i] = inside ? x[(((IDX)n * C + c) * H + y) * W + xx] : (T)0;
  }
}
""")

COL2IM = Template("""$prelude
#define KH $kh
#define KW $kw
#define S $s
#define P $p
// dx[n][c][y][x] = sum of the (C*KH*KW, N*OH*OW) columns whose window covers it, in (ki, kj)
// order
extern "C" __global__ void loom_col2im(const T* cols, T* dx, IDX total, int N, int C, int H,
                                       int W, int OH, int OW) {
$loop
    IDX t = i;
    const int xx = t % W; t /= W;
    const int y = t % H; t /= H;
    const int c = t % C; t /= C;
    const int n = (int)t;
    T acc = (T)0;
    for (int ki = 0; ki < KH; ++ki) {
      const int yy = y + P - ki;
      if (yy < 0 || yy % S != 0 || yy / S >= OH) continue;
      for (int kj = 0; kj < KW; ++kj) {
        const int xs = xx + P - kj;
        if (xs < 0 || xs % S != 0 || xs / S >= OW) continue;
        const int row = (c * KH + ki) * KW + kj;
        acc = acc + cols[(((IDX)row * N + n) * OH + yy / S) * OW + xs / S];
      }
    }
    dx[i] = acc;
  }
}
""")

# (A, B, P) -> (B, A, P): a chunk's GEMM result (O, m, OH·OW) into NCHW samples, and NCHW
# gradients (m, O, OH·OW) into a GEMM operand (O, m·OH·OW). One thread per destination
# element, so the writes are coalesced.
SWAP = Template("""$prelude
// dst[b][a][p] = src[a][b][p]
extern "C" __global__ void loom_swap_outer(const T* src, T* dst, IDX total, int A, int B, int P) {
$loop
    IDX t = i;
    const int p = t % P; t /= P;
    const int a = t % A; t /= A;
    const int b = (int)t;
    dst[i] = src[((IDX)a * B + b) * P + p];
  }
}
""")

SUM_BATCH = Template("""$prelude
// out[j] (+)= sum over b of parts[b][j], in b order: the per-sample weight gradients of a
// chunk (nb = 1 adds one chunk's gradient to the total)
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
                                            p=p, loop=LOOP)


def col2im_source(dtype, kh, kw, s, p, index):
    return "loom_col2im", COL2IM.substitute(prelude=prelude(dtype, index), kh=kh, kw=kw, s=s,
                                            p=p, loop=LOOP)


def swap_source(dtype, index):
    return "loom_swap_outer", SWAP.substitute(prelude=prelude(dtype, index), loop=LOOP)


def sum_batch_source(dtype, accumulate, index):
    result = "out[j] + acc" if accumulate else "acc"
    return "loom_sum_batch", SUM_BATCH.substitute(prelude=prelude(dtype, index), result=result)


# ---- launches -------------------------------------------------------------------------------

def _window(attrs, w_shape):
    return w_shape[2], w_shape[3], attrs["stride"], attrs["padding"]


def _im2col(x, cols, window, oh, ow):
    """cols (C·KH·KW, m·OH·OW) = the columns of the m samples x."""
    n, c, h, w = x.shape
    total = cols.size
    index = index_type(total, x.size)
    k = kernel(("im2col", x.dtype.char, *window, index), im2col_source, x.dtype, *window, index)
    k(blocks_for(total), (256,), (x, cols, index_scalar(index)(total), *_ints(n, c, h, w, oh, ow)))


def _col2im(cols, dx, window, oh, ow):
    """dx (m, C, H, W) = the (C·KH·KW, m·OH·OW) columns cols summed back onto the images."""
    n, c, h, w = dx.shape
    total = dx.size
    index = index_type(total, cols.size)
    k = kernel(("col2im", dx.dtype.char, *window, index), col2im_source, dx.dtype, *window, index)
    k(blocks_for(total), (256,), (cols, dx, index_scalar(index)(total), *_ints(n, c, h, w, oh, ow)))


def _swap_outer(src, dst, a, b):
    """dst (b, a, P) = src (a, b, P) with its two outer axes swapped (both C-contiguous)."""
    total = src.size
    index = index_type(total)
    k = kernel(("swap_outer", dst.dtype.char, index), swap_source, dst.dtype, index)
    k(blocks_for(total), (256,), (src, dst, index_scalar(index)(total),
                                  *_ints(a, b, total // (a * b))))


def _sum_batch(parts, out, accumulate):
    """out (+)= Σ parts[b] in order, parts being (nb, *out.shape)."""
    nb, m = parts.shape[0], out.size
    index = index_type(parts.size)
    k = kernel(("sum_batch", out.dtype.char, accumulate, index), sum_batch_source, out.dtype,
               accumulate, index)
    k(blocks_for(m), (256,), (parts, out, *_ints(nb), index_scalar(index)(m)))


def _ints(*values):
    return [np.int32(v) for v in values]


def _matrix(buf, rows, cols):
    """core.ops.conv._matrix: the first rows×cols elements of a workspace buffer as one
    contiguous matrix (a short last chunk still gets a matrix the kernels read flat)."""
    return buf.reshape(-1)[:rows * cols].reshape(rows, cols)


def _chunks(ws, n):
    """(lo, hi) of each chunk: the chunk is the first axis of ws["cols"], as on the CPU."""
    size = ws["cols"].shape[0]
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _sample_blocks(cols, m, pixels):
    """The m per-sample (C·KH·KW, OH·OW) blocks of a chunk's columns, read in place."""
    return blas.Blocks(cols, (m, cols.shape[0], pixels), cols.shape[1], pixels)


def _workspace(op_name, xp, ins, attrs, out, ws):
    return ws if ws is not None else scratch(OPS[op_name].workspace, xp, ins, attrs, out)


# ---- the ops --------------------------------------------------------------------------------

def _convolve(x, w2d, window, out, ws):
    """out = x convolved by the (O, C·KH·KW) matrix w2d, as core.ops.conv._convolve: per chunk,
    im2col then one GEMM into `y` and a transposition into NCHW (small images, where `y` is
    planned), or a GEMM per sample straight into its output (large ones). The branch is the
    workspace's, as on the CPU: the input gradient's convolution plans `y` at any size."""
    n, o, oh, ow = out.shape
    for lo, hi in _chunks(ws, n):
        m = hi - lo
        cols = _matrix(ws["cols"], w2d.shape[1], m * oh * ow)
        _im2col(x[lo:hi], cols, window, oh, ow)
        if "y" in ws:
            y = _matrix(ws["y"], o, m * oh * ow)
            blas.gemm(w2d, cols, y)
            _swap_outer(y, out[lo:hi], o, m)
        else:
            blas.gemm(w2d, _sample_blocks(cols, m, oh * ow), out[lo:hi].reshape(m, o, oh * ow))


def conv2d(xp, ins, attrs, out, ws=None):
    x, w = ins
    if not all_float(out.dtype, x, w, out):
        return fallback("conv2d", xp, ins, attrs, out, ws)
    ws = _workspace("conv2d", xp, ins, attrs, out, ws)
    _convolve(x, w.reshape(w.shape[0], -1), _window(attrs, w.shape), out, ws)


def conv2d_grad_input(xp, ins, attrs, out, ws=None):
    gy, w, x = ins
    if not all_float(out.dtype, gy, w, out):
        return fallback("conv2d_grad_input", xp, ins, attrs, out, ws)
    ws = _workspace("conv2d_grad_input", xp, ins, attrs, out, ws)
    o, c, kh, kw = w.shape
    if grad_input_as_convolution(gy.shape, w.shape, x.shape, attrs):
        # a stride-1 convolution of gy by the flipped kernel, channel axes swapped (cupy's
        # copy kernel builds it: a small array, once per call)
        flipped = ws["w_flipped"]
        flipped.reshape(c, o, kh, kw)[...] = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        _convolve(gy, flipped, (kh, kw, 1, kh - 1 - attrs["padding"]), out, ws)
        return
    n, _, oh, ow = gy.shape
    w2d, window = w.reshape(o, -1), _window(attrs, w.shape)
    for lo, hi in _chunks(ws, n):
        m = hi - lo
        g = _matrix(ws["gy"], o, m * oh * ow)
        _swap_outer(gy[lo:hi], g, m, o)
        dcols = _matrix(ws["cols"], w2d.shape[1], m * oh * ow)
        blas.gemm(w2d, g, dcols, trans_a=True)  # Wᵀ·gy
        _col2im(dcols, out[lo:hi], window, oh, ow)


def conv2d_grad_weight(xp, ins, attrs, out, ws=None):
    """dw = Σ of gy (O, m·OH·OW) @ columnsᵀ over chunks (or samples, for large images), in
    order, as core.ops.conv._conv_grad_weight."""
    gy, x, w = ins
    if not all_float(out.dtype, gy, x, out):
        return fallback("conv2d_grad_weight", xp, ins, attrs, out, ws)
    ws = _workspace("conv2d_grad_weight", xp, ins, attrs, out, ws)
    n, o, oh, ow = gy.shape
    window, dw = _window(attrs, w.shape), out.reshape(o, -1)
    for lo, hi in _chunks(ws, n):
        m = hi - lo
        cols = _matrix(ws["cols"], dw.shape[1], m * oh * ow)
        _im2col(x[lo:hi], cols, window, oh, ow)
        if "gy" in ws:  # small images: one GEMM over the chunk
            g = _matrix(ws["gy"], o, m * oh * ow)
            _swap_outer(gy[lo:hi], g, m, o)
            target = dw if lo == 0 else ws["chunk_sum"]
            blas.gemm(g, cols, target, trans_b=True)  # gy·colsᵀ
            if lo:
                _sum_batch(target.reshape(1, -1), dw, accumulate=True)  # dw + chunk_sum
            continue
        # large images: a GEMM per sample, then their sum in order; dw + (that sum) in one
        # pass rounds as the CPU's chunk_sum then dw + chunk_sum does
        per_sample = _matrix(ws["per_sample"], m, dw.size).reshape(m, *dw.shape)
        blas.gemm(gy[lo:hi].reshape(m, o, oh * ow), _sample_blocks(cols, m, oh * ow), per_sample,
                  trans_b=True)
        _sum_batch(per_sample, dw, accumulate=lo > 0)


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
        out[f"swap_outer/{dtype}"] = swap_source(dtype, "int")[1]
        for accumulate in (False, True):
            out[f"sum_batch/{dtype}/{accumulate}"] = sum_batch_source(dtype, accumulate, "int")[1]
    for name, source in (("im2col", im2col_source("float32", 3, 3, 1, 1, "long long")),
                         ("col2im", col2im_source("float32", 3, 3, 1, 1, "long long")),
                         ("swap_outer", swap_source("float32", "long long")),
                         ("sum_batch", sum_batch_source("float32", True, "long long"))):
        out[f"{name}/float32/long"] = source[1]
    return out
