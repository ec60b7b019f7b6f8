"""The compiled loops over rows (core/ops/native_loops.py) give the numpy rules' bits:
layer norm (core/ops/norm_ops.py: forward, input gradient, gamma gradient) and softmax over
the last axis with its gradient (core/ops/nn.py), in float32 and float64, for rows shorter
than one block of eight, one block of 128, and longer rows numpy sums in halves, with NaN,
infinities, subnormals, -0 and constant rows among them."""
import numpy as np
import pytest

import core
from core.ops import OPS, native

pytestmark = pytest.mark.skipif(not native.available(), reason="numba is not installed")

OPS_AND_INPUTS = {"layer_norm": ("x", "gamma", "beta"), "layer_norm_grad": ("g", "x", "gamma"),
                  "layer_norm_gamma_grad": ("g", "x")}


def _inputs(rows, width, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, width)) * 3 + 1).astype(dtype)
    x[1] = 2.5  # a constant row: variance 0, rstd = 1 / sqrt(eps)
    x[2] = -0.0
    if width > 3:
        x[3, :4] = [np.nan, np.inf, -1e-40, 1e-40]  # 1e-40: subnormal in float32
        x[4, 1] = -np.inf
    return {"x": x, "g": rng.standard_normal((rows, width)).astype(dtype),
            "gamma": rng.standard_normal(width).astype(dtype),
            "beta": rng.standard_normal(width).astype(dtype)}


def _run(op, arrays, into_x=False):
    ins = [arrays[k].copy() for k in OPS_AND_INPUTS[op]]
    x = ins[OPS_AND_INPUTS[op].index("x")]
    out = x if into_x else np.empty(x.shape[-1:] if op.endswith("gamma_grad") else x.shape, x.dtype)
    with np.errstate(all="ignore"):
        OPS[op].compute(np, ins, {"eps": 1e-5}, out)
    return out


def _same_bits(a, b) -> bool:
    """Bit for bit, where a NaN's sign may differ: rows with NaN and infinities mix NaNs of
    both signs (inf - inf gives x86's negative NaN), and which of two NaNs an add passes on
    depends on the operand order LLVM picks (IEEE leaves it open, and numpy promises none)."""
    nan = np.isnan(a)
    return (nan == np.isnan(b)).all() and a[~nan].tobytes() == b[~nan].tobytes()


def _native_and_numpy(monkeypatch, run):
    calls = []
    real_kernel = native.kernel
    monkeypatch.setattr(native, "kernel", lambda n: calls.append(n) or real_kernel(n))
    monkeypatch.setenv("LOOM_NATIVE", "0")
    want = run()
    assert calls == []
    monkeypatch.setenv("LOOM_NATIVE", "1")
    return run(), want, calls


