"""The baby GPT (resources/examples/shakespeare_char_gpt.loom.json: 4 blocks, 4 heads,
128 wide, context 64, batch 12) in `make bench`: its training step (forward, backward, Adam)
against PyTorch CPU on the same shapes, and its memory plan with and without per-block
checkpointing (only each block's output kept; everything inside a block recomputed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core import graphfile, layers
from core.blocks import flatten
from core.executor import Executor
from core.optim import make_optimizer
from core.settings import training_config
from core.step import sample_feed, training_step

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "examples" / "shakespeare_char_gpt.loom.json"


def _document():
    return graphfile.load(EXAMPLE)


def _block_outputs(doc, built) -> frozenset:
    """The residual stream after each block: the outputs of every top-level block instance
    (build names an instance's output port after the value the instance computes)."""
    instances = [n.id for n in doc.nodes.values() if n.kind == "Block"]
    return frozenset(node for (node_id, _), node in built.outputs.items() if node_id in instances)


def loom_step(checkpoint=None, batch=12, settle=True):
    """A zero-argument callable running one full training step of the example, and its
    executor (for the memory report); with `settle`, run until the step has chosen its CPU
    threads, so that timed runs do not include the runs that try the options."""
    doc = _document()
    built = layers.build(doc, training=True)
    optimizer = make_optimizer(training_config(doc))
    step = training_step(built, optimizer)
    keep = _block_outputs(doc, built) if checkpoint == "blocks" else checkpoint
    ex = Executor(step.outputs, checkpoint=keep)
    feed = sample_feed(built, batch, fill="random")
    vocab = torch_config(doc)["vocab"]
    rng = np.random.default_rng(0)
    for port in ("data", "label"):
        node = built.feed_of(port)
        feed[node] = rng.integers(0, vocab, feed[node].shape)
    params = {p.name: feed[p] for p in built.parameters}

    def run():
        optimizer.begin_step(1e-4)
        ex.run({**feed, **optimizer.feed(params)}, to_numpy=False)
    if settle:
        run()
        while ex.choosing_threads:
            run()
    return run, ex


def torch_config(doc=None):
    """The PyTorch twin's sizes, read from the flattened graph (the blocks' attention layers
    are `block1/attn`...; promoted heads are written into them there)."""
    flat = flatten(doc or _document())
    of_kind = lambda kind: [n.attrs for n in flat.nodes.values() if n.kind == kind]  # noqa: E731
    attn = of_kind("MultiHeadAttention")
    return {"vocab": of_kind("Embedding")[0]["vocab"],
            "context": of_kind("TextDataset")[0]["context"],
            "layers": len(attn), "heads": attn[0]["heads"], "width": attn[0]["width"]}


def speed_rows(compare, torch, quick):
    """[setting, Loom ms, PyTorch ms, ratio] for the training step at batch 12."""
    from bench import gpt_torch
    run, _ = loom_step()
    fns = [run]
    if torch is not None:
        fns.append(gpt_torch.train_step_fn(torch_config(), batch=12, threads=torch.get_num_threads()))
    times = compare(fns, 3 if quick else 10, rounds=3 if quick else 5)
    torch_ms = times[1] if len(times) > 1 else None
    return [["baby GPT step b12 (Adam)", f"{times[0]:.1f}",
             "n/a" if torch_ms is None else f"{torch_ms:.1f}",
             "n/a" if torch_ms is None else f"{times[0] / torch_ms:.2f}×"]]


def memory_rows():
    """[checkpointing, no sharing MiB, planned MiB, lower bound MiB, planned/bound]."""
    rows = []
    for mode, label in ((None, "none"), ("blocks", "per block"), ("sqrt", "sqrt")):
        run, ex = loom_step(mode, settle=False)
        run()
        r = ex.memory_report()
        mib = lambda k: r[k] / 2 ** 20  # noqa: E731
        rows.append([label, f"{mib('naive_bytes'):.2f}", f"{mib('planned_bytes'):.2f}",
                     f"{mib('lower_bound_bytes'):.2f}", f"{r['planned_bytes'] / r['lower_bound_bytes']:.3f}"])
    return ["checkpointing", "no sharing MiB", "planned MiB", "lower bound MiB", "arena/bound"], rows
