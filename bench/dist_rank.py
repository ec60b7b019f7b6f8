"""One rank of the data-parallel benchmark (run by bench/dist.py under mpiexec, or alone):
times the compiled training step of a bundled example at a global batch, and how much of
the gradient allreduce the backward pass hid. Prints one JSON line (rank 0)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import distributed, graphfile, layers, overlap  # noqa: E402
from core.executor import Executor  # noqa: E402
from core.ops import comm_ops  # noqa: E402
from core.optim import make_optimizer  # noqa: E402
from core.step import sample_feed, training_step  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "resources" / "examples"


def main(example, batch, steps, bucket_bytes):
    world = distributed.start() if "PMI_RANK" in os.environ else None
    procs = 1 if world is None else world.size
    _threads(max(1, (os.cpu_count() or 1) // procs))  # the cores shared out, as DDP does
    doc = graphfile.load(EXAMPLES / f"{example}.loom.json")
    built = layers.build(doc, training=True, distributed=procs > 1)
    optimizer = make_optimizer({"optimizer": "sgd", "lr": 0.01})
    step = training_step(built, optimizer, procs, bucket_bytes)
    ex = Executor(step.outputs)
    rank = 0 if world is None else world.rank
    start, stop = distributed.shard(batch, rank, procs)
    feed = sample_feed(built, stop - start, fill="random", seed=rank)
    params = {p.name: feed[p] for p in built.parameters}
    feed[comm_ops.FRACTION] = np.array((stop - start) / batch)

    def run():
        optimizer.begin_step(0.01)
        ex.run({**feed, **optimizer.feed(params)}, to_numpy=False)

    for _ in range(3):
        run()
    if world is not None:
        world.timeline = []
    began = time.perf_counter()
    for _ in range(steps):
        run()
    seconds = (time.perf_counter() - began) / steps
    buckets = [n for n in ex.plan.schedule if n.op == "allreduce_start"]
    per_bucket = []  # [blocking ms, exposed ms, skew ms] per bucket, in start order
    if world is not None:
        timelines = world.comm.gather(world.timeline, root=0)
        world.timeline = None
        cost = _blocking_allreduce(world, ex, buckets)
        if rank == 0:  # averaged over the ranks, per step
            per_bucket = [[1000 * c, 1000 * w.exposed, 1000 * w.skew]
                          for c, w in zip(cost, overlap.waits(timelines, len(buckets)))]
    if rank == 0:
        print(json.dumps({"example": example, "procs": procs, "batch": batch,
                          "ms_per_step": 1000 * seconds, "samples_per_s": batch / seconds,
                          "buckets": per_bucket}))


def _blocking_allreduce(world, ex, buckets, repeat=20):
    """What each bucket's allreduce costs when nothing overlaps it: the same bytes summed
    with a blocking call, the ranks in step (a barrier before each)."""
    cost = []
    for node in buckets:
        buffer = np.zeros(ex.plan.shapes[node], dtype=ex.plan.dtypes[node])
        best = float("inf")
        for _ in range(repeat):
            world.comm.Barrier()
            began = time.perf_counter()
            world.allreduce_sum(buffer)
            best = min(best, time.perf_counter() - began)
        cost.append(best)
    return cost


def _threads(n):
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
