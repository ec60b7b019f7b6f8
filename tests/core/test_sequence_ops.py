"""The sequence-model ops (gather, where, causal_mask, layer_norm, gelu) and the sequence forms
of older ones (batched matmul, softmax on a 4-D input, cross-entropy and accuracy on (N, T, V)):
forward against an independent numpy formula, gradient against central differences in
float64, an exact hand-computed case each, clear shape errors, and one causal attention
pattern put together from them."""
import math

import numpy as np
import pytest

import core
from core.errors import GraphError, ShapeError
from tests.core.test_ops_forward_grad import _numeric_grad

RNG = np.random.default_rng(42)


def rand(*shape):
    return RNG.standard_normal(shape)


def run(outputs, feed=None):
    return core.Executor(list(outputs)).run(feed or {})


def evaluate(build, arrays):
    """build(*Variables) run on the arrays: (variables, node, value)."""
    xs = [core.Variable(f"x{i}") for i in range(len(arrays))]
    y = build(*xs)
    return xs, y, run([y], dict(zip(xs, arrays)))[0]


def check_grad(build, arrays, wrt, eps=1e-6, rtol=1e-6, atol=1e-8):
    """d sum(w * build(*arrays)) / d arrays[k] for each k in wrt: Loom's symbolic gradient
    against central differences, all in float64, w random and fixed."""
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in arrays]
    xs, y, value = evaluate(build, arrays)
    w = np.random.default_rng(7).standard_normal(value.shape)
    w = np.sign(w) * (0.5 + np.abs(w))  # no weight near 0 (a scalar output has only one)
    objective = core.reduce_sum(y * core.constant(w))
    feed = dict(zip(xs, arrays))
    analytic = run(core.gradients(objective, [xs[k] for k in wrt]), feed)
    f_ex = core.Executor([objective])
    f = lambda: float(f_ex.run(feed)[0])  # noqa: E731
    for k, got in zip(wrt, analytic):
        assert got.shape == arrays[k].shape, f"gradient towards input {k}"
        numeric = _numeric_grad(f, arrays, k, eps)
        assert np.abs(numeric).max() > 1e-3, "degenerate check: the numeric gradient is ~0"
        np.testing.assert_allclose(got, numeric, rtol=rtol, atol=atol,
                                   err_msg=f"d/d input {k}")


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# ---- gather ---------------------------------------------------------------------------------

IDS_REPEATED = np.array([[1, 4, 1, 0], [4, 4, 2, 1]])  # 1 three times, 4 three times, 3 never


def test_gather_forward_and_gradient_with_repeated_ids():
    table = rand(5, 3)
    _, y, got = evaluate(lambda t, i: core.gather(t, i), [table, IDS_REPEATED])
    np.testing.assert_array_equal(got, table[IDS_REPEATED])
    assert got.shape == (2, 4, 3)
    check_grad(lambda t, i: core.gather(t, i), [table, IDS_REPEATED], [0])


def test_gather_along_axis_1():
    table, ids = rand(3, 5, 2), np.array([[0, 4, 4], [2, 0, 3]])
    _, _, got = evaluate(lambda t, i: core.gather(t, i, axis=1), [table, ids])
    ref = np.stack([[[table[a, ids[b, c], d] for d in range(2)] for b in range(2) for c in range(3)]
                    for a in range(3)]).reshape(3, 2, 3, 2)
    np.testing.assert_array_equal(got, ref)
    check_grad(lambda t, i: core.gather(t, i, axis=1), [table, ids], [0])


def test_gather_grad_op_scatters_and_adds():
    g, table = rand(2, 4, 3), rand(5, 3)

    def build(gv, i, t):
        return core.Node("gather_grad", [gv, i, t], {"axis": 0})
    _, _, got = evaluate(build, [g, IDS_REPEATED, table])
    ref = np.zeros((5, 3))
    for b in range(2):
        for c in range(4):
            ref[IDS_REPEATED[b, c]] += g[b, c]
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-15)
    assert not got[3].any()  # an id never picked gets exactly zero
    check_grad(build, [g, IDS_REPEATED, table], [0])