@pytest.mark.parametrize("op", sorted(OPS_AND_INPUTS))
@pytest.mark.parametrize("width", [5, 8, 13, 128, 136, 300, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_layer_norm_loop_gives_the_numpy_rules_bits(monkeypatch, op, width, dtype):
    arrays = _inputs(7, width, dtype)  # 7 rows: the loops run rows in pairs, the last alone
    got, want, calls = _native_and_numpy(monkeypatch, lambda: _run(op, arrays))
    assert calls == [op]
    assert _same_bits(got, want)
    if op != "layer_norm_gamma_grad":  # (a column sum: every column meets a NaN row)
        assert np.isfinite(want[[0, 1, 2, 5, 6]]).all()  # rows without NaN or inf: numbers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_in_place_over_its_input_keeps_the_bits(monkeypatch, dtype):
    arrays = _inputs(9, 40, dtype)
    got, want, calls = _native_and_numpy(monkeypatch, lambda: _run("layer_norm", arrays, into_x=True))
    assert calls == ["layer_norm"]
    assert _same_bits(got, want) and _same_bits(got, _run("layer_norm", arrays))


def test_the_numpy_rules_sum_each_row_as_numpys_add_reduce_does():
    """The order the loops copy: add.reduce's pairwise summation (native.pairwise_tree),
    not einsum's, whose order depends on the SIMD width numpy runs."""
    x = np.random.default_rng(1).standard_normal((50, 1000)).astype(np.float32) * 1e3
    # 300 = 144 + 156 (the first half a multiple of 8), 144 = 72 + 72, 156 = 72 + 84
    assert native.pairwise_tree(300).tolist() == [[0, 72], [72, 72], [-1, 0], [144, 72],
                                                   [216, 84], [-1, 0], [-1, 0]]
    assert native.pairwise_tree(128).tolist() == [[0, 128]]
    out = _run("layer_norm", {"x": x, "gamma": np.ones(1000, np.float32), "beta": np.zeros(1000, np.float32)})
    mean = np.add.reduce(x, axis=-1, keepdims=True) / np.float32(1000)
    d = x - mean
    var = np.add.reduce(d * d, axis=-1, keepdims=True) * np.float32(1e-3)
    assert out.tobytes() == (d * (np.float32(1) / np.sqrt(var + np.float32(1e-5)))).tobytes()


def test_a_rank_one_input_and_other_dtypes_stay_on_numpy(monkeypatch):
    arrays = _inputs(5, 6, np.float32)
    want = _run("layer_norm", arrays)[0]
    half = {k: v.astype(np.float16) for k, v in arrays.items()}
    monkeypatch.setattr(native, "kernel", lambda n: pytest.fail("no compiled loop for these"))
    out = np.empty(6, np.float32)
    OPS["layer_norm"].compute(np, [arrays["x"][0], arrays["gamma"], arrays["beta"]], {"eps": 1e-5}, out)
    assert out.tobytes() == want.tobytes()
    assert np.isfinite(_run("layer_norm", half)[0]).all()


@pytest.mark.parametrize("native_flag", ["0", "1"])
def test_the_gamma_gradient_plans_scratch_only_for_the_numpy_rule(monkeypatch, native_flag):
    monkeypatch.setenv("LOOM_NATIVE", native_flag)
    x = core.placeholder("x", (None, 3, 8))
    gamma, beta = core.parameter("gamma", (8,)), core.parameter("beta", (8,))
    loss = core.reduce_sum(core.ops.gelu(core.layer_norm(x, gamma, beta)))
    ex = core.Executor([loss, *core.gradients(loss, [x, gamma, beta])], backend="numpy")
    feed = {x: np.random.default_rng(2).standard_normal((5, 3, 8)).astype(np.float32),
            gamma: np.linspace(0.5, 2, 8, dtype=np.float32), beta: np.zeros(8, np.float32)}
    first = [np.array(v) for v in ex.run(feed)]
    assert ("layer_norm_gamma_grad" in {n.op for n in ex._last.scratch}) == (native_flag == "0")
    monkeypatch.setenv("LOOM_NATIVE", "0")  # the numpy rule on a plan made for the loops
    again = [np.array(v) for v in ex.run(feed)]
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()


# ---- softmax over the last axis and its gradient ------------------------------------------------

def _scores(rows, width, dtype, seed=0):
    x = (np.random.default_rng(seed).standard_normal((rows, width)) * 5).astype(dtype)
    x[1, 0] = np.nan
    x[2] = -np.inf  # a row masked whole: NaN, as numpy gives
    x[3, 0] = np.inf
    x[4] = -0.0
    if width > 2:
        x[5, :2] = [-np.inf, 1e-40]  # a masked position and a subnormal
    return x


@pytest.mark.parametrize("width", [1, 5, 8, 64, 130, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("into_x", [False, True])
def test_softmax_loops_give_the_numpy_rules_bits(monkeypatch, width, dtype, into_x):
    x = _scores(7, width, dtype).reshape(7, 1, width)

    def run():
        a = x.copy()
        out = a if into_x else np.empty_like(a)
        with np.errstate(all="ignore"):
            OPS["softmax"].compute(np, [a], {"axis": -1}, out)
        return out
    got, want, calls = _native_and_numpy(monkeypatch, run)
    assert calls == ["softmax_shift", "softmax_divide"]
    assert _same_bits(got, want)
    assert np.isnan(want[[1, 2, 3]]).all() and np.isfinite(want[[0, 4, 6]]).all()
    np.testing.assert_allclose(want[[0, 4, 5, 6]].sum(-1), 1, rtol=1e-6)


@pytest.mark.parametrize("width", [1, 5, 64, 130])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("into_g", [False, True])
def test_softmax_gradient_loop_gives_the_numpy_rules_bits(monkeypatch, width, dtype, into_g):
    rng = np.random.default_rng(3)
    y = rng.dirichlet(np.ones(width), size=(3, 5)).astype(dtype)
    g = rng.standard_normal((3, 5, width)).astype(dtype)
    y[0, 0, 0], g[0, 1, 0], g[1, 1, -1] = np.nan, np.inf, -1e-40

    def run():
        ins = [y.copy(), g.copy()]
        out = ins[1] if into_g else np.empty_like(g)
        with np.errstate(all="ignore"):
            OPS["softmax_grad"].compute(np, ins, {"axis": -1}, out)
        return out
    got, want, calls = _native_and_numpy(monkeypatch, run)
    assert calls == ["softmax_grad"]
    assert _same_bits(got, want)
    assert np.isfinite(want[2]).all()
    np.testing.assert_allclose(want[2].sum(-1), 0, atol=1e-5)  # the sum of softmax stays 1


def test_softmax_along_another_axis_stays_on_numpy(monkeypatch):
    x = _scores(6, 4, np.float32)[[0, 4, 5], 1:].copy()  # no -inf, no NaN
    monkeypatch.setattr(native, "kernel", lambda n: pytest.fail("no compiled loop for this axis"))
    for op, ins in (("softmax", [x]), ("softmax_grad", [x, x])):
        out = np.empty_like(x)
        OPS[op].compute(np, ins, {"axis": 0}, out)
        assert np.isfinite(out).all()


# ---- where: a mask over the trailing axes and a scalar (attention's causal mask) ---------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("into_a", [False, True])
@pytest.mark.parametrize("fill", [-np.inf, 0.0])
def test_where_with_a_trailing_mask_is_a_compiled_copy_of_numpys(monkeypatch, dtype, into_a, fill):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 2, 7, 7)).astype(dtype)
    a.reshape(-1)[:5] = [np.nan, -0.0, np.inf, -np.inf, 1e-40]
    masks = [np.tri(7, dtype=bool), rng.random((7, 7)) > 0.5]

    def run():
        outs = []
        for mask in masks:
            ins = [mask, a.copy(), np.array(fill)]  # a float64 scalar, cast as numpy casts it
            out = ins[1] if into_a else np.empty_like(a)
            OPS["where"].compute(np, ins, {}, out)
            outs.append(out)
        return outs
    got, want, calls = _native_and_numpy(monkeypatch, run)
    assert calls == ["where_scalar_inplace" if into_a else "where_scalar"] * 2
    for g, w, mask in zip(got, want, masks):
        assert g.tobytes() == w.tobytes()
        assert g.tobytes() == np.where(mask, a, dtype(fill)).tobytes()


def test_other_wheres_stay_on_numpy(monkeypatch):
    a, b = np.arange(12.0).reshape(3, 4), np.full((3, 4), -1.0)
    monkeypatch.setattr(native, "kernel", lambda n: pytest.fail("no compiled loop for these"))
    for cond, other in (((a > 4)[:, :1], np.array(-1.0)),  # a mask broadcast along the last axis
                        (a > 4, b)):  # b an array
        out = np.empty_like(a)
        OPS["where"].compute(np, [cond, a, other], {}, out)
        assert out.tobytes() == np.where(cond, a, other).tobytes()
