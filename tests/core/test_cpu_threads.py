"""Large row-wise ops split over CPU threads (core/ops/cpu.py): the same bits as on one
thread for whole training steps, the right arrays cut, errors raised on the caller."""
from functools import partial

import numpy as np
import pytest

import core
from core.ops import OPS, cpu, linalg
from tests.cli.test_text_models import tiny_gpt

from .graphs import cnn, mlp


@pytest.fixture
def threads(monkeypatch):
    def set_threads(n):
        monkeypatch.setenv("LOOM_CPU_THREADS", str(n))
        monkeypatch.setattr(cpu, "SPLIT_BYTES", 0)  # split even these small ops
        monkeypatch.setattr(cpu, "MIN_BYTES", 0)
    return set_threads


def _gpt_step(tmp_path):
    from core import graphfile
    from core.layers import build
    from core.step import sample_feed, trainable_parameters
    built = build(graphfile.load(tiny_gpt(tmp_path)), training=True)
    params = trainable_parameters(built)
    feed = sample_feed(built, 3, fill="random")
    rng = np.random.default_rng(0)
    for node in built.feeds.values():
        feed[node] = rng.integers(0, 66, feed[node].shape)
    return [built.loss, *core.gradients(built.loss, params)], feed


def _graphs(tmp_path):
    loss, params, feed, _ = mlp([20, 32, 32, 5], 8)
    yield [loss, *core.gradients(loss, params)], feed
    loss, params, feed, _ = cnn(6)
    yield [loss, *core.gradients(loss, params)], feed
    yield _gpt_step(tmp_path)


def test_split_steps_give_the_bits_of_one_thread(threads, tmp_path, default_device):
    """MLP, CNN and a transformer (layer norm, GELU, softmax, pools and im2col copies split
    on numpy; a device backend never splits)."""
    for outputs, feed in _graphs(tmp_path):
        threads(1)
        want = core.Executor(outputs).run(feed)
        for count in (2, 3):
            threads(count)
            ex = core.Executor(outputs)
            ex.run(feed)
            assert ex.cpu_threads.ops == (count if default_device == "numpy" else 1)
            for got, ref in zip(ex.run(feed), want):
                assert got.tobytes() == ref.tobytes()


def test_only_row_aligned_arrays_are_cut(threads):
    threads(2)
    x, gamma, beta = np.ones((6, 4)), np.ones(4), np.zeros(4)
    out, ws = np.empty((6, 4)), {"tmp": np.empty((6, 4)), "total": np.empty(4)}
    parts = cpu.row_parts(OPS["layer_norm"], {"eps": 1e-5}, [x, gamma, beta], out, ws, threads=2)
    assert [p[1].shape for p in parts] == [(3, 4), (3, 4)]
    (a, b, c), _, part_ws = parts[1]
    assert a.shape == (3, 4) and b is gamma and c is beta
    assert part_ws["tmp"].shape == (3, 4) and part_ws["total"] is ws["total"]
    assert np.shares_memory(parts[1][1], out[3:])


def test_ops_whose_rows_are_not_independent_run_whole(threads):
    threads(2)
    x = np.ones((8, 5))
    assert cpu.row_parts(OPS["layer_norm"], {"eps": 1e-5}, [np.ones(5), x[0], x[0]],
                         np.empty(5), None, 2) is None  # a single row: the axis is the row
    assert cpu.row_parts(OPS["softmax"], {"axis": 0}, [x], np.empty((8, 5)), None, 2) is None
    assert cpu.row_parts(OPS["softmax"], {"axis": -1}, [x], np.empty((8, 5)), None, 2) is not None
    assert cpu.row_parts(OPS["matmul"], {}, [x, x.T], np.empty((8, 8)), None, 2) is None
    assert cpu.row_parts(OPS["exp"], {}, [x], np.empty((8, 5)), None, 1) is None  # one thread
    assert cpu.row_parts(OPS["add"], {}, [x, x], np.empty((8, 5)), None, 2) is None  # memory-bound