def test_gather_exact():
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    t, i = core.Variable("t"), core.Variable("i")
    y = core.gather(t, i)
    got, gt = run([y, *core.gradients(y, [t])], {t: table, i: np.array([[0, 2, 0]])})
    np.testing.assert_array_equal(got, [[[1, 2], [5, 6], [1, 2]]])
    np.testing.assert_array_equal(gt, [[2, 2], [0, 0], [1, 1]])


def test_gather_of_a_scalar_table_is_a_shape_error():
    t, i = core.Variable("t"), core.Variable("i")
    with pytest.raises(ShapeError, match="gather needs a table of rank 1 or more, got a scalar"):
        run([core.gather(t, i)], {t: np.array(3.0), i: np.array([0])})


# ---- where ----------------------------------------------------------------------------------

def test_where_broadcasts_and_routes_gradients_to_both_branches():
    cond = np.array([[True], [False], [True]])  # (3, 1)
    a, b = rand(1, 4), rand(4)
    _, _, got = evaluate(core.where, [cond, a, b])
    np.testing.assert_array_equal(got, np.where(cond, a, b))
    assert got.shape == (3, 4)
    check_grad(core.where, [cond, a, b], [1, 2])


def test_where_exact():
    c, a, b = core.Variable("c"), core.Variable("a"), core.Variable("b")
    y = core.where(c, a, b)
    cond = np.array([[True, False], [False, True]])
    got, ga, gb = run([y, *core.gradients(y, [a, b])],
                      {c: cond, a: np.array([[1.0, 2.0], [3.0, 4.0]]), b: np.array(10.0)})
    np.testing.assert_array_equal(got, [[1, 10], [10, 4]])
    np.testing.assert_array_equal(ga, [[1, 0], [0, 1]])
    assert gb.shape == () and gb == 2.0  # the scalar branch picked twice: summed back


# ---- causal mask ----------------------------------------------------------------------------

def test_causal_mask_is_an_exact_lower_triangle_and_a_constant():
    m = core.causal_mask(5)
    assert m.op == "constant"
    (got,) = run([m])
    assert got.dtype == bool and got.shape == (5, 5)
    for i in range(5):
        for j in range(5):
            assert got[i, j] == (j <= i), (i, j)


def test_causal_mask_is_not_a_step_of_the_schedule():
    s = core.Variable("s")
    mask = core.causal_mask(3)
    y = core.where(mask, s, -1.0)
    ex = core.Executor([y])
    ex.run({s: rand(3, 3)})
    assert mask not in ex.plan.schedule and y in ex.plan.schedule


# ---- layer norm -----------------------------------------------------------------------------

def np_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_layer_norm_forward_and_gradients_3d():
    x, gamma, beta = rand(2, 3, 5) * 2 + 1, rand(5), rand(5)
    _, _, got = evaluate(core.layer_norm, [x, gamma, beta])
    np.testing.assert_allclose(got, np_layer_norm(x, gamma, beta), rtol=1e-12, atol=1e-13)
    check_grad(core.layer_norm, [x, gamma, beta], [0, 1, 2])


def test_layer_norm_gradient_ops_match_numpy_formulas():
    x, gamma, g = rand(2, 3, 4), rand(4), rand(2, 3, 4)
    eps = 1e-5
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    h = g * gamma
    dx = (h - h.mean(-1, keepdims=True) - xhat * (h * xhat).mean(-1, keepdims=True)) \
        / np.sqrt(x.var(-1, keepdims=True) + eps)
    _, _, got = evaluate(
        lambda gv, xv, gm: core.Node("layer_norm_grad", [gv, xv, gm], {"eps": eps}), [g, x, gamma])
    np.testing.assert_allclose(got, dx, rtol=1e-11, atol=1e-12)
    _, _, got = evaluate(lambda gv, xv: core.Node("layer_norm_gamma_grad", [gv, xv], {"eps": eps}),
                         [g, x])
    np.testing.assert_allclose(got, (g * xhat).sum((0, 1)), rtol=1e-11, atol=1e-12)


