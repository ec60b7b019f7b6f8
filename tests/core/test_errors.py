"""Bad input names the place: shape mismatches, missing feeds, wrong declared shapes."""
import numpy as np
import pytest

import core


def test_shape_mismatch_names_node_op_and_both_shapes():
    a, b = core.Variable("a"), core.Variable("b")
    c = core.matmul(a, b, name="scores")
    with pytest.raises(core.ShapeError) as err:
        core.Executor([c]).run({a: np.ones((2, 3)), b: np.ones((4, 5))})
    msg = str(err.value)
    assert "scores" in msg and "matmul" in msg and "(2, 3)" in msg and "(4, 5)" in msg


def test_broadcast_mismatch():
    a, b = core.Variable("a"), core.Variable("b")
    with pytest.raises(core.ShapeError, match=r"\(3,\).*\(4,\)|do not broadcast"):
        core.Executor([a + b]).run({a: np.ones(3), b: np.ones(4)})


def test_missing_feed_names_the_placeholder():
    x, w = core.Variable("x"), core.Variable("weights")
    with pytest.raises(core.FeedError, match="weights"):
        core.Executor([x * w]).run({x: np.ones(2)})


def test_declared_shape_is_checked():
    x = core.placeholder("images", shape=(None, 784))
    ex = core.Executor([x * 2])
    assert ex.run({x: np.ones((5, 784))})[0].shape == (5, 784)
    with pytest.raises(core.FeedError, match=r"images.*\(N, 784\).*\(5, 10\)"):
        ex.run({x: np.ones((5, 10))})


def test_replans_when_shapes_change():
    x = core.Variable("x")
    y = core.reduce_sum(x * x, axis=1)
    ex = core.Executor([y])
    np.testing.assert_array_equal(ex.run({x: np.ones((4, 3))})[0], np.full(4, 3.0))
    np.testing.assert_array_equal(ex.run({x: np.ones((7, 2))})[0], np.full(7, 2.0))
    np.testing.assert_array_equal(ex.run({x: np.ones((4, 3))})[0], np.full(4, 3.0))
    assert ex.arena_allocations == 2


def test_allocation_count_stays_flat_at_fixed_shapes():
    x, w = core.Variable("x"), core.Variable("w")
    loss = core.reduce_sum(core.relu(x @ w))
    ex = core.Executor([loss, *core.gradients(loss, [w])])
    feed = {x: np.ones((8, 4)), w: np.ones((4, 3))}
    for _ in range(5):
        ex.run(feed)
    assert ex.arena_allocations == 1


def test_only_needed_nodes_are_evaluated():
    x, bad = core.Variable("x"), core.Variable("bad")
    fine = x * 2
    broken = core.matmul(x, bad)  # would be a shape error, but nothing asks for it
    assert broken is not None
    np.testing.assert_array_equal(core.Executor([fine]).run({x: np.ones(3)})[0], [2., 2., 2.])


def test_pow_needs_a_scalar():
    x = core.Variable("x")
    with pytest.raises(TypeError):
        x ** x
