"""Differential tests on random small graphs (float64): the forward pass against a plain numpy
evaluation of the same steps, gradients against central differences, and every compiler
option against a plan with every pass off (bit for bit: the passes only reorder, share
buffers, merge duplicates or recompute, never change what an op computes).

A graph is a few leaves and a list of steps; each step picks an op from STEPS, which holds
the op both as Loom nodes and as numpy, and only applies where shapes allow it."""
import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import core

# Smooth ops only: central differences need no kinks near the sampled points.
UNARY = {
    "neg": (core.neg, np.negative),
    "tanh": (core.tanh, np.tanh),
    "sigmoid": (core.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
    "exp_tanh": (lambda x: core.exp(core.tanh(x)), lambda a: np.exp(np.tanh(a))),
    "square": (lambda x: x ** 2, lambda a: a ** 2),
    "log1p_sq": (lambda x: core.log(x * x + 1), lambda a: np.log(a * a + 1)),
    "sqrt1p_sq": (lambda x: core.sqrt(x * x + 1), lambda a: np.sqrt(a * a + 1)),
    "affine": (lambda x: 0.5 * x - 1, lambda a: 0.5 * a - 1),
}
BINARY = {
    "add": (core.add, np.add), "sub": (core.sub, np.subtract), "mul": (core.mul, np.multiply),
    "div": (lambda a, b: a / (b * b + 1), lambda a, b: a / (b * b + 1)),
}


def _softmax(a, axis):
    e = np.exp(a - a.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


class Graph:
    """Leaves (placeholders with values), the values built so far as (node, numpy array)."""

    def __init__(self, draw, rng):
        self.draw, self.rng = draw, rng
        self.leaves, self.values = {}, []
        for _ in range(draw(st.integers(1, 2))):
            self.values.append(self.leaf(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))))

    def leaf(self, shape):
        node = core.placeholder(f"x{len(self.leaves)}")
        self.leaves[node] = self.rng.standard_normal(tuple(shape))
        return node, self.leaves[node]

    def pick(self, test=lambda v: True):
        choices = [v for v in self.values if test(v)]
        return self.draw(st.sampled_from(choices)) if choices else None


# ---- steps: (graph) -> (node, array) or None where nothing fits -------------------------------

def unary(g):
    node, a = g.pick()
    build, ref = UNARY[g.draw(st.sampled_from(sorted(UNARY)))]
    return build(node), ref(a)


def binary(g):
    x, a = g.pick()
    y, b = g.pick(lambda v: _broadcasts(a.shape, v[1].shape))
    build, ref = BINARY[g.draw(st.sampled_from(sorted(BINARY)))]
    return build(x, y), ref(a, b)


def _broadcasts(s, t):
    try:
        return len(np.broadcast_shapes(s, t)) <= 3
    except ValueError:
        return False


def _ranked(value):
    return value[1].ndim >= 1


def reduce(g):
    found = g.pick(_ranked)
    if found is None:
        return None
    x, a = found
    axis = g.draw(st.one_of(st.none(), st.integers(-a.ndim, a.ndim - 1)))
    keep = g.draw(st.booleans())
    mean = g.draw(st.booleans())
    build, ref = (core.reduce_mean, np.mean) if mean else (core.reduce_sum, np.sum)
    return build(x, axis, keepdims=keep), np.asarray(ref(a, axis=axis, keepdims=keep))


def matmul(g):
    found = g.pick(lambda v: v[1].ndim == 2)
    if found is None:
        return None
    x, a = found
    trans_b = g.draw(st.booleans())
    n = g.draw(st.integers(1, 3))
    w, b = g.leaf((n, a.shape[1]) if trans_b else (a.shape[1], n))
    return core.matmul(x, w, trans_B=trans_b), a @ (b.T if trans_b else b)


def reshape(g):
    found = g.pick(_ranked)
    if found is None:
        return None
    x, a = found
    target = g.draw(st.sampled_from([a.shape, (-1,), (a.shape[0], -1), (-1, 1)]))  # incl. identity
    return core.reshape(x, target), a.reshape(target)


