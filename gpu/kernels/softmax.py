"""softmax / log_softmax along any axis (one block per row, shared-memory tree reductions),
and softmax cross-entropy with its gradient (one warp per row, shuffle reductions). Each
step is the numpy compute's: shift by the maximum, exp, sum, then divide (softmax) or
subtract the log of the sum (log_softmax); only the summation order differs. Also the
accuracy metric (argmax per row, one warp per row), so a training step allocates nothing.

The loss gradient reads the incoming gradient `g` on the device (no host round trip, so the
step stays capturable as a CUDA graph)."""
from __future__ import annotations

from string import Template

import numpy as np

from ..csrc import block_reduce, block_size, ctype, index_type, prelude
from ..launch import grid, index_scalar
from .common import FLOATS, all_float, fallback, kernel

ROWS = Template("""$prelude
$reduce
// rows of length L along the softmax axis, `inner` apart: row r starts at
// (r / inner) * L * inner + r % inner
extern "C" __global__ void loom_softmax(const T* x, T* y, IDX rows, int L, IDX inner) {
  __shared__ T buf[BLOCK];
  for (IDX r = blockIdx.x; r < rows; r += gridDim.x) {
    const IDX base = (r / inner) * L * inner + r % inner;
    T m = -T_INF;
    for (int l = threadIdx.x; l < L; l += BLOCK) m = max_nan(m, x[base + l * inner]);
    m = block_max(buf, m);
$body
  }
}
""")

SOFTMAX_BODY = """    T s = (T)0;
    for (int l = threadIdx.x; l < L; l += BLOCK) {
      const T e = EXP(x[base + l * inner] - m);
      y[base + l * inner] = e;  // y may be x (in place): each thread rewrites what it read
      s = s + e;
    }
    s = block_sum(buf, s);
    for (int l = threadIdx.x; l < L; l += BLOCK) y[base + l * inner] = y[base + l * inner] / s;"""

LOG_SOFTMAX_BODY = """    T s = (T)0;
    for (int l = threadIdx.x; l < L; l += BLOCK) s = s + EXP(x[base + l * inner] - m);
    const T lse = LOG(block_sum(buf, s));
    for (int l = threadIdx.x; l < L; l += BLOCK) y[base + l * inner] = (x[base + l * inner] - m) - lse;"""

WARP = """__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v = v + __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// log-sum-exp pieces of one row, every lane gets them
__device__ __forceinline__ void row_stats(const T* row, int C, int lane, T* m, T* s) {
  T mx = -T_INF;
  for (int c = lane; c < C; c += 32) mx = max_nan(mx, row[c]);
  mx = warp_max(mx);
  T sum = (T)0;
  for (int c = lane; c < C; c += 32) sum = sum + EXP(row[c] - mx);
  *m = mx;
  *s = warp_sum(sum);
}
"""

# numpy: ids index the log-probabilities (negative ids count from the end); out of range: NaN
LABEL = """__device__ __forceinline__ long long label_of(const LBL* labels, int r, int C) {
  long long id = (long long)labels[r];
  if (id < 0) id += C;
  return (id >= 0 && id < C) ? id : -1;
}
"""

SCE = Template("""$prelude
typedef $label LBL;
$warp
$label_fn
// one block of WARPS warps; warp w takes rows w, w + WARPS, ...
extern "C" __global__ void loom_sce(const T* logits, const LBL* labels, T* out, int B, int C) {
  __shared__ T part[$warps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T total = (T)0;
  for (int r = warp; r < B; r += $warps) {
    const T* row = logits + (IDX)r * C;
    T m, s;
    row_stats(row, C, lane, &m, &s);
    const T lse = LOG(s);
$pick
  }
  if (lane == 0) part[warp] = total;
  __syncthreads();
  if (threadIdx.x == 0) {
    T sum = (T)0;
    for (int w = 0; w < $warps; ++w) sum = sum + part[w];
    out[0] = -sum / (T)B;  // -mean
  }
}
""")

PICK_IDS = """    const long long id = label_of(labels, r, C);
    const T picked = id < 0 ? T_INF - T_INF : (row[id] - m) - lse;
    total = total + picked;"""

