"""Exact small-integer cases, as a deep-learning-systems course grades them."""
import numpy as np
import pytest

import core


def run(nodes, feed):
    return core.Executor(nodes).run(feed)


def test_sum_and_product_of_several_variables():
    x1, x2, x3 = core.Variable("x1"), core.Variable("x2"), core.Variable("x3")
    y = x1 * x2 * x3 + x1 + x2 * x3
    grads = core.gradients(y, [x1, x2, x3])
    v1, v2, v3 = np.array([1., 2.]), np.array([3., 4.]), np.array([5., 6.])
    yv, g1, g2, g3 = run([y, *grads], {x1: v1, x2: v2, x3: v3})
    np.testing.assert_array_equal(yv, v1 * v2 * v3 + v1 + v2 * v3)
    np.testing.assert_array_equal(g1, v2 * v3 + 1)
    np.testing.assert_array_equal(g2, v1 * v3 + v3)
    np.testing.assert_array_equal(g3, v1 * v2 + v2)


@pytest.mark.parametrize("build, value, grad", [
    (lambda x: 5 + x, lambda v: 5 + v, lambda v: np.ones_like(v)),
    (lambda x: x + 5, lambda v: v + 5, lambda v: np.ones_like(v)),
    (lambda x: x - 2, lambda v: v - 2, lambda v: np.ones_like(v)),
    (lambda x: 2 - x, lambda v: 2 - v, lambda v: -np.ones_like(v)),
    (lambda x: 3 * x, lambda v: 3 * v, lambda v: 3 * np.ones_like(v)),
    (lambda x: x * 3, lambda v: v * 3, lambda v: 3 * np.ones_like(v)),
    (lambda x: x / 2, lambda v: v / 2, lambda v: 0.5 * np.ones_like(v)),
    (lambda x: 8 / x, lambda v: 8 / v, lambda v: -8 / v ** 2),
    (lambda x: -x, lambda v: -v, lambda v: -np.ones_like(v)),
    (lambda x: x ** 2, lambda v: v ** 2, lambda v: 2 * v),
    (lambda x: -(x ** 3), lambda v: -(v ** 3), lambda v: -3 * v ** 2),
])
def test_scalars_on_both_sides(build, value, grad):
    x = core.Variable("x")
    y = build(x)
    xv = np.array([1., 2., 4.])
    yv, gv = run([y, *core.gradients(y, [x])], {x: xv})
    np.testing.assert_array_equal(yv, value(xv))
    np.testing.assert_array_equal(gv, grad(xv))


def test_gradient_of_gradient():
    x = core.Variable("x")
    y = x * x * x
    (g,) = core.gradients(y, [x])
    (gg,) = core.gradients(g, [x])
    (ggg,) = core.gradients(gg, [x])
    xv = np.array([1., 2., 3.])
    gv, ggv, gggv = run([g, gg, ggg], {x: xv})
    np.testing.assert_array_equal(gv, 3 * xv ** 2)
    np.testing.assert_array_equal(ggv, 6 * xv)
    np.testing.assert_array_equal(gggv, [6., 6., 6.])


def test_gradient_of_gradient_through_two_variables():
    x, w = core.Variable("x"), core.Variable("w")
    y = x * x * w
    (gx,) = core.gradients(y, [x])  # 2xw
    (gxw,) = core.gradients(gx, [w])  # 2x
    np.testing.assert_array_equal(run([gxw], {x: np.array([3.]), w: np.array([5.])})[0], [6.])


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_transposes_exact(ta, tb):
    a, b = core.Variable("a"), core.Variable("b")
    A = np.arange(6, dtype=np.float64).reshape(2, 3)
    B = np.arange(12, dtype=np.float64).reshape(3, 4)
    av, bv = (A.T.copy() if ta else A), (B.T.copy() if tb else B)
    c = core.matmul(a, b, trans_A=ta, trans_B=tb)
    cv, ga, gb = run([c, *core.gradients(c, [a, b])], {a: av, b: bv})
    np.testing.assert_array_equal(cv, A @ B)
    ones = np.ones((2, 4))
    np.testing.assert_array_equal(ga, (ones @ B.T).T if ta else ones @ B.T)
    np.testing.assert_array_equal(gb, (A.T @ ones).T if tb else A.T @ ones)


def test_matmul_operator_and_chain():
    x, w = core.Variable("x"), core.Variable("w")
    y = core.reduce_sum(x @ w)
    xv = np.array([[1., 2.], [3., 4.]])
    wv = np.array([[1., 0.], [0., 1.]])
    yv, gw = run([y, *core.gradients(y, [w])], {x: xv, w: wv})
    assert yv == 10.0
    np.testing.assert_array_equal(gw, [[4., 4.], [6., 6.]])


def test_unused_variable_gets_zeros_and_reuse_accumulates():
    x, z = core.Variable("x"), core.Variable("z")
    y = x + x + x * x
    gx, gz = core.gradients(y, [x, z])
    xv, zv = np.array([2., 3.]), np.array([[1., 1.]])
    gxv, gzv = run([gx, gz], {x: xv, z: zv})
    np.testing.assert_array_equal(gxv, 2 + 2 * xv)
    np.testing.assert_array_equal(gzv, np.zeros_like(zv))


def test_broadcast_gradient_is_reduced_to_input_shape():
    x, b = core.Variable("x"), core.Variable("b")
    y = x * b
    gb, = core.gradients(y, [b])
    xv = np.arange(6.).reshape(2, 3)
    np.testing.assert_array_equal(run([gb], {x: xv, b: np.ones(3)})[0], xv.sum(0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_feed(dtype):
    x = core.Variable("x")
    y = 5 + x * 2 - x / 2
    (g,) = core.gradients(y, [x])
    yv, gv = run([y, g], {x: np.ones(3, dtype=dtype)})
    assert yv.dtype == dtype and gv.dtype == dtype
    np.testing.assert_array_equal(yv, np.full(3, 6.5))
