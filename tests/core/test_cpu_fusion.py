"""The numpy backend's fused loops (core/ops/cpu_fusion.py): relu(x + b) in one pass gives
the bits of numpy's add then maximum, for channel biases, feature biases and same-shape
operands, apart and in place; a compiled step takes it for adjacent add -> ReLU groups, with
the arena and the results of the op-by-op step."""
import numpy as np
import pytest

import core
from core.ops import cpu, cpu_fusion, native
from tests.core.graphs import cnn, mlp

pytestmark = pytest.mark.skipif(not native.available(), reason="numba is not installed")

SPECIAL = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1e-40, 1e-40, 1.5, -1.5]


def _with_specials(a):
    flat = a.reshape(-1)
    flat[:len(SPECIAL)] = SPECIAL
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,b_shape", [((5, 3, 4, 6), (3, 1, 1)), ((7, 9), (9,)),
                                             ((4, 6), (4, 6)), ((3, 5, 2), (5, 1))])
@pytest.mark.parametrize("in_place", [False, True])
def test_bias_relu_in_one_pass_gives_numpys_two_pass_bits(monkeypatch, dtype, x_shape, b_shape, in_place):
    rng = np.random.default_rng(0)
    x = _with_specials(rng.standard_normal(x_shape).astype(dtype))
    b = rng.standard_normal(b_shape).astype(dtype)
    b.reshape(-1)[:2] = [-0.0, np.nan] if b.size > 2 else b.reshape(-1)[:2]
    with np.errstate(invalid="ignore"):
        want = np.maximum(x + b, 0)
    layout = cpu_fusion._channel_layout(x_shape, b_shape)
    kernel = cpu_fusion.BiasReLU("x", "b", layout)
    monkeypatch.setattr(cpu, "MIN_BYTES", 0)  # split over threads even this small
    monkeypatch.setenv("LOOM_CPU_THREADS", "2")
    src = x.copy()
    out = src if in_place else np.full_like(x, 7)
    kernel([src, b], out)
    assert out.tobytes() == want.tobytes()
    assert not np.signbit(out[want == 0]).any()  # max(-0, 0) is +0, as numpy's


def test_only_a_bias_along_one_axis_or_of_the_same_shape_is_the_pattern():
    layout = cpu_fusion._channel_layout
    assert layout((8, 3, 5, 5), (3, 1, 1)) == (8, 3, 25)
    assert layout((8, 10), (10,)) == (8, 10, 1)
    assert layout((8, 3, 5, 5), (8, 3, 5, 5)) == (1, 600, 1)
    assert layout((8, 3, 5, 5), (1, 3, 5, 1)) is None  # two axes
    assert layout((8, 3, 5, 5), (1,)) is None  # a scalar
    assert layout((8, 3), (4,)) is None


def _step(graph, fuse):
    loss, params, feed, _ = graph
    ex = core.Executor([loss, *core.gradients(loss, params)], backend="numpy", fuse=fuse)
    return ex, [np.array(v) for v in ex.run(feed)]


@pytest.mark.parametrize("graph", [cnn(8), mlp([20, 16, 16, 4], 6)], ids=["cnn", "mlp"])
def test_a_step_fuses_its_bias_relu_pairs_with_the_same_arena_and_bits(graph):
    fused_ex, fused = _step(graph, fuse=True)
    plain_ex, plain = _step(graph, fuse=False)
    kernels = fused_ex._last.fused
    relus = [n for n in fused_ex._last.plan.schedule if n.op == "relu"]
    assert sorted(n.name for n in kernels) == sorted(n.name for n in relus)  # each ReLU took its add
    assert all(isinstance(k, cpu_fusion.BiasReLU) for k in kernels.values())
    assert not plain_ex._last.fused
    assert fused_ex.memory_report()["planned_bytes"] == plain_ex.memory_report()["planned_bytes"]
    for a, b in zip(fused, plain):
        assert a.tobytes() == b.tobytes()


def test_a_group_with_a_step_between_its_members_runs_op_by_op():
    """The plan keeps no input alive for a fused kernel on numpy: a step between the add
    and the ReLU could overwrite x before the kernel at the ReLU's step reads it."""
    x, b = core.placeholder("x", (None, 4)), core.parameter("b", (4,))
    add = x + b
    relu = core.relu(add)
    other = core.placeholder("z", (None, 4)) * 2.0

    class Plan:
        shapes = {x: (3, 4), b: (4,), add: (3, 4), relu: (3, 4), other: (3, 4)}

        def __init__(self, schedule):
            self.schedule, self.position = schedule, {n: i for i, n in enumerate(schedule)}
    assert isinstance(cpu_fusion.fuse([add, relu], Plan([add, relu, other])), cpu_fusion.BiasReLU)
    assert cpu_fusion.fuse([add, relu], Plan([add, other, relu])) is None


def test_without_numba_nothing_fuses(monkeypatch):
    monkeypatch.setenv("LOOM_NATIVE", "0")
    ex, _ = _step(cnn(4), fuse=True)
    assert not ex._last.fused