def test_layer_norm_exact():
    x, gm, bt = core.Variable("x"), core.Variable("g"), core.Variable("b")
    ones, zeros = np.ones(3), np.zeros(3)
    row = np.array([[1.0, 2.0, 3.0]])
    (y0,) = run([core.layer_norm(x, gm, bt, eps=0.0)], {x: row, gm: ones, bt: zeros})
    r = math.sqrt(1.5)  # (x - 2) / sqrt(2/3)
    np.testing.assert_allclose(y0, [[-r, 0.0, r]], rtol=0, atol=1e-15)
    (y1,) = run([core.layer_norm(x, gm, bt)], {x: row, gm: ones, bt: zeros})  # eps 1e-5
    np.testing.assert_allclose(y1, [[-1.2247357, 0.0, 1.2247357]], rtol=0, atol=1e-7)
    assert y1[0, 1] == 0.0 and abs(y1[0, 0]) < r  # eps only shrinks
    y = core.layer_norm(x, gm, bt, eps=0.0)
    rows = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 13.0]])  # xhat: [-r, 0, r], [-s, -s, 2s]
    s = 1 / math.sqrt(2)
    got, gx, gg, gb = run([y, *core.gradients(y, [x, gm, bt])], {x: rows, gm: ones, bt: zeros})
    np.testing.assert_allclose(got, [[-r, 0, r], [-s, -s, 2 * s]], rtol=0, atol=1e-15)
    # a normalised row sums to 0 whatever x is, so d sum(y) / dx = 0; d sum(y) / d gamma is
    # xhat summed over the rows; beta is added once per row
    np.testing.assert_allclose(gx, 0.0, atol=1e-14)
    np.testing.assert_allclose(gg, [-r - s, -s, r + 2 * s], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(gb, [2.0, 2.0, 2.0])


def test_layer_norm_gamma_of_wrong_size_is_a_shape_error():
    x, gm, bt = core.Variable("x"), core.Variable("g"), core.Variable("b")
    with pytest.raises(ShapeError, match=r"layer_norm gamma of shape \(4,\) does not match the "
                       r"last axis of \(2, 3, 5\): expected \(5,\)"):
        run([core.layer_norm(x, gm, bt)], {x: rand(2, 3, 5), gm: np.ones(4), bt: np.zeros(5)})
    with pytest.raises(ShapeError, match=r"layer_norm beta of shape \(5, 1\)"):
        run([core.layer_norm(x, gm, bt)], {x: rand(2, 3, 5), gm: np.ones(5), bt: np.zeros((5, 1))})


def test_layer_norm_second_order_is_refused_by_name():
    x, gm, bt = core.Variable("x"), core.Variable("g"), core.Variable("b")
    (gx,) = core.gradients(core.reduce_sum(core.layer_norm(x, gm, bt) ** 2), [x])
    with pytest.raises(GraphError, match="layer_norm_grad has no gradient"):
        core.gradients(core.reduce_sum(gx), [x])


# ---- GELU -----------------------------------------------------------------------------------

GELU_X = np.linspace(-4.0, 4.0, 17).reshape(1, 17) + np.array([[0.0], [0.013]])  # (2, 17)


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf_exact(x):
    return np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(x)


def test_gelu_tanh_form():
    _, _, got = evaluate(lambda x: core.gelu(x, "tanh"), [GELU_X])
    np.testing.assert_allclose(got, np_gelu_tanh(GELU_X), rtol=1e-13, atol=1e-15)
    check_grad(lambda x: core.gelu(x, "tanh"), [GELU_X], [0])


def test_gelu_erf_form():
    _, _, got = evaluate(lambda x: core.gelu(x, "erf"), [GELU_X])
    # Loom's erf is Abramowitz-Stegun 7.1.26, |error| < 1.5e-7, so gelu is off by at most
    # |x| / 2 * 1.5e-7 (under 2e-7 for |x| <= 2.6)
    error = np.abs(got - gelu_erf_exact(GELU_X))
    assert (error <= np.abs(GELU_X) / 2 * 1.5e-7 + 1e-16).all(), error.max()
    assert error[np.abs(GELU_X) <= 2.5].max() < 2e-7
    # gradient: the exact Phi(x) + x phi(x), up to the same erf error; and the numeric
    # derivative of Loom's own forward (whose erf's slope differs slightly from the true one)
    xs = [core.Variable("x")]
    (gx,) = run(core.gradients(core.gelu(xs[0], "erf"), xs), {xs[0]: GELU_X})
    exact = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))
                         + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi))(GELU_X)
    np.testing.assert_allclose(gx, exact, rtol=0, atol=2e-7)
    check_grad(lambda x: core.gelu(x, "erf"), [GELU_X], [0], rtol=0, atol=2e-6)


