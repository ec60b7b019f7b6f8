"""The GPU backend's host-side logic, checked without a device: the kernel cache, the
multi-stream wait plan, the cuBLAS argument mapping (against a column-major reference), and
the backend's refusal where no device is present."""
import numpy as np
import pytest

from core import backend as backends
from core.ops.base import OPS

from gpu.cache import KernelCache
from gpu.graphs import stream_plan
from gpu.kernels import kernels
from gpu.kernels.blas import Blocks, gemm_args, operand_args

from .emulator import column_major_gemm


# ---- kernel cache ----------------------------------------------------------------------------

def test_cache_compiles_each_source_once():
    compiled = []
    cache = KernelCache(compiler=lambda name, source: compiled.append(name) or name)
    build = lambda: ("k", "source A")  # noqa: E731
    assert cache.get(("a", 1), build) == "k"
    cache.get(("a", 1), build)
    cache.get(("b", 2), build)  # another key, the same text: shares the compiled kernel
    cache.get(("c", 3), lambda: ("k2", "source B"))
    assert compiled == ["k", "k2"] and cache.compiles == 2 and len(cache) == 2


# ---- streams ---------------------------------------------------------------------------------

def test_stream_plan_waits_only_across_lanes():
    # 0 -> 1 (same lane), 0 -> 2 (other lane), 1 & 2 -> 3
    lane, waits, recorded = stream_plan([0, 0, 1, 0], [[], [0], [0], [1, 2]])
    assert lane == [0, 0, 1, 0]
    assert waits == [[], [], [0], [2]] and recorded == [0, 2]


def test_stream_plan_skips_waits_already_implied():
    # step 3 waits for step 2 of the other lane, which covers step 1 for step 4
    lane, waits, _ = stream_plan([1, 1, 1, 0, 0], [[], [0], [1], [2], [1]])
    assert waits == [[], [], [], [2], []]


def test_stream_ids_fold_onto_two_lanes():
    lane, waits, _ = stream_plan([0, 1, 2, 3], [[], [], [0], [1]])
    assert lane == [0, 1, 0, 1] and waits == [[], [], [], []]


# ---- cuBLAS argument mapping -------------------------------------------------------------------

@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("batch", [None, 3, "shared a"])
def test_gemm_arguments_compute_the_row_major_product(trans_a, trans_b, batch):
    rng = np.random.default_rng(0)
    m, k, n = 4, 5, 6
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    lead = () if batch is None else (3,)
    a = rng.standard_normal((() if batch in (None, "shared a") else lead) + a_shape)
    b = rng.standard_normal(lead + b_shape)
    out_shape = lead + (m, n)
    g = gemm_args(a.shape, b.shape, out_shape, trans_a, trans_b)
    got = column_major_gemm(g, b.ravel(), a.ravel(), int(np.prod(out_shape))).reshape(out_shape)
    op_a = np.swapaxes(a, -1, -2) if trans_a else a
    op_b = np.swapaxes(b, -1, -2) if trans_b else b
    np.testing.assert_allclose(got, np.matmul(op_a, op_b), rtol=1e-12)


@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_arguments_read_blocks_in_place(trans_b):
    """A batch of per-sample blocks inside one (k, batch·cols) matrix (or its transpose),
    read with leading dimension batch·cols and batch stride cols, against the copies."""
    rng = np.random.default_rng(1)
    batch, m, k, cols = 3, 4, 5, 6
    a = rng.standard_normal((batch, m, cols) if trans_b else (m, k))
    matrix = rng.standard_normal((k, batch * cols))  # column = sample·cols + pixel
    blocks = Blocks(matrix, (batch, k, cols), batch * cols, cols)
    out_shape = (batch, m, k) if trans_b else (batch, m, cols)
    g = operand_args(a, blocks, np.empty(out_shape), trans_b=trans_b, trans_a=False)
    got = column_major_gemm(g, matrix.ravel(), a.ravel(), int(np.prod(out_shape)))
    each = matrix.reshape(k, batch, cols).transpose(1, 0, 2)  # the blocks, copied
    want = np.matmul(a, np.swapaxes(each, -1, -2)) if trans_b else np.matmul(a, each)
    np.testing.assert_allclose(got.reshape(out_shape), want, rtol=1e-12)


# ---- the backend -------------------------------------------------------------------------------

def test_kernel_table_matches_the_op_table():
    table = kernels()
    for name in table:
        assert name in OPS, name
    fused_kinds = ("elementwise", "broadcast")
    generated = {n for n, op in OPS.items() if op.kind in fused_kinds and not op.random}
    assert generated <= set(table), generated - set(table)
    for name in ("matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "max_pool2d",
                 "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad", "softmax", "log_softmax",
                 "softmax_cross_entropy", "softmax_cross_entropy_grad", "reduce_sum",
                 "reduce_mean", "sum_to_like", "sgd_update", "momentum_update",
                 "nesterov_update", "adam_update"):
        assert name in table, name


def test_without_a_device_the_backend_says_so():
    try:
        import cupy
        present = cupy.cuda.is_available()
    except Exception:  # noqa: BLE001 - no cupy, or no driver
        present = False
    if present:
        pytest.skip("a CUDA device is present")
    from gpu.backend import make_backend
    with pytest.raises(RuntimeError, match="no CUDA device found|cupy is not importable"):
        make_backend()
    assert not backends.available("cupy")
