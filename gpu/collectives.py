"""Gradient sums between GPUs over NCCL (cupy's bindings): the cupy backend's `collectives`
hook for data-parallel runs (core/distributed.py, core/ops/comm_ops.py).

MPI still starts the job, hands every rank the NCCL id and carries the host-side agreement
(stop requests, failures); the buckets go from device to device. Each rank drives the GPU of
its rank on the machine. A started bucket is summed on a stream of its own, so the rest of
the backward pass and the allreduce overlap on the device, and the host never blocks:

    compute stream:  pack bucket ─ record(ready) ─ more backward kernels ─ wait(done) ─ updates
    comm stream:                    wait(ready) ─ ncclAllReduce(in place) ─ record(done)

Between the two, no other op touches the bucket's bytes: the memory planner keeps the start
op's output alive until its wait op reads it. The blocking form (the global loss, batch-norm
statistics) runs on the current stream, in order with the kernels around it."""
from __future__ import annotations

import numpy as np

from core.distributed import DistributedError

# numpy dtype name -> the name of NCCL's constant for it in cupy.cuda.nccl
NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
              "int32": "NCCL_INT32", "int64": "NCCL_INT64"}


def join(world):
    """This rank's NCCL communicator over the MPI job `world` (the backend hook)."""
    import cupy
    from cupy.cuda import nccl
    return NcclCollectives(world, cupy, nccl)


class NcclCollectives:
    def __init__(self, world, cupy, nccl):
        self.cupy, self.nccl = cupy, nccl
        if not nccl.available:  # cupy imports without it and fails at the first call
            raise DistributedError("data-parallel training on GPUs needs the NCCL library, which "
                                   "cupy could not load: pip install 'nvidia-nccl-cu12>=2.18,<3'")
        gpus = cupy.cuda.runtime.getDeviceCount()
        if world.local_size > gpus:  # NCCL refuses two ranks on one GPU
            raise DistributedError(f"{world.local_size} ranks on this machine but {gpus} GPU(s): "
                                   "data-parallel training on GPUs needs one GPU per rank")
        self.gpu = world.local_rank
        cupy.cuda.Device(self.gpu).use()  # before anything of this rank's run is allocated
        uid = world.comm.bcast(nccl.get_unique_id() if world.rank == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def iallreduce_sum(self, buffer):
        """Start summing `buffer` in place on the comm stream, after what the current stream
        has queued (the bucket's packing); returns the request whose Wait orders the current
        stream after the sum."""
        ready = self.cupy.cuda.get_current_stream().record()
        self.stream.wait_event(ready)
        self._allreduce(buffer, self.stream)
        return _StreamRequest(self.cupy, self.stream.record())

    def allreduce_sum(self, buffer):
        self._allreduce(buffer, self.cupy.cuda.get_current_stream())

    def _allreduce(self, buffer, stream):
        if not buffer.flags.c_contiguous:
            raise ValueError("an NCCL allreduce needs a contiguous buffer")
        pointer = buffer.data.ptr
        self.comm.allReduce(pointer, pointer, buffer.size, self._type(buffer.dtype),
                            self.nccl.NCCL_SUM, stream.ptr)

    def _type(self, dtype):
        name = NCCL_TYPES.get(np.dtype(dtype).name)
        if name is None:
            raise TypeError(f"NCCL sums no {np.dtype(dtype).name} buffers "
                            f"(it takes {', '.join(NCCL_TYPES)})")
        return getattr(self.nccl, name)


class _StreamRequest:
    """A started bucket: waiting for it queues a wait on the stream current at that moment;
    the host goes on."""

    def __init__(self, cupy, done):
        self.cupy, self.done = cupy, done

    def Wait(self):  # noqa: N802 - the request API of core/ops/comm_ops.py (mpi4py's)
        self.cupy.cuda.get_current_stream().wait_event(self.done)
