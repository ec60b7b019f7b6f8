"""CPU threads for the numpy backend's convolutions and pools.

Convolution works sample by sample: im2col, one GEMM per sample, col2im. Every per-sample GEMM
runs on one BLAS thread (`one_blas_thread`). OpenBLAS otherwise splits a GEMM above its size
threshold over its thread pool, once per sample: on 2 cores that made the wide CNN's step
14% faster with both cores free (68 vs 78 ms) but 5-8× slower whenever another process held a
core (390-630 ms), and its result depends on the number of threads. Pinned, a convolution
gives the same bits on every machine; below the threshold (every bundled example) that is
what it computed before, and above it float32 results moved by at most 7e-7 relative
(float64 unchanged).

`LOOM_CPU_THREADS=N` (default 1) splits the batch of each large op (MIN_BYTES of columns or
more) into N contiguous runs of samples on N threads: numpy releases the GIL inside its loops
and BLAS calls, and each sample's result comes from exactly the same calls, bit for bit. The
executor then keeps BLAS on one thread for the whole step (BLAS threads spin on after a
matmul, holding the very cores these threads need), so dense layers lose their BLAS threads
and their float32 GEMMs round as one thread does. Measured on 2 free cores: the wide CNN's
step 77 -> 57 ms with 2 threads (without the whole-step BLAS pin: no gain, 80 ms); the
LeNet-like one 10.5 -> 11.2 ms (its ops are too small). With another process holding a core,
ops ran 1.25× slower on 2 threads, and splitting into more, smaller runs that idle threads
take in turn 2.4× slower. So it is off by default, and on where cores are free and
convolutions large."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

MIN_BYTES = 2 << 20  # smaller ops run on one thread: a handoff costs more than it saves


def thread_count() -> int:
    wanted = os.environ.get("LOOM_CPU_THREADS", "").strip()
    return max(1, int(wanted)) if wanted.isdigit() else 1


_pool: ThreadPoolExecutor | None = None
_blas = None  # the BLAS libraries' thread controls (threadpoolctl), found once
_limit = {"depth": 0, "saved": []}  # one_blas_thread may nest or run on two threads at once
_limit_lock = threading.Lock()


def _blas_controls() -> list:
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # noqa: BLE001 - not installed or no BLAS found: nothing to limit
            _blas = []
    return _blas


@contextmanager
def one_blas_thread():
    """BLAS calls inside run on the calling thread only (restored when the last one leaves)."""
    controls = _blas_controls()
    with _limit_lock:
        if _limit["depth"] == 0:
            _limit["saved"] = [c.num_threads for c in controls]
            for c in controls:
                c.set_num_threads(1)
        _limit["depth"] += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit["depth"] -= 1
            if _limit["depth"] == 0:
                for c, n in zip(controls, _limit["saved"]):
                    c.set_num_threads(n)


def split(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """lo..hi as at most `parts` contiguous non-empty runs, sizes differing by at most one."""
    count = hi - lo
    parts = max(1, min(parts, count))
    edges = [lo + count * k // parts for k in range(parts + 1)]
    return list(zip(edges, edges[1:]))


def for_each_run(fn, lo: int, hi: int, nbytes: int = MIN_BYTES, threads: int | None = None):
    """fn(a, b) for contiguous runs a..b covering lo..hi: one run, as it is, on one thread
    (`thread_count()`) or where the op's `nbytes` are below MIN_BYTES; else one run per
    thread, each with one BLAS thread. Returns when all are done, raising the first error."""
    threads = thread_count() if threads is None else threads
    runs = split(lo, hi, threads if nbytes >= MIN_BYTES else 1)
    with one_blas_thread():
        if len(runs) == 1:
            fn(lo, hi)
            return
        futures = [_workers(len(runs) - 1).submit(fn, a, b) for a, b in runs[1:]]
        fn(*runs[0])  # the calling thread takes the first run
        for f in futures:
            f.result()


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < count:
        _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="loom-cpu")
    return _pool
