"""What the per-op kernels share: the fallback to the op's own compute (for dtypes or
layouts a kernel does not handle) and the per-call launch of a cached kernel."""
from __future__ import annotations

import numpy as np

from core.ops.base import OPS

from ..cache import active

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def fallback(op_name, xp, ins, attrs, out, ws=None):
    """The op's own xp compute (cupy's kernels): always correct, just not ours."""
    compute = OPS[op_name].compute
    return compute(xp, ins, attrs, out) if ws is None else compute(xp, ins, attrs, out, ws)


def all_float(dtype, *arrays) -> bool:
    """Every array has the float dtype `dtype` and is C-contiguous."""
    return dtype in FLOATS and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


def kernel(key, source_fn, *args):
    """The compiled kernel of `source_fn(*args)` -> (name, source), cached under `key`."""
    return active().get(key, lambda: source_fn(*args))