PICK_ONEHOT = """    T dot = (T)0;
    for (int c = lane; c < C; c += 32) dot = dot + ((row[c] - m) - lse) * (T)labels[(IDX)r * C + c];
    total = total + warp_sum(dot);"""

SCE_GRAD = Template("""$prelude
typedef $label LBL;
$warp
$label_fn
// (softmax(logits) - onehot(labels)) * (g / B), one warp per row
extern "C" __global__ void loom_sce_grad(const T* logits, const LBL* labels, const T* g, T* out,
                                         int B, int C) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= B) return;  // a whole warp leaves together
  const T scale = g[0] / (T)B;
  const T* row = logits + (IDX)r * C;
  T m, s;
  row_stats(row, C, lane, &m, &s);
$ids
  for (int c = lane; c < C; c += 32) {
    T v = EXP(row[c] - m) / s;
    v = v - $target;
    out[(IDX)r * C + c] = v * scale;
  }
}
""")

ARGMAX = """// numpy's argmax order: NaN beats everything, then larger, then the lower index
template <typename V>
__device__ __forceinline__ bool better(V v, int i, V bv, int bi) {
  if (i < 0) return false;
  if (bi < 0) return true;
  if (bv != bv) return v != v && i < bi;
  if (v != v) return true;
  return v > bv || (v == bv && i < bi);
}
template <typename V>
__device__ __forceinline__ int warp_argmax(const V* row, int C, int lane) {
  V bv = (V)0;
  int bi = -1;
  for (int c = lane; c < C; c += 32)
    if (better(row[c], c, bv, bi)) { bv = row[c]; bi = c; }
  for (int o = 16; o > 0; o >>= 1) {
    const V v = __shfl_xor_sync(0xffffffffu, bv, o);
    const int i = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
  }
  return bi;
}
"""

ACCURACY = Template("""$prelude
typedef $label LBL;
$argmax
// mean(argmax(logits, 1) == ids), ids = labels or argmax(labels, 1); one block, warp per row
extern "C" __global__ void loom_accuracy(const T* logits, const LBL* labels, T* out, int B, int C) {
  __shared__ int part[$warps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int hits = 0;
  for (int r = warp; r < B; r += $warps) {
    const int guess = warp_argmax(logits + (IDX)r * C, C, lane);
    hits += $hit;
  }
  if (lane == 0) part[warp] = hits;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long total = 0;
    for (int w = 0; w < $warps; ++w) total += part[w];
    out[0] = (T)((double)total / (double)B);  // numpy: the float64 mean of a bool array
  }
}
""")

WARPS = 8  # the loss and metric kernels: one block of 256 threads, a warp per row
GRAD_WARPS = 8  # rows per block of the gradient kernel


def softmax_source(dtype, log, block, index):
    body = LOG_SOFTMAX_BODY if log else SOFTMAX_BODY
    return "loom_softmax", ROWS.substitute(prelude=prelude(dtype, index),
                                           reduce=block_reduce(block), body=body)


def _label_parts(dtype, label_dtype, onehot, index):
    return {"prelude": prelude(dtype, index), "label": ctype(label_dtype), "warp": WARP,
            "label_fn": "" if onehot else LABEL}


def sce_source(dtype, label_dtype, onehot, index):
    return "loom_sce", SCE.substitute(**_label_parts(dtype, label_dtype, onehot, index),
                                      warps=WARPS, pick=PICK_ONEHOT if onehot else PICK_IDS)


def sce_grad_source(dtype, label_dtype, onehot, index):
    ids = "" if onehot else "  const long long id = label_of(labels, r, C);"
    target = ("(T)labels[(IDX)r * C + c]" if onehot
              else "(id < 0 ? T_INF - T_INF : (c == id ? (T)1 : (T)0))")
    return "loom_sce_grad", SCE_GRAD.substitute(**_label_parts(dtype, label_dtype, onehot, index),
                                                ids=ids, target=target)


def accuracy_source(dtype, label_dtype, onehot, index):
    hit = ("(guess == warp_argmax(labels + (IDX)r * C, C, lane))" if onehot
           else "((double)guess == (double)labels[r])")  # ids compared as numbers, as numpy does
    return "loom_accuracy", ACCURACY.substitute(prelude=prelude(dtype, index),
                                                label=ctype(label_dtype), argmax=ARGMAX,
                                                warps=WARPS, hit=hit)


