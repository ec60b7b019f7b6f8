"""Backend registry. A backend bundles an array module (`xp`) with a few flat functions;
op computes are written against `xp`, and a backend may override any op with its own kernel
(`kernels[op_name]`). `numpy` is always present; `cupy` is imported lazily from `gpu/`."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import LoomError


@dataclass
class Backend:
    name: str
    xp: object
    kernels: dict = field(default_factory=dict)  # op name -> compute override
    to_numpy: Callable = np.asarray
    synchronize: Callable = lambda: None
    memory_info: Callable = lambda: {}

    def compute_for(self, opdef):
        return self.kernels.get(opdef.name, opdef.compute)

    def empty_bytes(self, nbytes: int):
        return self.xp.empty(max(int(nbytes), 1), dtype=np.uint8)

    def asarray(self, value, dtype=None):
        return self.xp.asarray(value, dtype=dtype)


_LOADERS: dict[str, Callable[[], Backend]] = {}
_LOADED: dict[str, Backend] = {}


def register(name: str, loader: Callable[[], Backend]):
    if name in _LOADERS:
        raise ValueError(f"backend {name!r} is registered twice")
    _LOADERS[name] = loader


def get(name: str = "numpy") -> Backend:
    if name == "auto":
        name = "cupy" if available("cupy") else "numpy"
    if name not in _LOADERS:
        raise LoomError(f"unknown backend {name!r}; known: {', '.join(sorted(_LOADERS))}, auto")
    if name not in _LOADED:
        try:
            _LOADED[name] = _LOADERS[name]()
        except Exception as exc:  # a missing driver or library: say which backend and why
            raise LoomError(f"backend {name!r} is not usable here: {exc}") from exc
    return _LOADED[name]


def available(name: str) -> bool:
    try:
        get(name)
        return True
    except LoomError:
        return False


def names() -> list[str]:
    return sorted(_LOADERS)


def _numpy_backend() -> Backend:
    return Backend("numpy", np)


def _cupy_backend() -> Backend:
    try:
        module = importlib.import_module("gpu.backend")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("gpu"):
            raise  # cupy itself (or a driver library) is missing: say that
        raise RuntimeError("this build of Loom has no GPU backend yet (gpu/ is not written); "
                           "use --backend numpy (or auto, which falls back to it)") from None
    return module.make_backend()


register("numpy", _numpy_backend)
register("cupy", _cupy_backend)
