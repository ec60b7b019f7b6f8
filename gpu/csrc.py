"""CUDA C spelling shared by every generated source: C types, exact literals, math names,
and the prelude of the per-op kernels. Sources include no headers, so each compiles alone
with NVRTC (cupy) or `nvcc -ptx`."""
from __future__ import annotations

import numpy as np

CTYPES = {"bool": "bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short",
          "int32": "int", "int64": "long long", "float32": "float", "float64": "double"}

# Exact float arithmetic: no fused multiply-add contraction, so a*b+c rounds twice as numpy's
# two ufunc calls do (division and sqrt are IEEE-rounded by default in both compilers).
COMPILE_OPTIONS = ("--fmad=false",)

INT_MAX = 2 ** 31 - 1


def ctype(dtype) -> str:
    return CTYPES[np.dtype(dtype).name]


def index_type(*sizes) -> str:
    """32-bit index arithmetic (much cheaper division) unless some size needs 64 bits."""
    return "int" if max(sizes, default=0) <= INT_MAX else "long long"


def literal(value, dtype) -> str:
    """`value` as a C expression of `dtype`, bit-exact (non-finite floats from their bits)."""
    dtype = np.dtype(dtype).name
    if dtype == "float32":
        v = np.float32(value)
        if np.isfinite(v):
            return f"({float(v)!r}f)"  # shortest double repr of a float32 value: rounds back exactly
        return f"__int_as_float(0x{int(v.view(np.uint32)):08x})"
    if dtype == "float64":
        v = np.float64(value)
        if np.isfinite(v):
            return f"({float(v)!r})"
        return f"__longlong_as_double((long long)0x{int(v.view(np.uint64)):016x}ULL)"
    if dtype == "bool":
        return "true" if value else "false"
    return f"(({ctype(dtype)}){int(value)}LL)"


def math(name, dtype) -> str:
    """The libm function for dtype: expf for float, exp for double."""
    return name + ("f" if np.dtype(dtype).name == "float32" else "")


def prelude(dtype, index="int") -> str:
    """typedefs and helpers of the hand-written per-op kernels, for element type `dtype`."""
    t = ctype(dtype)
    inf = literal(np.inf, dtype)
    return f"""typedef {t} T;
typedef {index} IDX;
#define T_INF {inf}
#define EXP {math('exp', dtype)}
#define LOG {math('log', dtype)}
#define SQRT {math('sqrt', dtype)}
// numpy's maximum: a NaN on either side wins
__device__ __forceinline__ T max_nan(T a, T b) {{
    return (a != a) ? a : ((b != b || b > a) ? b : a);
}}
"""


def block_reduce(block) -> str:
    """Shared-memory tree reductions of one value per thread over a block of `block` threads
    (a power of two); every thread gets the result. Needs `__shared__ T buf[block]`."""
    return f"""#define BLOCK {block}
__device__ __forceinline__ T block_sum(T* buf, T v) {{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {{
        if (threadIdx.x < s) buf[threadIdx.x] = buf[threadIdx.x] + buf[threadIdx.x + s];
        __syncthreads();
    }}
    T r = buf[0];
    __syncthreads();  // buf is reused by the next reduction
    return r;
}}
__device__ __forceinline__ T block_max(T* buf, T v) {{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {{
        if (threadIdx.x < s) buf[threadIdx.x] = max_nan(buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }}
    T r = buf[0];
    __syncthreads();
    return r;
}}
"""


def block_size(n, low=32, high=256) -> int:
    """Smallest power of two >= n, clamped to [low, high]: threads cooperating on n values."""
    size = low
    while size < min(n, high):
        size *= 2
    return size