def test_errors_in_a_thread_reach_the_caller():
    def fail():
        raise ValueError("part failed")
    with pytest.raises(ValueError, match="part failed"):
        cpu.together([lambda: None, fail])
    cpu.together([lambda: None, lambda: None])  # the crew still works afterwards


def test_a_busy_crew_runs_a_second_callers_parts_on_its_own_thread():
    seen = []

    def nested():  # a part that itself asks for the crew (as a pool inside a split op could)
        cpu.together([lambda: seen.append("inner a"), lambda: seen.append("inner b")])
    cpu.together([nested, lambda: seen.append("outer")])
    assert sorted(seen) == ["inner a", "inner b", "outer"]


@pytest.mark.skipif(not cpu._watcher(), reason="the watch needs numba on x86")
def test_the_watch_sees_another_thread_raise_the_count_and_gives_up_after_its_spins():
    import threading
    import time
    watch = cpu._watcher()
    counts = np.zeros(2, np.int64)
    assert not watch(counts, 1, 1, 10)  # nobody raises it: False after ten pauses
    counts[1] = 3
    assert watch(counts, 1, 3, 1) and not watch(counts, 0, 1, 1)

    def raise_later():
        time.sleep(0.01)
        counts[0] = 1
    threading.Thread(target=raise_later).start()
    start = time.perf_counter()
    assert watch(counts, 0, 1, 10**9)  # read from memory each time, not kept in a register
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("watched", [True, False])
def test_the_crew_hands_back_every_result_and_error_with_and_without_the_watch(monkeypatch, watched):
    monkeypatch.setattr(cpu, "_watcher", cpu._watcher if watched else (lambda: None))
    crew = cpu._Crew(3)
    assert (crew.watch is not None) == (watched and cpu._watcher() is not None)
    seen = []
    for round_ in range(200):  # parts end before and after the caller's own
        crew.run([lambda r=round_: seen.append(("caller", r))] +
                 [lambda r=round_, k=k: seen.append((k, r)) for k in range(3)])
    assert len(seen) == 800 and len(set(seen)) == 800
    with pytest.raises(ValueError, match="third"):
        crew.run([lambda: None, lambda: None, lambda: (_ for _ in ()).throw(ValueError("third"))])
    crew.run([lambda: None, lambda: None])  # still works, and counts match again
    assert list(crew.finished) == [202, 201, 200]


# ---- whether splitting pays: measured per compiled step -----------------------------------------

def test_thread_choice_tries_each_option_then_keeps_the_fastest():
    options = [cpu.Threads(4), cpu.Threads(1), cpu.Threads(2)]
    choice = cpu.ThreadChoice(options)
    proposed = []
    # best runs: 4 threads 9 ms, 1 thread 7.9 ms, 2 threads 8.5 ms
    for seconds in (0.010, 0.008, 0.0085, 0.009, 0.0079, 0.0090, 0.012, 0.0081, 0.0086):
        option = choice.next()
        proposed.append(option)
        choice.record(option, seconds)
    assert proposed == options * 3
    assert choice.chosen == cpu.Threads(1) and choice.next() == cpu.Threads(1)
    choice.record(cpu.Threads(4), 0.001)  # settled: later runs change nothing
    assert choice.chosen == cpu.Threads(1)


def test_the_options_are_split_or_whole_never_another_blas_thread_count():
    """numpy's OpenBLAS gives other float32 bits on another thread count, and a clock picks
    the option: a choice of BLAS threads would make a resumed run differ from the
    uninterrupted one (tests/reliability/test_resume_state.py)."""
    assert cpu.thread_options(2) == [cpu.Threads(2), cpu.Threads(1)]
    assert cpu.thread_options(4) == [cpu.Threads(4), cpu.Threads(1)]


# ---- GEMMs: split over the CPU threads by a rule of the plan, BLAS on one thread ----------------

