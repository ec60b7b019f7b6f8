"""Compiled plans of the bundled examples (training step and gradient graph, numpy backend)
and an unfused reference evaluation of every value in them, for the generator tests."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from core import graphfile, layers
from core.autodiff import gradients
from core.executor import Executor
from core.optim import make_optimizer
from core.ops.base import scratch
from core.settings import training_config
from core.step import sample_feed, trainable_parameters, training_updates

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "resources" / "examples").glob("*.loom.json"))


@lru_cache(maxsize=None)
def example_plans(batch=8):
    """[(label, plan, source values)] for each example's training step and gradient graph,
    fed random batches (zeros would make every fused value trivial)."""
    out = []
    for path in EXAMPLES:
        doc = graphfile.load(path)
        built = layers.build(doc, training=True)
        for kind in ("step", "gradients"):
            feed = sample_feed(built, batch, fill="random", seed=1)
            if kind == "step":
                optimizer = make_optimizer(training_config(doc))
                outputs = [built.loss, *training_updates(built, optimizer)]
                optimizer.begin_step(0.0)
                feed.update(optimizer.feed({p.name: feed[p] for p in built.parameters}))
            else:
                outputs = [built.loss, *gradients(built.loss, trainable_parameters(built))]
            ex = Executor(outputs, backend="numpy")
            ex.run(feed)
            out.append((f"{path.name.split('.')[0]}/{kind}", ex.plan, feed))
    return out


def reference_values(plan, feed) -> dict:
    """node -> value of every scheduled node, each op run alone by its numpy compute into a
    fresh array (no arena, no fusion); updates that overwrite sources are skipped."""
    values = {n: np.array(v) for n, v in feed.items()}

    def value(node):
        node = plan.alias.get(node, node)
        if node.op == "constant":
            return node.attrs["value"]
        return values[node]
    for node in plan.schedule:
        if node.opdef.mutates:
            continue
        ins = [value(i) for i in node.inputs]
        out = np.empty(plan.shapes[node], dtype=plan.dtypes[node])
        if node.opdef.workspace is None:
            node.opdef.compute(np, ins, node.attrs, out)
        else:
            ws = scratch(node.opdef.workspace, np, ins, node.attrs, out)
            node.opdef.compute(np, ins, node.attrs, out, ws)
        values[node] = out
    return values


def fusible_tails(plan):
    """Each fusion group as the executor passes it to `fuse` (core.compiler.fusion.kernel_tail:
    without a matmul/conv head), single ops included: they are what the per-op kernels of
    elementwise ops generate."""
    kinds = ("elementwise", "broadcast", "reduction")
    for group in plan.groups:
        tail = group[1:] if group[0].opdef.kind not in kinds else group
        if tail:
            yield tail
