"""The numpy backend's convolutions and pools give the bits of the plain xp-generic loops:
convolutions (one strided copy per im2col) at every chunk size the planner may pick, pools
(batches split over threads) for every thread count, in float32 and float64, with ties, NaN
and -0 in the pools."""
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
         ((6, 4, 7, 7), (8, 4, 3, 3), 1, 0), ((5, 2, 6, 6), (3, 2, 2, 2), 2, 0),
         # large images (per-sample GEMMs, sample-major columns): input gradient as a
         # convolution, and by GEMM + col2im (stride 2)
         ((3, 2, 24, 24), (3, 2, 3, 3), 1, 1), ((3, 2, 48, 48), (4, 2, 3, 3), 2, 1)]
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
def test_conv_ops_match_the_generic_path_at_every_chunk(dtype, x_shape, w_shape, stride, padding):
    """At one chunk size the numpy path (one strided copy per im2col) gives the generic
    path's bits; across chunk sizes (each a GEMM of another length) the results agree to
    float rounding, and the reference is an einsum over kernel offsets."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    attrs = {"stride": stride, "padding": padding}
    y_shape = OPS["conv2d"].shape([x_shape, w_shape], attrs)
    gy = rng.standard_normal(y_shape).astype(dtype)
    cases = [("conv2d", [x, w], y_shape), ("conv2d_grad_input", [gy, w, x], x_shape),
             ("conv2d_grad_weight", [gy, x, w], w_shape)]
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    for op, ins, shape in cases:
        for chunk in (None, 1, 2, 4, x_shape[0]):
            want = _compute(op, GENERIC, ins, attrs, shape, chunk)
            got = _compute(op, np, ins, attrs, shape, chunk)
            assert got.tobytes() == want.tobytes(), (op, chunk)
            exact = _reference(op, [v.astype(np.float64) for v in ins], stride, padding)
            np.testing.assert_allclose(got, exact, rtol=tolerance, atol=tolerance * 10, err_msg=op)


def _reference(op, ins, stride, padding):
    """conv2d and its two gradients by an einsum per kernel offset (float64)."""
    a, b, c = (*ins, None)[:3]
    def windows(x, k_shape):
        xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        oh = (x.shape[2] + 2 * padding - k_shape[2]) // stride + 1
        ow = (x.shape[3] + 2 * padding - k_shape[3]) // stride + 1
        for i in range(k_shape[2]):
            for j in range(k_shape[3]):
                yield i, j, xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    if op == "conv2d":
        return sum(np.einsum("ncyx,oc->noyx", win, b[:, :, i, j]) for i, j, win in windows(a, b.shape))
    if op == "conv2d_grad_weight":  # (gy, x, w)
        dw = np.zeros_like(c)
        for i, j, win in windows(b, c.shape):
            dw[:, :, i, j] = np.einsum("ncyx,noyx->oc", win, a)
        return dw
    gy, w, x = a, b, c  # grad_input: scatter each offset's contribution back
    h, wd = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    dxp = np.zeros((x.shape[0], x.shape[1], h, wd))
    oh, ow = gy.shape[2:]
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            dxp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += np.einsum(
                "noyx,oc->ncyx", gy, w[:, :, i, j])
    return dxp[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]


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
