"""Kernel launches against the numpy computes: every per-op kernel, every fused group, whole
training steps through the executor ("cupy" against "numpy"), and on a real device the
CUDA-graph replay and the two-stream runner.

Each test runs on two devices (the `gpu` fixture, tests/gpu/conftest.py): "cuda", a real GPU
through cupy (skipped where cupy or a device is missing), and "host", the same CUDA sources
compiled for the CPU by tests/gpu/emulator.py with cuBLAS replaced by a reference GEMM fed the
backend's own cuBLAS arguments — so the kernels, their index arithmetic and their launch code
(argument order and C types, grid and block) are exercised on every machine with g++.

Tolerance: float32 within 1e-5 relative, float64 within 1e-10; the absolute floor scales with
the largest value, for sums whose terms cancel (reductions, GEMMs)."""
import numbers

import numpy as np
import pytest

from core import backend as backends, graphfile, layers
from core.executor import Executor
from core.graph import init_value
from core.ops.base import OPS, scratch
from core.optim import make_optimizer
from core.settings import training_config
from core.step import sample_feed, training_updates

RTOL = {"float32": 1e-5, "float64": 1e-10}
DTYPES = ["float32", "float64"]


def close(got, want, what="", rtol=None):
    want = np.asarray(want)
    rtol = rtol or RTOL.get(want.dtype.name, 1e-5)
    finite = np.abs(want[np.isfinite(want)])  # masked attention scores are -inf: equal, not scaled
    scale = max(1.0, float(np.max(finite))) if finite.size else 1.0
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=rtol * scale, err_msg=what)


def numpy_compute(op_name, ins, attrs, out_shape, dtype):
    out = np.empty(out_shape, dtype)
    opdef = OPS[op_name]
    if opdef.workspace:
        opdef.compute(np, ins, attrs, out, scratch(opdef.workspace, np, ins, attrs, out))
    else:
        opdef.compute(np, ins, attrs, out)
    return out


def device_compute(gpu, op_name, ins, attrs, out_shape, dtype, planned_workspace=True):
    from gpu.kernels import kernels
    dev = [v if isinstance(v, numbers.Number) else gpu.asarray(v) for v in ins]
    out = gpu.xp.empty(out_shape, dtype)
    opdef = OPS[op_name]
    ws = None
    if opdef.workspace and planned_workspace:
        ws = scratch(opdef.workspace, gpu.xp, dev, attrs, out)
    kernels()[op_name](gpu.xp, dev, dict(attrs), out, ws)
    return gpu.asnumpy(out)


def check_op(gpu, op_name, ins, attrs, out_shape, dtype):
    want = numpy_compute(op_name, [np.copy(v) if isinstance(v, np.ndarray) else v for v in ins],
                         dict(attrs), out_shape, dtype)
    close(device_compute(gpu, op_name, ins, attrs, out_shape, dtype), want, op_name)