@pytest.mark.parametrize("form", ["tanh", "erf"])
def test_gelu_grad_op_and_exact_points(form):
    x, g = GELU_X, rand(*GELU_X.shape)
    f = np_gelu_tanh if form == "tanh" else gelu_erf_exact
    _, _, got = evaluate(
        lambda xv, yv, gv: core.Node("gelu_grad", [xv, yv, gv], {"approximate": form}), [x, f(x), g])
    h = 1e-6
    np.testing.assert_allclose(got, g * (f(x + h) - f(x - h)) / (2 * h), rtol=0, atol=2e-6)
    # exact: gelu(0) = 0 and gelu'(0) = 1/2; gelu(x) - gelu(-x) = x
    v = core.Variable("v")
    y = core.gelu(v, form)
    vals, gv = run([y, *core.gradients(y, [v])], {v: np.array([0.0, 3.0, -3.0])})
    assert vals[0] == 0.0 and gv[0] == 0.5
    assert abs((vals[1] - vals[2]) - 3.0) < 1e-15


@pytest.mark.parametrize("form", ["tanh", "erf"])
def test_gelu_gradient_stays_finite_far_out_in_float32(form):
    """Far below zero exp(-2u) overflows float32 (x < about -10): the gradient there is 0,
    not inf * 0 = NaN; far above it is 1."""
    x = core.Variable("x")
    y = core.gelu(x, form)
    values = np.array([-200.0, -60.0, -12.0, -10.5, 0.0, 12.0, 60.0], np.float32)
    got, grad = run([y, *core.gradients(y, [x])], {x: values})
    assert np.isfinite(got).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [0, 0, 0, 0, 0.5, 1, 1], atol=1e-6)


def test_gelu_unknown_form_is_refused():
    with pytest.raises(ValueError, match="approximate must be one of"):
        core.gelu(core.Variable("x"), "sigmoid")


# ---- batched matmul ---------------------------------------------------------------------------

def _t(x, flag):
    return np.swapaxes(x, -1, -2) if flag else x


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_batched_matmul_all_transpose_flags(ta, tb):
    a = rand(*((2, 2, 4, 3) if ta else (2, 2, 3, 4)))
    b = rand(*((2, 2, 2, 4) if tb else (2, 2, 4, 2)))

    def build(x, y):
        return core.matmul(x, y, trans_A=ta, trans_B=tb)
    _, _, got = evaluate(build, [a, b])
    ref = np.einsum("bhik,bhkj->bhij", _t(a, ta), _t(b, tb))
    assert got.shape == (2, 2, 3, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    check_grad(build, [a, b], [0, 1])


@pytest.mark.parametrize("sa, sb, out", [((2, 2, 3, 4), (4, 5), (2, 2, 3, 5)),
                                         ((3, 4), (2, 2, 4, 5), (2, 2, 3, 5)),
                                         ((2, 1, 3, 4), (1, 2, 4, 2), (2, 2, 3, 2))])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, True)])
def test_batched_matmul_broadcasts_and_sums_gradients_back(sa, sb, out, ta, tb):
    """sa, sb: the operands' shapes as multiplied (before the flags' transposes)."""
    a, b = _t(rand(*sa), ta), _t(rand(*sb), tb)

    def build(x, y):
        return core.matmul(x, y, trans_A=ta, trans_B=tb)
    _, _, got = evaluate(build, [a, b])
    assert got.shape == out
    np.testing.assert_allclose(got, np.matmul(_t(a, ta), _t(b, tb)), rtol=1e-12, atol=1e-13)
    check_grad(build, [a, b], [0, 1])


def test_batched_matmul_exact():
    m = np.array([[1.0, 2.0], [3.0, 4.0]])
    n = np.array([[5.0, 6.0], [7.0, 8.0]])
    a = np.stack([m, 2 * m])[None]  # (1, 2, 2, 2)
    x, y = core.Variable("x"), core.Variable("y")
    want = {(False, False): [[19, 22], [43, 50]], (True, False): [[26, 30], [38, 44]],
            (False, True): [[17, 23], [39, 53]], (True, True): [[23, 31], [34, 46]]}
    for (ta, tb), first in want.items():
        (got,) = run([core.matmul(x, y, trans_A=ta, trans_B=tb)], {x: a, y: n})
        np.testing.assert_array_equal(got[0, 0], first)
        np.testing.assert_array_equal(got[0, 1], 2 * np.array(first))
    # the gradient towards the shared (2, 2) operand sums over the batch: (m + 2m)^T @ ones
    z = core.matmul(x, y)
    (gy,) = run(core.gradients(z, [y]), {x: a, y: n})
    np.testing.assert_array_equal(gy, [[12, 12], [18, 18]])


