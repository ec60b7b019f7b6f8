"""A split GEMM's other parts on native worker threads: numpy's own BLAS function (cblas
sgemm/dgemm of the OpenBLAS numpy loaded, by address) called from compiled code (numba,
native_blas_loops.serve) that never takes the GIL, on a thread that watches for work for about a
millisecond before it sleeps.

Why: a part handed to a Python thread (cpu.together) waits for that thread to wake and take
the GIL, about 100 µs on a small VM, for each of the baby GPT's 99 matrix products per step.
Measured on 2 cores, with an exp of 20K values between calls (as other ops come between
products in a step): 768×128 @ 128×128 in two parts took 308 µs through a Python thread and
254 here (whole on one thread: 360); 768×128 @ 128×65 252 against 167; 128×768 @ 768×128
(a weight gradient) 352 against 266.

The bits are numpy's: each part is the cblas call numpy's matmul makes for those operands
(the same transposition flags and leading dimensions, `layout`), and where numpy would not
call gemm (a vector, a matrix times its own transpose, strides BLAS cannot take) the part
is numpy's matmul on a Python thread instead (`describe` returns None)."""
from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np

from . import cpu, native

# descriptor slots (int64): what one part computes, a stack of up to two outer axes of GEMMs
(KIND, OUTER0, OUTER1, M, N, K, TRANS_A, LDA, TRANS_B, LDB, LDC,
 A, B, C, A0, A1, B0, B1, C0, C1) = range(20)
SLOTS = 20
FLOAT32, FLOAT64 = 1, 2
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# A worker's watch for the next part, in x86 pause instructions (about 35 ns each on this VM):
# about a millisecond, longer than the ops between two products of a step.
WORKER_SPINS = 30000


def _blasable(stride0, stride1, d1, itemsize) -> bool:
    """numpy's is_blasable2d: unit stride along the row, rows at least d1 apart."""
    return stride1 == itemsize and stride0 % itemsize == 0 and stride0 // itemsize >= d1


def layout(x, rows, cols):
    """(transposition flag, leading dimension) numpy's matmul passes to cblas for the (rows,
    cols) matrix x, or None where it would not call BLAS with it."""
    s0, s1 = x.strides[-2:]
    size = x.itemsize
    if _blasable(s0, s1, cols, size):
        return NO_TRANS, s0 // size
    if _blasable(s1, s0, rows, size):
        return TRANS, s1 // size
    return None


