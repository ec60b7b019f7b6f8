"""The executor's device hooks, driven by a test backend on the strict stand-in device: fused
group kernels replace their members' steps, a multi-stream runner may run steps in any order
its dependencies allow, and a captured step is replayed with each batch staged into fixed
buffers. Every variant must give the plain run's numbers exactly."""
import dataclasses

import numpy as np
import pytest

import core
from core import backend as backends
from core.optim import make_optimizer
from tests import standin

from .graphs import cnn, mlp


class FusedByOps:
    """A 'generated kernel' for a fusion group: the members' own computes, one after another,
    on temporaries, reading only the group's external inputs (as a real kernel does)."""

    def __init__(self, nodes, plan):
        self.nodes, self.plan = nodes, plan
        members = set(nodes)
        self.inputs = []
        for n in nodes:
            for i in n.inputs:
                src = plan.alias.get(i, i)
                if src not in members and src not in self.inputs:
                    self.inputs.append(src)
        self.calls = 0

    def __call__(self, ins, out):
        self.calls += 1
        xp = standin.xp
        value = dict(zip(self.inputs, ins))
        for n in self.nodes:
            args = [value[self.plan.alias.get(i, i)] for i in n.inputs]
            dest = out if n is self.nodes[-1] else xp.empty(self.plan.shapes[n], self.plan.dtypes[n])
            n.opdef.compute(xp, args, n.attrs, dest)
            value[n] = dest


def latest_ready_first(calls, streams, deps):
    """A stream runner that reorders as far as the dependencies allow: always the latest
    ready step first (a schedule no single stream would run)."""
    waiting = [set(d) for d in deps]
    done, order = set(), []
    while len(order) < len(calls):
        ready = [i for i in range(len(calls)) if i not in done and waiting[i] <= done]
        step = ready[-1]
        done.add(step)
        order.append(step)

    def run():
        for i in order:
            calls[i]()
    run.order = order
    return run


class Recorder:
    def __init__(self):
        self.captures = 0

    def __call__(self, run_step):
        self.captures += 1
        return run_step  # 'replaying' re-launches the same bound calls


def device(**hooks):
    """A stand-in backend with these hooks, registered under a fresh name."""
    name = f"standin-hooks-{len(backends.names())}"
    base = standin.make_backend()
    backends.register(name, lambda: dataclasses.replace(base, name=name, **hooks))
    return name


def train_steps(backend, graph, steps=3, **options):
    loss, params, feed, _ = graph()
    be = backends.get(backend)
    opt = make_optimizer({"optimizer": "adam"}, be)
    ex = core.Executor([loss, *opt.updates(params, core.gradients(loss, params), loss)],
                       backend=backend, **options)
    values = {p: be.asarray(feed[p]) for p in params}
    losses = []
    for step in range(steps):
        batch = {k: v * (1 + step) if v.dtype.kind == "f" else v.copy()  # new arrays each step
                 for k, v in feed.items() if k not in values}
        opt.begin_step(0.01)
        out = ex.run({**batch, **values, **opt.feed({p.name: values[p] for p in params})})
        losses.append(float(out[0]))
    return losses, {p.name: be.to_numpy(v) for p, v in values.items()}, ex


GRAPHS = {"mlp": lambda: mlp([20, 32, 32, 5], 8), "cnn": lambda: cnn(4)}


@pytest.mark.parametrize("graph", GRAPHS)
def test_fused_groups_replace_their_members_and_give_the_same_numbers(graph):
    plain_losses, plain, _ = train_steps(standin.NAME, GRAPHS[graph])
    losses, params, ex = train_steps(device(fuse=FusedByOps), GRAPHS[graph])
    assert losses == plain_losses
    for k in plain:
        np.testing.assert_array_equal(params[k], plain[k])
    program = ex._last
    assert program.fused, "the plan has fusion groups to hand over"
    assert ex.launches_per_step == len(ex.plan.schedule) - len(program.skipped)
    assert all(k.calls == 3 for k in program.fused.values())


@pytest.mark.parametrize("graph", GRAPHS)
def test_any_order_the_stream_dependencies_allow_gives_the_same_numbers(graph):
    plain_losses, plain, _ = train_steps(standin.NAME, GRAPHS[graph])
    name = device(fuse=FusedByOps, stream_runner=latest_ready_first)
    losses, params, ex = train_steps(name, GRAPHS[graph], streams=True)
    assert ex._last.run_step.order != sorted(ex._last.run_step.order)  # really reordered
    assert losses == plain_losses
    for k in plain:
        np.testing.assert_array_equal(params[k], plain[k])


def test_a_captured_step_replays_with_each_batch_staged():
    recorder = Recorder()
    plain_losses, plain, _ = train_steps(standin.NAME, GRAPHS["mlp"], steps=4)
    losses, params, ex = train_steps(device(capture=recorder), GRAPHS["mlp"], steps=4)
    assert losses == plain_losses  # new batch arrays every step, copied into the staging buffers
    for k in plain:
        np.testing.assert_array_equal(params[k], plain[k])
    assert recorder.captures == 1  # warm-up, capture once, replay after


def test_capture_is_off_when_profiling_and_without_the_hook():
    _, _, ex = train_steps(device(capture=Recorder()), GRAPHS["mlp"], profile=True)
    assert not ex._last.capturing
    _, _, ex = train_steps(standin.NAME, GRAPHS["mlp"])
    assert not ex._last.capturing and not ex._last.fused
