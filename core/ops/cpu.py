"""CPU threads for the numpy backend: large row-wise ops split over the cores.

numpy runs every op on one core; BLAS alone uses the others. So the executor splits a
large op whose rows are independent (OpDef.rows: elementwise arithmetic, activations and
their gradients, layer norm, softmax over a later axis) into one contiguous run of
first-axis rows per thread, each run the same numpy call on a slice (numpy releases the GIL
inside its loops). Every element comes from the same computation on any number of threads,
bit for bit. Pools split their batch the same way (`for_each_run`).

`LOOM_CPU_THREADS=N` sets the number of threads (1: no splitting); by default, the cores
this process may use (shared out among the data-parallel ranks on this machine), at most
MAX_DEFAULT_THREADS, and then whether splitting pays is measured (`ThreadChoice`): on a small
VM the LeNet step took 10.4 ms unsplit against 13.1 split, the wide CNN 55 against 61, so
each compiled step tries both and keeps the faster.

GEMMs stay on BLAS's own threads. OpenBLAS keeps them spinning for a while after each call
(2^28 cycles by default), holding the very cores the next op's threads need: on 2 cores a
GEMM followed by a split GELU gradient took 2.5 ms instead of 1.9. `core/__init__.py`
shortens that wait (OPENBLAS_THREAD_TIMEOUT) before numpy loads OpenBLAS."""
from __future__ import annotations

import contextlib
import math
import os
import platform
import queue
import threading
from typing import NamedTuple

import numpy as np

from .. import distributed

# Below these sizes an op runs whole: handing work to another thread costs 20-50 µs on a small
# VM (117-158 µs before the caller watched for the end: `_Crew`), measured against the part
# it takes over.
SPLIT_BYTES = 512 << 10  # a row-wise op's output (exp of 2 MB: 1.07 -> 0.50 ms on 2 threads)
MIN_BYTES = 1 << 20  # a copy or a pool (a 1.5 MB im2col copy: 0.38 -> 0.24 ms)
MAX_DEFAULT_THREADS = 4


