"""The compile pipeline, each step a pure function:
shapes -> checkpointing (recompute) -> transpositions folded into matmuls -> identity aliases
+ CSE -> schedule (topological or memory-aware) -> fusion groups -> buffer lifetimes with
in-place sharing -> workspaces (the chunk of the batch each convolution's scratch holds) ->
arena offsets.
Produces a `Plan`, a plain description the executor runs."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..graph import topological_order
from ..ops.base import is_source
from . import checkpoint as ckpt, comm, cse, fusion, memory, report, schedule as sched, workspace
from . import fold_transposes as transposes
from . import shapes as shape_pass, simplify


@dataclass
class Plan:
    schedule: list  # nodes computed, in order
    shapes: dict
    dtypes: dict
    alias: dict  # node -> node whose value it is
    buffers: dict  # node -> memory.Buffer (shared by nodes computed in place)
    arena_bytes: int
    groups: list = field(default_factory=list)  # fusion groups (lists of nodes)
    streams: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    workspaces: dict = field(default_factory=dict)  # node -> {name: (Buffer, shape, dtype)}

    @functools.cached_property
    def position(self) -> dict:
        """node -> its index in the schedule (list.index per fusion group made compiling
        a 14,000-node step 0.7 s slower)."""
        return {node: i for i, node in enumerate(self.schedule)}


def compile_plan(order, outputs, source_values, *, schedule="auto", checkpoint=None,
                 inplace=True, cse_pass=True, plan_memory=True, fused_kernels=False,
                 host_threads=1, fold_transposes=False) -> Plan:
    """fused_kernels: the backend runs each fusion group as one kernel (the GPU), so the
    inputs of a group live until its last member (see fusion.extend_lifetimes).
    host_threads: the CPU threads a step may run parts of an op on (a convolution's chunks,
    each in a workspace slot of its own: workspace.specs).
    fold_transposes: the backend's matmul is numpy's, which reads and writes permuted views
    (compiler/fold_transposes.py)."""
    shapes, dtypes = shape_pass.infer(order, source_values)
    alias = {}
    current = list(outputs)
    for rewrite in _rewrites(checkpoint, fold_transposes):
        current = rewrite(current, shapes, dtypes)
        order = topological_order(current)
        shape_pass.infer(order, source_values, shapes, dtypes)  # the new nodes'
    alias.update({o: n for o, n in zip(outputs, current) if o is not n})
    alias.update(simplify.identity_aliases(order, shapes, dtypes))
    if cse_pass:
        alias.update(cse.common_subexpressions_with(order, alias))
    alias = _resolve_chains(alias)
    results = {alias.get(o, o) for o in outputs}
    needed = _computed(results, alias)
    candidates = [n for n in order if not is_source(n) and n not in alias and n in needed]
    deps, readers = sched.edges(candidates, alias)
    sizes = _sizes(candidates, shapes, dtypes)
    steps = sched.choose(candidates, schedule, sizes, readers, deps, results)
    if checkpoint not in (None, "none"):
        steps = ckpt.sink_recomputes(steps)
    steps = comm.overlap_communication(steps, alias)
    groups = fusion.fusion_groups(steps, readers, results, alias)
    last = memory.last_reads(steps, results, _reads(alias))
    if fused_kernels:
        fusion.extend_lifetimes(last, groups, steps, alias)
    buffers = memory.assign_buffers(steps, last, sizes, dtypes,
                                    _overwritable(alias) if inplace else None,
                                    _reinterpreted(alias) if inplace else None)
    memory.assign_roles(buffers, _forward(outputs, alias))
    arena, workspaces = _place(buffers, workspace.candidates(
        steps, buffers, alias, shapes, dtypes, plan_memory, host_threads,
        defaults_only=_has_backward(buffers)), plan_memory)
    plan = Plan(steps, shapes, dtypes, alias, buffers, arena,
                groups, sched.assign_streams(steps, deps),
                workspaces=workspaces)
    plan.report = report.memory_report(plan, order, results)
    return plan


# Larger chunks (fewer, longer calls) may cost this much more arena: a 14×14 convolution of
# the bench's wide CNN took 3× as long in one-sample chunks as in one chunk of 64, for an arena
# 2.1% smaller.
CHUNK_TOLERANCE = 0.05


def _place(buffers, candidates, plan_memory):
    """(arena bytes, workspaces): every buffer placed, for each candidate set of workspaces
    (workspace.candidates, largest chunks first) in turn. A step with a backward pass is
    offered only the ops' default chunks: a training step is what a user waits on, and those
    columns are bounded by conv.GEMM_COLUMNS, not by the batch as its stored activations
    are (LeNet's step at batch 64: 5.7 against 7.2 ms in the chunks that fit under the
    one-sample peak, for 7.1 against 3.9 MB). Others (inference) keep the first whose arena
    is within CHUNK_TOLERANCE of the smallest."""
    placed = []
    for workspaces in candidates:
        unique = memory.distinct(buffers, workspaces)
        arena = memory.plan_arena(unique) if plan_memory else memory.plan_unshared(unique)
        placed.append((arena, workspaces, [(b, b.offset) for b in unique]))
    smallest = min(arena for arena, _, _ in placed)
    arena, workspaces, offsets = next(p for p in placed if p[0] <= smallest * (1 + CHUNK_TOLERANCE))
    for b, offset in offsets:
        b.offset = offset
    return arena, workspaces


def _has_backward(buffers) -> bool:
    return any(buf.role == "gradient" for buf in buffers.values())


def _sizes(nodes, shapes, dtypes) -> dict:
    """node -> bytes of its value; computed once per (shape, dtype): a deep graph repeats few."""
    known, sizes = {}, {}
    for n in nodes:
        key = (shapes[n], dtypes[n])
        size = known.get(key)
        if size is None:
            size = known[key] = shape_pass.nbytes(*key)
        sizes[n] = size
    return sizes


def _rewrites(checkpoint, fold_transposes) -> list:
    """The graph rewrites a plan asks for, in order: outputs, shapes, dtypes -> new outputs."""
    rewrites = []
    if checkpoint not in (None, "none"):  # first: a set of values to keep names the graph's own
        rewrites.append(lambda outputs, shapes, dtypes: ckpt.recompute(outputs, checkpoint, shapes, dtypes))
    if fold_transposes:
        rewrites.append(transposes.fold)
    return rewrites


def _computed(results, alias) -> set:
    """The nodes some result needs, through the inputs of nodes that are computed (not
    aliases): a value only an alias read, for its shape, is left out (a transposition whose
    readers fold it, read for its shape by a sum that turned out an identity)."""
    seen, stack = set(), list(results)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(alias.get(i, i) for i in node.inputs)
    return seen


def _resolve_chains(alias):
    def root(n):
        seen = set()
        while n in alias and n not in seen:
            seen.add(n)
            n = alias[n]
        return n
    return {n: root(n) for n in alias}


# ---- what the memory planner needs to know of the ops, read from the op table -----------

def _reads(alias):
    """The values a step reads (through aliases): not the inputs it reads for their shape."""
    return lambda node: [alias.get(i, i) for k, i in enumerate(node.inputs)
                         if k not in node.opdef.shape_only]


def _overwritable(alias):
    """The inputs a step may compute into (OpDef.inplace), in order, through aliases."""
    return lambda node: [alias.get(node.inputs[k], node.inputs[k])
                         for k in node.opdef.inplace if k < len(node.inputs)]


def _reinterpreted(alias):
    """The value a reshape-like step (OpDef.reinterprets) may share a buffer with."""
    return lambda node: (alias.get(node.inputs[0], node.inputs[0])
                         if node.opdef.reinterprets else None)


def _forward(outputs, alias) -> set:
    """What outputs[0] (the loss) depends on: the forward pass."""
    return set(topological_order([alias.get(outputs[0], outputs[0])])) if outputs else set()