def test_batched_matmul_shape_errors():
    x, y = core.Variable("x"), core.Variable("y")
    with pytest.raises(ShapeError, match=r"matmul inner dimensions differ: \(2, 3, 4\) @ "
                       r"\(2, 5, 6\) \(4 vs 5\)"):
        run([core.matmul(x, y)], {x: rand(2, 3, 4), y: rand(2, 5, 6)})
    with pytest.raises(ShapeError, match=r"\(2, 3, 4\)ᵀ @ \(2, 4, 6\) \(3 vs 4\)"):
        run([core.matmul(x, y, trans_A=True)], {x: rand(2, 3, 4), y: rand(2, 4, 6)})
    with pytest.raises(ShapeError, match=r"matmul batch axes of \(2, 3, 4\) and \(3, 4, 5\) "
                       r"do not broadcast"):
        run([core.matmul(x, y)], {x: rand(2, 3, 4), y: rand(3, 4, 5)})


# ---- softmax / log_softmax on a 4-D input -------------------------------------------------------

X4 = rand(2, 2, 3, 4)


def test_softmax_and_log_softmax_last_axis_of_4d():
    _, _, got = evaluate(lambda x: core.softmax(x, axis=-1), [X4])
    np.testing.assert_allclose(got, np_softmax(X4), rtol=1e-13, atol=1e-15)
    _, _, got = evaluate(lambda x: core.log_softmax(x, axis=-1), [X4])
    np.testing.assert_allclose(got, X4 - np.log(np.exp(X4).sum(-1, keepdims=True)),
                               rtol=1e-12, atol=1e-13)
    check_grad(lambda x: core.softmax(x, axis=-1), [X4], [0])
    check_grad(lambda x: core.log_softmax(x, axis=-1), [X4], [0])