# ---- per-op kernels -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_and_reduction_kernels(gpu, dtype):
    from gpu.kernels.ewise import EXAMPLES
    rng = np.random.default_rng(0)
    for op_name, (shapes, attrs, out_shape) in EXAMPLES.items():
        ins = [s if isinstance(s, numbers.Number) else (rng.random(s) + 0.5).astype(dtype)
               for s in shapes]
        check_op(gpu, op_name, ins, attrs, out_shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul(gpu, dtype, trans_a, trans_b):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 5) if trans_a else (5, 7)).astype(dtype)
    b = rng.standard_normal((3, 7) if trans_b else (7, 3)).astype(dtype)
    check_op(gpu, "matmul", [a, b], {"trans_A": trans_a, "trans_B": trans_b}, (5, 3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size,stride,padding", [(5, 1, 2), (3, 2, 0)])
def test_conv_kernels(gpu, dtype, size, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 11, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, size, size)).astype(dtype)
    attrs = {"stride": stride, "padding": padding}
    y_shape = OPS["conv2d"].shape([x.shape, w.shape], attrs)
    gy = rng.standard_normal(y_shape).astype(dtype)
    check_op(gpu, "conv2d", [x, w], attrs, y_shape, dtype)
    check_op(gpu, "conv2d_grad_input", [gy, w, x], attrs, x.shape, dtype)
    check_op(gpu, "conv2d_grad_weight", [gy, x, w], attrs, w.shape, dtype)


def test_conv_in_several_chunks_and_without_workspace(gpu):
    """A large batch makes the planned columns hold fewer samples than the batch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((100, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    attrs = {"stride": 1, "padding": 2}
    y_shape = (100, 16, 14, 14)
    ws = OPS["conv2d"].workspace([x.shape, w.shape], attrs, y_shape, np.float32)
    assert ws["cols"][0][0] < 100  # chunked
    gy = rng.standard_normal(y_shape).astype(np.float32)
    check_op(gpu, "conv2d_grad_weight", [gy, x, w], attrs, w.shape, "float32")
    check_op(gpu, "conv2d_grad_input", [gy, w, x], attrs, x.shape, "float32")
    want = numpy_compute("conv2d", [x, w], attrs, y_shape, "float32")
    close(device_compute(gpu, "conv2d", [x, w], attrs, y_shape, "float32", False), want)


# (x, w, stride, padding): every branch of core.ops.conv — small / large images (one GEMM per
# chunk / per sample) and the input gradient as a convolution (large images only) / as GEMM +
# col2im
CONV_BRANCHES = {"small, grad input by col2im": ((5, 2, 9, 9), (6, 2, 3, 3), 1, 0),
                 "large, grad input by convolution": ((5, 2, 24, 24), (3, 2, 3, 3), 1, 1),
                 "large, grad input by col2im": ((5, 2, 48, 47), (5, 2, 3, 3), 2, 1)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("branch", list(CONV_BRANCHES))
def test_conv_branches_in_uneven_chunks(gpu, dtype, branch):
    """Chunks of 2 samples over a batch of 5: the last chunk's matrices are shorter than the
    planned buffers (and, for large images, the per-sample blocks' stride differs)."""
    from core.ops.conv import grad_input_as_convolution, per_sample_gemms
    x_shape, w_shape, stride, padding = CONV_BRANCHES[branch]
    attrs = {"stride": stride, "padding": padding, "chunk": 2}
    y_shape = OPS["conv2d"].shape([x_shape, w_shape], attrs)
    assert per_sample_gemms(y_shape[2] * y_shape[3]) == branch.startswith("large")
    as_convolution = grad_input_as_convolution(y_shape, w_shape, x_shape, attrs)
    assert as_convolution == branch.endswith("convolution")
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal(y_shape).astype(dtype)
    check_op(gpu, "conv2d", [x, w], attrs, y_shape, dtype)
    check_op(gpu, "conv2d_grad_input", [gy, w, x], attrs, x_shape, dtype)
    check_op(gpu, "conv2d_grad_weight", [gy, x, w], attrs, w_shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1)])
def test_pool_kernels(gpu, dtype, kernel, stride, padding):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 0, :3, :3] = 1.0  # ties: the first maximum takes the gradient
    attrs = {"kernel": kernel, "stride": stride, "padding": padding}
    y_shape = OPS["max_pool2d"].shape([x.shape], attrs)
    y = numpy_compute("max_pool2d", [x], attrs, y_shape, dtype)
    gy = rng.standard_normal(y_shape).astype(dtype)
    check_op(gpu, "max_pool2d", [x], attrs, y_shape, dtype)
    check_op(gpu, "avg_pool2d", [x], attrs, y_shape, dtype)
    check_op(gpu, "max_pool2d_grad", [x, y, gy], attrs, x.shape, dtype)
    check_op(gpu, "avg_pool2d_grad", [gy, x], attrs, x.shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((6, 10), -1), ((4, 300), 1), ((3, 5, 4), 1)])