def test_a_gemm_splits_from_split_gemm_multiply_adds_counted_over_its_stack():
    gemm = linalg._gemm
    assert gemm([(4, 5, 7), (7, 3)], {"trans_A": False, "trans_B": False}, (4, 5, 3)) == 4 * 5 * 7 * 3
    assert gemm([(7, 5), (3, 7)], {"trans_A": True, "trans_B": True}, (5, 3)) == 5 * 7 * 3
    assert cpu.split_gemm(cpu.SPLIT_GEMM - 1, 2) == 1
    assert cpu.split_gemm(cpu.SPLIT_GEMM, 2) == 2 and cpu.split_gemm(cpu.SPLIT_GEMM, 3) == 3
    assert cpu.split_gemm(10 * cpu.SPLIT_GEMM, 1) == 1


def test_steps_run_blas_on_one_thread_where_it_has_more(monkeypatch):
    monkeypatch.setattr(cpu, "blas_threads", lambda: 2)
    assert cpu.step_blas_threads() == 1
    monkeypatch.setattr(cpu, "blas_threads", lambda: 1)  # nothing to change
    assert cpu.step_blas_threads() is None
    monkeypatch.setattr(cpu, "blas_threads", lambda: None)  # no BLAS threadpoolctl can drive
    assert cpu.step_blas_threads() is None


@pytest.mark.parametrize("graph", [lambda: cnn(16), lambda: mlp([784, 512, 512, 10], 128)])
def test_each_run_holds_blas_on_one_thread_and_sets_it_back(monkeypatch, graph):
    """Every run of a step (choosing threads or not) runs BLAS on one thread and restores it
    after: the step splits its large GEMMs itself (the MLP's over both cores)."""
    state = {"threads": 2, "set": []}
    monkeypatch.setattr(cpu, "blas_threads", lambda: state["threads"])

    def set_blas(count):
        old = state["threads"] if count is not None else None
        if count is not None:
            state["set"].append(count)
            state["threads"] = count
        return old
    monkeypatch.setattr(cpu, "set_blas_threads", set_blas)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("LOOM_CPU_THREADS", raising=False)
    loss, params, feed, _ = graph()
    ex = core.Executor([loss, *core.gradients(loss, params)], backend="numpy")
    for _ in range(4):
        ex.run(feed)
    assert state["set"] == [1, 2] * 4 and state["threads"] == 2
    assert ex.cpu_threads.gemms == 2


def _split_product(a, b, attrs, out_shape, threads):
    """The matmul op's call in parts (OpDef.parts) run on one BLAS thread a part, and how
    many parts it has (the numpy calls it falls back on: its last argument)."""
    out = np.full(out_shape, np.nan, a.dtype)
    call = OPS["matmul"].parts(np, [a, b], attrs, out, threads)
    with cpu.one_blas_thread():
        call()
    return out, len(call.args[-1])