def test_softmax_4d_exact():
    x = np.zeros((1, 2, 2, 4))
    x[0, 1, 1] = [0.0, -np.inf, -np.inf, -np.inf]
    v = core.Variable("v")
    s, ls = run([core.softmax(v), core.log_softmax(v)], {v: x})
    np.testing.assert_array_equal(s[0, 0], np.full((2, 4), 0.25))
    np.testing.assert_array_equal(s[0, 1, 1], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(ls[0, 0], -np.log(4.0), rtol=0, atol=1e-15)


# ---- softmax cross-entropy and accuracy on (N, T, V) ---------------------------------------------

LOGITS = rand(2, 3, 5)
IDS = np.array([[0, 4, 2], [2, 2, 1]])


def np_sce(logits, ids):
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.mean([logp[n, t, ids[n, t]] for n in range(2) for t in range(3)])


def test_sce_sequence_with_ids_and_one_hot():
    _, _, got = evaluate(core.softmax_cross_entropy, [LOGITS, IDS])
    assert got.shape == ()
    np.testing.assert_allclose(got, np_sce(LOGITS, IDS), rtol=1e-13)
    onehot = np.eye(5)[IDS]
    _, _, got1 = evaluate(core.softmax_cross_entropy, [LOGITS, onehot])
    np.testing.assert_allclose(got1, np_sce(LOGITS, IDS), rtol=1e-13)
    check_grad(core.softmax_cross_entropy, [LOGITS, IDS], [0])
    check_grad(core.softmax_cross_entropy, [LOGITS, onehot], [0])


def test_sce_sequence_second_order():
    """The gradient of the gradient goes through batch_mean_grad(rows=True): every row of
    N*T counts, not the batch N."""
    def build(x, y):
        (g,) = core.gradients(core.softmax_cross_entropy(x, y), [x])
        return g
    check_grad(build, [LOGITS, IDS], [0])


def test_batch_mean_grad_rows_divides_by_every_row():
    g, x = rand(2, 3, 5), rand(2, 3, 5)
    _, _, got = evaluate(lambda gv, xv: core.ops.nn.batch_mean_grad(gv, xv, rows=True), [g, x])
    np.testing.assert_allclose(got, g / 6, rtol=1e-15)
    _, _, got = evaluate(lambda gv, xv: core.ops.nn.batch_mean_grad(gv, xv), [g, x])
    np.testing.assert_allclose(got, g / 2, rtol=1e-15)


def test_sce_sequence_exact():
    x, y = core.Variable("x"), core.Variable("y")
    loss = core.softmax_cross_entropy(x, y)
    val, gx = run([loss, *core.gradients(loss, [x])],
                  {x: np.zeros((1, 2, 4)), y: np.array([[1, 3]])})
    np.testing.assert_allclose(val, np.log(4.0), rtol=0, atol=1e-15)
    # (softmax - onehot) / rows: 1/4 / 2 and (1/4 - 1) / 2, exact in binary
    np.testing.assert_array_equal(gx, [[[0.125, -0.375, 0.125, 0.125],
                                        [0.125, 0.125, 0.125, -0.375]]])


def test_sce_labels_of_wrong_shape_are_a_shape_error():
    x, y = core.Variable("x"), core.Variable("y")
    with pytest.raises(ShapeError, match=r"labels \(2, 4\) fit neither ids \(2, 3\) nor one-hot "
                       r"\(2, 3, 5\)"):
        run([core.softmax_cross_entropy(x, y)], {x: LOGITS, y: np.zeros((2, 4), dtype=np.int64)})


def test_accuracy_sequence():
    _, _, got = evaluate(core.accuracy, [LOGITS, IDS])
    np.testing.assert_allclose(got, np.mean(LOGITS.argmax(-1) == IDS), rtol=1e-15)
    _, _, got1 = evaluate(core.accuracy, [LOGITS, np.eye(5)[IDS]])
    assert got1 == got
    # exact: 3 of the 4 positions right
    logits = np.zeros((2, 2, 3))
    logits[0, 0, 2] = logits[0, 1, 0] = logits[1, 0, 1] = logits[1, 1, 1] = 1.0
    _, _, acc = evaluate(core.accuracy, [logits, np.array([[2, 0], [1, 2]])])
    assert acc == 0.75


# ---- a causal attention pattern ------------------------------------------------------------------

def attention(q, k, v, length):
    scores = core.matmul(q, k, trans_B=True)
    weights = core.softmax(core.where(core.causal_mask(length), scores, float("-inf")), axis=-1)
    return weights, core.matmul(weights, v)


def test_causal_attention_weights_and_gradients():
    q, k, v = rand(1, 2, 4, 3), rand(1, 2, 4, 3), rand(1, 2, 4, 3)
    _, w, out = evaluate(lambda a, b, c: attention(a, b, c, 4)[0], [q, k, v])
    above = np.triu(np.ones((4, 4), dtype=bool), 1)
    assert (out[..., above] == 0.0).all()  # exactly 0, not merely small
    assert (out[..., ~above] > 0).all()
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-14)
    scores = q @ np.swapaxes(k, -1, -2)
    ref = np_softmax(np.where(~above, scores, -np.inf))
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(out[..., 0, 0], 1.0)  # the first position sees only itself
    check_grad(lambda a, b, c: attention(a, b, c, 4)[1], [q, k, v], [0, 1, 2])


def test_a_causal_mask_is_applied_in_the_scores_own_buffer_with_the_same_bits():
    """where(mask, scores, -inf) may compute in place of the scores (its input a) where they
    die there: only the masked places are written, and the values equal a fresh buffer's."""
    q = core.Variable("q")
    scores = core.matmul(q, core.ops.transpose(q, (0, 2, 1)))
    masked = core.where(core.causal_mask(5), scores, -np.inf)
    probs = core.ops.softmax(masked, axis=-1)
    feed = {q: rand(2, 5, 3)}
    ex = core.Executor([probs])
    (got,) = ex.run(feed)
    plan = ex.plan
    assert plan.buffers[masked] is plan.buffers[scores]
    (want,) = core.Executor([probs], inplace=False).run(feed)
    assert got.tobytes() == want.tobytes()
    assert np.all(got[:, np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] == 0)
