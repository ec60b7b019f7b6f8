"""The compiled training step, in one place: the trainer runs it, `main.py plan` and the
editor's memory-plan view plan it, and the editor's profile times it. Also the sample feeds
that planning and profiling need (values with the right shapes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layers
from .blocks import has_blocks, plan_rows
from .autodiff import gradients
from .compiler import compile_plan
from .compiler.report import plan_tables
from .compiler.shapes import ShapeSpec, nbytes
from . import backend as backends
from .executor import Executor, backend_plan_options
from .graph import init_value, verify
from .limits import refuse_oversized
from .ops import accuracy, comm_ops
from .optim import make_optimizer
from .settings import training_config


BUCKET_BYTES = 25 << 20  # gradients per allreduce, as PyTorch DDP's default


@dataclass
class TrainingStep:
    """Outputs of one compiled step: loss, accuracy, batch-norm batch statistics (mean and
    variance per BatchNorm, to update the running averages) and one optimizer update per
    trainable parameter."""
    loss: object
    accuracy: object
    stats: list
    updates: list

    @property
    def outputs(self) -> list:
        return [self.loss, self.accuracy, *self.stats, *self.updates]


def training_step(built, optimizer, procs=1, bucket_bytes=None) -> TrainingStep:
    """With procs > 1 (data-parallel), the loss and accuracy reported are the global batch's
    and the gradients are summed over the ranks in buckets before the updates."""
    if procs == 1:
        return TrainingStep(built.loss, accuracy_node(built), batch_statistics(built),
                            training_updates(built, optimizer))
    loss, acc = comm_ops.allreduce(built.loss), comm_ops.allreduce(accuracy_node(built))
    return TrainingStep(loss, acc, batch_statistics(built),
                        training_updates(built, optimizer, loss, bucket_bytes or BUCKET_BYTES))


def accuracy_node(built):
    if built.metrics:
        return next(iter(built.metrics.values()))
    return accuracy(built.logits, built.feed_of("label"))


def batch_statistics(built) -> list:
    return [s[k] for s in built.state for k in ("mean", "var")]


def training_updates(built, optimizer, global_loss=None, bucket_bytes=None) -> list:
    """One optimizer update per trainable parameter, applied inside the compiled step (so each
    weight gradient dies as soon as its update has run). Data-parallel (`global_loss` given):
    each update reads its parameter's gradient summed over the ranks, and skips on the global
    loss (every rank takes the same decision)."""
    trainable = trainable_parameters(built)
    grads = gradients(built.loss, trainable)
    if global_loss is None:
        return optimizer.updates(trainable, grads, built.loss)
    summed = {}
    for bucket in gradient_buckets(trainable, bucket_bytes):
        parts = comm_ops.gradient_bucket([grads[i] for i in bucket],
                                         [trainable[i].attrs["shape"] for i in bucket],
                                         [trainable[i].name for i in bucket])
        summed.update(zip(bucket, parts))
    return optimizer.updates(trainable, [summed[i] for i in range(len(trainable))], global_loss)


def gradient_buckets(params, bucket_bytes) -> list[list[int]]:
    """Indices of `params` grouped into buckets of at most `bucket_bytes` (one parameter
    larger than that is a bucket of its own), last parameters first: the backward pass
    computes their gradients first, so the first bucket can start early."""
    buckets, current, size = [], [], 0
    for i in reversed(range(len(params))):
        p = params[i]
        nb = nbytes(p.attrs["shape"], p.attrs.get("dtype") or "float32")
        if current and size + nb > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append(i)
        size += nb
    return buckets + ([current] if current else [])


def trainable_parameters(built) -> list:
    return [p for p in built.parameters if p.attrs.get("trainable", True)]


def sample_feed(built, batch, fill="zeros", seed=0) -> dict:
    """Initial parameters and a batch of `fill` ("zeros", or "random": normal floats and 0/1
    ids) for every graph input: planning needs shapes only, profiling needs realistic work."""
    rng = np.random.default_rng(seed)
    feed = {p: init_value(p, rng) for p in built.parameters}
    for node in built.feeds.values():
        shape = tuple(batch if d is None else d for d in node.attrs["shape"])
        dtype = node.attrs.get("dtype") or "float32"
        if fill == "zeros":
            feed[node] = np.zeros(shape, dtype=dtype)
        elif dtype == "int64":
            feed[node] = rng.integers(0, 2, shape)
        else:
            feed[node] = rng.standard_normal(shape).astype(np.float32)
    return feed


# ---- the plan report (`main.py plan`, the memory-plan view) --------------------------------

def plan_report(doc, batch, checkpoint=None, inference=False, schedule="auto", procs=1) -> dict:
    """Training plans the step's forward, backward and optimizer updates; inference the
    logits alone. Planned from shapes alone: no parameter is initialised, nothing runs.
    procs > 1: one rank's data-parallel step (its share of the batch), with the allreduce
    buckets."""
    built = layers.build(doc, training=not inference, distributed=procs > 1 and not inference)
    optimizer = None
    if inference:
        outputs = [built.logits]
    else:
        config = training_config(doc)
        optimizer = make_optimizer(config)
        step = training_step(built, optimizer, procs, config["bucket_bytes"])
        outputs = [step.loss, *step.updates]
        batch = -(-batch // procs)  # the largest share
    order = verify(outputs)
    plan = compile_plan(order, outputs, source_specs(order, batch), schedule=schedule,
                        checkpoint=None if checkpoint in (None, "none") else checkpoint,
                        **backend_plan_options(backends.get("numpy")))  # as a run here plans it
    report = {"graph": doc.name, "batch": batch, "mode": "inference" if inference else "training",
              "checkpoint": checkpoint or "none", "order": schedule, "memory": dict(plan.report),
              "node_of": dict(built.node_of)}
    report.update(plan_tables(plan, built.node_of))
    report["persistent"] = persistent_allocations(built, optimizer)
    if has_blocks(doc):  # node ids inside blocks are paths: totals per top-level block
        report["blocks"] = plan_rows(doc, report, built.macs, batch)
    if procs > 1:
        report["allreduce buckets"] = bucket_rows(plan, built.node_of)
    report["notes"] = budget_notes(report)
    return report


def bucket_rows(plan, node_of) -> list[dict]:
    """Each gradient bucket: its parameters, size, and the steps its allreduce overlaps (it
    starts after the bucket's last gradient and is waited on at the end of the step)."""
    schedule = plan.schedule
    at = {n: i for i, n in enumerate(schedule)}
    rows = []
    for start in (n for n in schedule if n.op == "allreduce_start"):
        wait = next(n for n in schedule if n.op == "allreduce_wait" and n.inputs[0] is start)
        nodes = dict.fromkeys(node_of.get(p, p) for p in start.attrs["params"])
        rows.append({"bucket": len(rows) + 1, "gradients of": ", ".join(nodes),
                     "bytes": nbytes(plan.shapes[start], plan.dtypes[start]),
                     "starts at step": at[start], "waited at step": at[wait],
                     "steps overlapped": at[wait] - at[start] - 1})
    return rows


def budget_notes(report) -> list[str]:
    """A checkpoint budget the plan cannot keep, said plainly (the greedy keeps a value
    once the unkept bytes pass the budget, so one large layer output already exceeds it)."""
    mode = report["checkpoint"]
    if not str(mode).startswith("budget="):
        return []
    budget, mem = int(mode.split("=", 1)[1]), report["memory"]
    stored = mem.get("stored_activation_bytes", 0)
    if stored <= budget:
        return []
    return [f"checkpoint budget {budget:,} bytes is not met: {stored:,} bytes of forward values "
            f"are still stored when the backward pass starts (the arena peaks at "
            f"{mem['planned_bytes']:,} bytes); no recomputation order gets below one layer's output"]


def source_specs(order, batch) -> dict:
    """Shape-and-dtype stand-ins for every fed value (data, parameters, optimizer state), the
    batch axis set to `batch`: what the compiler reads of a source, without the array."""
    return {n: ShapeSpec(tuple(batch if d is None else d for d in n.attrs["shape"]),
                         n.attrs.get("dtype") or "float32")
            for n in order if n.opdef.fed}


def check_memory(report, max_memory=None):
    """Refuse (LoomError, with the numbers) a planned step that would not fit in memory:
    parameters, optimizer state, one batch and the arena, against `max_memory` bytes or,
    by default, the machine's memory."""
    mem = report["memory"]
    refuse_oversized(f"the {report['mode']} step at batch {report['batch']}",
                     {"parameters": mem["param_bytes"], "optimizer state": mem["state_bytes"],
                      "batch": mem["feed_bytes"], "arena": mem["planned_bytes"]}, max_memory)


def check_training_memory(doc, overrides=None, max_memory=None):
    """What `train` runs before it allocates anything: plan its step (batch size and
    checkpointing as configured) from shapes and refuse it when it would not fit."""
    config = training_config(doc, overrides)
    check_memory(plan_report(doc, config["batch_size"], config["checkpoint"]), max_memory)


def persistent_allocations(built, optimizer) -> list[dict]:
    """Parameters and, for training, the optimizer's state arrays: allocations that live
    across steps, outside the arena."""
    rows = [{"name": p.name, "role": "parameter", "node": built.node_of.get(p.name, ""),
             "bytes": nbytes(p.attrs["shape"], p.attrs.get("dtype") or "float32")}
            for p in built.parameters]
    for key, node in (optimizer.state_nodes.items() if optimizer else ()):
        param = key.rsplit("/", 1)[0]
        rows.append({"name": key, "role": "optimizer", "node": built.node_of.get(param, ""),
                     "bytes": nbytes(node.attrs["shape"], node.attrs.get("dtype") or "float32")})
    return rows


# ---- the profile (the editor's Profile tab) ----------------------------------------------

def profile_step(doc, batch=64, steps=5) -> dict:
    """{document node id: milliseconds per step} for the forward + backward pass, from the
    executor's per-op clock; backward ops count towards the node whose values they read."""
    built = layers.build(doc, training=True)
    params = trainable_parameters(built)
    ex = Executor([built.loss, *gradients(built.loss, params)], profile=True)
    feed = sample_feed(built, batch, fill="random")
    ex.run(feed, to_numpy=False)  # warm-up (first touches of the arena, caches): not timed
    warm = ex.profile()
    for _ in range(steps):
        ex.run(feed, to_numpy=False)
    owner = owners(ex.plan.schedule, built.node_of)
    per_node: dict = {}
    for name, seconds in ex.profile().items():
        key = owner.get(name, "(other)")
        per_node[key] = per_node.get(key, 0.0) + 1000 * (seconds - warm.get(name, 0.0)) / steps
    return per_node


def owners(schedule, node_of) -> dict:
    """Backward nodes belong to the editor node whose values they read (nearest input)."""
    owner = {}
    for node in schedule:
        if node.name in node_of:
            owner[node.name] = node_of[node.name]
            continue
        for inp in node.inputs:
            found = node_of.get(inp.name) or owner.get(inp.name)
            if found:
                owner[node.name] = found
                break
    return owner
