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

No reassociation, no fused multiply-add: numba compiles without fast-math, so LLVM keeps each
product and sum a separately rounded IEEE operation, as numpy's loops do. Scalars are cast
to the arrays' dtype first, as numpy casts a Python float (a weak scalar) before it
multiplies a float32 array.

numba is imported on first use, not with `core`: it takes about a third of a second. The kernels
are compiled once and cached on disk. Without numba, or with `LOOM_NATIVE=0`, the numpy
rules run."""
from __future__ import annotations

import os

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_kernels = None  # name -> compiled kernel, built on first use
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


def usable(*arrays) -> bool:
    """The compiled loops take these: host arrays, C-contiguous, one float dtype they know."""
    first = arrays[0]
    return (all(type(a) is np.ndarray and a.flags.c_contiguous and a.dtype == first.dtype
                for a in arrays) and first.dtype in DTYPES and available())


def kernel(name: str):
    global _kernels
    if _kernels is None:
        _kernels = _compile()
    return _kernels[name]


def _compile() -> dict:
    numba = _numba

    # error_model "numpy": a division by zero gives inf as numpy's does, with no test in the
    # loop (the "python" model raises, and its branch keeps the loop from being vectorized)
    jit = numba.njit(nogil=True, cache=True, error_model="numpy")

    # c: the rule's scalars in the arrays' dtype. Each line is one numpy call of the numpy
    # rule (core/ops/optim_ops.py), in its order.
    @jit
    def decayed(p, g, i, wd, decay):
        return g[i] + p[i] * wd if decay else g[i]

    @jit
    def sgd(p, g, c, decay):  # c: lr, weight decay
        for i in range(p.size):
            p[i] = p[i] - decayed(p, g, i, c[1], decay) * c[0]

    @jit
    def momentum(p, g, v, c, decay):  # c: lr, weight decay, momentum
        for i in range(p.size):
            vi = v[i] * c[2]
            vi = vi + decayed(p, g, i, c[1], decay)
            v[i] = vi
            p[i] = p[i] - vi * c[0]

    @jit
    def nesterov(p, g, v, c, decay):  # c: lr, weight decay, momentum
        for i in range(p.size):
            gi = decayed(p, g, i, c[1], decay)
            vi = v[i] * c[2]
            vi = vi + gi
            v[i] = vi
            p[i] = p[i] - (gi + vi * c[2]) * c[0]

    @jit
    def adam(p, g, m, v, c, decay):  # c: step size, weight decay, β1, 1-β1, β2, 1-β2, ε
        for i in range(p.size):
            gi = decayed(p, g, i, c[1], decay)
            mi = m[i] * c[2]
            mi = mi + gi * c[3]
            m[i] = mi
            vi = v[i] * c[4]
            vi = vi + (gi * c[5]) * gi
            v[i] = vi
            p[i] = p[i] - (mi * c[0]) / (np.sqrt(vi) + c[6])

    @jit
    def relu(x, out, zero):
        """np.maximum(x, 0): x where greater or NaN, else 0 (+0, also for x = -0). numpy's
        maximum against a scalar misses its vector loop: 0.83-1.29 ms on 1.6M float32, this
        loop runs at copying speed."""
        zero = zero[0]
        for i in range(x.size):
            v = x[i]
            out[i] = v if (v > zero or v != v) else zero

    return {"sgd_update": sgd, "momentum_update": momentum, "nesterov_update": nesterov,
            "adam_update": adam, "relu": relu}
