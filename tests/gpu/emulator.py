"""The GPU backend's CUDA sources run on the host, so its kernels and their launch code are
executed and checked on machines without a GPU.

Each generated source is compiled with g++ as C++ after a small shim (`__global__` and
friends as plain C++, `__shared__` as function statics, `__syncthreads` as a block barrier,
`__shfl_xor_sync` as an exchange between the 32 threads of a warp). A launch runs every
block in turn; a block's threads run one after another, or as real threads when the kernel
synchronises them (kernels must not leave a thread out of a barrier: none of Loom's do).
Float arithmetic is IEEE on both sides (no contraction into FMA), so only
libm and summation order can differ from numpy.

The launch is checked as cupy's RawKernel would need it: one argument per kernel parameter,
arrays C-contiguous with the element type of their pointer parameter, scalars numpy scalars
of exactly the parameter's C type. cuBLAS is replaced by a column-major reference GEMM fed the
backend's own argument mapping (`gemm_args`)."""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gpu.kernels.blas import layout, operand_args

SHIM = r"""#include <math.h>
#include <string.h>
struct loom_dim3 { unsigned int x, y, z; };
extern thread_local loom_dim3 threadIdx, blockIdx;
extern loom_dim3 blockDim, gridDim;
extern "C" void loom_syncthreads();
extern "C" unsigned long long loom_shfl_xor(unsigned long long bits, int mask);
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads loom_syncthreads
inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, sizeof d); return d; }
template <typename V> inline V __shfl_xor_sync(unsigned, V v, int mask) {
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof v);
  bits = loom_shfl_xor(bits, mask);
  V r;
  memcpy(&r, &bits, sizeof r);
  return r;
}
"""

RUNTIME = r"""#include <barrier>
#include <memory>
#include <thread>
#include <vector>
struct loom_dim3 { unsigned int x, y, z; };
thread_local loom_dim3 threadIdx, blockIdx;
loom_dim3 blockDim, gridDim;
struct Warp { std::barrier<> bar{32}; unsigned long long slot[32]; };
static std::barrier<>* block_barrier = nullptr;
static Warp* warps = nullptr;

extern "C" void loom_syncthreads() { block_barrier->arrive_and_wait(); }

extern "C" unsigned long long loom_shfl_xor(unsigned long long bits, int mask) {
  Warp& w = warps[threadIdx.x / 32];
  const unsigned lane = threadIdx.x % 32;
  w.slot[lane] = bits;
  w.bar.arrive_and_wait();
  const unsigned long long got = w.slot[lane ^ mask];
  w.bar.arrive_and_wait();
  return got;
}

extern "C" void loom_run(unsigned grid, unsigned block, void (*body)(void**), void** args,
                         int threaded) {
  blockDim = {block, 1, 1};
  gridDim = {grid, 1, 1};
  if (!threaded) {  // threads that never meet: one after another
    for (unsigned b = 0; b < grid; ++b)
      for (unsigned t = 0; t < block; ++t) {
        blockIdx = {b, 0, 0};
        threadIdx = {t, 0, 0};
        body(args);
      }
    return;
  }
  // one OS thread per CUDA thread, each running every block in turn; a barrier between
  // blocks keeps a block's shared memory (function statics) from being refilled early
  std::barrier<> bar(block), between(block);
  std::unique_ptr<Warp[]> ws(new Warp[(block + 31) / 32]);
  block_barrier = &bar;
  warps = ws.get();
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < block; ++t)
    threads.emplace_back([=, &between] {
      threadIdx = {t, 0, 0};
      for (unsigned b = 0; b < grid; ++b) {
        blockIdx = {b, 0, 0};
        body(args);
        between.arrive_and_wait();
      }
    });
  for (auto& th : threads) th.join();
}
"""

