"""Per-op kernels: `compute(xp, ins, attrs, out, ws=None)` overrides of the op table, each
launching Loom's own CUDA kernels (cuBLAS for the GEMM parts). Every module also lists
representative sources (`examples()`) that the tests compile without a GPU."""
from __future__ import annotations

from . import blas, conv, ewise, optim, pool, softmax

MODULES = (ewise, blas, conv, pool, softmax, optim)


def kernels() -> dict:
    """op name -> compute, for the backend's `kernels` table."""
    table = {}
    for module in MODULES:
        for name, compute in module.KERNELS.items():
            if name in table:
                raise ValueError(f"two GPU kernels for op {name!r}")
            table[name] = compute
    return table


def example_sources() -> dict:
    """label -> complete CUDA source, for representative shapes and both float dtypes."""
    out = {}
    for module in MODULES:
        out.update(module.examples())
    return out
