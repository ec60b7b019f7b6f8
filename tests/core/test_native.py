"""The compiled CPU loops (core/ops/native.py) give numpy's bits: every optimizer rule, with
and without weight decay, and ReLU (NaN, -0, infinities), in float32 and float64, against
the numpy computation each replaces."""
import numpy as np
import pytest

from core.ops import OPS, native

RULES = {"sgd_update": ({}, 0), "momentum_update": ({"momentum": 0.9}, 1),
         "nesterov_update": ({"momentum": 0.9}, 1),
         "adam_update": ({"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, 2)}

pytestmark = pytest.mark.skipif(not native.available(), reason="numba is not installed")


def _update(name, attrs, arrays, dtype):
    p, g, *state = [a.copy() for a in arrays]
    OPS[name].compute(np, [p, g, np.array(1.0, dtype), np.array([3e-3], np.float32), *state],
                      attrs, np.empty((), dtype))
    return [p, *state]


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_update_rule_compiled_gives_the_numpy_rules_bits(monkeypatch, name, weight_decay, dtype):
    attrs, n_state = RULES[name]
    attrs = {**attrs, "weight_decay": weight_decay}
    rng = np.random.default_rng(1)
    # odd sizes (no vector-width multiple) and a zero second moment (Adam divides by ε there)
    arrays = [rng.standard_normal((37, 53)).astype(dtype) for _ in range(2 + n_state)]
    if name == "adam_update":
        arrays[3] = np.abs(arrays[3])
        arrays[3][0, :5] = 0
    calls = []
    real_kernel = native.kernel
    monkeypatch.setattr(native, "kernel", lambda n: calls.append(n) or real_kernel(n))
    monkeypatch.setenv("LOOM_NATIVE", "0")
    want = _update(name, attrs, arrays, dtype)
    assert calls == []
    monkeypatch.setenv("LOOM_NATIVE", "1")
    got = _update(name, attrs, arrays, dtype)
    assert calls == [name]  # the compiled loop ran
    for a, b in zip(got, want):
        assert a.tobytes() == b.tobytes()
    assert not np.array_equal(got[0], arrays[0])  # and it did update the parameter


def test_arrays_the_loops_do_not_take_stay_on_numpy():
    a = np.ones((4, 6), np.float32)
    assert native.usable(a, a)
    assert not native.usable(a[:, ::2], a[:, ::2])  # strided
    assert not native.usable(a, a.astype(np.float64))  # mixed dtypes
    assert not native.usable(a.astype(np.float16), a.astype(np.float16))


def test_a_numba_that_fails_to_import_leaves_the_numpy_rules(monkeypatch):
    monkeypatch.setattr(native, "_numba", False)  # as after an ImportError
    monkeypatch.setattr(native, "kernel", lambda name: pytest.fail("no compiled loop without numba"))
    attrs, _ = RULES["sgd_update"]
    p, g = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
    (got,) = _update("sgd_update", attrs, [p, g], np.float32)
    np.testing.assert_allclose(got, 1 - 3e-3 * 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_compiled_gives_numpys_maximum_bits(monkeypatch, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1001).astype(dtype)  # odd: a tail after the vector loop
    x[:7] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1e-40, 1e-40]  # 1e-40: subnormal in float32
    results = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("LOOM_NATIVE", flag)
        bound, computed = np.empty_like(x), np.empty_like(x)
        call = OPS["relu"].bind(np, [x], {}, bound)
        assert (getattr(call, "func", None) is native.kernel("relu")) == (flag == "1")
        call()
        OPS["relu"].compute(np, [x], {}, computed)
        results[flag] = bound, computed
    want = np.maximum(x, 0)
    for got in (*results["0"], *results["1"]):
        assert got.tobytes() == want.tobytes()
    assert not np.signbit(results["1"][0][1])  # max(-0, 0) is +0, as numpy gives


def _special_values(dtype, size=1001, scale=1.0, seed=3):
    """Random values (an odd count: a tail after the vector loop) led by the awkward ones."""
    x = (np.random.default_rng(seed).standard_normal(size) * scale).astype(dtype)
    x[:11] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1e-40, 1e-40, -11.0, 30.0, -1e30, 1e30]
    return x


def _native_and_numpy(monkeypatch, run):
    """run() under LOOM_NATIVE=0 and 1, counting the compiled loops the second one called."""
    calls = []
    real_kernel = native.kernel
    monkeypatch.setattr(native, "kernel", lambda n: calls.append(n) or real_kernel(n))
    monkeypatch.setenv("LOOM_NATIVE", "0")
    with np.errstate(all="ignore"):
        want = run()
    assert calls == []
    monkeypatch.setenv("LOOM_NATIVE", "1")
    with np.errstate(all="ignore"):
        got = run()
    return got, want, calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("into", ["apart", "y", "g"])
def test_relu_gradient_compiled_gives_numpys_bits_apart_and_in_place(monkeypatch, dtype, into):
    """g · (y > 0): numpy multiplies by the mask as 1 or 0, so a negative g where y <= 0
    gives -0 and a NaN g stays NaN; the planner may write the result over y or g."""
    y, g = _special_values(dtype), _special_values(dtype, seed=4)[::-1].copy()

    def run():
        ins = [y.copy(), g.copy()]
        out = {"apart": np.empty_like(y), "y": ins[0], "g": ins[1]}[into]
        OPS["relu_grad"].compute(np, ins, {}, out)
        return out
    got, want, calls = _native_and_numpy(monkeypatch, run)
    assert calls == [{"apart": "relu_grad", "y": "relu_grad_into_y", "g": "relu_grad_into_g"}[into]]
    assert got.tobytes() == want.tobytes()
    assert np.signbit(want[(y <= 0) & (g < 0)]).all()  # the -0 numpy gives, kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_in_place_takes_its_own_loop_with_the_same_bits(monkeypatch, dtype):
    x = _special_values(dtype)

    def run():
        a = x.copy()
        OPS["relu"].bind(np, [a], {}, a)()
        return a
    got, want, calls = _native_and_numpy(monkeypatch, run)
    assert calls == ["relu_inplace"]
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("into_y", [False, True])
def test_gelu_tanh_form_compiled_gives_numpys_bits(monkeypatch, dtype, into_y):
    """Forward (numpy's exp between two compiled loops) and gradient (one loop, apart or
    over y as the planner places it), on values where exp overflows (x far below 0), at 0
    (P = 1/2) and on NaN and infinities."""
    x, g = _special_values(dtype, scale=4.0), _special_values(dtype, seed=5)
    attrs = {"approximate": "tanh"}

    def run():
        y = np.empty_like(x)
        OPS["gelu"].compute(np, [x], attrs, y)
        ins = [x, y.copy(), g]
        out = ins[1] if into_y else np.empty_like(x)
        OPS["gelu_grad"].compute(np, ins, attrs, out)
        return y, out
    (y, dx), (want_y, want_dx), calls = _native_and_numpy(monkeypatch, run)
    assert calls == ["gelu_minus_two_u", "gelu_divide",
                     "gelu_tanh_grad_inplace" if into_y else "gelu_tanh_grad"]
    assert y.tobytes() == want_y.tobytes()
    assert dx.tobytes() == want_dx.tobytes()
    assert np.isfinite(want_dx[12:]).all()  # the ordinary values' gradients are numbers


def test_gelu_erf_form_stays_on_numpy(monkeypatch):
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    monkeypatch.setattr(native, "kernel", lambda n: pytest.fail("erf has no compiled loop"))
    y = np.empty_like(x)
    OPS["gelu"].compute(np, [x], {"approximate": "erf"}, y)
    np.testing.assert_allclose(y[[0, 50, 100]], [-3 * 0.0013499, 0.0, 3 * 0.9986501], atol=1e-5)


@pytest.mark.parametrize("native_flag", ["0", "1"])
def test_the_compiled_gradients_plan_no_scratch_and_the_numpy_rules_make_their_own(monkeypatch, native_flag):
    """GELU's and ReLU's gradients plan their numpy rule's scratch (two GELU-sized arrays, a
    mask) only where no compiled loop will run; a plan made with the loops and run without
    them (LOOM_NATIVE switched off afterwards) allocates that scratch itself."""
    import core
    monkeypatch.setenv("LOOM_NATIVE", native_flag)
    x = core.placeholder("x", (None, 6))
    w = core.parameter("w", (6, 6))
    loss = core.reduce_sum(core.relu(core.gelu(x @ w)))
    ex = core.Executor([loss, *core.gradients(loss, [w])], backend="numpy")
    feed = {x: np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6)}
    first = [np.array(v) for v in ex.run(feed)]
    planned = {n.op for n in ex._last.scratch}
    assert ("gelu_grad" in planned) == (native_flag == "0")
    assert ("relu_grad" in planned) == (native_flag == "0")
    monkeypatch.setenv("LOOM_NATIVE", "0")  # now the numpy rules run on that plan
    again = [np.array(v) for v in ex.run(feed)]
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shape,axes", [((3, 5, 4, 6), (0, 2, 1, 3)), ((5, 4, 6), (1, 0, 2)),
                                        ((2, 3, 4, 5, 6), (0, 1, 3, 2, 4))])
