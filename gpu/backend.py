"""The "cupy" backend: cupy arrays, Loom's own kernels for the ops, generated kernels for the
fusion groups, CUDA-graph capture of a whole step, a two-stream runner and NCCL collectives
for data-parallel runs.

`core.backend` imports this module lazily and calls `make_backend()`; it raises a clear
RuntimeError where cupy or a CUDA device is missing (the registry reports it and "auto"
falls back to numpy)."""
from __future__ import annotations

from core.backend import Backend

from . import collectives, graphs
from .fused import fuse


def make_backend() -> Backend:
    cupy = _cupy()
    from .kernels import kernels
    return Backend(name="cupy", xp=cupy, kernels=kernels(), to_numpy=cupy.asnumpy,
                   synchronize=_synchronize, memory_info=memory_info, fuse=fuse,
                   capture=graphs.capture, stream_runner=graphs.stream_runner,
                   collectives=collectives.join)


def _cupy():
    try:
        import cupy
    except ImportError as exc:  # cupy itself, or one of the CUDA libraries it loads
        raise RuntimeError(f"cupy is not importable ({exc}); "
                           "install cupy-cuda12x where CUDA works") from None
    try:
        found = cupy.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken driver reports itself in many ways
        found = False
    if not found:
        raise RuntimeError("no CUDA device found")
    return cupy


def _synchronize():
    import cupy
    cupy.cuda.Device().synchronize()


def memory_info() -> dict:
    """Bytes in use by cupy's pool (the arena, parameters, optimizer state, feeds) and the
    device's total memory, for the memory plot; the pool's reserve and the device's free
    memory as well."""
    import cupy
    pool = cupy.get_default_memory_pool()
    free, total = cupy.cuda.Device().mem_info
    return {"device_used_bytes": pool.used_bytes(), "device_total_bytes": total,
            "pool_reserved_bytes": pool.total_bytes(), "device_free_bytes": free}
