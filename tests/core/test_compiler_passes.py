"""Compiler passes: results bit-identical with and without each pass, flat allocations,
memory-aware order, CSE/DCE, in-place, fusion groups and checkpointing."""
import numpy as np
import pytest

import core
from core.compiler.cse import common_subexpressions
from core.compiler.memory import overlapping_pairs

from .graphs import branchy, chain, cnn, mlp

GRAPHS = {"mlp": lambda: mlp([20, 32, 32, 5], 8, dropout=0.3), "cnn": lambda: cnn(4),
          "branchy": lambda: branchy(8, 16, 3, 2)}
VARIANTS = [dict(plan_memory=False, inplace=False, cse=False, schedule="topo"),
            dict(), dict(inplace=False), dict(schedule="memory"), dict(cse=False),
            dict(checkpoint="sqrt"), dict(checkpoint="cheap"), dict(checkpoint="budget=4096")]


def _run(graph, **options):
    loss, params, feed, _ = GRAPHS[graph]()
    ex = core.Executor([loss, *core.gradients(loss, params)], **options)
    return [ex.run(feed) for _ in range(2)], ex


@pytest.mark.parametrize("graph", GRAPHS)
def test_results_bit_identical_across_passes(graph):
    """Bit for bit wherever the convolutions get the same chunks (a chunk is one GEMM, whose
    rounding follows its length); to float rounding where the planner picked others."""
    reference, ref_ex = _run(graph, **VARIANTS[0])
    for options in VARIANTS[1:]:
        got, ex = _run(graph, **options)
        same_gemms = _conv_chunks(ex) == _conv_chunks(ref_ex)
        for run_ref, run_got in zip(reference, got):
            for a, b in zip(run_ref, run_got):
                if same_gemms:
                    np.testing.assert_array_equal(a, b, err_msg=str(options))
                else:
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(options))
        buffers = list({id(b): b for b in ex.plan.buffers.values()}.values())
        assert overlapping_pairs(buffers) == []


def _conv_chunks(ex) -> list:
    """Samples per chunk of each convolution op in schedule order (the length of its GEMMs)."""
    plan = ex.plan
    return sorted((n.op, ws["cols"][1][0]) for n, ws in plan.workspaces.items() if "cols" in ws)


@pytest.mark.parametrize("graph", GRAPHS)
def test_allocation_count_stays_flat(graph):
    loss, params, feed, _ = GRAPHS[graph]()
    ex = core.Executor([loss, *core.gradients(loss, params)])
    arenas = set()
    for _ in range(4):
        ex.run(feed, to_numpy=False)
        arenas.add(id(ex._last.arena))
    assert ex.arena_allocations == 1 and len(arenas) == 1


def _report(graph_fn, outputs_of, **options):
    loss, params, feed, h = graph_fn()
    ex = core.Executor(outputs_of(loss, params, h), **options)
    ex.run(feed, to_numpy=False)
    return ex.memory_report()


TRAIN = lambda loss, params, h: [loss, *core.gradients(loss, params)]  # noqa: E731
INFER = lambda loss, params, h: [h]  # noqa: E731


@pytest.mark.parametrize("graph", GRAPHS)
def test_arena_near_lower_bound_and_below_naive(graph):
    for outputs_of, factor in ((TRAIN, 1.5), (INFER, 2.0)):
        r = _report(GRAPHS[graph], outputs_of)
        assert r["planned_bytes"] <= 1.05 * r["lower_bound_bytes"]
        assert r["naive_bytes"] >= factor * r["planned_bytes"]


def test_memory_aware_order_never_worse_and_wins_on_branchy():
    for name, fn in GRAPHS.items():
        topo = _report(fn, TRAIN, schedule="topo")["lower_bound_bytes"]
        auto = _report(fn, TRAIN)["lower_bound_bytes"]
        assert auto <= topo, name
    topo = _report(lambda: branchy(32, 64, 4, 3), INFER, schedule="topo")["lower_bound_bytes"]
    aware = _report(lambda: branchy(32, 64, 4, 3), INFER)["lower_bound_bytes"]
    assert topo >= 1.3 * aware


def test_checkpointing_stores_sublinear_activations():
    peaks = {}
    for n in (16, 64):  # narrow and a big batch: activations, not weight gradients, dominate
        full = _report(lambda: chain(n, width=16, batch=512), TRAIN, checkpoint=None)["lower_bound_bytes"]
        sqrt = _report(lambda: chain(n, width=16, batch=512), TRAIN, checkpoint="sqrt")["lower_bound_bytes"]
        peaks[n] = (full, sqrt)
        assert sqrt < full
    growth_full = peaks[64][0] / peaks[16][0]
    growth_sqrt = peaks[64][1] / peaks[16][1]
    assert growth_sqrt < 0.75 * growth_full  # √n-like, not linear


