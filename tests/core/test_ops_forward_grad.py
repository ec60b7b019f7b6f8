"""Every op: forward against a plain numpy reference, gradient against central differences
in float64 (checking d/dx of sum(y * r) for a fixed random r, over several shapes)."""
import numpy as np
import pytest

import core
from core.ops import OPS

RNG = np.random.default_rng(0)


def rand(*shape, positive=False):
    x = RNG.standard_normal(shape)
    return np.abs(x) + 0.5 if positive else x


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _im2col_conv(x, w, s, p):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, c, h, wd = xp.shape
    o, _, k, _ = w.shape
    oh, ow = (h - k) // s + 1, (wd - k) // s + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def _at_window_max(x, g):
    """g at the maximum of each 2×2 window of x (stride 2)."""
    n, c, h, w = x.shape

    def windows(a):
        return a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    first_max = windows(x).argmax(-1)[..., None]
    return np.take_along_axis(windows(g), first_max, -1)[..., 0]


def _pool(x, k, s, fn):
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = fn(x[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return out


def _scatter(g, ids, shape):
    out = np.zeros(shape)
    np.add.at(out, ids, g)
    return out


def _layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def _lrn(x, size, alpha, beta, bias):
    """ONNX's definition: the window of channel c is c - floor((size-1)/2) .. c + ceil((size-1)/2)."""
    sq, out = x * x, np.zeros_like(x)
    for c in range(x.shape[1]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[1], c + size // 2 + 1)
        out[:, c] = x[:, c] / (bias + alpha / size * sq[:, lo:hi].sum(1)) ** beta
    return out


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _bucket(fraction, grads):
    """A bucket's start, wait and last part, on a fed fraction (one process: the sum is the
    rank's own scaled gradients)."""
    channel, shapes = {}, [(3, 4), (4,)][:len(grads)] if len(grads) > 1 else [(12,)]
    start = core.Node("allreduce_start", [fraction, *grads], {"shapes": tuple(shapes), "_channel": channel})
    wait = core.Node("allreduce_wait", [start], {"_channel": channel})
    return start, wait, core.Node("bucket_part", [wait], {"offset": 12, "shape": (4,)})


# name -> list of (builder(*vars) -> node, input arrays, reference(*arrays) -> array, differentiable)
def cases():
    c = {}
    a34, b4, b34 = rand(3, 4), rand(4), rand(3, 4)
    p34 = rand(3, 4, positive=True)
    c["add"] = [(lambda x, y: x + y, [a34, b4], lambda x, y: x + y, True),
                (lambda x, y: x + y, [rand(2, 1, 3), rand(4, 1)], lambda x, y: x + y, True)]
    c["sub"] = [(lambda x, y: x - y, [a34, b34], lambda x, y: x - y, True),
                (lambda x: 3 - x, [a34], lambda x: 3 - x, True)]
    c["mul"] = [(lambda x, y: x * y, [rand(2, 1, 3), rand(4, 1)], lambda x, y: x * y, True),
                (lambda x: 2.5 * x, [a34], lambda x: 2.5 * x, True)]
    c["div"] = [(lambda x, y: x / y, [a34, rand(4, positive=True)], lambda x, y: x / y, True),
                (lambda x: 2 / x, [p34], lambda x: 2 / x, True)]
    c["neg"] = [(lambda x: -x, [a34], lambda x: -x, True)]
    c["relu"] = [(core.relu, [a34], lambda x: np.maximum(x, 0), True)]
    c["sigmoid"] = [(core.sigmoid, [a34 * 3], lambda x: 1 / (1 + np.exp(-x)), True)]
    c["tanh"] = [(core.tanh, [a34], np.tanh, True)]
    c["exp"] = [(core.exp, [a34], np.exp, True)]
    c["log"] = [(core.log, [p34], np.log, True)]
    c["sqrt"] = [(core.sqrt, [p34], np.sqrt, True)]
    c["power"] = [(lambda x: x ** 3, [a34], lambda x: x ** 3, True),
                  (lambda x: x ** 0.5, [p34], np.sqrt, True)]
    c["matmul"] = [(lambda x, y, ta=ta, tb=tb: core.matmul(x, y, trans_A=ta, trans_B=tb),
                    [rand(*((4, 3) if ta else (3, 4))), rand(*((5, 4) if tb else (4, 5)))],
                    (lambda ta, tb: lambda x, y: (x.T if ta else x) @ (y.T if tb else y))(ta, tb), True)
                   for ta in (False, True) for tb in (False, True)]
    c["matmul"] += [(lambda x, y: core.matmul(x, y, trans_B=True), [rand(2, 3, 4, 5), rand(2, 3, 2, 5)],
                     lambda x, y: x @ y.swapaxes(-1, -2), True),
                    (core.matmul, [rand(2, 3, 4), rand(4, 5)], lambda x, y: x @ y, True),
                    (lambda x, y: core.matmul(x, y, trans_A=True), [rand(4, 3), rand(2, 1, 4, 5)],
                     lambda x, y: x.T @ y, True)]
    c["softmax"] = [(lambda x: core.softmax(x, axis=-1), [a34], _softmax, True),
                    (lambda x: core.softmax(x, axis=0), [a34], lambda x: _softmax(x, 0), True)]
    c["softmax_grad"] = [  # its own gradient too: the second order through softmax
        (lambda y, g: core.Node("softmax_grad", [y, g], {"axis": -1}), [_softmax(a34), b34],
         lambda y, g: y * (g - (g * y).sum(-1, keepdims=True)), True),
        (lambda y, g: core.Node("softmax_grad", [y, g], {"axis": 0}), [_softmax(a34, 0), b34],
         lambda y, g: y * (g - (g * y).sum(0, keepdims=True)), True)]
    c["log_softmax"] = [(core.log_softmax, [a34], lambda x: np.log(_softmax(x)), True)]
    labels = np.array([0, 3, 1])
    onehot = np.eye(4)[labels]
    ref_ce = lambda x, y: -np.mean(np.log(_softmax(x))[np.arange(3), labels])  # noqa: E731
    c["softmax_cross_entropy"] = [
        (lambda x, y: core.softmax_cross_entropy(x, y), [a34, labels], ref_ce, True),
        (lambda x, y: core.softmax_cross_entropy(x, y), [a34, onehot], ref_ce, True)]
    c["softmax_cross_entropy_grad"] = [
        (lambda x, y, g: core.Node("softmax_cross_entropy_grad", [x, y, g]), [a34, labels, np.array(2.0)],
         lambda x, y, g: (_softmax(x) - onehot) * g / 3, True)]
    c["reduce_sum"] = [(lambda x: core.reduce_sum(x), [a34], np.sum, True),
                       (lambda x: core.reduce_sum(x, axis=0, keepdims=True), [a34],
                        lambda x: x.sum(0, keepdims=True), True),
                       (lambda x: core.reduce_sum(x, axis=(0, 2)), [rand(2, 3, 4)], lambda x: x.sum((0, 2)), True)]
    c["reduce_mean"] = [(lambda x: core.reduce_mean(x, axis=1), [a34], lambda x: x.mean(1), True),
                        (lambda x: core.reduce_mean(x), [a34], np.mean, True)]
    c["broadcast_to"] = [(lambda x: core.broadcast_to(x, (3, 4)), [b4], lambda x: np.broadcast_to(x, (3, 4)), True),
                         (lambda x: core.broadcast_to(x, (2, 3, 4)), [rand(3, 1)],
                          lambda x: np.broadcast_to(x, (2, 3, 4)), True)]
    c["sum_to_like"] = [(lambda g, x: core.ops.sum_to_like(g, x), [a34, b4], lambda g, x: g.sum(0), True)]
    c["broadcast_like"] = [(lambda g, x: core.ops.broadcast_like(g, x), [b4, a34],
                            lambda g, x: np.broadcast_to(g, x.shape), True)]
    c["expand_like"] = [(lambda g, x: core.ops.expand_like(g, x, axis=1, keepdims=False), [rand(3), a34],
                         lambda g, x: np.broadcast_to(g[:, None], x.shape), True)]
    c["reshape"] = [(lambda x: core.reshape(x, (2, -1)), [a34], lambda x: x.reshape(2, 6), True)]
    c["reshape_like"] = [(lambda x, r: core.ops.reshape_like(x, r), [a34, rand(6, 2)],
                          lambda x, r: x.reshape(6, 2), True)]
    c["transpose"] = [(core.transpose, [a34], np.transpose, True),
                      (lambda x: core.transpose(x, (1, 2, 0)), [rand(2, 3, 4)],
                       lambda x: x.transpose(1, 2, 0), True)]
    c["concat"] = [(lambda x, y: core.concat([x, y], axis=1), [a34, rand(3, 2)],
                    lambda x, y: np.concatenate([x, y], 1), True)]
    c["concat_part"] = [(lambda g, x, y: core.Node("concat_part", [g, x, y], {"axis": 1, "index": 1}),
                         [rand(3, 6), a34, rand(3, 2)], lambda g, x, y: g[:, 4:], True)]
    c["slice"] = [(lambda x: core.slice(x, (1, 0), (3, 2)), [a34], lambda x: x[1:3, 0:2], True)]
    c["slice_grad"] = [(lambda g, x: core.Node("slice_grad", [g, x], {"begin": (1,), "end": (3,)}),
                        [rand(2, 4), a34], lambda g, x: np.concatenate([np.zeros((1, 4)), g, np.zeros((0, 4))]), True)]
    c["oneslike"] = [(core.oneslike, [a34], np.ones_like, False)]
    c["zeroslike"] = [(core.zeroslike, [a34], np.zeros_like, False)]
    c["relu_grad"] = [(lambda x, g: core.Node("relu_grad", [x, g]), [a34, b34], lambda x, g: g * (x > 0), True)]
    c["sigmoid_grad"] = [(lambda y, g: core.Node("sigmoid_grad", [y, g]), [a34, b34],
                          lambda y, g: g * y * (1 - y), True)]
    c["tanh_grad"] = [(lambda y, g: core.Node("tanh_grad", [y, g]), [a34, b34],
                       lambda y, g: g * (1 - y * y), True)]
    c["argmax"] = [(core.argmax, [a34], lambda x: x.argmax(-1), False)]
    c["accuracy"] = [(core.accuracy, [a34, labels], lambda x, y: np.mean(x.argmax(1) == y), False)]
    c["dropout_mask"] = [(lambda x: core.Node("dropout_mask", [x], {"rate": 0.0, "seed": 1}), [a34],
                          np.ones_like, False)]
    x4, w4 = rand(2, 3, 7, 7), rand(4, 3, 3, 3)
    c["conv2d"] = [(lambda x, w, s=s, p=p: core.conv2d(x, w, stride=s, padding=p), [x4, w4],
                    (lambda s, p: lambda x, w: _im2col_conv(x, w, s, p))(s, p), True)
                   for s, p in ((1, 0), (2, 1))]
    gy = rand(2, 4, 5, 5)
    c["conv2d_grad_input"] = [(lambda g, w, x: core.Node("conv2d_grad_input", [g, w, x], {"stride": 1, "padding": 0}),
                               [gy, w4, x4], None, True)]
    c["conv2d_grad_weight"] = [(lambda g, x, w: core.Node("conv2d_grad_weight", [g, x, w], {"stride": 1, "padding": 0}),
                                [gy, x4, w4], None, True)]
    xp = rand(2, 3, 6, 6)
    c["max_pool2d"] = [(lambda x: core.max_pool2d(x, 2), [xp], lambda x: _pool(x, 2, 2, np.max), True),
                       (lambda x: core.max_pool2d(x, 3, 1), [xp], lambda x: _pool(x, 3, 1, np.max), True)]
    c["avg_pool2d"] = [(lambda x: core.avg_pool2d(x, 2), [xp], lambda x: _pool(x, 2, 2, np.mean), True),
                       (lambda x: core.avg_pool2d(x, 3, 1), [xp], lambda x: _pool(x, 3, 1, np.mean), True)]
    c["max_pool2d_grad"] = [(lambda x, y, g: core.Node("max_pool2d_grad", [x, y, g], {"kernel": 2, "stride": 2, "padding": 0}),
                             [xp, _pool(xp, 2, 2, np.max), rand(2, 3, 3, 3)], None, True)]
    gx = rand(2, 3, 6, 6)
    c["max_pool2d_grad_transpose"] = [
        (lambda x, y, g: core.Node("max_pool2d_grad_transpose", [x, y, g], {"kernel": 2, "stride": 2, "padding": 0}),
         [xp, _pool(xp, 2, 2, np.max), gx], lambda x, y, g: _at_window_max(x, g), True)]
    c["batch_mean_grad"] = [(lambda g, x: core.ops.nn.batch_mean_grad(g, x), [b4, a34], lambda g, x: g / 3, True)]
    c["avg_pool2d_grad"] = [(lambda g, x: core.Node("avg_pool2d_grad", [g, x], {"kernel": 2, "stride": 2, "padding": 0}),
                             [rand(2, 3, 3, 3), xp], None, True)]
    # sequence-model ops (more cases, exact ones included, in test_sequence_ops.py)
    table, ids = rand(5, 3), np.array([[0, 4, 0], [2, 2, 1]])
    c["gather"] = [(core.gather, [table, ids], lambda t, i: t[i], True),
                   (lambda t, i: core.gather(t, i, axis=1), [rand(2, 5), ids], lambda t, i: np.take(t, i, 1), True)]
    c["gather_grad"] = [(lambda g, i, t: core.Node("gather_grad", [g, i, t], {"axis": 0}),
                         [rand(2, 3, 3), ids, table], lambda g, i, t: _scatter(g, i, t.shape), True)]
    cond = rand(3, 4) > 0
    c["where"] = [(core.where, [cond, a34, b4], lambda m, a, b: np.where(m, a, b), True)]
    x3, gam, bet = rand(2, 3, 4), rand(4), rand(4)
    c["layer_norm"] = [(core.layer_norm, [x3, gam, bet], _layer_norm, True)]
    c["layer_norm_grad"] = [(lambda g, x, w: core.Node("layer_norm_grad", [g, x, w], {"eps": 1e-5}),
                             [rand(2, 3, 4), x3, gam], None, False)]
    c["layer_norm_gamma_grad"] = [(lambda g, x: core.Node("layer_norm_gamma_grad", [g, x], {"eps": 1e-5}),
                                   [rand(2, 3, 4), x3], lambda g, x: (g * _layer_norm(x, 1, 0)).sum((0, 1)), False)]
    c["gelu"] = [(lambda x: core.gelu(x, "tanh"), [a34], _gelu_tanh, True)]
    c["gelu_grad"] = [(lambda x, y, g: core.Node("gelu_grad", [x, y, g], {"approximate": "tanh"}),
                       [a34, _gelu_tanh(a34), b34], None, False)]
    # ops imported ONNX models need (more cases in tests/onnx)
    erf_ref = np.vectorize(__import__("math").erf)
    c["erf"] = [(core.ops.erf, [a34 * 2], erf_ref, True)]
    c["pow"] = [(core.ops.pow, [p34, b34], np.power, True),
                (core.ops.pow, [p34, rand(4)], np.power, True)]
    c["pad"] = [(lambda x: core.ops.pad(x, (1, 0, 2, 3), value=0.5), [a34],
                 lambda x: np.pad(x, ((1, 2), (0, 3)), constant_values=0.5), True),
                (lambda x: core.ops.pad(x, (0, 1, 0, 0, 2, 1), lowest=True), [rand(2, 3, 4)],
                 lambda x: np.pad(x, ((0, 0), (1, 2), (0, 1)), constant_values=-np.inf), False)]
    c["reduce_max"] = [(lambda x: core.ops.reduce_max(x, axis=1), [a34], lambda x: x.max(1), True),
                       (lambda x: core.ops.reduce_max(x, axis=(0, 2), keepdims=True), [rand(2, 3, 4)],
                        lambda x: x.max((0, 2), keepdims=True), True)]
    tied = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    c["reduce_max_grad"] = [(lambda g, x, y: core.Node("reduce_max_grad", [g, x, y], {"axis": 1, "keepdims": False}),
                             [np.array([2.0, 5.0]), tied, tied.max(1)],
                             lambda g, x, y: np.array([[0, 1.0, 1.0], [5.0, 0, 0]]), False)]
    xl = rand(2, 5, 3, 3)
    c["lrn"] = [(lambda x, s=s: core.ops.lrn(x, s, alpha=0.5, beta=0.75, bias=2.0), [xl],
                 (lambda s: lambda x: _lrn(x, s, 0.5, 0.75, 2.0))(s), True) for s in (3, 4)]
    c["lrn_grad"] = [(lambda x, g: core.Node("lrn_grad", [x, g], {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}),
                      [xl, rand(2, 5, 3, 3)], None, False)]
    # communication (data-parallel steps), in one process: the sum over one rank
    half, flat = np.array(0.5), rand(12)
    c["allreduce"] = [(lambda f, x: core.Node("allreduce", [f, x]), [half, a34], lambda f, x: x * f, True)]
    c["allreduce_start"] = [(lambda f, x, y: _bucket(f, [x, y])[0], [half, a34, b4],
                             lambda f, x, y: np.concatenate([x.ravel(), y]) * f, False)]
    c["allreduce_wait"] = [(lambda f, x: _bucket(f, [x])[1], [half, flat], lambda f, x: x * f, False)]
    c["bucket_part"] = [(lambda f, x, y: _bucket(f, [x, y])[2], [half, a34, b4],
                         lambda f, x, y: y * f, False)]
    for name, slots in (("sgd_update", 0), ("momentum_update", 1), ("nesterov_update", 1), ("adam_update", 2)):
        # the update's effect on its inputs is checked in test_optimizer_updates.py
        attrs = {"weight_decay": 0.0, "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
        c[name] = [((lambda name, attrs: lambda p, g, loss, h, *st: core.Node(name, [p, g, loss, h, *st], attrs))(name, attrs),
                    [rand(3, 4), rand(3, 4), np.float64(1.0), np.array([0.1]), *[np.zeros((3, 4)) for _ in range(slots)]],
                    None, False)]
    return c


CASES = cases()
SOURCES = {"placeholder", "parameter", "constant"}
# inputs that carry no gradient by definition (labels), or are read only for their shape
NO_GRAD_INPUTS = {"allreduce": {0}, "softmax_cross_entropy": {1}, "sum_to_like": {1}, "broadcast_like": {1},
                  "expand_like": {1}, "reshape_like": {1}, "concat_part": {1, 2},
                  "slice_grad": {1}, "avg_pool2d_grad": {1}, "conv2d_grad_input": {2},
                  "conv2d_grad_weight": {2}, "batch_mean_grad": {1},
                  # x and y only say where each window's maximum is (moving y breaks that)
                  "max_pool2d_grad": {0, 1}, "max_pool2d_grad_transpose": {0, 1}}
PARAMS = [(name, i) for name, cs in CASES.items() for i in range(len(cs))]


def test_every_op_has_a_case():
    missing = set(OPS) - SOURCES - set(CASES)
    assert not missing, f"ops without forward/gradient cases: {sorted(missing)}"


def _graph(builder, arrays):
    xs = [core.Variable(f"x{i}") for i in range(len(arrays))]
    return xs, builder(*xs)


@pytest.mark.parametrize("name, i", PARAMS)
def test_forward_matches_numpy(name, i):
    builder, arrays, ref, _ = CASES[name][i]
    xs, y = _graph(builder, arrays)
    got = core.Executor([y]).run(dict(zip(xs, arrays)))[0]
    if ref is not None:
        np.testing.assert_allclose(got, ref(*arrays), rtol=1e-10, atol=1e-12)
    assert got.shape == np.shape(got)


def _numeric_grad(f, arrays, k, eps=1e-6):
    x = arrays[k]
    g = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        hi = f()
        x[idx] = old - eps
        lo = f()
        x[idx] = old
        g[idx] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("name, i", [p for p in PARAMS if CASES[p[0]][p[1]][3]])
def test_gradient_matches_central_differences(name, i):
    builder, arrays, _, _ = CASES[name][i]
    arrays = [a.astype(np.float64).copy() if a.dtype.kind == "f" else a for a in arrays]
    xs, y = _graph(builder, arrays)
    r = np.random.default_rng(1).standard_normal(core.Executor([y]).run(dict(zip(xs, arrays)))[0].shape)
    objective = core.reduce_sum(y * core.constant(r))
    float_inputs = [k for k, a in enumerate(arrays)
                    if a.dtype.kind == "f" and k not in NO_GRAD_INPUTS.get(name, ())]
    grads = core.gradients(objective, [xs[k] for k in float_inputs])
    ex = core.Executor([objective, *grads])
    feed = dict(zip(xs, arrays))
    analytic = ex.run(feed)[1:]
    f = lambda: float(core.Executor([objective]).run(feed)[0])  # noqa: E731
    for k, got in zip(float_inputs, analytic):
        np.testing.assert_allclose(got, _numeric_grad(f, arrays, k), rtol=1e-5, atol=1e-6,
                                   err_msg=f"d/d input {k} of {name}")


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    x, y = core.Variable("x"), core.Variable("y")
    loss = core.softmax_cross_entropy(x, y)
    (g,) = core.gradients(loss, [x])
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]])
    val, grad = core.Executor([loss, g]).run({x: logits, y: np.array([0, 2])})
    assert np.isfinite(val) and np.isfinite(grad).all()
    np.testing.assert_allclose(val, (0 + np.log1p(np.e)) / 2)


def test_batch_norm_train_and_eval():
    x, gamma, beta = core.Variable("x"), core.Variable("g"), core.Variable("b")
    xv = rand(8, 3, 2, 2) * 3 + 1
    gv, bv = rand(3, 1, 1), rand(3, 1, 1)
    y = core.batch_norm(x, gamma, beta, training=True)
    got = core.Executor([y]).run({x: xv, gamma: gv, beta: bv})[0]
    mean = xv.mean((0, 2, 3), keepdims=True)
    var = xv.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(got, gv * (xv - mean) / np.sqrt(var + 1e-5) + bv, rtol=1e-10)
    rm, rv = core.Variable("rm"), core.Variable("rv")
    ye = core.batch_norm(x, gamma, beta, rm, rv, training=False)
    got = core.Executor([ye]).run({x: xv, gamma: gv, beta: bv, rm: mean[0], rv: var[0]})[0]
    np.testing.assert_allclose(got, gv * (xv - mean) / np.sqrt(var + 1e-5) + bv, rtol=1e-10)
    (gx,) = core.gradients(core.reduce_sum(y * core.constant(rand(8, 3, 2, 2))), [x])
    assert core.Executor([gx]).run({x: xv, gamma: gv, beta: bv})[0].shape == xv.shape


def test_dropout_train_eval_and_seed():
    x = core.Variable("x")
    ones = np.ones((200, 50))
    y = core.dropout(x, rate=0.3, seed=7)
    a = core.Executor([y]).run({x: ones})[0]
    assert abs((a > 0).mean() - 0.7) < 0.03
    np.testing.assert_allclose(a[a > 0], 1 / 0.7)
    b = core.Executor([core.dropout(x, rate=0.3, seed=7)]).run({x: ones})[0]
    np.testing.assert_array_equal(a, b)
    assert core.dropout(x, rate=0.3, training=False) is x


def test_mse():
    p, t = core.Variable("p"), core.Variable("t")
    pv, tv = rand(4, 3), rand(4, 3)
    loss = core.mse(p, t)
    val, gp = core.Executor([loss, *core.gradients(loss, [p])]).run({p: pv, t: tv})
    np.testing.assert_allclose(val, np.mean((pv - tv) ** 2))
    np.testing.assert_allclose(gp, 2 * (pv - tv) / pv.size)
