"""Loom's GPU backend: cupy arrays, Loom's own CUDA kernels, cuBLAS for the GEMMs.

Reached only through the backend registry (`core.backend.get("cupy")` -> `gpu.backend`).
Everything that *generates* kernels (the fused-expression IR, its CUDA C emitter and numpy
interpreter, the per-op kernel sources) is pure Python and imports no cupy, so it is tested
on every machine; only launching needs cupy and a device."""