_F = {"trans_A": False, "trans_B": False}
PRODUCTS = [  # a, b, attrs: a linear layer, its two gradients, attention's stacks
    ((96, 64), (64, 80), _F),
    ((64, 64), (64, 80), _F),  # b has as many rows as the result: still whole
    ((96, 64), (96, 80), {**_F, "trans_A": True}),  # dW = Xᵀ·dY: a's columns are the rows
    ((96, 80), (64, 80), {**_F, "trans_B": True}),
    ((6, 4, 16, 8), (6, 4, 8, 16), _F),
    ((6, 4, 16, 8), (1, 4, 8, 16), _F),  # b broadcast along the stack
    ((16, 8), (6, 4, 8, 16), _F),  # a broadcast: lower rank
    # folded transpositions (compiler/fold_transposes.py): heads split and merged
    ((6, 16, 4, 8), (6, 16, 4, 8), {**_F, "trans_B": True, "perm_A": (0, 2, 1, 3),
                                    "perm_B": (0, 2, 1, 3)}),
    ((6, 4, 16, 16), (6, 16, 4, 8), {**_F, "perm_B": (0, 2, 1, 3), "perm_out": (0, 2, 1, 3)}),
]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("a_shape, b_shape, attrs", PRODUCTS)
def test_a_split_matmul_computes_each_part_of_its_result_as_numpy(monkeypatch, threads, a_shape,
                                                                     b_shape, attrs):
    """Each part is numpy's product of the operands' matching rows (or matrices of the stack)
    into the result's: values are numpy's whole product to rounding, and the parts cover the
    result once (it starts as NaN)."""
    monkeypatch.setattr(cpu, "SPLIT_GEMM", 0)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    out_shape = OPS["matmul"].shape([a_shape, b_shape], attrs)
    want = np.empty(out_shape, np.float32)
    OPS["matmul"].compute(np, [a, b], attrs, want)
    got, parts = _split_product(a, b, attrs, out_shape, threads)
    assert parts == threads
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    ref = np.matmul(*(np.swapaxes(x, -1, -2) if attrs[f] else x for x, f in
                      zip((a.transpose(attrs.get("perm_A") or range(a.ndim)),
                           b.transpose(attrs.get("perm_B") or range(b.ndim))), ("trans_A", "trans_B"))))
    if attrs.get("perm_out"):
        ref = ref.transpose(attrs["perm_out"])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a_shape, b_shape, attrs", PRODUCTS)
def test_native_parts_are_numpys_gemm_calls_bit_for_bit(a_shape, b_shape, attrs):
    """Each part the native workers compute (gemm_worker.describe, then the compiled call of
    numpy's own cblas function) has the bits of numpy's matmul of the same operands, in
    float32 and float64; whole and in parts."""
    from core.ops import gemm_worker
    pool = gemm_worker.pool()
    if pool is None:
        pytest.skip("no native workers here (numba, x86 or numpy's OpenBLAS missing)")
    from core.ops.native_blas_loops import gemm_stack
    addresses = np.array([gemm_worker.gemm_address(np.float32), gemm_worker.gemm_address(np.float64)], np.int64)
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
        out_shape = OPS["matmul"].shape([a_shape, b_shape], attrs)
        want = np.empty(out_shape, dtype)
        OPS["matmul"].compute(np, [a, b], attrs, want)
        va, vb, vout = linalg._operands([a, b], attrs, np.full(out_shape, np.nan, dtype))
        desc = np.zeros(gemm_worker.SLOTS, np.int64)
        assert gemm_worker.describe(va, vb, vout, desc)
        gemm_stack(desc, addresses)
        got = vout.transpose(attrs["perm_out"]) if attrs.get("perm_out") else vout
        assert got.tobytes() == want.tobytes()


def test_parts_numpy_would_not_run_as_gemm_are_left_to_numpy():
    from core.ops import gemm_worker
    desc = np.zeros(gemm_worker.SLOTS, np.int64)
    x = np.ones((8, 8), np.float32)
    assert not gemm_worker.describe(x[:1], x, np.empty((1, 8), np.float32), desc)  # a vector: gemv
    assert not gemm_worker.describe(x, x.T, np.empty((8, 8), np.float32), desc)  # syrk
    assert not gemm_worker.describe(x[:, ::2], x[:4], np.empty((8, 8), np.float32), desc)  # strided rows
    assert not gemm_worker.describe(x, x.astype(np.float64), np.empty((8, 8)), desc)  # mixed dtypes
    assert not gemm_worker.describe(x, x, np.empty((8, 8), np.float32)[:, ::-1], desc)  # reversed out
    assert gemm_worker.describe(x, x.copy().T, np.empty((8, 8), np.float32), desc)
    assert desc[gemm_worker.TRANS_B] == gemm_worker.TRANS and desc[gemm_worker.LDB] == 8


