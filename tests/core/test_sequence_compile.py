"""A transformer block through the compiler: checkpointing (sqrt, cheap, per block) changes
memory, not values; the causal mask stays a constant; the plan is valid."""
import numpy as np
import pytest

import core
from core import graphfile
from core.layers import build
from core.step import sample_feed, trainable_parameters
from tests.cli.test_text_models import tiny_gpt


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    doc = graphfile.load(tiny_gpt(tmp_path_factory.mktemp("gpt")))
    built = build(doc, training=True)
    params = trainable_parameters(built)
    outputs = [built.loss, *core.gradients(built.loss, params)]
    feed = sample_feed(built, 4, fill="random")
    rng = np.random.default_rng(0)
    for node in built.feeds.values():
        feed[node] = rng.integers(0, 66, feed[node].shape)
    blocks = frozenset(n for (nid, _), n in built.outputs.items() if "/res" in nid)  # residuals
    return outputs, feed, blocks


def test_checkpointing_a_transformer_changes_memory_not_values(gpt):
    outputs, feed, blocks = gpt
    plain = core.Executor(outputs)
    want = plain.run(feed)
    for mode in ("sqrt", "cheap", blocks):
        ex = core.Executor(outputs, checkpoint=mode)
        for got, ref in zip(ex.run(feed), want):
            np.testing.assert_array_equal(got, ref)
        report = ex.memory_report()
        assert report["planned_bytes"] <= 1.05 * report["lower_bound_bytes"]


def test_checkpointing_shrinks_the_baby_gpts_training_step():
    """From shapes alone: the bundled example's step at batch 12 (what `plan` prints)."""
    from core.step import plan_report
    from tests.cli.conftest import EXAMPLES
    doc = graphfile.load(EXAMPLES / "shakespeare_char_gpt.loom.json")
    arena = {mode: plan_report(doc, 12, checkpoint=mode)["memory"]["planned_bytes"]
             for mode in ("none", "sqrt")}
    assert arena["sqrt"] < 0.6 * arena["none"]


def test_the_causal_mask_is_placed_once_not_computed_per_step(gpt):
    outputs, feed, _ = gpt
    ex = core.Executor(outputs)
    ex.run(feed)
    scheduled_ops = {n.op for n in ex.plan.schedule}
    assert "where" in scheduled_ops and "constant" not in scheduled_ops
    masks = [i for n in ex.plan.schedule if n.op == "where" for i in n.inputs[:1]]
    assert masks and all(m.op == "constant" and m.attrs["value"].dtype == bool for m in masks)
