"""Whole-step CUDA graphs and the two-stream runner (the backend's `capture` and
`stream_runner` hooks). Which waits a multi-stream step needs is a pure function of the
schedule (`stream_plan`), tested without a device."""
from __future__ import annotations

from functools import partial

LANES = 2  # CUDA streams the schedule's stream ids are folded onto


def capture(run_step):
    """Record one call of `run_step` as a CUDA graph (stream capture: nothing runs now) and
    return a function replaying it on the current stream. Raises NotImplementedError where
    the installed cupy or driver cannot capture, or where the step does something a graph
    cannot hold: a host synchronisation, or a device allocation (a temporary freed after the
    capture would be handed out again while every replay still writes to it). The executor
    then keeps running the step eagerly."""
    import cupy
    stream = cupy.cuda.Stream(non_blocking=True)
    try:
        with stream, _no_allocations():
            stream.begin_capture()
            try:
                run_step()
            except BaseException:
                _abandon(stream)
                raise
            graph = stream.end_capture()
    except (_Allocation, AttributeError, cupy.cuda.runtime.CUDARuntimeError,
            cupy.cuda.driver.CUDADriverError) as exc:
        raise NotImplementedError(f"CUDA graph capture is not possible here: {exc}") from exc

    def replay():
        graph.launch(cupy.cuda.get_current_stream())
    replay.graph = graph  # kept alive with the replay function
    return replay


class _Allocation(RuntimeError):
    pass


def _no_allocations():
    """A cupy memory hook refusing every allocation while it is active."""
    from cupy.cuda import memory_hook

    class NoAllocations(memory_hook.MemoryHook):
        name = "loom_no_allocations_in_capture"

        def malloc_preprocess(self, **kwargs):
            raise _Allocation(f"the step allocates device memory ({kwargs.get('size')} bytes)")
    return NoAllocations()


def _abandon(stream):
    """End a failed capture so the stream is usable again; its graph is discarded."""
    try:
        stream.end_capture()
    except Exception:  # noqa: BLE001 - the capture is already invalid; the first error matters
        pass


def stream_plan(streams, deps, lanes=LANES):
    """(lane of each step, steps each step waits for, steps whose completion is recorded).

    A step waits only for dependencies on another lane (same-lane order is stream order), and
    not for one already implied: waiting for step j of a lane covers every earlier step of it."""
    lane = [s % lanes for s in streams]
    covered = {}  # (consumer lane, producer lane) -> latest producer step already waited for
    waits = []
    for i, dep in enumerate(deps):
        mine = []
        for j in sorted(set(dep), reverse=True):
            key = (lane[i], lane[j])
            if lane[j] != lane[i] and covered.get(key, -1) < j:
                mine.append(j)
                covered[key] = j
        waits.append(sorted(mine))
    recorded = sorted({j for w in waits for j in w})
    return lane, waits, recorded


def stream_runner(calls, streams, deps):
    """A zero-argument function launching `calls[i]` on lane `streams[i] % 2`, each cross-lane
    dependency as an event recorded after the producer and waited for by the consumer's
    stream; both lanes start after the work already queued on the current stream and the
    current stream waits for both at the end (so results and the next step see everything)."""
    import cupy
    lane_of, waits, recorded = stream_plan(streams, deps)
    if len(set(lane_of)) <= 1:
        return partial(_run_all, calls)
    lanes = [cupy.cuda.Stream(non_blocking=True) for _ in range(LANES)]
    events = {j: cupy.cuda.Event(disable_timing=True) for j in recorded}
    program = [(call, lanes[lane_of[i]], [events[j] for j in waits[i]], events.get(i))
               for i, call in enumerate(calls)]
    fork = cupy.cuda.Event(disable_timing=True)
    joins = [cupy.cuda.Event(disable_timing=True) for _ in lanes]

    def run():
        origin = cupy.cuda.get_current_stream()
        fork.record(origin)
        for lane in lanes:
            lane.wait_event(fork)
        try:
            _launch_all(program)
        finally:
            origin.use()
        for lane, join in zip(lanes, joins):
            join.record(lane)
            origin.wait_event(join)
    run.lanes = lanes  # the streams live as long as the runner
    return run


def _run_all(calls):
    for call in calls:
        call()


def _launch_all(program):
    current = None
    for call, lane, waits, record in program:
        for event in waits:
            lane.wait_event(event)
        if lane is not current:
            lane.use()  # cupy launches (our kernels, cuBLAS) go to the current stream
            current = lane
        call()
        if record is not None:
            record.record(lane)
