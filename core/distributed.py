"""Data-parallel training on MPI (mpi4py, imported only here and only when used).

Every rank builds the same graph and compiled step and takes its slice of each global batch;
gradients are summed by allreduce ops inside the step (core/ops/comm_ops.py), each rank's
part scaled by its share of the batch, so K ranks compute what one process computes on the
whole batch. `world()` is None in a plain, single-process run."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path


from .errors import LoomError

_WORLD = None  # the Communicator once `start()` ran under mpiexec
_SHARD = None  # (start, stop, global batch) of the step being run, set by the trainer

# MPICH moves a non-blocking allreduce forward only inside MPI calls (the executor polls
# between ops). A message larger than a shared-memory cell (16 KB by default) goes by
# rendezvous, several rounds each needing a call on both ranks: a rank that finished its
# backward pass then waited for its peer's next op boundary (a 2.8 ms convolution gradient
# showed as 3.4 ms of exposed wait). With 256 KB cells a bucket up to that size is sent in
# one go when started (CNN bench: exposed 0.95-1.46 -> 0.03 ms per step). 16 cells keep the
# shared memory at 4 MB per rank. A progress thread polling every 50-200 µs hid as much but
# cost 20-70% of the step on 2 shared cores; MPICH's own spins a core. Settings the user
# exported win.
MPICH_SETTINGS = {"MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_CELL_SIZE": str(256 << 10),
                  "MPIR_CVAR_CH4_PACK_BUFFER_SIZE": str(256 << 10),
                  "MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_NUM_CELLS": "16"}

DIST_EXTRA = "pip install '.[dist]' (mpi4py and an MPICH from the package index)"


class DistributedError(LoomError):
    pass


class Communicator:
    """The few collectives Loom uses. Gradient sums go through MPI on host buffers, or through
    the backend's own collectives once attached (`attach_device`: NCCL on GPUs)."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        # ranks on this machine: they share its cores (core/ops/cpu.py gives each its part)
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size, self.local_rank = local.Get_size(), local.Get_rank()
        self.device = None  # the backend's collectives, where its arrays are not host memory
        self.pending: list = []  # started allreduces not yet waited for
        # where a benchmark asks (a list): [started, wait began, wait ended] per allreduce, in
        # the order they start (the same on every rank), for core/overlap.py
        self.timeline: list | None = None

    def attach_device(self, collectives):
        """Sum buffers with these (a device backend's) from now on, not with MPI."""
        self.device = collectives

    def iallreduce_sum(self, buffer):
        """Start summing `buffer` over the ranks, in place; returns the request to wait on."""
        if self.device is not None:
            return self.device.iallreduce_sum(buffer)
        return self.host_iallreduce_sum(buffer)

    def allreduce_sum(self, buffer):
        if self.device is not None:
            self.device.allreduce_sum(buffer)
        else:
            self.host_allreduce_sum(buffer)

    def host_iallreduce_sum(self, buffer):
        """iallreduce_sum by MPI on a buffer in host memory."""
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        self.pending.append(request)
        record = None
        if self.timeline is not None:
            record = [time.perf_counter(), None, None]
            self.timeline.append(record)
        return _Tracked(request, self.pending, record)

    def progress(self):
        """Let MPI move the pending allreduces on (MPICH advances a non-blocking collective
        only inside MPI calls: without this, all of it happens in the final wait)."""
        if self.pending:
            self.MPI.Request.Testall(self.pending)

    def host_allreduce_sum(self, buffer):
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on some rank (a stop request, a failure)."""
        return bool(self.comm.allreduce(int(bool(flag)), op=self.MPI.MAX))

    def abort(self, code: int):
        """End every rank of the job now (a rank that failed must not leave the others
        waiting in an allreduce forever)."""
        self.comm.Abort(code)


class _Tracked:
    """A request that leaves the pending list once waited for (and times its wait into its
    timeline record, where there is one)."""

    def __init__(self, request, pending, record=None):
        self.request, self.pending, self.record = request, pending, record

    def Wait(self):  # noqa: N802 - mpi4py's request API
        began = time.perf_counter()
        self.request.Wait()
        if self.record is not None:
            self.record[1:] = began, time.perf_counter()
        # by identity: requests compare by handle, and every finished one is MPI_REQUEST_NULL
        self.pending[:] = [r for r in self.pending if r is not self.request]


def local_ranks() -> int:
    """Ranks of this job on this machine (1 outside a job)."""
    return 1 if _WORLD is None else _WORLD.local_size


def progress():
    """Called by the executor between the ops of a step with communication (cheap when
    nothing is pending or outside an MPI job)."""
    if _WORLD is not None and _WORLD.pending:
        _WORLD.progress()


def start() -> Communicator:
    """Join the MPI job this process was started in (`--distributed`)."""
    global _WORLD
    apply_mpich_settings(os.environ)  # read by MPI_Init, when mpi4py is imported
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(f"--distributed needs mpi4py: {DIST_EXTRA}") from None
    _WORLD = Communicator(MPI.COMM_WORLD)
    _share_blas_threads(_WORLD.local_size)
    return _WORLD


def apply_mpich_settings(env) -> None:
    """MPICH_SETTINGS into `env` (an environment mapping), keeping what is set already."""
    for name, value in MPICH_SETTINGS.items():
        env.setdefault(name, value)


def _share_blas_threads(ranks: int):
    """BLAS threads of a rank: the machine's cores shared out among its ranks (as DDP does),
    where threadpoolctl can set them (`--procs` also sets OPENBLAS_NUM_THREADS for its ranks)."""
    if ranks <= 1:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(max(1, (os.cpu_count() or 1) // ranks), user_api="blas")


def world() -> Communicator | None:
    return _WORLD


def rank() -> int:
    return 0 if _WORLD is None else _WORLD.rank


def is_writer() -> bool:
    """Rank 0 alone writes metrics, checkpoints and events."""
    return rank() == 0


def set_shard(start: int, stop: int, batch: int):
    global _SHARD
    _SHARD = (start, stop, batch)


def current_shard():
    """(start, stop, global batch) of this rank's rows in the step being run, or None: random
    ops draw for the global batch and keep these rows, so a K-rank run draws what one
    process would."""
    return _SHARD if _WORLD is not None else None


def shard(batch_size: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of this rank's rows of a global batch: as even as possible, the first
    ranks taking one more row when it does not divide."""
    base, extra = divmod(batch_size, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def mpiexec() -> str:
    """The mpiexec beside this interpreter (a venv's bin/, where the mpich wheel puts it),
    else the one on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        raise DistributedError(f"--procs needs mpiexec: {DIST_EXTRA}")
    return found


def launch_env(procs: int) -> dict:
    """The environment of `--procs` ranks: each its share of this machine's BLAS threads
    (OpenBLAS reads it when numpy loads), unless the user set it."""
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // procs)))
    return env


def launch_command(procs: int, argv: list[str]) -> list[str]:
    """`mpiexec -n K python main.py ARGV --distributed`: what `--procs K` runs."""
    main = Path(__file__).resolve().parents[1] / "main.py"
    return [mpiexec(), "-n", str(procs), sys.executable, str(main), *argv, "--distributed"]
