"""The compile pipeline: shapes -> identity aliases -> schedule -> buffer lifetimes ->
arena offsets. Produces a `Plan`, a plain description the executor runs."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import memory, shapes as shape_pass, simplify

SOURCE_OPS = ("placeholder", "parameter", "constant")


@dataclass
class Plan:
    schedule: list  # nodes computed, in order
    shapes: dict
    dtypes: dict
    alias: dict  # node -> node whose value it is
    buffers: dict  # node -> memory.Buffer (one per scheduled node)
    arena_bytes: int
    report: dict = field(default_factory=dict)

    def value_of(self, node):
        return self.alias.get(node, node)


def compile_plan(order, outputs, source_values) -> Plan:
    shapes, dtypes = shape_pass.infer(order, source_values)
    alias = simplify.identity_aliases(order, shapes, dtypes)
    schedule = [n for n in order if n.op not in SOURCE_OPS and n not in alias]
    buffers = _buffers(schedule, outputs, alias, shapes, dtypes)
    _assign_roles(buffers, outputs)
    arena = memory.plan_offsets(list(buffers.values()))
    plan = Plan(schedule, shapes, dtypes, alias, buffers, arena)
    plan.report = _report(plan, order, source_values)
    return plan


def _buffers(schedule, outputs, alias, shapes, dtypes) -> dict:
    step_of = {n: i for i, n in enumerate(schedule)}
    last = {n: i for i, n in enumerate(schedule)}
    for i, node in enumerate(schedule):
        for k, inp in enumerate(node.inputs):
            if k in node.opdef.shape_only:
                continue  # only its shape is read: the value may already be overwritten
            src = alias.get(inp, inp)
            if src in last:
                last[src] = max(last[src], i)
    for out in outputs:  # results stay valid until the next run
        src = alias.get(out, out)
        if src in last:
            last[src] = len(schedule)
    return {n: memory.Buffer(n.name, shape_pass.nbytes(shapes[n], dtypes[n]), step_of[n], last[n])
            for n in schedule}


def _assign_roles(buffers, outputs):
    """Values the first output (the loss) depends on are activations; the rest of a
    training graph is the backward pass: gradients."""
    from ..graph import topological_order
    forward = set(topological_order(outputs[:1]))
    for node, buf in buffers.items():
        buf.role = "activation" if node in forward else "gradient"


def _report(plan: Plan, order, source_values) -> dict:
    bufs = list(plan.buffers.values())
    feeds = [n for n in order if n.op == "placeholder"]
    params = [n for n in order if n.op == "parameter"]
    size = lambda ns: sum(shape_pass.nbytes(plan.shapes[n], plan.dtypes[n]) for n in ns)  # noqa
    return {
        "naive_bytes": memory.no_sharing(bufs),
        "planned_bytes": plan.arena_bytes,
        "lower_bound_bytes": memory.lower_bound(bufs),
        "feed_bytes": size(feeds),
        "param_bytes": size(params),
        "steps": len(plan.schedule),
        "buffers": [{"name": b.name, "bytes": b.nbytes, "first": b.first, "last": b.last,
                     "offset": b.offset, "role": b.role} for b in bufs],
    }
