"""CPU threads for the numpy backend's convolutions and pools (opt-in: LOOM_CPU_THREADS=N).

Convolution and pooling work sample by sample: im2col, one GEMM per sample, col2im, window
maxima. With N > 1 the batch of a large enough op is split into N contiguous runs of samples,
one per thread: numpy releases the GIL inside its loops and BLAS calls, and each sample's
result comes from exactly the same calls, bit for bit, as long as every per-sample GEMM runs
on one BLAS thread (`one_blas_thread`: OpenBLAS's result depends on how many threads share a
GEMM, and N threads each waking BLAS threads would oversubscribe the cores).

Off by default (N = 1: one run, BLAS threads as numpy has them, as before). Measured on 2
cores: per op of the LeNet-like CNN, 2 threads were 1.6-1.9× faster with both cores free and
1.25× slower with another process holding a core; over a whole training step they were slower
even on a free machine (12.9 vs 11.0 ms), as the dense layers' BLAS threads keep spinning on
the second core after each matmul. Splitting into more, smaller runs that idle threads take
in turn was 2.4× slower under load."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

MIN_BYTES = 256 << 10  # smaller ops run on one thread: a handoff costs more than it saves


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
    if len(runs) == 1:
        fn(lo, hi)
        return
    with one_blas_thread():
        futures = [_workers(len(runs) - 1).submit(fn, a, b) for a, b in runs[1:]]
        fn(*runs[0])  # the calling thread takes the first run
        for f in futures:
            f.result()


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < count:
        _pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="loom-cpu")
    return _pool