# ---- launches ------------------------------------------------------------------------------

def _softmax_compute(log):
    name = "log_softmax" if log else "softmax"

    def compute(xp, ins, attrs, out, ws=None):
        x = ins[0]
        if not all_float(out.dtype, x, out):
            return fallback(name, xp, ins, attrs, out, ws)
        axis = attrs["axis"] % x.ndim
        length = x.shape[axis]
        inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
        rows = x.size // max(length, 1)
        block, index = block_size(length), index_type(x.size)
        fn = kernel((name, x.dtype.char, block, index), softmax_source, x.dtype, log, block, index)
        ix = index_scalar(index)
        fn(grid(rows), (block,), (x, out, ix(rows), np.int32(length), ix(inner)))
    return compute


def _labels_ok(logits, labels):
    return labels.flags.c_contiguous and (labels.ndim == 1 or labels.dtype == logits.dtype) \
        and labels.dtype.name in ("int32", "int64", "float32", "float64")


def softmax_cross_entropy(xp, ins, attrs, out, ws=None):
    logits, labels = ins
    if not (all_float(out.dtype, logits, out) and _labels_ok(logits, labels)):
        return fallback("softmax_cross_entropy", xp, ins, attrs, out, ws)
    onehot, index = labels.ndim == 2, index_type(logits.size)
    fn = kernel(("sce", logits.dtype.char, labels.dtype.char, onehot, index), sce_source,
                logits.dtype, labels.dtype, onehot, index)
    fn((1,), (32 * WARPS,), (logits, labels, out, *map(np.int32, logits.shape)))


def softmax_cross_entropy_grad(xp, ins, attrs, out, ws=None):
    logits, labels, g = ins
    if not (all_float(out.dtype, logits, g, out) and _labels_ok(logits, labels)):
        return fallback("softmax_cross_entropy_grad", xp, ins, attrs, out, ws)
    onehot, index = labels.ndim == 2, index_type(logits.size)
    fn = kernel(("sce_grad", logits.dtype.char, labels.dtype.char, onehot, index),
                sce_grad_source, logits.dtype, labels.dtype, onehot, index)
    batch = logits.shape[0]
    fn(grid(-(-batch // GRAD_WARPS)), (32 * GRAD_WARPS,),
       (logits, labels, g, out, *map(np.int32, logits.shape)))


def accuracy(xp, ins, attrs, out, ws=None):
    logits, labels = ins
    if not (all_float(out.dtype, logits, out) and _labels_ok(logits, labels)):
        return fallback("accuracy", xp, ins, attrs, out, ws)
    onehot, index = labels.ndim == 2, index_type(logits.size)
    fn = kernel(("accuracy", logits.dtype.char, labels.dtype.char, onehot, index),
                accuracy_source, logits.dtype, labels.dtype, onehot, index)
    fn((1,), (32 * WARPS,), (logits, labels, out, *map(np.int32, logits.shape)))


KERNELS = {"softmax": _softmax_compute(False), "log_softmax": _softmax_compute(True),
           "softmax_cross_entropy": softmax_cross_entropy,
           "softmax_cross_entropy_grad": softmax_cross_entropy_grad, "accuracy": accuracy}


def examples() -> dict:
    """Both dtypes with int64 ids and one-hot labels; int32 ids in float32."""
    out = {}
    for dtype in (d.name for d in FLOATS):
        for log in (False, True):
            for block in ((32, 256) if dtype == "float32" else (32,)):
                name = f"{'log_' if log else ''}softmax/{dtype}/block{block}"
                out[name] = softmax_source(dtype, log, block, "int")[1]
        labels = [("int64", False), (dtype, True)] + ([("int32", False)] if dtype == "float32" else [])
        for label, onehot in labels:
            tag = f"{dtype}/{label}{'/onehot' if onehot else ''}"
            out[f"sce/{tag}"] = sce_source(dtype, label, onehot, "int")[1]
            out[f"sce_grad/{tag}"] = sce_grad_source(dtype, label, onehot, "int")[1]
            out[f"accuracy/{tag}"] = accuracy_source(dtype, label, onehot, "int")[1]
    return out
