"""Max and average pooling and their gradients, one thread per output (forward) or per input
pixel (gradients: a gather over the windows covering the pixel, in the numpy compute's
kernel-offset order, so no atomics and no zero-fill pass). Window, stride and padding are
baked into each source; tensor sizes are arguments. No workspace is needed (padding is
handled by bounds checks)."""
from __future__ import annotations

from string import Template

import numpy as np

from ..csrc import index_type, literal, prelude
from ..launch import blocks_for, index_scalar
from .common import all_float, fallback, kernel

HEAD = Template("""$prelude
#define K $k
#define S $s
#define P $p
// x[y][x] of one (n, c) plane, or `pad` outside it (the padding)
__device__ __forceinline__ T at(const T* plane, int y, int x, int H, int W, T pad) {
    return (y >= 0 && y < H && x >= 0 && x < W) ? plane[(IDX)y * W + x] : pad;
}
""")

LOOP = """  for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (IDX)gridDim.x * blockDim.x) {"""

FORWARD = Template("""$head
extern "C" __global__ void loom_pool(const T* x, T* y, IDX total, int H, int W, int OH, int OW) {
$loop
    IDX t = i;
    const int ox = t % OW; t /= OW;
    const int oy = t % OH; t /= OH;
    const T* plane = x + t * H * W;  // this (n, c) plane
    T acc = $init;
    for (int a = 0; a < K; ++a)
      for (int b = 0; b < K; ++b) {
        const T v = at(plane, oy * S + a - P, ox * S + b - P, H, W, $pad);
        $update
      }
    y[i] = $result;
  }
}
""")


def _head(dtype, k, s, p, index):
    return HEAD.substitute(prelude=prelude(dtype, index), k=k, s=s, p=p)


def max_pool_source(dtype, k, s, p, index):
    # numpy's running maximum: a NaN, once met, stays
    update = "if (acc == acc && !(v <= acc)) acc = v;"
    return "loom_pool", FORWARD.substitute(head=_head(dtype, k, s, p, index), loop=LOOP,
                                           init="-T_INF", pad="-T_INF", update=update,
                                           result="acc")


def avg_pool_source(dtype, k, s, p, index):
    # padding counts as zeros (count_include_pad), then one multiply by 1/K² as numpy does
    return "loom_pool", FORWARD.substitute(head=_head(dtype, k, s, p, index), loop=LOOP,
                                           init="(T)0", pad="(T)0", update="acc = acc + v;",
                                           result=f"acc * {literal(1.0 / (k * k), dtype)}")


GRAD = Template("""$head
// Gradient at input pixel (y, x): the windows covering it, in kernel-offset order (a, b),
// each window found from a = y + P - oy*S.
extern "C" __global__ void loom_pool_grad($params, T* dx, IDX total, int H, int W, int OH, int OW) {
$loop
    IDX t = i;
    const int px = t % W; t /= W;
    const int py = t % H; t /= H;
    const IDX plane = t;
    T acc = (T)0;
    for (int a = 0; a < K; ++a) {
      const int yy = py + P - a;
      if (yy < 0 || yy % S != 0 || yy / S >= OH) continue;
      const int oy = yy / S;
      for (int b = 0; b < K; ++b) {
        const int xs = px + P - b;
        if (xs < 0 || xs % S != 0 || xs / S >= OW) continue;
        const int ox = xs / S;
        const IDX o = (plane * OH + oy) * OW + ox;
$body
      }
    }
    dx[i] = acc;
  }
}
""")

MAX_BODY = """        // the window's gradient goes to its first maximum (ties: lowest offset)
        const T target = y[o];
        int first = -1;
        for (int a2 = 0; a2 < K && first < 0; ++a2)
          for (int b2 = 0; b2 < K && first < 0; ++b2)
            if (at(x + plane * H * W, oy * S + a2 - P, ox * S + b2 - P, H, W, -T_INF) == target)
              first = a2 * K + b2;
        if (first == a * K + b) acc = acc + gy[o];"""


def max_pool_grad_source(dtype, k, s, p, index):
    return "loom_pool_grad", GRAD.substitute(
        head=_head(dtype, k, s, p, index), loop=LOOP, body=MAX_BODY,
        params="const T* x, const T* y, const T* gy")


def avg_pool_grad_source(dtype, k, s, p, index):
    share = literal(1.0 / (k * k), dtype)
    return "loom_pool_grad", GRAD.substitute(
        head=_head(dtype, k, s, p, index), loop=LOOP, params="const T* gy",
        body=f"        acc = acc + gy[o] * {share};  // numpy: share = gy / K², then +=")


# ---- launches ------------------------------------------------------------------------------

def _launch(kind, source_fn, dtype, attrs, arrays, total, x_shape, y_shape):
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    index = index_type(*(a.size for a in arrays))
    fn = kernel((kind, np.dtype(dtype).char, k, s, p, index), source_fn, dtype, k, s, p, index)
    sizes = [np.int32(v) for v in (*x_shape[2:], *y_shape[2:])]
    fn(blocks_for(total), (256,), (*arrays, index_scalar(index)(total), *sizes))


def max_pool2d(xp, ins, attrs, out, ws=None):
    x = ins[0]
    if not all_float(out.dtype, x, out):
        return fallback("max_pool2d", xp, ins, attrs, out, ws)
    _launch("max_pool", max_pool_source, out.dtype, attrs, [x, out], out.size, x.shape, out.shape)


def avg_pool2d(xp, ins, attrs, out, ws=None):
    x = ins[0]
    if not all_float(out.dtype, x, out):
        return fallback("avg_pool2d", xp, ins, attrs, out, ws)
    _launch("avg_pool", avg_pool_source, out.dtype, attrs, [x, out], out.size, x.shape, out.shape)


def max_pool2d_grad(xp, ins, attrs, out, ws=None):
    x, y, gy = ins
    if not all_float(out.dtype, x, y, gy, out):
        return fallback("max_pool2d_grad", xp, ins, attrs, out, ws)
    _launch("max_pool_grad", max_pool_grad_source, out.dtype, attrs, [x, y, gy, out], out.size,
            x.shape, y.shape)


def avg_pool2d_grad(xp, ins, attrs, out, ws=None):
    gy, x = ins
    if not all_float(out.dtype, gy, out):
        return fallback("avg_pool2d_grad", xp, ins, attrs, out, ws)
    _launch("avg_pool_grad", avg_pool_grad_source, out.dtype, attrs, [gy, out], out.size,
            out.shape, gy.shape)


KERNELS = {"max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
           "max_pool2d_grad": max_pool2d_grad, "avg_pool2d_grad": avg_pool2d_grad}


def examples() -> dict:
    """Every kernel in both dtypes at 2×2 stride 2; a padded overlapping window in float32."""
    out = {}
    for dtype, configs in (("float32", ((2, 2, 0), (3, 2, 1))), ("float64", ((2, 2, 0),))):
        for k, s, p in configs:
            tag = f"{dtype}/k{k}s{s}p{p}"
            out[f"max_pool/{tag}"] = max_pool_source(dtype, k, s, p, "int")[1]
            out[f"avg_pool/{tag}"] = avg_pool_source(dtype, k, s, p, "int")[1]
            out[f"max_pool_grad/{tag}"] = max_pool_grad_source(dtype, k, s, p, "int")[1]
            out[f"avg_pool_grad/{tag}"] = avg_pool_grad_source(dtype, k, s, p, "int")[1]
    return out
