"""The `gpu` fixture: each launch test runs on a real CUDA device through cupy, and on the
host through the CUDA-source emulator (tests/gpu/emulator.py), which needs only g++."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from core import backend as backends

HOST_BACKEND = "gpu-on-host"


class Cuda:
    name, backend = "cuda", "cupy"

    def __init__(self, cupy):
        self.xp = cupy

    def asarray(self, a):
        return self.xp.asarray(a)

    def asnumpy(self, a):
        return self.xp.asnumpy(a)

    @contextmanager
    def active(self):
        yield self


class Host:
    """numpy arrays, the backend's kernels compiled for the host, cuBLAS by reference."""
    name, backend, xp = "host", HOST_BACKEND, np

    def __init__(self):
        from gpu.cache import KernelCache
        from .emulator import HostCompiler
        self.compiler = HostCompiler()
        self.cache = KernelCache(self.compiler)

    def asarray(self, a):
        return np.array(a)  # a copy, as a transfer to a device is

    def asnumpy(self, a):
        return np.asarray(a)

    @contextmanager
    def active(self):
        from gpu.cache import using
        from gpu.kernels import blas
        from .emulator import host_gemm
        with using(self.cache), pytest.MonkeyPatch.context() as patch:
            patch.setattr(blas, "gemm", host_gemm)
            yield self

    def prebuild(self):
        """Every source the tests are known to need, built in parallel up front."""
        from gpu.emit import kernel_for
        from gpu.kernels import example_sources
        from .sources import group_programs
        named = [(kernel_for(p).name, kernel_for(p).source) for _, _, _, p, _ in group_programs()]
        named += [(_kernel_name(text), text) for text in example_sources().values()]
        self.compiler.prebuild(named)


def _kernel_name(source):
    import re
    return re.search(r'extern "C" __global__ void (\w+)\(', source).group(1)


def _cupy():
    try:
        import cupy
        return cupy if cupy.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no cupy, or no driver
        return None


def _register_host_backend():
    if HOST_BACKEND in backends.names():
        return
    from core.backend import Backend
    from gpu.fused import fuse
    from gpu.kernels import kernels
    backends.register(HOST_BACKEND, lambda: Backend(HOST_BACKEND, np, kernels=kernels(), fuse=fuse))


@pytest.fixture(scope="module", params=["host", "cuda"])
def gpu(request):
    if request.param == "cuda":
        cupy = _cupy()
        if cupy is None:
            pytest.skip("needs cupy and a CUDA device")
        device = Cuda(cupy)
    else:
        from .emulator import available
        if not available():
            pytest.skip("needs g++ to run the CUDA sources on the host")
        device = Host()
        device.prebuild()
        _register_host_backend()
    with device.active():
        yield device
