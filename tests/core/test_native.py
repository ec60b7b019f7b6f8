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