def test_native_workers_hand_back_every_part_awake_asleep_or_busy(monkeypatch):
    """Products split over three threads, run back to back, after the workers fell asleep,
    and while another caller holds them (then on the calling thread): numpy's bits each time."""
    import time
    from core.ops import gemm_worker
    pool = gemm_worker.pool()
    if pool is None:
        pytest.skip("no native workers here (numba, x86 or numpy's OpenBLAS missing)")
    monkeypatch.setattr(gemm_worker, "WORKER_SPINS", 100)  # asleep within microseconds
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((96, 64), np.float32), rng.standard_normal((64, 40), np.float32)
    out = np.empty((96, 40), np.float32)
    parts = [(a[lo:hi], b, out[lo:hi]) for lo, hi in cpu.split(0, 96, 3)]
    call = pool.split(parts, [partial(np.matmul, pa, pb, out=po) for pa, pb, po in parts])
    assert call.func == pool._run
    want = np.vstack([np.matmul(pa, pb) for pa, pb, _ in parts])
    for pause in (0, 0, 0.02, 0, 0.02):
        out[...] = np.nan
        time.sleep(pause)
        call()
        assert out.tobytes() == want.tobytes()
    with pool.busy:  # the workers serve another caller: this one computes its parts itself
        out[...] = np.nan
        call()
    assert out.tobytes() == want.tobytes()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_its_own_workers():
    import os
    from core.ops import gemm_worker
    parent = gemm_worker.pool()
    if parent is None:
        pytest.skip("no native workers here (numba, x86 or numpy's OpenBLAS missing)")
    pid = os.fork()
    if pid == 0:  # the child: a new pool (no threads of the parent's), whose parts still run
        child = gemm_worker.pool()
        a = (np.arange(64 * 32) % 7).astype(np.float32).reshape(64, 32)  # exact sums
        out = np.empty((64, 64), np.float32)
        parts = [(a[lo:hi], a.T.copy(), out[lo:hi]) for lo, hi in ((0, 32), (32, 64))]
        child.split(parts, [partial(np.matmul, pa, pb, out=po) for pa, pb, po in parts])()
        os._exit(0 if child is not parent and np.array_equal(out, a @ a.T) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_small_or_single_row_products_stay_whole():
    a, b = np.ones((64, 64), np.float32), np.ones((64, 64), np.float32)
    assert OPS["matmul"].parts(np, [a, b], _F, np.empty((64, 64), np.float32), 2) is None  # 262K
    big = np.ones((1, 8192), np.float32), np.ones((8192, 1024), np.float32)
    assert OPS["matmul"].parts(np, list(big), _F, np.empty((1, 1024), np.float32), 2) is None  # one row


@pytest.mark.parametrize("fast", [cpu.Threads(2), cpu.Threads(1)])
def test_the_measured_option_never_changes_how_gemms_split(monkeypatch, fast):
    """GEMMs split by the plan's rule whichever option the clock picks for row-wise ops, so
    every run, choosing or settled, has the bits of the step the user ran on two threads."""
    monkeypatch.setattr(cpu, "SPLIT_GEMM", 0)  # every product and convolution splits
    loss, params, feed, _ = cnn(8)
    outputs = [loss, *core.gradients(loss, params)]
    monkeypatch.setenv("LOOM_CPU_THREADS", "2")
    want = core.Executor(outputs, backend="numpy").run(feed)
    monkeypatch.delenv("LOOM_CPU_THREADS")
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    _timed_as(monkeypatch, fast)
    ex = core.Executor(outputs, backend="numpy")
    for _ in range(2 + 3 * cpu.ThreadChoice.ROUNDS):
        for got, ref in zip(ex.run(feed), want):
            assert got.tobytes() == ref.tobytes()
    assert ex.cpu_threads == cpu.Threads(fast.ops, 2)
    program = ex._last
    products = [c for node, c in zip(program.plan.schedule, program.calls) if node.op == "matmul"]
    assert products and all(len(c.args[-1]) == 2 for c in products)  # its numpy calls, one a part


def test_the_stand_in_device_splits_gemms_as_numpy_does(monkeypatch):
    """The same parts, so the same bits (one row of the product would round otherwise)."""
    from tests import standin
    monkeypatch.setattr(cpu, "SPLIT_GEMM", 0)
    monkeypatch.setenv("LOOM_CPU_THREADS", "2")
    loss, params, feed, _ = mlp([64, 96, 80, 5], 48)
    outputs = [loss, *core.gradients(loss, params)]
    host = core.Executor(outputs, backend="numpy").run(feed)
    device = core.Executor(outputs, backend=standin.NAME).run(feed)
    for got, ref in zip(device, host):
        assert got.tobytes() == ref.tobytes()


def test_overlapping_one_thread_steps_restore_blas_when_the_last_ends(monkeypatch):
    """Two threads' steps interleaved (first started, first ended): BLAS stays on one thread
    while either runs, and returns to its count only when both have ended."""
    state = {"threads": 2}

    def set_blas(count):
        old = state["threads"] if count is not None else None
        if count is not None:
            state["threads"] = count
        return old
    monkeypatch.setattr(cpu, "set_blas_threads", set_blas)
    cpu.hold_one_blas_thread()  # step A starts
    cpu.hold_one_blas_thread()  # step B starts while A runs
    assert state["threads"] == 1
    cpu.release_one_blas_thread()  # A ends first
    assert state["threads"] == 1  # B still runs on one thread
    cpu.release_one_blas_thread()
    assert state["threads"] == 2


def _timed_as(monkeypatch, fast):
    """ThreadChoice fed a clock on which the option `fast` always wins (the real clock is
    noise)."""
    class Scripted(cpu.ThreadChoice):
        def record(self, option, seconds):
            super().record(option, 0.001 if option == fast else 0.002)
    monkeypatch.setattr(cpu, "ThreadChoice", Scripted)


@pytest.mark.parametrize("fast", [cpu.Threads(2), cpu.Threads(1)])
def test_a_step_settles_on_the_measured_threads_with_the_same_bits(monkeypatch, tmp_path, fast):
    """Without LOOM_CPU_THREADS the first runs of a step try each option, then keep the
    fastest: its row-wise ops are bound split (a call per thread) or whole accordingly, and
    every run gives the bits of a one-thread run."""
    monkeypatch.setattr(cpu, "SPLIT_BYTES", 0)
    monkeypatch.setattr(cpu, "MIN_BYTES", 0)
    outputs, feed = _gpt_step(tmp_path)
    monkeypatch.setenv("LOOM_CPU_THREADS", "1")
    want = core.Executor(outputs, backend="numpy").run(feed)
    monkeypatch.delenv("LOOM_CPU_THREADS")
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})  # two cores
    _timed_as(monkeypatch, fast)
    ex = core.Executor(outputs, backend="numpy")
    assert not ex.choosing_threads  # nothing compiled yet
    for _ in range(1 + 3 * cpu.ThreadChoice.ROUNDS):
        for got, ref in zip(ex.run(feed), want):
            assert got.tobytes() == ref.tobytes()
        assert ex.choosing_threads == (ex._last.thread_choice.chosen is None)
    assert not ex.choosing_threads  # settled after every option's rounds
    ex.run(feed)
    assert ex.cpu_threads.ops == fast.ops and ex._last.row_threads == fast.ops
    split = [c for c in ex._last.calls if getattr(c, "func", None) is cpu.together]
    assert bool(split) == (fast.ops == 2)


def test_a_thread_count_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("LOOM_CPU_THREADS", "2")
    loss, params, feed, _ = mlp([20, 32, 32, 5], 8)
    ex = core.Executor([loss, *core.gradients(loss, params)], backend="numpy")
    for _ in range(12):
        ex.run(feed)
    assert ex._last.thread_choice is None and ex.cpu_threads.ops == 2
    assert not ex.choosing_threads