def test_softmax_kernels(gpu, dtype, shape, axis):
    x = (np.random.default_rng(5).standard_normal(shape) * 4).astype(dtype)
    check_op(gpu, "softmax", [x], {"axis": axis}, shape, dtype)
    check_op(gpu, "log_softmax", [x], {"axis": axis}, shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("labels", ["int64 ids", "int32 ids", "one-hot"])
@pytest.mark.parametrize("batch,classes", [(37, 10), (5, 70)])
def test_loss_and_metric_kernels(gpu, dtype, labels, batch, classes):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((batch, classes)).astype(dtype)
    ids = rng.integers(0, classes, batch)
    y = {"int64 ids": ids, "int32 ids": ids.astype(np.int32),
         "one-hot": np.eye(classes, dtype=dtype)[ids]}[labels]
    g = np.asarray(1.5, dtype)
    check_op(gpu, "softmax_cross_entropy", [logits, y], {}, (), dtype)
    check_op(gpu, "softmax_cross_entropy_grad", [logits, y, g], {}, logits.shape, dtype)
    logits[:, 0] = logits.max(axis=1)  # ties: argmax takes the first
    logits[1, 3] = np.nan  # and numpy's argmax takes a NaN
    check_op(gpu, "accuracy", [logits, y], {}, (), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op_name", ["sgd_update", "momentum_update", "nesterov_update",
                                     "adam_update"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_update_kernels(gpu, dtype, op_name, weight_decay):
    """In place, as the numpy rule (over several of its chunks); nothing moves on a NaN loss."""
    from gpu.kernels import kernels
    rng = np.random.default_rng(7)
    slots = {"sgd_update": 0, "momentum_update": 1, "nesterov_update": 1, "adam_update": 2}[op_name]
    attrs = {"momentum": 0.9, "weight_decay": weight_decay, "beta1": 0.9, "beta2": 0.999,
             "eps": 1e-8}
    host = [rng.standard_normal(40000).astype(dtype) for _ in range(2)]
    host += [np.abs(rng.standard_normal(40000)).astype(dtype) for _ in range(slots)]  # v >= 0
    hyper = np.array([0.05], np.float32)
    for loss in (np.asarray(1.25, np.float32), np.asarray(np.nan, np.float32)):
        dev = [gpu.asarray(a) for a in host]
        before = [a.copy() for a in host]
        OPS[op_name].compute(np, [host[0], host[1], loss, hyper, *host[2:]], attrs,
                             np.empty((), dtype))
        kernels()[op_name](gpu.xp, [dev[0], dev[1], gpu.asarray(loss), gpu.asarray(hyper),
                                    *dev[2:]], attrs, gpu.xp.empty((), dtype))
        for got, want, old in zip(dev, host, before):
            close(gpu.asnumpy(got), want, op_name)
            if np.isnan(loss):
                np.testing.assert_array_equal(gpu.asnumpy(got), old)


# ---- fused kernels ------------------------------------------------------------------------------

def test_fused_groups_match_the_unfused_ops(gpu):
    from gpu.fused import FusedKernel
    from .cases import hand_built_plans
    from .plans import example_plans, reference_values
    from .sources import group_programs
    feeds = {id(plan): feed for _, plan, feed in example_plans() + hand_built_plans()}
    refs = {}
    for label, tail, plan, program, inputs in group_programs():
        if id(plan) not in refs:
            refs[id(plan)] = reference_values(plan, feeds[id(plan)])
        values = refs[id(plan)]
        ins = [gpu.asarray(values[n] if n in values else np.asarray(n.attrs["value"]))
               for n in inputs]
        out = gpu.xp.empty(program.out_shape, program.out_dtype)
        FusedKernel(program, inputs)(ins, out)
        # a float64 result computed partly in float32 is only as exact as float32
        rtol = max(RTOL.get(d, 1e-5) for d in (*program.in_dtypes, program.out_dtype))
        close(gpu.asnumpy(out), values[tail[-1]], label, rtol)


# ---- whole steps through the executor -------------------------------------------------------------

EXAMPLES = ["mnist_mlp", "mnist_cnn"]


def _train(backend_name, example, steps, **options):
    """`steps` SGD steps of an example's compiled training step, parameters and optimizer
    state kept on the backend as the trainer keeps them: (losses, host parameters, executor)."""
    from .plans import EXAMPLES as PATHS
    be = backends.get(backend_name)
    doc = graphfile.load(next(p for p in PATHS if p.name.startswith(example)))
    built = layers.build(doc, training=True)
    rng = np.random.default_rng(0)
    params = {p.name: be.asarray(init_value(p, rng)) for p in built.parameters}
    optimizer = make_optimizer(dict(training_config(doc), optimizer="sgd"), backend=be)
    ex = Executor([built.loss, *training_updates(built, optimizer)], backend=backend_name,
                  **options)
    batch = sample_feed(built, 16, fill="random", seed=2)
    data = {node: batch[node] for node in built.feeds.values()}
    losses = []
    for _ in range(steps):
        optimizer.begin_step(0.05)
        feed = {**data, **{p: params[p.name] for p in built.parameters}, **optimizer.feed(params)}
        losses.append(float(be.to_numpy(ex.run(feed, to_numpy=False)[0])))
    return np.array(losses, np.float32), {k: np.array(be.to_numpy(v)) for k, v in params.items()}, ex


@pytest.mark.parametrize("example", EXAMPLES)
def test_training_steps_match_numpy(gpu, example):
    losses, params, _ = _train("numpy", example, 3)
    dev_losses, dev_params, ex = _train(gpu.backend, example, 3, capture=False)
    close(dev_losses, losses, "loss")
    for name in params:
        close(dev_params[name], params[name], name)
    assert ex.launches_per_step <= len(ex.plan.schedule)


def test_fused_executor_runs_fewer_steps(gpu):
    """The gradient graph of an MLP fuses bias + ReLU epilogues: fewer calls, same values."""
    import core
    from tests.core.graphs import mlp
    loss, params, feed, _ = mlp([64, 32, 32, 10], 16)
    outputs = [loss, *core.gradients(loss, params)]
    want = Executor(outputs, backend="numpy").run(feed)
    ex = Executor(outputs, backend=gpu.backend, capture=False)
    for got, w in zip(ex.run(feed), want):
        close(got, w)
    assert ex.launches_per_step < len(ex.plan.schedule)


def test_no_kernel_compiles_in_the_steady_state(gpu):
    """Once a graph's kernels exist (fused ones at bind time, the others at their first call),
    neither more steps nor a fresh executor at the same shapes compiles anything."""
    from gpu.cache import active
    _train(gpu.backend, "mnist_cnn", 2, capture=False)
    compiled = active().compiles
    _train(gpu.backend, "mnist_cnn", 3, capture=False)
    assert active().compiles == compiled


# ---- a real device only: CUDA graphs, streams, memory ------------------------------------------------

def _cuda_only(gpu):
    if gpu.name != "cuda":
        pytest.skip("CUDA graphs, streams and the memory pool need a real device")


@pytest.mark.parametrize("example", EXAMPLES)
def test_cuda_graph_replay_equals_eager(gpu, example):
    _cuda_only(gpu)
    eager_losses, eager_params, _ = _train("cupy", example, 4, capture=False)
    losses, params, ex = _train("cupy", example, 4, capture=True)
    assert getattr(ex._last, "replay", True) is not None, "the step was not captured"
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-6)
    for name in params:
        np.testing.assert_allclose(params[name], eager_params[name], rtol=1e-6, atol=1e-7)


def test_capture_replays_a_step(gpu):
    """capture() records without running; each replay runs the recorded kernels again."""
    _cuda_only(gpu)
    from gpu.graphs import capture
    from gpu.kernels import kernels
    cp = gpu.xp
    x = cp.arange(12, dtype=cp.float32).reshape(3, 4) / 12
    y = cp.zeros((3, 4), cp.float32)
    exp, add = kernels()["exp"], kernels()["add"]

    def step():
        exp(cp, [x], {}, y)
        add(cp, [y, y], {}, x)  # x <- 2·exp(x): every replay changes the input of the next
    start = cp.asnumpy(x)
    step()  # compiles both kernels: nothing may compile inside a capture
    x[...] = cp.asarray(start)
    y.fill(0)
    replay = capture(step)
    assert float(y.sum()) == 0.0  # nothing ran
    host = start
    for _ in range(2):
        replay()
        host = 2 * np.exp(host)
    close(cp.asnumpy(x), host)


def test_two_stream_runner_matches_numpy(gpu):
    _cuda_only(gpu)
    import core
    from tests.core.graphs import branchy
    loss, params, feed, _ = branchy(16, 32, 3, 2)
    outputs = [loss, *core.gradients(loss, params)]
    want = Executor(outputs, backend="numpy").run(feed)
    ex = Executor(outputs, backend="cupy", streams=True, capture=False)
    assert len(set(ex_streams(ex, feed))) > 1
    for got, w in zip(ex.run(feed), want):
        close(got, w)


def ex_streams(ex, feed):
    ex.run(feed)
    return [ex.plan.streams.get(n, 0) % 2 for n in ex.plan.schedule]


def test_memory_info_reports_the_pool_and_the_device(gpu):
    _cuda_only(gpu)
    info = backends.get("cupy").memory_info()
    assert info["device_total_bytes"] > 0 and info["device_used_bytes"] >= 0
