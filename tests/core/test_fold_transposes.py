"""Transpositions folded into numpy's matmul (core/compiler/fold_transposes.py): attention's
head splits and merges, forward and backward, disappear from the numpy plan, and every value
keeps its bits (BLAS reads the permuted views with a leading dimension, same products)."""
import numpy as np
import pytest

import core
from core.compiler import fold_transposes
from core.errors import GraphError
from core.ops import OPS

RNG = np.random.default_rng(0)
N, T, H, D = 3, 5, 2, 4


def _attention_step():
    """q, k, v split into heads, scores, softmax, weighted values merged back, and the
    gradients towards every input: the shapes of MultiHeadAttention, small."""
    x = core.placeholder("x", (None, T, H * D))
    ws = [core.parameter(f"w{n}", (H * D, H * D)) for n in "qkvo"]
    flat = core.reshape(x, (-1, H * D))
    q, k, v = (core.transpose(core.reshape(flat @ w, (-1, T, H, D)), (0, 2, 1, 3)) for w in ws[:3])
    weights = core.softmax(core.matmul(q, k, trans_B=True), axis=-1)
    mixed = core.reshape(core.transpose(core.matmul(weights, v), (0, 2, 1, 3)), (-1, H * D))
    loss = core.reduce_sum(core.tanh(mixed @ ws[3]))
    feed = {x: RNG.standard_normal((N, T, H * D)).astype(np.float32),
            **{w: RNG.standard_normal((H * D, H * D)).astype(np.float32) for w in ws}}
    return [loss, *core.gradients(loss, [x, *ws])], feed


def _run(outputs, feed, fold, monkeypatch):
    with monkeypatch.context() as m:
        if not fold:
            m.setattr(fold_transposes, "fold", lambda outs, shapes, dtypes: list(outs))
        ex = core.Executor(outputs, backend="numpy")
        values = [np.array(v) for v in ex.run(feed)]
    return values, ex._last.plan


def test_attention_folds_every_transposition_and_keeps_the_bits(monkeypatch):
    outputs, feed = _attention_step()
    plain, plain_plan = _run(outputs, feed, False, monkeypatch)
    folded, plan = _run(outputs, feed, True, monkeypatch)
    assert sum(n.op == "transpose" for n in plain_plan.schedule) == 8  # 4 forward, 4 backward
    assert [n for n in plan.schedule if n.op == "transpose"] == []
    perms = [k for n in plan.schedule if n.op == "matmul" for k in ("perm_A", "perm_B", "perm_out")
             if n.attrs.get(k) is not None]
    assert perms.count("perm_out") >= 2 and perms.count("perm_A") + perms.count("perm_B") >= 4
    for a, b in zip(plain, folded):
        assert a.tobytes() == b.tobytes()
    assert plan.arena_bytes <= plain_plan.arena_bytes


def test_transpositions_that_move_the_last_axis_or_meet_other_ops_stay(monkeypatch):
    a = core.placeholder("a", (2, 3, 4, 5))
    b = core.placeholder("b", (2, 3, 4, 5))
    swapped_last = core.transpose(a, (0, 1, 3, 2))  # rows of the matrices lose unit stride
    elementwise = core.transpose(b, (0, 2, 1, 3))
    outputs = [core.matmul(swapped_last, b), core.exp(elementwise),
               core.matmul(elementwise, elementwise, trans_B=True)]
    feed = {a: RNG.standard_normal((2, 3, 4, 5)), b: RNG.standard_normal((2, 3, 4, 5))}
    values, plan = _run(outputs, feed, True, monkeypatch)
    assert sum(n.op == "transpose" for n in plan.schedule) == 2
    np.testing.assert_allclose(values[0], np.swapaxes(feed[a], -1, -2) @ feed[b])
    e = np.transpose(feed[b], (0, 2, 1, 3))
    np.testing.assert_allclose(values[2], e @ np.swapaxes(e, -1, -2))


def test_a_result_the_caller_asks_for_is_computed_not_folded(monkeypatch):
    a = core.placeholder("a", (2, 3, 4, 5))
    t = core.transpose(a, (1, 0, 2, 3))
    product = core.matmul(t, t, trans_B=True)
    values, plan = _run([t, product], {a: RNG.standard_normal((2, 3, 4, 5))}, True, monkeypatch)
    assert [n.op for n in plan.schedule].count("transpose") == 1
    np.testing.assert_allclose(values[1], values[0] @ np.swapaxes(values[0], -1, -2))


def test_a_folded_matmul_states_its_shape_and_refuses_differentiation():
    shapes = [(2, 5, 3, 4), (2, 5, 3, 4)]  # (N, T, H, D) read as (N, H, T, D)
    attrs = {"trans_A": False, "trans_B": True, "perm_A": (0, 2, 1, 3), "perm_B": (0, 2, 1, 3)}
    assert OPS["matmul"].shape(shapes, attrs) == (2, 3, 5, 5)
    assert OPS["matmul"].shape(shapes, {**attrs, "perm_out": (0, 2, 1, 3)}) == (2, 5, 3, 5)
    a, b = core.placeholder("a", shapes[0]), core.placeholder("b", shapes[1])
    folded = core.Node("matmul", [a, b], attrs, name="scores")
    with pytest.raises(GraphError, match="scores"):
        core.gradients(core.reduce_sum(folded), [a])


def test_a_cyclic_permutation_folds_into_reads_and_writes(monkeypatch):
    """(1, 2, 0, 3) is not its own inverse: the written view must use the inverse."""
    a = core.placeholder("a", (2, 3, 4, 5))
    w = core.placeholder("w", (5, 6))
    b = core.placeholder("b", (4, 2, 3, 5))
    written = core.transpose(core.matmul(a, w), (1, 2, 0, 3))  # (3, 4, 2, 6)
    read = core.matmul(core.transpose(b, (1, 2, 0, 3)), w)  # (2, 3, 4, 5) @ w
    feed = {a: RNG.standard_normal((2, 3, 4, 5)), w: RNG.standard_normal((5, 6)),
            b: RNG.standard_normal((4, 2, 3, 5))}
    values, plan = _run([core.exp(written), core.exp(read)], feed, True, monkeypatch)
    assert [n.op for n in plan.schedule].count("transpose") == 0
    np.testing.assert_allclose(values[0], np.exp(np.transpose(feed[a] @ feed[w], (1, 2, 0, 3))))
    np.testing.assert_allclose(values[1], np.exp(np.transpose(feed[b], (1, 2, 0, 3)) @ feed[w]))


@pytest.mark.parametrize("mode", ["sqrt", "cheap"])
def test_folding_keeps_what_checkpointing_saves(monkeypatch, mode):
    """The fold rebuilds recomputed copies: they must stay marked as such, or CSE merges them
    back into the forward values, which then live through the whole backward pass."""
    def run(fold):
        with monkeypatch.context() as m:
            if not fold:
                m.setattr(fold_transposes, "fold", lambda outs, shapes, dtypes: list(outs))
            ex = core.Executor(outputs, backend="numpy", checkpoint=mode)
            values = [np.array(v) for v in ex.run(feed)]
        recomputed = sum(bool(n.extras.get("recomputed")) for n in ex._last.plan.schedule)
        return values, recomputed, ex._last.plan.arena_bytes
    outputs, feed = _attention_step()
    (plain, _, plain_arena), (folded, recomputed, arena) = run(False), run(True)
    assert recomputed > 0 and arena <= plain_arena
    for a, b in zip(plain, folded):
        assert a.tobytes() == b.tobytes()