def test_stored_activations_grow_like_sqrt_n_with_checkpointing():
    stored = {}
    for n in (16, 64):
        for mode in (None, "sqrt"):
            report = _report(lambda: chain(n, width=16, batch=64), TRAIN, checkpoint=mode)
            stored[n, mode] = report["stored_activation_bytes"]
    assert stored[64, None] / stored[16, None] > 3.5  # linear: 4× the layers
    assert stored[64, "sqrt"] / stored[16, "sqrt"] < 2.5  # √4 = 2
    assert _report(lambda: chain(4), INFER)["stored_activation_bytes"] == 0


def test_results_are_reported_and_bound_the_arena():
    loss, params, feed, _ = mlp([20, 32, 32, 5], 8)
    ex = core.Executor([loss, *core.gradients(loss, params)])
    ex.run(feed, to_numpy=False)
    report = ex.memory_report()
    weight_grads = sum(max(64, -(-p.attrs["shape"][0] * p.attrs["shape"][-1] * 4 // 64) * 64)
                       for p in params if len(p.attrs["shape"]) == 2)
    assert report["result_bytes"] >= weight_grads
    assert report["lower_bound_bytes"] >= report["result_bytes"]


def test_executor_follows_new_and_mutated_sources():
    """Steps stay bound to the last arrays fed; a new array or an in-place change is seen."""
    x, w = core.placeholder("x", (None, 2)), core.parameter("w", (2, 2))
    y = core.reduce_sum(x @ w)
    ex = core.Executor([y])
    xv, wv = np.ones((3, 2), np.float32), np.eye(2, dtype=np.float32)
    assert ex.run({x: xv, w: wv})[0] == 6
    wv *= 2  # the optimizer updates parameters in place
    assert ex.run({x: xv, w: wv})[0] == 12
    assert ex.run({x: np.zeros((3, 2), np.float32), w: wv})[0] == 0
    assert ex.run({x: xv, w: np.eye(2, dtype=np.float32)})[0] == 6


def test_cse_merges_equal_nodes_but_not_random_ones():
    x = core.Variable("x")
    a, b = core.exp(x) + 1, core.exp(x) + 1
    order = core.topological_order([a, b])
    alias = common_subexpressions(order)
    assert alias[b] is a
    m1 = core.dropout(x, 0.5, seed=1)
    m2 = core.dropout(x, 0.5, seed=1)
    assert not common_subexpressions(core.topological_order([m1, m2]))


def test_dead_nodes_are_not_scheduled():
    x = core.Variable("x")
    used = core.relu(x)
    core.exp(x) * 3  # built but never asked for
    ex = core.Executor([used])
    ex.run({x: np.ones(3)})
    assert [n.op for n in ex.plan.schedule] == ["relu"]


def test_inplace_shares_buffers_and_fusion_groups_form():
    loss, params, feed, logits = mlp([20, 32, 32, 5], 8)
    ex = core.Executor([loss, *core.gradients(loss, params)])
    ex.run(feed)
    report = ex.memory_report()
    assert report["inplace_steps"] > 0 and report["fusion_groups"] > 0
    inference = core.Executor([logits])
    inference.run(feed)
    groups = [[n.op for n in g] for g in inference.plan.groups if len(g) > 1]
    assert ["matmul", "add", "relu"] in groups  # matmul + bias + activation epilogue
    # relu's gradient reads relu's output, so in training too the pre-activation dies at
    # relu: the epilogue fuses and relu overwrites the pre-activation in place
    assert ["matmul", "add", "relu"] in [[n.op for n in g] for g in ex.plan.groups]
    relus = [n for n in ex.plan.schedule if n.op == "relu"]
    assert relus and all(ex.plan.buffers[n] is ex.plan.buffers[n.inputs[0]] for n in relus)


def test_streams_split_independent_branches():
    x = core.Variable("x")
    a, b = core.exp(x), core.tanh(x)
    ex = core.Executor([a + b])
    ex.run({x: np.ones(3)})
    streams = ex.plan.streams
    assert streams[a] != streams[b]


@pytest.mark.parametrize("graph", ["cnn", "mlp"])
def test_a_step_allocates_next_to_nothing_outside_the_arena(graph):
    """Scratch arrays (im2col columns, padded copies, masks) are planned workspaces: once
    compiled, a step's own allocations (numpy reports them to tracemalloc) stay tiny."""
    import tracemalloc
    if core.backend.default_name() != "numpy":
        pytest.skip("tracemalloc sees host allocations; on a device backend they are the device's")
    loss, params, feed, _ = {"cnn": lambda: cnn(32), "mlp": lambda: mlp([64, 256, 256, 10], 64)}[graph]()
    ex = core.Executor([loss, *core.gradients(loss, params)])
    ex.run(feed, to_numpy=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ex.run(feed, to_numpy=False)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    report = ex.memory_report()
    assert peak < 0.1 * report["planned_bytes"]
    if graph == "cnn":
        assert report["workspace_bytes"] > 0
        assert any(b["role"] == "workspace" for b in report["buffers"])


@pytest.mark.parametrize("padding", [0, 2])
def test_workspace_ops_also_run_without_a_plan(padding):
    """A compute called directly (no arena) allocates its own workspace and agrees."""
    from core.ops import OPS
    rng = np.random.default_rng(0)
    x = core.placeholder("x", (None, 3, 9, 9))
    w = core.parameter("w", (4, 3, 3, 3))
    y = core.conv2d(x, w, stride=2, padding=padding)
    feed = {x: rng.standard_normal((5, 3, 9, 9)), w: rng.standard_normal((4, 3, 3, 3))}
    planned = core.Executor([y]).run(feed)[0]
    direct = np.empty_like(planned)
    OPS["conv2d"].compute(np, [feed[x], feed[w]], y.attrs, direct)
    np.testing.assert_array_equal(planned, direct)


def test_planner_picks_convolution_chunks_that_fit_the_room():
    """Inference of the LeNet-like CNN: the first convolution's columns shrink to the room
    its step leaves (the chunk is the planner's, not a constant), so the arena is the peak
    of the values alone plus little, and saves over 4× against no sharing."""
    loss, params, feed, h = cnn(64)
    ex = core.Executor([h])
    ex.run(feed, to_numpy=False)
    report, plan = ex.memory_report(), ex.plan
    chunks = [plan.workspaces[n]["cols"][1][0] for n in plan.schedule if n.op == "conv2d"]
    assert len(chunks) == 2 and all(1 <= c <= 64 for c in chunks)
    assert chunks[0] < 64  # the first convolution's columns shrunk to fit
    assert report["naive_bytes"] >= 4 * report["planned_bytes"]
    assert report["planned_bytes"] <= 1.05 * report["lower_bound_bytes"]


def test_chunks_that_fit_the_room_do_not_change_results_or_raise_the_peak():
    """Chunks as large as the room under the one-sample peak allows (up to the whole batch):
    the values agree with one sample per chunk (to rounding), and the peak is the one-sample
    peak."""
    from core.compiler import pipeline, workspace
    loss, params, feed, _ = cnn(8)
    outputs = [loss, *core.gradients(loss, params)]
    results = {}
    for pick in (1, -1):  # the room's chunks, one sample per chunk
        real = workspace.candidates
        original = pipeline.workspace.candidates
        pipeline.workspace.candidates = lambda *a, **k: [real(*a, **{**k, "defaults_only": False})[pick]]
        try:
            ex = core.Executor(outputs)
            results[pick] = ex.run(feed)
            results[pick, "bound"] = ex.memory_report()["lower_bound_bytes"]
        finally:
            pipeline.workspace.candidates = original
    for a, b in zip(results[1], results[-1]):  # GEMMs of other lengths: equal to rounding
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert results[1, "bound"] == results[-1, "bound"]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_training_step_takes_the_default_chunks_balanced_and_inference_the_room(monkeypatch, threads):
    """LeNet at batch 64: its training step keeps each convolution's default chunk (enough
    columns for an efficient GEMM: 21 samples of 28×28, the whole batch of 10×10), balanced
    over each thread's run of the batch (21 of a run of 64 leave a chunk of 1: 16 instead;
    of 32, 16); its inference shrinks the first convolution's chunk to the room."""
    monkeypatch.setenv("LOOM_CPU_THREADS", str(threads))
    loss, params, feed, h = cnn(64)
    ex = core.Executor([loss, *core.gradients(loss, params)], backend="numpy")
    ex.run(feed, to_numpy=False)
    spaces = ex.plan.workspaces
    # samples per chunk, by the columns of one sample: 1·5·5 by 28·28, 6·5·5 by 10·10
    chunks = [spaces[n]["cols"][1] for n in ex.plan.schedule if "cols" in (spaces.get(n) or {})]
    assert sorted({(cols, rows // threads) for rows, cols in chunks}) == [(15000, 64 // threads), (19600, 16)]
    inference = core.Executor([h], backend="numpy")
    inference.run(feed, to_numpy=False)
    first = next(n for n in inference.plan.schedule if n.op == "conv2d")
    assert inference.plan.workspaces[first]["cols"][1][0] < 16 * threads


def test_balanced_chunks_cover_each_run_in_as_many_chunks_of_one_size():
    from core.compiler.workspace import balanced
    assert [balanced(c, 64) for c in (21, 25, 17, 64, 100, 1)] == [16, 22, 16, 64, 64, 1]
    assert [balanced(c, 64, 2) for c in (30, 32, 11, 1)] == [16, 32, 11, 1]
    assert balanced(3, 7, 3) == 3 and balanced(2, 7, 3) == 2  # runs of 3, 2, 2
