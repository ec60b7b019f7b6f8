"""Started allreduces progress while the step goes on: the executor polls MPI between the ops
of a step that communicates (MPICH moves a non-blocking collective only inside MPI calls), and
a plain step never polls."""
import numpy as np

import core
from core import distributed
from core.ops import comm_ops


class _FakeWorld:
    """Records the polls; a started allreduce stays pending until waited for."""

    def __init__(self):
        self.pending, self.polls, self.local_size = [], [], 1

    def iallreduce_sum(self, buffer):
        request = _Request(self)
        self.pending.append(request)
        return request

    def allreduce_sum(self, buffer):
        pass

    def progress(self):
        self.polls.append(len(self.pending))


class _Request:
    def __init__(self, world):
        self.world = world

    def Wait(self):  # noqa: N802 - mpi4py's request API
        self.world.pending.remove(self)


def _bucketed_step():
    x = core.placeholder("x", (None, 6))
    w1, w2 = core.parameter("w1", (6, 8)), core.parameter("w2", (8, 3))
    loss = core.reduce_mean(core.relu(x @ w1) @ w2)
    g1, g2 = core.gradients(loss, [w1, w2])
    (p2,) = comm_ops.gradient_bucket([g2], [(8, 3)])  # started as soon as g2 exists
    (p1,) = comm_ops.gradient_bucket([g1], [(6, 8)])
    feed = {x: np.ones((4, 6), np.float32), comm_ops.FRACTION: np.array(1.0)}
    return [loss, p1, p2], feed


def test_a_communicating_step_polls_between_its_ops(monkeypatch):
    world = _FakeWorld()
    monkeypatch.setattr(distributed, "_WORLD", world)
    outputs, feed = _bucketed_step()
    ex = core.Executor(outputs)
    ex.run(feed)
    assert len(world.polls) > 0 and max(world.polls) >= 1  # polled while a bucket was in flight
    assert world.pending == []  # every request waited for by the end of the step


def test_a_plain_step_never_polls(monkeypatch):
    world = _FakeWorld()
    monkeypatch.setattr(distributed, "_WORLD", world)
    x = core.placeholder("x", (None, 3))
    core.Executor([core.relu(x) * 2]).run({x: np.ones((2, 3), np.float32)})
    assert world.polls == []
