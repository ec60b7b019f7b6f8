"""Backend registry. A backend bundles an array module (`xp`) with a few flat functions;
op computes are written against `xp`, and a backend may override any op with its own kernel
(`kernels[op_name]`). `numpy` is always present; `cupy` is imported lazily from `gpu/`."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import LoomError
from .registry import add_unique


@dataclass
class Backend:
    name: str
    xp: object
    kernels: dict = field(default_factory=dict)  # op name -> compute override
    to_numpy: Callable = np.asarray
    synchronize: Callable = lambda: None
    memory_info: Callable = lambda: {}
    # Optional compiler hooks of a device backend (the GPU's own kernels):
    # fuse(nodes, plan) -> kernel | None: one generated kernel for a fusion group's
    #   elementwise/broadcast members (and a trailing reduction); `kernel.inputs` lists the
    #   group's external inputs, `kernel(ins, out)` writes the last member's value
    fuse: Callable | None = None
    # whether the plan keeps a fused group's inputs alive until its kernel runs (at the
    #   group's last member); False where `fuse` only takes groups of adjacent steps, whose
    #   inputs nothing can overwrite before the kernel reads them (the numpy backend)
    fused_inputs_planned: bool = True
    # capture(run_step) -> replay: records one whole step (a CUDA graph) to replay later
    capture: Callable | None = None
    # stream_runner(calls, streams, deps) -> run_step: steps on several streams with events
    stream_runner: Callable | None = None
    # collectives(world) -> sums over the ranks of this backend's arrays in a data-parallel
    #   run (core/distributed.py: iallreduce_sum / allreduce_sum, in place), joined over the
    #   MPI job `world`; None: MPI takes the arrays as they are (host memory)
    collectives: Callable | None = None
    # whether its matrix products run on numpy's BLAS in this process (the numpy backend, the
    #   tests' stand-in device): the step's rule for BLAS threads then applies, because
    #   OpenBLAS rounds many float32 GEMMs differently on one thread and on two
    host_blas: bool = False

    def compute_for(self, opdef):
        return self.kernels.get(opdef.name, opdef.compute)

    def empty_bytes(self, nbytes: int):
        return self.xp.empty(max(int(nbytes), 1), dtype=np.uint8)

    def asarray(self, value, dtype=None):
        return self.xp.asarray(value, dtype=dtype)


_LOADERS: dict[str, Callable[[], Backend]] = {}
_LOADED: dict[str, Backend] = {}
_DEFAULT = ["numpy"]  # what an Executor built without a backend name runs on


def set_default(name: str) -> str:
    """Make `name` the backend of Executors that name none (like torch.set_default_device);
    returns the previous default. Tests use it to run whole suites on another device."""
    get(name)  # refuse an unknown or unusable backend now, not at the first run
    previous, _DEFAULT[0] = _DEFAULT[0], name
    return previous


def default_name() -> str:
    return _DEFAULT[0]


def register(name: str, loader: Callable[[], Backend]):
    add_unique(_LOADERS, name, loader, "backend")


def get(name: str = "numpy") -> Backend:
    if name == "auto":
        name = resolve_auto()[0]
    if name not in _LOADERS:
        raise LoomError(f"unknown backend {name!r}; known: {', '.join(sorted(_LOADERS))}, auto")
    if name not in _LOADED:
        try:
            _LOADED[name] = _LOADERS[name]()
        except Exception as exc:  # a missing driver or library: say which backend and why
            raise LoomError(f"backend {name!r} is not usable here: {exc}") from exc
    return _LOADED[name]


def resolve_auto() -> tuple[str, str]:
    """(backend name, why): cupy when a GPU works, else numpy with the reason."""
    try:
        get("cupy")
        return "cupy", "a GPU was found"
    except LoomError as exc:
        return "numpy", f"no usable GPU ({str(exc).split(': ', 1)[-1]})"


def available(name: str) -> bool:
    try:
        get(name)
        return True
    except LoomError:
        return False


def names() -> list[str]:
    return sorted(_LOADERS)


def _numpy_backend() -> Backend:
    from .ops import cpu_fusion  # a few fusion groups as compiled loops (numba, if present)
    return Backend("numpy", np, fuse=cpu_fusion.fuse, fused_inputs_planned=False, host_blas=True)


def _cupy_backend() -> Backend:
    try:
        module = importlib.import_module("gpu.backend")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "cupy":
            raise RuntimeError("cupy is not installed (pip install '.[gpu]' where CUDA works)") from None
        raise
    return module.make_backend()


register("numpy", _numpy_backend)
register("cupy", _cupy_backend)
