"""The kernel cache: compile each distinct kernel once per process, at bind time or at its
first call, never in the steady-state step. Keys name the kernel kind and everything its
source depends on (the op or group signature, dtypes, shapes or baked attributes); equal
sources share one compiled kernel whatever their keys."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

from .csrc import COMPILE_OPTIONS


def cupy_compiler(name: str, source: str):
    """NVRTC through cupy, compiled now (cupy would otherwise compile at the first launch,
    which may be inside a stream capture)."""
    import cupy
    kernel = cupy.RawKernel(source, name, options=COMPILE_OPTIONS)
    kernel.compile()
    return kernel


class KernelCache:
    def __init__(self, compiler: Callable | None = None):
        self._compiler = compiler  # (name, source) -> kernel; None: cupy's NVRTC
        self._by_key: dict = {}
        self._by_source: dict = {}
        self.compiles = 0  # how many sources were compiled (tests: none in a steady step)
        self.memo: dict = {}  # objects built around this cache's kernels (per-op launchers)

    def get(self, key, build: Callable):
        """The kernel for `key`; on a miss, `build()` -> (name, source) is compiled."""
        kernel = self._by_key.get(key)
        if kernel is None:
            kernel = self._by_key[key] = self._compile(*build())
        return kernel

    def _compile(self, name, source):
        kernel = self._by_source.get(source)
        if kernel is None:
            compiler = self._compiler or cupy_compiler
            kernel = self._by_source[source] = compiler(name, source)
            self.compiles += 1
        return kernel

    def __len__(self):
        return len(self._by_source)


CACHE = KernelCache()  # the process's cache, shared by the per-op and fused kernels
_ACTIVE = [CACHE]


def active() -> KernelCache:
    """The cache kernels are taken from: the process's, unless a test put in another (one
    whose compiler runs the CUDA sources on the host, for instance)."""
    return _ACTIVE[-1]


@contextmanager
def using(cache: KernelCache):
    _ACTIVE.append(cache)
    try:
        yield cache
    finally:
        _ACTIVE.remove(cache)
