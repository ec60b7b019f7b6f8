"""NCCL collectives of the cupy backend (gpu/collectives.py). Without a device: the order of
stream events and NCCL calls against a recording fake of cupy and cupy.cuda.nccl (a started
bucket must wait for its packing, run on the comm stream and be waited for on the device,
never on the host). With a device: NCCL itself, on one rank (it takes one rank per GPU)."""
from types import SimpleNamespace

import numpy as np
import pytest

from core.distributed import DistributedError
from gpu import collectives


class _Log(list):
    def add(self, *entry):
        self.append(entry)


class _Event:
    count = 0

    def __init__(self, stream):
        _Event.count += 1
        self.name = f"event{_Event.count}@{stream.name}"


class _Stream:
    def __init__(self, log, name, ptr):
        self.log, self.name, self.ptr = log, name, ptr

    def record(self):
        event = _Event(self)
        self.log.add("record", self.name, event.name)
        return event

    def wait_event(self, event):
        self.log.add("wait", self.name, event.name)


def _fake_cupy(log, gpus=2):
    current = _Stream(log, "compute", 111)
    cuda = SimpleNamespace(
        runtime=SimpleNamespace(getDeviceCount=lambda: gpus),
        Device=lambda n: SimpleNamespace(use=lambda: log.add("use device", n)),
        Stream=lambda non_blocking: _Stream(log, "comm", 222),
        get_current_stream=lambda: current,
    )
    return SimpleNamespace(cuda=cuda)


class _FakeNccl:
    available = True
    NCCL_SUM, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT32, NCCL_INT64 = range(6)

    def __init__(self, log):
        self.log = log

    def get_unique_id(self):
        self.log.add("unique id")
        return b"uid"

    def NcclCommunicator(self, size, uid, rank):  # noqa: N802 - cupy's name
        self.log.add("communicator", size, uid, rank)
        log = self.log
        return SimpleNamespace(allReduce=lambda *args: log.add("allReduce", *args))


class _World:
    def __init__(self, rank=0, size=2, local_rank=None, local_size=2):
        self.rank, self.size, self.local_size = rank, size, local_size
        self.local_rank = rank if local_rank is None else local_rank
        self.comm = SimpleNamespace(bcast=lambda value, root: b"uid")


def _buffer(n=6, dtype="float32", contiguous=True):
    return SimpleNamespace(size=n, dtype=np.dtype(dtype), data=SimpleNamespace(ptr=4096),
                           flags=SimpleNamespace(c_contiguous=contiguous))


def _joined(log, **world):
    return collectives.NcclCollectives(_World(**world), _fake_cupy(log), _FakeNccl(log))


def test_each_rank_drives_the_gpu_of_its_local_rank_and_rank_0_makes_the_id():
    log = _Log()
    _joined(log, rank=1, local_rank=1)
    assert log[0] == ("use device", 1)  # before the communicator (and anything else) exists
    assert ("communicator", 2, b"uid", 1) in log and ("unique id",) not in log
    log0 = _Log()
    _joined(log0, rank=0)
    assert ("unique id",) in log0


def test_more_ranks_on_a_machine_than_gpus_is_refused_by_name():
    log = _Log()
    with pytest.raises(DistributedError, match="3 ranks on this machine but 2 GPU"):
        collectives.NcclCollectives(_World(local_size=3), _fake_cupy(log, gpus=2), _FakeNccl(log))


def test_a_started_bucket_waits_for_its_packing_runs_on_the_comm_stream_and_is_waited_on_the_device():
    log = _Log()
    nccl = _joined(log)
    del log[:]
    request = nccl.iallreduce_sum(_buffer(6, "float32"))
    (_, _, ready), wait_ready, reduce, (_, stream, done) = log
    assert wait_ready == ("wait", "comm", ready) and ready.endswith("@compute")
    assert reduce == ("allReduce", 4096, 4096, 6, _FakeNccl.NCCL_FLOAT32, _FakeNccl.NCCL_SUM, 222)
    assert stream == "comm"
    del log[:]
    request.Wait()
    assert log == [("wait", "compute", done)]  # the compute stream waits; the host does not


def test_the_blocking_sum_runs_in_order_on_the_current_stream():
    log = _Log()
    nccl = _joined(log)
    del log[:]
    nccl.allreduce_sum(_buffer(3, "float64"))
    assert log == [("allReduce", 4096, 4096, 3, _FakeNccl.NCCL_FLOAT64, _FakeNccl.NCCL_SUM, 111)]


def test_a_cupy_without_the_nccl_library_is_named_with_its_fix():
    log = _Log()
    missing = _FakeNccl(log)
    missing.available = False
    with pytest.raises(DistributedError, match="nvidia-nccl-cu12"):
        collectives.NcclCollectives(_World(), _fake_cupy(log), missing)


def test_buffers_nccl_cannot_sum_are_refused():
    nccl = _joined(_Log())
    with pytest.raises(TypeError, match="NCCL sums no bool buffers"):
        nccl.allreduce_sum(_buffer(3, "bool"))
    with pytest.raises(ValueError, match="contiguous"):
        nccl.allreduce_sum(_buffer(3, "float32", contiguous=False))


def _nccl_on_a_device():
    try:
        import cupy
        if not cupy.cuda.is_available():
            return None
        from cupy.cuda import nccl
        return (cupy, nccl) if nccl.available else None
    except Exception:  # noqa: BLE001 - no cupy, no NCCL in it, no driver
        return None


@pytest.mark.skipif(_nccl_on_a_device() is None, reason="needs a CUDA device and cupy with NCCL")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nccl_sums_in_place_in_stream_order_on_a_real_device(dtype):
    """One rank (NCCL takes one rank per GPU; one GPU is what the device machine has): the
    sum over the ranks is the buffer itself, so what comes back checks the pointer, count,
    type and stream plumbing: the packing queued before the start is summed, and work queued
    after the wait sees the sum."""
    cupy, nccl = _nccl_on_a_device()
    world = _World(rank=0, size=1, local_size=1)
    comm = collectives.NcclCollectives(world, cupy, nccl)
    buffer = cupy.zeros(1 << 20, dtype=dtype)
    expected = np.arange(1 << 20, dtype=dtype) * 2 + 1
    for _ in range(3):  # the same arena bytes every step
        buffer[...] = cupy.arange(1 << 20, dtype=dtype)
        buffer *= 2  # "packing", queued on the compute stream before the start
        request = comm.iallreduce_sum(buffer)
        request.Wait()
        after = buffer + 1  # queued after the wait: sees the sum
        assert np.array_equal(cupy.asnumpy(after), expected)
    small = cupy.full(7, 3, dtype=dtype)
    comm.allreduce_sum(small)
    assert np.array_equal(cupy.asnumpy(small), np.full(7, 3, dtype=dtype))
