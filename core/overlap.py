"""How much of a data-parallel step's gradient communication the backward pass hid, from
every rank's timeline of its allreduces (`Communicator.timeline`: [started, wait began, wait
ended] per allreduce, in start order, on a clock the ranks share: time.perf_counter is
CLOCK_MONOTONIC, one clock for every process of a machine).

A rank's wait for a bucket has two parts. Until the last rank has started that bucket's
allreduce, no communication can finish: that part is the ranks' skew (one rank computed
slower), not communication. After it, the rank waits for the transfer itself: that part is
communication the backward pass did not hide. Telling them apart matters on a shared
machine, where the skew between two ranks is often larger than the whole transfer."""
from __future__ import annotations

from typing import NamedTuple


class Waits(NamedTuple):
    exposed: float  # seconds waited after every rank had started the bucket (transfer not hidden)
    skew: float  # seconds waited for a slower rank to start it


def waits(timelines, buckets: int) -> list[Waits]:
    """Per bucket of the step (in start order), the mean wait per rank and step, split into
    exposed communication and skew. `timelines[r]` is rank r's records over whole steps of
    `buckets` allreduces each; every rank has the same number, in the same order."""
    counts = {len(t) for t in timelines}
    if len(counts) != 1:
        raise ValueError(f"ranks recorded different numbers of allreduces: {sorted(counts)}")
    (count,) = counts
    if buckets < 1 or count % buckets:
        raise ValueError(f"{count} allreduces are not whole steps of {buckets} buckets")
    totals = [[0.0, 0.0] for _ in range(buckets)]
    for index, records in enumerate(zip(*timelines)):
        ready = max(started for started, _, _ in records)  # the last rank's start
        total = totals[index % buckets]
        for _, began, ended in records:
            if began is None:
                raise ValueError("an allreduce was started but never waited for")
            total[0] += max(0.0, ended - max(began, ready))
            total[1] += max(0.0, min(ended, ready) - began)
    samples = len(timelines) * count // buckets  # ranks x steps
    return [Waits(exposed / samples, skew / samples) for exposed, skew in totals]


def hidden_fraction(exposed: float, cost: float) -> float:
    """1 - exposed / cost, within [0, 1]: the share of the communication's own cost (the same
    buckets summed with blocking calls) that the step did not wait for."""
    if cost <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - exposed / cost))
