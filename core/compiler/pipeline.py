"""The compile pipeline, each step a pure function:
shapes -> checkpointing (recompute) -> identity aliases + CSE -> schedule (topological or
memory-aware) -> buffer lifetimes with in-place sharing -> arena offsets -> fusion groups.
Produces a `Plan`, a plain description the executor runs."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import topological_order
from . import checkpoint as ckpt, cse, fusion, memory, schedule as sched, shapes as shape_pass, simplify

SOURCE_OPS = ("placeholder", "parameter", "constant")


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

    def value_of(self, node):
        return self.alias.get(node, node)


def compile_plan(order, outputs, source_values, *, schedule="auto", checkpoint=None,
                 inplace=True, cse_pass=True, plan_memory=True) -> Plan:
    shapes, dtypes = shape_pass.infer(order, source_values)
    alias = {}
    if checkpoint not in (None, "none"):
        new_outputs = ckpt.recompute(outputs, checkpoint, shapes, dtypes)
        alias.update({o: n for o, n in zip(outputs, new_outputs) if o is not n})
        order = topological_order(new_outputs)
        shape_pass.infer(order, source_values, shapes, dtypes)
    alias.update(simplify.identity_aliases(order, shapes, dtypes))
    if cse_pass:
        alias.update(cse.common_subexpressions_with(order, alias))
    alias = _resolve_chains(alias)
    results = {alias.get(o, o) for o in outputs}
    candidates = [n for n in order if n.op not in SOURCE_OPS and n not in alias]
    deps, readers = _edges(candidates, alias)
    sizes = {n: shape_pass.nbytes(shapes[n], dtypes[n]) for n in candidates}
    steps = _choose_schedule(candidates, schedule, sizes, readers, deps, results)
    if checkpoint not in (None, "none"):
        steps = ckpt.sink_recomputes(steps)
    buffers = _buffers(steps, results, alias, shapes, dtypes, inplace, plan_memory)
    _assign_roles(buffers, [alias.get(outputs[0], outputs[0])] if outputs else [])
    workspaces = _workspaces(steps, alias, shapes, dtypes)
    unique = list({id(b): b for b in buffers.values()}.values())
    unique += [buf for ws in workspaces.values() for buf, _, _ in ws.values()]
    arena = memory.plan_offsets(unique) if plan_memory else _no_sharing_offsets(unique)
    plan = Plan(steps, shapes, dtypes, alias, buffers, arena,
                fusion.fusion_groups(steps, readers, results), sched.assign_streams(steps, deps),
                workspaces=workspaces)
    plan.report = _report(plan, unique, order, {id(buffers[r]) for r in results if r in buffers})
    return plan


def _resolve_chains(alias):
    def root(n):
        seen = set()
        while n in alias and n not in seen:
            seen.add(n)
            n = alias[n]
        return n
    return {n: root(n) for n in alias}


def _edges(candidates, alias):
    members = set(candidates)
    deps, readers = {}, {}
    for n in candidates:
        deps[n] = []
        for i in n.inputs:
            src = alias.get(i, i)
            if src in members and src not in deps[n]:
                deps[n].append(src)
                readers.setdefault(src, []).append(n)
    _writers_after_readers(candidates, alias, deps, readers)
    return deps, readers


def _writers_after_readers(candidates, alias, deps, readers):
    """An op that overwrites a source in place (an optimizer update) depends on every other
    op reading that source: a write-after-read edge the data flow alone does not give."""
    readers_of = {}
    for n in candidates:
        for i in n.inputs:
            src = alias.get(i, i)
            if src.op in SOURCE_OPS:
                readers_of.setdefault(src, []).append(n)
    for n in candidates:
        for src in sched.mutated_sources(n, alias):
            for r in readers_of.get(src, ()):
                if r is not n and r not in deps[n] and src not in sched.mutated_sources(r, alias):
                    deps[n].append(r)
                    readers.setdefault(r, []).append(n)


def _choose_schedule(candidates, mode, sizes, readers, deps, results):
    """topo: breadth-first topological order (the baseline); memory: the greedy order;
    auto: whichever of the greedy order, the graph's depth-first construction order and the
    baseline has the lowest peak (so auto is never worse than the baseline)."""
    baseline = sched.breadth_first(candidates, deps, readers)
    if mode == "topo":
        return baseline
    greedy = sched.memory_aware(candidates, sizes, readers, deps, results)
    if mode == "memory":
        return greedy
    peak = lambda s: sched.live_peak(s, sizes, readers, results)  # noqa: E731
    return min((greedy, list(candidates), baseline), key=peak)


def _last_reads(steps, results, alias):
    last = {n: i for i, n in enumerate(steps)}
    for i, node in enumerate(steps):
        for k, inp in enumerate(node.inputs):
            src = alias.get(inp, inp)
            if k not in node.opdef.shape_only and src in last:
                last[src] = max(last[src], i)
    for r in results:  # results stay valid until the next run
        if r in last:
            last[r] = len(steps)
    return last


def _buffers(steps, results, alias, shapes, dtypes, inplace, plan_memory) -> dict:
    last = _last_reads(steps, results, alias)
    buffers = {}
    for i, node in enumerate(steps):
        size = shape_pass.nbytes(shapes[node], dtypes[node])
        shared = _inplace_partner(node, i, buffers, last, alias, size, dtypes) if inplace else None
        if shared is not None:
            shared.last = max(shared.last, last[node])
            buffers[node] = shared
        else:
            buffers[node] = memory.Buffer(node.name, size, i, last[node])
    return buffers


def _inplace_partner(node, step, buffers, last, alias, size, dtypes):
    """The buffer of an input this op may overwrite: read last here, same size and dtype."""
    for k in node.opdef.inplace:
        if k >= len(node.inputs):
            continue
        src = alias.get(node.inputs[k], node.inputs[k])
        buf = buffers.get(src)
        if buf is None or buf.last != step or buf.nbytes != size or dtypes[src] != dtypes[node]:
            continue
        return buf
    return None


def _workspaces(steps, alias, shapes, dtypes) -> dict:
    """Scratch buffers of ops that declare a workspace, each alive for its one step."""
    out = {}
    for i, node in enumerate(steps):
        rule = node.opdef.workspace
        if rule is None:
            continue
        in_shapes = [shapes[alias.get(inp, inp)] for inp in node.inputs]
        specs = rule(in_shapes, node.attrs, shapes[node], dtypes[node])
        out[node] = {name: (memory.Buffer(f"{node.name}/{name}", shape_pass.nbytes(shape, dtype),
                                          i, i, role="workspace"), tuple(shape), dtype)
                     for name, (shape, dtype) in specs.items()}
    return out


def _no_sharing_offsets(buffers):
    offset = 0
    for b in buffers:
        b.offset = offset
        offset += b.size
    return offset


def _assign_roles(buffers, loss):
    """Values the loss depends on are activations; the rest of a training graph is the
    backward pass: gradients."""
    forward = set(topological_order(loss)) if loss else set()
    for node, buf in buffers.items():
        if node.name == buf.name:  # a shared buffer takes the role of its first writer
            buf.role = "activation" if node in forward else "gradient"


def _report(plan: Plan, unique, order, result_buffers) -> dict:
    feeds = [n for n in order if n.op == "placeholder" and not n.attrs.get("state")]
    state = [n for n in order if n.op == "placeholder" and n.attrs.get("state")]
    params = [n for n in order if n.op == "parameter"]
    size = lambda ns: sum(shape_pass.nbytes(plan.shapes[n], plan.dtypes[n]) for n in ns)  # noqa
    naive = [memory.Buffer(n.name, shape_pass.nbytes(plan.shapes[n], plan.dtypes[n]), 0, 0)
             for n in plan.schedule]
    scratch = [b for b in unique if b.role == "workspace"]
    return {
        "naive_bytes": memory.no_sharing(naive + scratch),
        "workspace_bytes": memory.no_sharing(scratch),
        "planned_bytes": plan.arena_bytes,
        "lower_bound_bytes": memory.lower_bound(unique),
        "feed_bytes": size(feeds),
        "state_bytes": size(state),  # fed arrays a step updates in place (optimizer state)
        "param_bytes": size(params),
        "stored_activation_bytes": stored_activations(unique),
        # the requested outputs (e.g. every weight gradient) are all live when the step
        # ends, so no plan of this graph goes below them
        "result_bytes": sum(b.size for b in unique if id(b) in result_buffers),
        "steps": len(plan.schedule),
        "inplace_steps": len(plan.schedule) - len(unique),
        "fusion_groups": sum(1 for g in plan.groups if len(g) > 1),
        "buffers": [{"name": b.name, "bytes": b.nbytes, "first": b.first, "last": b.last,
                     "offset": b.offset, "role": b.role} for b in unique],
    }


def stored_activations(buffers) -> int:
    """Bytes of forward values still held when the backward pass writes its first gradient:
    what the forward pass leaves for backward (all of it without checkpointing, about √n
    checkpoints with "sqrt"); 0 for a graph without a backward pass."""
    grads = [b.first for b in buffers if b.role == "gradient"]
    if not grads:
        return 0
    start = min(grads)
    return sum(b.size for b in buffers if b.role == "activation" and b.first < start <= b.last)