CFLAGS = ["-O1", "-fPIC", "-shared", "-ffp-contract=off", "-w"]
C_TYPES = {"float": "float32", "double": "float64", "int": "int32", "long long": "int64",
           "bool": "bool", "signed char": "int8", "unsigned char": "uint8", "short": "int16"}
SCALARS = {"float32": ctypes.c_float, "float64": ctypes.c_double, "int32": ctypes.c_int32,
           "int64": ctypes.c_int64}


def available() -> bool:
    return shutil.which("g++") is not None


class HostCompiler:
    """(name, source) -> HostKernel. Sources are built into shared libraries kept in the temp
    directory across test runs (keyed by the source and the shim); `prebuild` puts many
    sources in one translation unit each in a namespace of its own, so the headers are parsed
    once per library rather than once per kernel."""

    def __init__(self):
        key = _digest(SHIM + RUNTIME + str(CFLAGS))
        self.dir = Path(tempfile.gettempdir()) / f"loom-host-kernels-{os.getuid()}-{key}"
        self.dir.mkdir(exist_ok=True)
        runtime = self._build(RUNTIME, ["-std=c++20", "-pthread"])
        self.runtime = ctypes.CDLL(str(runtime), mode=ctypes.RTLD_GLOBAL)
        self.runtime.loom_run.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                          ctypes.c_void_p, ctypes.c_int]
        self._libraries: dict = {}

    def __call__(self, name, source):
        key = _digest(name + source)
        if not self._marker(key).exists():
            self._build_units([(key, name, source)])
        library = self._marker(key).read_text()
        if library not in self._libraries:
            self._libraries[library] = ctypes.CDLL(str(self.dir / library))
        body = getattr(self._libraries[library], f"loom_body_{key}")
        return HostKernel(self, name, source, body)

    def prebuild(self, named_sources, per_library=25):
        """Build every source not built yet, in parallel, `per_library` to a library."""
        units = {_digest(n + s): (n, s) for n, s in named_sources}
        todo = [(k, *ns) for k, ns in units.items() if not self._marker(k).exists()]
        chunks = [todo[i::max(os.cpu_count() or 1, -(-len(todo) // per_library))]
                  for i in range(max(os.cpu_count() or 1, -(-len(todo) // per_library)))]
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(self._build_units, [c for c in chunks if c]))

    def _marker(self, key):
        return self.dir / f"unit-{key}.txt"

    def _build_units(self, units):
        library = self._build(SHIM + "".join(_unit(*u) for u in units))
        for key, _, _ in units:
            self._marker(key).write_text(library.name)

    def _build(self, text, extra=("-std=c++17",)):
        path = self.dir / f"lib-{_digest(text)}.so"
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
                src, lib = Path(tmp) / "unit.cpp", Path(tmp) / "unit.so"
                src.write_text(text)
                run = subprocess.run(["g++", *extra, *CFLAGS, "-x", "c++", str(src), "-o", str(lib)],
                                     capture_output=True, text=True)
                if run.returncode:
                    raise RuntimeError(f"host build failed:\n{run.stderr}\n{text}")
                lib.replace(path)  # atomic: a concurrent build of the same text is harmless
        return path


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _unit(key, name, source):
    """A kernel source in a namespace of its own (its typedefs and helpers stay apart), the
    kernel renamed (C linkage names are global), its macros undefined after it, and
    `loom_body_<key>(args)` calling it with arguments read from an array of pointers."""
    macros = re.findall(r"^\s*#define\s+(\w+)", source, re.M)
    call = ", ".join(f"*({ctype}*)a[{i}]" for i, (ctype, _, _) in enumerate(_params(name, source)))
    return (f"namespace u{key} {{\n#define {name} {name}_{key}\n{source}\n"
            f'extern "C" void loom_body_{key}(void** a) {{ {name}({call}); }}\n'
            + "".join(f"#undef {m}\n" for m in [name, *macros]) + "}\n")


def _params(name, source):
    """[(C type as written, numpy dtype it stands for, is pointer)] of the kernel."""
    typedefs = dict((alias, ctype) for ctype, alias in re.findall(r"typedef\s+([\w ]+?)\s+(\w+)\s*;", source))
    head = re.search(rf"void\s+{name}\s*\((.*?)\)\s*\{{", source, re.S).group(1)
    out = []
    for param in (p.strip() for p in head.split(",")):
        ctype = re.match(r"^(.*?)\s*\w+$", param, re.S).group(1).strip()
        base = ctype.replace("const", "").replace("*", "").strip()
        base = typedefs.get(base, base)
        out.append((ctype, C_TYPES[base], "*" in ctype))
    return out


class HostKernel:
    """Called like cupy's RawKernel: kernel(grid, block, args)."""

    def __init__(self, compiler, name, source, body):
        self.name, self.source = name, source
        self.body = ctypes.cast(body, ctypes.c_void_p)
        self.params = _params(name, source)
        self.threaded = "__syncthreads" in source or "__shfl" in source
        self.runtime = compiler.runtime
        self.launches = 0

    def __call__(self, grid, block, args, shared_mem=0):
        assert isinstance(grid, tuple) and isinstance(block, tuple), (grid, block)
        assert 1 <= block[0] <= 1024 and grid[0] >= 1, (grid, block)
        assert len(args) == len(self.params), f"{self.name}: {len(args)} arguments for {len(self.params)}"
        holders = [_marshal(self.name, p, a) for p, a in zip(self.params, args)]
        argv = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        self.runtime.loom_run(grid[0], block[0], self.body, argv, int(self.threaded))
        self.launches += 1


def _marshal(kernel, param, value):
    ctype, dtype, pointer = param
    if pointer:
        assert isinstance(value, np.ndarray), f"{kernel}: {ctype} given {type(value)}"
        assert value.dtype == dtype, f"{kernel}: {ctype} given a {value.dtype} array"
        assert value.flags.c_contiguous, f"{kernel}: {ctype} given a strided view"
        return ctypes.c_void_p(value.ctypes.data)
    assert isinstance(value, np.generic) and value.dtype == dtype, \
        f"{kernel}: {ctype} given {value!r} ({type(value).__name__}); cupy needs a {dtype}"
    return SCALARS[dtype](value.item())


# ---- cuBLAS on the host ------------------------------------------------------------------------

def column_major_gemm(g, first, second, out_size):
    """What cublas<t>gemmStridedBatched computes on flat column-major buffers."""
    c = np.zeros(out_size, dtype=np.result_type(first, second))
    rows, cols = np.meshgrid(np.arange(g.m), np.arange(g.n), indexing="ij")
    for i in range(g.batch):
        f = (_column_major(first, i * g.stride_first, g.k, g.m, g.ld_first).T if g.trans_first
             else _column_major(first, i * g.stride_first, g.m, g.k, g.ld_first))
        s = (_column_major(second, i * g.stride_second, g.n, g.k, g.ld_second).T if g.trans_second
             else _column_major(second, i * g.stride_second, g.k, g.n, g.ld_second))
        c[i * g.stride_c + rows + g.ldc * cols] = f @ s
    return c


def _column_major(buf, offset, rows, cols, ld):
    return buf[offset + np.arange(rows)[:, None] + ld * np.arange(cols)[None, :]]


def host_gemm(a, b, out, trans_a=False, trans_b=False):
    """blas.gemm's contract (operands arrays or Blocks), computed from its cuBLAS arguments
    on the operands' whole buffers, as cuBLAS reads them."""
    g = operand_args(a, b, out, trans_a, trans_b)
    a, b = layout(a)[0], layout(b)[0]
    for x in (a, b, out):
        assert x.flags.c_contiguous and x.dtype == out.dtype
    out[...] = column_major_gemm(g, b.reshape(-1), a.reshape(-1), out.size).reshape(out.shape)
