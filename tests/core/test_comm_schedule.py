"""The data-parallel step's communication, planned in one process: each bucket's allreduce
starts right after its last gradient, the waits and updates move to the end, and (alone,
where the sum over the ranks is the rank itself) the step updates exactly as the plain one."""
import numpy as np

import core
from core import graphfile
from core.layers import build
from core.ops import comm_ops
from core.optim import make_optimizer
from core.step import gradient_buckets, plan_report, sample_feed, training_step
from tests.cli.conftest import EXAMPLES


def _cnn():
    return graphfile.load(EXAMPLES / "mnist_cnn.loom.json")


def _run(procs, steps=3):
    doc = _cnn()
    built = build(doc, training=True, distributed=procs > 1)
    optimizer = make_optimizer({"optimizer": "momentum", "lr": 0.05})
    step = training_step(built, optimizer, procs, bucket_bytes=50_000)
    ex = core.Executor(step.outputs)
    feed = sample_feed(built, 8, fill="random", seed=1)
    params = {p.name: feed[p].copy() for p in built.parameters}
    for _ in range(steps):
        optimizer.begin_step(0.05)
        ex.run({**feed, **{p: params[p.name] for p in built.parameters}, **optimizer.feed(params),
                comm_ops.FRACTION: np.array(1.0)})
    return params, ex


def test_alone_the_data_parallel_step_updates_as_the_plain_one():
    plain, _ = _run(1)
    parallel, ex = _run(2)
    for name in plain:
        np.testing.assert_array_equal(parallel[name], plain[name], err_msg=name)
    assert sum(n.op == "allreduce_start" for n in ex.plan.schedule) >= 3


def test_buckets_start_after_their_last_gradient_and_are_waited_on_at_the_end():
    _, ex = _run(2, steps=1)
    schedule, alias = ex.plan.schedule, ex.plan.alias
    at = {n: i for i, n in enumerate(schedule)}
    starts = [n for n in schedule if n.op == "allreduce_start"]
    first_wait = min(at[n] for n in schedule if n.op == "allreduce_wait")
    for start in starts:
        producers = [at[alias.get(i, i)] for i in start.inputs if alias.get(i, i) in at]
        assert at[start] == max(producers) + 1 or schedule[at[start] - 1].op == "allreduce_start"
        assert at[start] < first_wait
    tail = schedule[first_wait:]
    assert all(n.op in ("allreduce_wait", "bucket_part") or n.op.endswith("_update") for n in tail)


def test_buckets_hold_at_most_the_configured_bytes_last_parameters_first():
    params = [core.parameter(f"p{i}", (100,)) for i in range(5)]  # 400 bytes each
    assert gradient_buckets(params, 900) == [[4, 3], [2, 1], [0]]
    assert gradient_buckets(params, 100) == [[4], [3], [2], [1], [0]]  # one too big: alone


def test_plan_shows_one_ranks_share_and_the_buckets():
    report = plan_report(_cnn(), 64, procs=2)
    buckets = report["allreduce buckets"]
    assert report["batch"] == 32 and len(buckets) == 1  # 25 MiB default: one bucket
    assert "stage1/conv" in buckets[0]["gradients of"] and buckets[0]["bytes"] > 200_000