def test_a_swap_of_neighbouring_axes_is_a_compiled_copy_of_numpys_transposition(monkeypatch, shape, axes):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    x.reshape(-1)[:3] = [np.nan, -0.0, np.inf]
    calls = []
    real_kernel = native.kernel
    monkeypatch.setattr(native, "kernel", lambda n: calls.append(n) or real_kernel(n))
    out = np.empty(np.transpose(x, axes).shape, np.float32)
    OPS["transpose"].compute(np, [x], {"axes": axes}, out)
    assert calls == ["swap_axes"]
    assert out.tobytes() == np.ascontiguousarray(np.transpose(x, axes)).tobytes()


def test_other_transpositions_stay_on_numpy(monkeypatch):
    monkeypatch.setattr(native, "kernel", lambda n: pytest.fail("no compiled loop for these"))
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for axes in ((0, 2, 1), (2, 1, 0), None):  # the last axis moves, or three move
        out = np.empty(np.transpose(x, axes).shape, np.float32)
        OPS["transpose"].compute(np, [x], {"axes": axes}, out)
        assert np.array_equal(out, np.transpose(x, axes))


def test_planning_alone_does_not_import_numba():
    """`main.py plan` and the editor's checks plan without running: numba (a third of a
    second to import) stays out of them, while the plan still counts on the loops."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    code = ("import sys; from core.step import plan_report; from core import graphfile; "
            "r = plan_report(graphfile.load('resources/examples/shakespeare_char_gpt.loom.json'), 4); "
            "print('numba' in sys.modules, r['memory']['planned_bytes'] > 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in __import__("os").environ.items() if k != "LOOM_NATIVE"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
