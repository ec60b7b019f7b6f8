"""The numpy backend's convolutions and pools (one strided copy per im2col, batches split over
threads, chunks the planner picks) give the bits of the plain xp-generic loops: for every
chunk size and thread count, in float32 and float64, with ties, NaN and -0 in the pools."""
import numpy as np
import pytest

from core.ops import cpu
from core.ops.base import OPS, scratch


class _GenericXP:
    """numpy behind a module that is not `numpy`: the ops take their xp-generic path (the one
    the stand-in device and cupy fallbacks run)."""

    def __getattr__(self, name):
        return getattr(np, name)


GENERIC = _GenericXP()
CONVS = [((9, 1, 12, 12), (4, 1, 5, 5), 1, 2), ((7, 3, 9, 8), (5, 3, 3, 3), 2, 1),
         ((6, 4, 7, 7), (8, 4, 3, 3), 1, 0), ((5, 2, 6, 6), (3, 2, 2, 2), 2, 0)]
POOLS = [((6, 3, 8, 8), 2, 2, 0), ((5, 2, 9, 8), 3, 2, 1), ((4, 3, 7, 7), 3, 1, 0), ((6, 2, 7, 7), 2, 2, 0)]


def _compute(op, xp, ins, attrs, out_shape, chunk=None):
    out = np.full(out_shape, np.nan, ins[0].dtype)
    opdef = OPS[op]
    ws = scratch(opdef.workspace, np, ins, attrs if chunk is None else {**attrs, "chunk": chunk}, out)
    for buf in ws.values():
        buf[...] = 3  # stale bytes from the arena's last tenant
    opdef.compute(xp, ins, attrs, out, ws)
    return out


@pytest.fixture
def threads(monkeypatch):
    def set_threads(n):
        monkeypatch.setenv("LOOM_CPU_THREADS", str(n))
        monkeypatch.setattr(cpu, "MIN_BYTES", 0)  # split even these small batches
    return set_threads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape,w_shape,stride,padding", CONVS)
def test_conv_ops_bitwise_for_every_chunk_and_thread_count(threads, dtype, x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    attrs = {"stride": stride, "padding": padding}
    y_shape = OPS["conv2d"].shape([x_shape, w_shape], attrs)
    gy = rng.standard_normal(y_shape).astype(dtype)
    cases = [("conv2d", [x, w], y_shape), ("conv2d_grad_input", [gy, w, x], x_shape),
             ("conv2d_grad_weight", [gy, x, w], w_shape)]
    n = x_shape[0]
    for op, ins, shape in cases:
        want = _compute(op, GENERIC, ins, attrs, shape)
        for count in (1, 2, 3):
            threads(count)
            for chunk in (None, 1, 2, 4, n):
                got = _compute(op, np, ins, attrs, shape, chunk)
                assert got.tobytes() == want.tobytes(), (op, count, chunk)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape,kernel,stride,padding", POOLS)
def test_max_pool_and_its_gradient_bitwise_with_ties_nan_and_signed_zeros(threads, dtype, x_shape,
                                                                          kernel, stride, padding):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(x_shape).astype(dtype)
    x[:, :, ::3, ::2] = 1.0  # ties: the first maximum takes the gradient
    x[0, 0, 0, 0] = np.nan
    x[-1, -1, 1, :] = -0.0
    attrs = {"kernel": kernel, "stride": stride, "padding": padding}
    y_shape = OPS["max_pool2d"].shape([x_shape], attrs)
    y = _compute("max_pool2d", GENERIC, [x], attrs, y_shape)
    gy = rng.standard_normal(y_shape).astype(dtype)
    gy[0, 0, :, 0] = -0.0
    dx = _compute("max_pool2d_grad", GENERIC, [x, y, gy], attrs, x_shape)
    for count in (1, 2, 3):
        threads(count)
        assert _compute("max_pool2d", np, [x], attrs, y_shape).tobytes() == y.tobytes()
        assert _compute("max_pool2d_grad", np, [x, y, gy], attrs, x_shape).tobytes() == dx.tobytes()


def test_split_runs_cover_the_range_in_order():
    assert cpu.split(0, 10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert cpu.split(4, 6, 8) == [(4, 5), (5, 6)]
    assert cpu.split(2, 3, 1) == [(2, 3)]


def test_errors_in_a_thread_reach_the_caller(threads):
    threads(2)

    def fail(lo, hi):
        if lo > 0:
            raise ValueError("run failed")
    with pytest.raises(ValueError, match="run failed"):
        cpu.for_each_run(fail, 0, 8)


def test_blas_threads_are_restored_after_a_convolution():
    controls = cpu._blas_controls()
    before = [c.num_threads for c in controls]
    x, w = np.ones((2, 1, 5, 5), np.float32), np.ones((1, 1, 3, 3), np.float32)
    _compute("conv2d", np, [x, w], {"stride": 1, "padding": 0}, (2, 1, 3, 3))
    assert [c.num_threads for c in controls] == before