def thread_count() -> int:
    """Threads an op may split over on this thread: LOOM_CPU_THREADS, else the default above,
    at most the limit the running step set (`limit_threads`)."""
    count = _user_count()
    if count is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        count = max(1, min(cores // distributed.local_ranks(), MAX_DEFAULT_THREADS))
    limit = getattr(_limits, "threads", None)
    return count if limit is None else min(count, limit)


def _user_count() -> int | None:
    wanted = os.environ.get("LOOM_CPU_THREADS", "").strip()
    return max(1, int(wanted)) if wanted.isdigit() else None


def chosen_by_user() -> bool:
    return _user_count() is not None


_limits = threading.local()  # per calling thread: a training thread and the editor's differ


def limit_threads(count: int | None) -> int | None:
    """Let ops called on this thread split over at most `count` threads (None: no limit);
    returns the limit it replaces."""
    old = getattr(_limits, "threads", None)
    _limits.threads = count
    return old


class Threads(NamedTuple):
    """How a step runs on the CPU: its large row-wise ops split over `ops` threads (measured,
    `ThreadChoice`); its large GEMMs over `gemms` (a rule of the plan: `split_gemm`), each
    part on one BLAS thread."""
    ops: int
    gemms: int = 1

    def label(self) -> str:
        return f"ops {self.ops}T, GEMMs {self.gemms}T"


def thread_options(threads: int) -> list[Threads]:
    """What a step tries: row-wise ops split over `threads`, or whole. Only options that give
    the same bits: the choice is made by a clock, and a run resumed from a checkpoint must
    give the uninterrupted run's bits whatever its clock says. So how GEMMs split is not among
    them: a GEMM split in two gives other float32 bits than whole for many shapes (OpenBLAS
    blocks the inner dimension by the part's shape; 128×768 @ 768×512 differs, 768×128 @
    128×512 does not), and the bundled CNN, stopped at step 20 and resumed, ended 2.7e-7 away
    from the uninterrupted run while a choice of BLAS threads was among the options."""
    return [Threads(threads), Threads(1)]


# A GEMM with at least this many multiply-adds (a convolution: over its whole batch) splits
# over the CPU threads, one BLAS thread per part: numpy's OpenBLAS never runs threads of its
# own inside a step. Split on this VM's 2 cores against whole on one: 2.1M multiply-adds
# (128×128 @ 128×128) 65 -> 63 µs, 3.1M (768×128 @ 128×32) 110 -> 90, 12.6M (768×128 @
# 128×128) 383 -> 230. Against OpenBLAS's own two threads (the steps before, with their
# convolutions' chunks planned to fit the one-sample peak), whole steps alternated old and
# new, best and first quartile: LeNet b64 7.09 / 9.27 -> 5.26 / 7.27 ms, the wide CNN 40.5 /
# 53.3 -> 39.2 / 47.0, the baby GPT 54.0 / 58.4 -> 50.1 / 54.4. OpenBLAS's threads sleep
# between GEMMs and wake for each, as ours do, and below ~16M multiply-adds they cost more
# than they saved (steps of only such GEMMs kept them on one thread).
SPLIT_GEMM = 1 << 22


def split_gemm(macs: int, threads: int) -> int:
    """Parts a GEMM of `macs` multiply-adds splits into on `threads` CPU threads: a rule of
    the plan, so a resumed run splits (and rounds) as the uninterrupted one did."""
    return threads if macs >= SPLIT_GEMM and threads > 1 else 1


def step_blas_threads() -> int | None:
    """BLAS threads inside a step: one where numpy's BLAS has more (Loom splits large GEMMs
    over its own threads, `split_gemm`), else None (leave it). The executor holds one thread
    for the step's run (`hold_one_blas_thread`)."""
    return 1 if (blas_threads() or 1) > 1 else None


# ---- numpy's BLAS threads ------------------------------------------------------------------------

_blas = None  # threadpoolctl's controller of numpy's BLAS, found on first use (False: none)


def _blas_controller():
    global _blas
    if _blas is None:
        _blas = False
        try:
            from threadpoolctl import ThreadpoolController
            found = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            # numpy's own (its wheels bundle one under numpy.libs), not another library's
            found.sort(key=lambda c: "numpy" not in (c.filepath or ""))
            _blas = found[0] if found else False
        except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive
            pass
    return _blas


def blas_threads() -> int | None:
    blas = _blas_controller()
    return blas.num_threads if blas else None


def set_blas_threads(count: int | None) -> int | None:
    """Run numpy's GEMMs on `count` threads (None: leave them); returns the count before,
    to restore (a ctypes call, about a microsecond)."""
    blas = _blas_controller()
    if count is None or not blas:
        return None
    old = blas.num_threads
    blas.set_num_threads(count)
    return old


# Steps that run BLAS on one thread (`step_blas_threads`) may run at once on several threads
# of a process (the editor's): the first to start sets one thread, the last to end restores
# the count from before, so that an interleaving never leaves BLAS on one thread.
_one_thread = {"holders": 0, "restore": None}
_one_thread_lock = threading.Lock()


def hold_one_blas_thread():
    with _one_thread_lock:
        if _one_thread["holders"] == 0:
            _one_thread["restore"] = set_blas_threads(1)
        _one_thread["holders"] += 1


def release_one_blas_thread():
    with _one_thread_lock:
        _one_thread["holders"] -= 1
        if _one_thread["holders"] == 0:
            set_blas_threads(_one_thread["restore"])


@contextlib.contextmanager
def one_blas_thread(active: bool = True):
    """BLAS on one thread inside (where active), as hold/release_one_blas_thread."""
    if not active:
        yield
        return
    hold_one_blas_thread()
    try:
        yield
    finally:
        release_one_blas_thread()


class ThreadChoice:
    """Which `Threads` option pays, for one compiled step on this machine: its first runs go
    through the options in turn, each run timed whole, and after ROUNDS of each the fastest
    (by its best run) is kept. Whole runs, not op by op: an op split over two cores leaves
    its output in both cores' caches, and the next op pays for that. Results are the same
    bits either way (see the module docstring and `thread_options`)."""

    ROUNDS = 3

    def __init__(self, options):
        self.options = list(options)
        self.best = {option: math.inf for option in self.options}
        self.runs = 0
        self.chosen: Threads | None = None

    def next(self) -> Threads:
        """The option for the next run (the chosen one once settled)."""
        return self.chosen or self.options[self.runs % len(self.options)]

    def record(self, option: Threads, seconds: float):
        if self.chosen is not None:
            return
        self.best[option] = min(self.best[option], seconds)
        self.runs += 1
        if self.runs >= len(self.options) * self.ROUNDS:
            self.chosen = min(self.options, key=lambda o: self.best[o])


def split(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """lo..hi as at most `parts` contiguous non-empty runs, sizes differing by at most one."""
    count = hi - lo
    parts = max(1, min(parts, count))
    edges = [lo + count * k // parts for k in range(parts + 1)]
    return list(zip(edges, edges[1:]))


# ---- running calls on several threads ----------------------------------------------------------

class _Crew:
    """Worker threads that each take one call per request: a queue handoff, lighter than a
    ThreadPoolExecutor's futures (this runs once per large op of every step).

    Handing two no-op parts to the crew took 117-158 µs on this VM, mostly threads waking
    from sleep. The caller, done with its own part, would sleep until the workers finish
    theirs and pay that again; where numba runs on x86 it first watches each worker's count
    of finished calls for a while (CALLER_WATCH_SPINS), without the GIL (native_loops.
    wait_at_least), and only then sleeps: 20-50 µs per handoff. A worker counts a
    call after queueing its result, so a caller that saw the count takes the result without
    waiting. Workers never watch: between two split ops come GEMMs, whose BLAS threads want
    every core."""

    def __init__(self, count: int):
        self.inboxes = [queue.SimpleQueue() for _ in range(count)]
        self.done = [queue.SimpleQueue() for _ in range(count)]
        self.finished = np.zeros(count, np.int64)  # calls each worker has finished
        self.posted = [0] * count
        self.busy = threading.Lock()  # one request at a time; others run on their own thread
        self.watch = _watcher()
        for k in range(count):
            threading.Thread(target=self._work, args=(k,), daemon=True, name="loom-cpu").start()

    def _work(self, k):
        while True:
            call = self.inboxes[k].get()
            try:
                call()
                self.done[k].put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
                self.done[k].put(exc)
            self.finished[k] += 1

    def run(self, calls):
        """calls[0] on this thread, the others on workers; returns when all are done and
        raises the first error."""
        if not self.busy.acquire(blocking=False):  # the crew works for another caller
            for call in calls:
                call()
            return
        try:
            workers = range(len(calls) - 1)
            for k in workers:
                self.posted[k] += 1
                self.inboxes[k].put(calls[k + 1])
            error = None
            try:
                calls[0]()
            except BaseException as exc:  # noqa: BLE001 - wait for the workers first
                error = exc
            for k in workers:
                if self.watch is not None:
                    self.watch(self.finished, k, self.posted[k], CALLER_WATCH_SPINS)
                failed = self.done[k].get()
                error = error or failed
            if error is not None:
                raise error
        finally:
            self.busy.release()


# The caller's watch, in x86 pause instructions (about 35 ns each on this VM's AMD EPYC):
# about 50 µs. A 200-µs watch made the wide CNN's step slower in two A/Bs of two (50.0 ->
# 53.1, 42.6 -> 44.1 ms), this one did not (42.1 -> 42.3, 43.0 -> 41.0; LeNet 9.13 -> 9.25,
# 10.10 -> 9.50; the GPT's, ops split, 60.7 -> 54.0, 56.7 -> 57.4).
CALLER_WATCH_SPINS = 1500


def _watcher():
    """native_loops.wait_at_least where numba runs on x86 (its spin hint), else None."""
    from . import native
    if platform.machine().lower() not in ("x86_64", "amd64") or not native.available():
        return None
    return native.kernel("wait_at_least")


_crew: _Crew | None = None
_crew_lock = threading.Lock()


def together(calls):
    """Run zero-argument calls at once, one per thread (the calling thread takes the first)."""
    if len(calls) == 1:
        return calls[0]()
    global _crew
    with _crew_lock:
        if _crew is None or len(_crew.inboxes) < len(calls) - 1:
            _crew = _Crew(len(calls) - 1)
        crew = _crew
    crew.run(calls)


def on_one_thread(fn, *args):
    """fn(*args) with the ops it calls kept whole on this thread (it is one of several
    parts running at once already)."""
    old = limit_threads(1)
    try:
        return fn(*args)
    finally:
        limit_threads(old)


def for_each_run(fn, lo: int, hi: int, nbytes: int = MIN_BYTES, threads: int | None = None):
    """fn(a, b) for contiguous runs a..b covering lo..hi: one run where the op's `nbytes` are
    below MIN_BYTES, else one run per thread (`thread_count()`)."""
    threads = thread_count() if threads is None else threads
    runs = split(lo, hi, threads if nbytes >= MIN_BYTES else 1)
    together([lambda a=a, b=b: fn(a, b) for a, b in runs])


# ---- splitting a row-wise op -------------------------------------------------------------------

def row_parts(opdef, attrs, args, out, ws, threads: int):
    """[(args, out, ws)] for each thread's run of the output's first-axis rows, or None where
    the op runs whole: not row-wise, small, or one row. An input or workspace array with the
    output's rank and first axis is cut alike; anything else (a broadcast bias, a scalar, a
    row vector) is whole in every part."""
    rule = opdef.rows
    if (threads < 2 or not rule or getattr(out, "ndim", 0) == 0 or out.shape[0] < 2
            or out.nbytes < SPLIT_BYTES or (callable(rule) and not rule(attrs, out.ndim))):
        return None
    def cut(a, lo, hi):
        aligned = getattr(a, "ndim", -1) == out.ndim and a.shape[0] == out.shape[0]
        return a[lo:hi] if aligned else a
    return [([cut(a, lo, hi) for a in args], out[lo:hi],
             None if ws is None else {k: cut(v, lo, hi) for k, v in ws.items()})
            for lo, hi in split(0, out.shape[0], threads)]


def copy(dst, src):
    """np.copyto(dst, src) split over the threads along the first of dst's two leading axes
    that has a run for each (a strided im2col view, a transposition back to NCHW)."""
    threads = thread_count()
    axis = next((a for a in range(min(2, dst.ndim)) if dst.shape[a] >= threads), None)
    if threads < 2 or axis is None or dst.nbytes < MIN_BYTES:
        np.copyto(dst, src)
        return
    index = lambda lo, hi: (slice(None),) * axis + (slice(lo, hi),)  # noqa: E731
    together([lambda lo=lo, hi=hi: np.copyto(dst[index(lo, hi)], src[index(lo, hi)])
              for lo, hi in split(0, dst.shape[axis], threads)])