def describe(a, b, out, desc) -> bool:
    """Fill desc with the part out = a @ b (matrices or stacks, broadcast as numpy does)
    where numpy's matmul would call gemm for every matrix of it; False where it would not."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    kind = {np.dtype(np.float32): FLOAT32, np.dtype(np.float64): FLOAT64}.get(out.dtype)
    if (kind is None or out.ndim > 4 or min(m, k, n) < 2 or out.size == 0
            or not (a.dtype == b.dtype == out.dtype)
            or any(type(x) is not np.ndarray for x in (a, b, out))):
        return False
    la, lb, lc = layout(a, m, k), layout(b, k, n), layout(out, m, n)
    if la is None or lb is None or lc is None or lc[0] != NO_TRANS:
        return False
    if a.ctypes.data == b.ctypes.data and m == n and la[0] != lb[0]:
        return False  # numpy's syrk case: a matrix times its own transpose
    outer = out.shape[:-2]
    strides = [np.broadcast_to(x, (*outer, *x.shape[-2:])).strides[:-2] for x in (a, b, out)]
    pad = lambda s: (0,) * (2 - len(s)) + tuple(s)  # noqa: E731
    (a0, a1), (b0, b1), (c0, c1) = (pad(s) for s in strides)
    o0, o1 = (1,) * (2 - len(outer)) + tuple(outer)
    desc[:] = (kind, o0, o1, m, n, k, la[0], la[1], lb[0], lb[1], lc[1],
               a.ctypes.data, b.ctypes.data, out.ctypes.data, a0, a1, b0, b1, c0, c1)
    return True


_addresses: dict = {}


def gemm_address(dtype) -> int | None:
    """The address of numpy's OpenBLAS `cblas_?gemm64_` for float32 or float64 (ILP64, as
    numpy's own wheels bundle it), or None where numpy's BLAS is another, LP64, or not found
    by threadpoolctl; numba missing or LOOM_NATIVE=0 count as none too."""
    letter = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(np.dtype(dtype))
    if letter is None or not native.available():
        return None
    if letter not in _addresses:
        _addresses[letter] = _find(letter)
    return _addresses[letter]


def _find(letter):
    blas = cpu._blas_controller()
    if not blas or blas.internal_api != "openblas":
        return None
    lib = ctypes.CDLL(blas.filepath)
    for name in (f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_"):
        function = getattr(lib, name, None)
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value
    return None


class _Worker:
    """One native worker: its descriptor, its counts (posted, finished, asleep) and the event
    that wakes it."""

    def __init__(self, serve, addresses):
        self.desc = np.zeros(SLOTS, np.int64)
        self.state = np.zeros(3, np.int64)
        self.wake = threading.Event()
        threading.Thread(target=self._run, args=(serve, addresses), daemon=True, name="loom-gemm").start()

    def _run(self, serve, addresses):
        state = self.state
        while True:
            serve(self.desc, state, WORKER_SPINS, addresses)
            state[2] = 1
            if state[0] > state[1]:  # posted while it was about to sleep
                state[2] = 0
                continue
            self.wake.wait()
            self.wake.clear()
            state[2] = 0

    def post(self):
        self.state[0] += 1
        if self.state[2]:
            self.wake.set()

    def wait(self, watch):
        """Until the part posted last is done: a caller that finds the worker asleep (it may
        have missed the post while going to sleep) wakes it again."""
        target = int(self.state[0])
        while not watch(self.state, 1, target, cpu.CALLER_WATCH_SPINS):
            if self.state[2]:
                self.wake.set()


class _Pool:
    def __init__(self, addresses, watch):
        from .native_blas_loops import serve
        self.serve, self.addresses, self.watch = serve, addresses, watch
        self.workers: list[_Worker] = []
        self.busy = threading.Lock()  # one caller at a time; another computes its parts itself

    def split(self, parts, calls):
        """A zero-argument call computing parts [(a, b, out)]: the first on the calling
        thread (calls[0], numpy's), the others on workers, described now (a step's arrays stay
        where they are); cpu.together of `calls` (the parts as numpy calls) where numpy would
        not run a part as gemm."""
        descs = [np.zeros(SLOTS, np.int64) for _ in parts]
        if not all(describe(*part, desc) for part, desc in zip(parts, descs)):
            return functools.partial(cpu.together, calls)
        return functools.partial(self._run, descs[1:], calls)

    def _run(self, descs, calls):
        if not self.busy.acquire(blocking=False):  # working for another caller
            for call in calls:
                call()
            return
        try:
            while len(self.workers) < len(descs):
                self.workers.append(_Worker(self.serve, self.addresses))
            workers = self.workers[:len(descs)]
            for worker, desc in zip(workers, descs):
                worker.desc[:] = desc
                worker.post()
            calls[0]()
            for worker in workers:
                worker.wait(self.watch)
        finally:
            self.busy.release()


_pool: _Pool | None | bool = None
_pool_lock = threading.Lock()


def _forget_after_fork():
    """A forked child has none of its parent's worker threads: it starts its own."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def pool():
    """The native workers, or None where numba, x86's spin hint or numpy's OpenBLAS is missing
    (split products then go to cpu.together)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = False
            watch = cpu._watcher()
            addresses = (gemm_address(np.float32), gemm_address(np.float64))
            if watch is not None and None not in addresses:
                _pool = _Pool(np.array(addresses, np.int64), watch)
    return _pool or None
