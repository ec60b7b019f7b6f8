"""Compiled CPU loops (numba) for ops that numpy runs as many short calls: the same
arithmetic, in the same order, rounded the same way, so the results are bit for bit numpy's
(a test compares them on every rule). Only the call count changes.

The optimizer updates are the main case (ReLU, below, another). numpy's Adam is eleven calls
per chunk of a parameter, and the baby GPT has 70 parameters, many of them 128-element
layer-norm scales and biases. Fused into one loop per parameter (float32, alone):
- a 128-element bias: 13.2 µs → 11.1 µs (the call itself is most of it);
- a 128×384 weight: 148 µs → 36 µs.
Inside the GPT's step the parameters and moments come from memory, not cache, and the
whole step gained 0.5-2.2 ms of 57-75 (in-process A/B, LOOM_NATIVE=0 against 1).

numpy's maximum against a scalar (ReLU's max(x, 0)) misses its vector loop: 0.85 ms on
1.6M float32 values, against 0.20 ms for the compiled loop (the wide bench CNN's step:
52.8 -> 51.1 ms; LeNet's 8.39 -> 8.14, in-process A/B).

Others replace several passes over memory with one, each call site with its figures: GELU's
tanh form and its gradient (sequence.py), ReLU's gradient (elementwise.py), col2im and the
2×2 max-pool gradient (conv.py), and the bias add + ReLU pairs the numpy backend fuses
(cpu_fusion.py).

No reassociation, no fused multiply-add: numba compiles without fast-math, so LLVM keeps each
product and sum a separately rounded IEEE operation, as numpy's loops do. Scalars are cast
to the arrays' dtype first, as numpy casts a Python float (a weak scalar) before it
multiplies a float32 array.

numba is imported on first use, not with `core`: it takes about a third of a second. The loops
(ops/native_loops.py) are compiled once and cached on disk. Without numba, or with
`LOOM_NATIVE=0`, the numpy rules run."""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# 0 and 1 in each dtype the loops take: the scalars of ReLU, its gradient, the pools, col2im
ZERO_ONE = {dtype: np.array((0, 1), dtype) for dtype in DTYPES}

_numba = None  # the numba module once imported, False where it cannot be


def available() -> bool:
    """Whether the compiled loops run: numba imports (on the first call: it takes about a
    third of a second) and LOOM_NATIVE is not 0. A numba that fails to import (one built
    for another numpy) leaves the numpy rules in charge."""
    global _numba
    if os.environ.get("LOOM_NATIVE", "1").strip() == "0":
        return False
    if _numba is None:
        try:
            import numba
            _numba = numba
        except Exception:  # noqa: BLE001 - any failure to import means: numpy's rules
            _numba = False
    return _numba is not False


def expected(dtype) -> bool:
    """Whether the compiled loops will run on arrays of `dtype`, answered without importing
    numba (a plan asks: `main.py plan` need not pay the import). A wrong guess costs only an
    allocation."""
    if np.dtype(dtype) not in DTYPES or os.environ.get("LOOM_NATIVE", "1").strip() == "0":
        return False
    if _numba is not None:
        return _numba is not False
    return importlib.util.find_spec("numba") is not None


def usable(*arrays) -> bool:
    """The compiled loops take these: host arrays, C-contiguous, one float dtype they know."""
    first = arrays[0]
    return (all(type(a) is np.ndarray and a.flags.c_contiguous and a.dtype == first.dtype
                for a in arrays) and first.dtype in DTYPES and available())


def kernel(name: str):
    """The compiled loop `name` (ops/native_loops.py, imported on first use)."""
    from . import native_loops
    return getattr(native_loops, name)


def same_array(a, b) -> bool:
    """Whether a and b are the same bytes (an op computed in place): such a call takes the
    loop written for it, which LLVM vectorises (see native_loops.py)."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


@functools.lru_cache(maxsize=None)
def pairwise_tree(n: int) -> np.ndarray:
    """numpy's pairwise summation of n contiguous values (add.reduce along a row) as a
    postfix program for the compiled loops: (start, length) sums a block of at most 128 with
    eight running sums; (-1, 0) adds the last two sums. Longer runs split in two halves, the
    first a multiple of 8 long, as numpy's pairwise_sum recurses."""
    program = []

    def visit(lo, length):
        if length <= 128:
            program.append((lo, length))
            return
        half = length // 2
        half -= half % 8
        visit(lo, half)
        visit(lo + half, length - half)
        program.append((-1, 0))
    visit(0, int(n))
    tree = np.array(program, np.int64)
    tree.flags.writeable = False
    return tree