def transpose(g):
    found = g.pick(_ranked)
    if found is None:
        return None
    x, a = found
    perm = g.draw(st.permutations(range(a.ndim)))
    axes = [p - a.ndim if g.draw(st.booleans()) else p for p in perm]  # negative axes too
    return core.transpose(x, axes), np.transpose(a, perm)


def broadcast(g):
    found = g.pick(lambda v: v[1].ndim <= 2)
    if found is None:
        return None
    x, a = found
    lead = g.draw(st.sampled_from([(), (2,)]))  # () keeps the shape: an identity broadcast
    shape = lead + a.shape
    return core.broadcast_to(x, shape), np.broadcast_to(a, shape).copy()


def softmax(g):
    found = g.pick(_ranked)
    if found is None:
        return None
    x, a = found
    axis = g.draw(st.integers(-a.ndim, a.ndim - 1))
    if g.draw(st.booleans()):
        return core.softmax(x, axis), _softmax(a, axis)
    return core.log_softmax(x, axis), np.log(_softmax(a, axis))


STEPS = [unary, binary, reduce, matmul, reshape, transpose, broadcast, softmax]


@st.composite
def graphs(draw):
    g = Graph(draw, np.random.default_rng(draw(st.integers(0, 2 ** 16))))
    for _ in range(draw(st.integers(1, 8))):
        made = draw(st.sampled_from(STEPS))(g)
        if made is not None:
            g.values.append(made)
    out, ref = g.values[-1]
    weights = g.rng.standard_normal(ref.shape)
    loss = core.reduce_sum(out * core.constant(weights))  # every output element matters
    return g, out, ref, loss, float(np.sum(ref * weights))


# ---- the three differential checks -------------------------------------------------------------

ALL_OFF = {"schedule": "topo", "checkpoint": None, "inplace": False, "cse": False,
           "plan_memory": False}
OPTIONS = {"schedule": ["topo", "memory", "auto"], "checkpoint": [None, "sqrt", "cheap"],
           "inplace": [False, True], "cse": [False, True]}


def _each_option_and_a_mix(draw):
    """Each option value alone (the others off), and one drawn combination of all of them."""
    single = [{**ALL_OFF, name: v} for name, values in OPTIONS.items() for v in values]
    mix = {**ALL_OFF, "plan_memory": True, **{k: draw(st.sampled_from(v)) for k, v in OPTIONS.items()}}
    return single + [mix]


def _central_difference(ex, leaves, x, eps=1e-6):
    num = np.zeros_like(leaves[x])
    for i in itertools.product(*map(range, leaves[x].shape)):
        total = []
        for d in (eps, -eps):
            value = leaves[x].copy()
            value[i] += d
            total.append(float(ex.run({**leaves, x: value})[0]))
        num[i] = (total[0] - total[1]) / (2 * eps)
    return num


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(), st.data())
def test_random_graphs_forward_gradients_and_compiler_options(graph, data):
    g, out, ref, loss, loss_ref = graph
    leaves = list(g.leaves)
    grads = core.gradients(loss, leaves)
    # forward against numpy
    got = core.Executor([out, loss]).run(g.leaves)
    np.testing.assert_allclose(got[0], ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], loss_ref, rtol=1e-9, atol=1e-12)
    # gradients against central differences
    values = core.Executor(grads).run(g.leaves)
    forward = core.Executor([loss])
    for x, value in zip(leaves, values):
        np.testing.assert_allclose(value, _central_difference(forward, g.leaves, x),
                                   rtol=1e-5, atol=1e-6)
    # every compiler option: bit-identical to all passes off
    baseline = core.Executor([loss, *grads], **ALL_OFF).run(g.leaves)
    for options in _each_option_and_a_mix(data.draw):
        again = core.Executor([loss, *grads], **options).run(g.leaves)
        for a, b in zip(baseline, again):
            assert a.dtype == b.dtype and np.array_equal(a, b), options
