"""Plain descriptions of a Plan: the memory report (`Executor.memory_report()`) and the
tables (lists of dicts) for `main.py plan` and its `--json`."""
from __future__ import annotations

from . import memory
from .shapes import nbytes


def memory_report(plan, order, results) -> dict:
    """Byte counts of the plan of `order` (see the README's `memory_report()`), and its buffers."""
    unique = memory.distinct(plan.buffers, plan.workspaces)
    result_buffers = {id(plan.buffers[r]) for r in results if r in plan.buffers}
    feeds = [n for n in order if n.op == "placeholder" and not n.attrs.get("state")]
    state = [n for n in order if n.op == "placeholder" and n.attrs.get("state")]
    params = [n for n in order if n.op == "parameter"]
    size = lambda ns: sum(nbytes(plan.shapes[n], plan.dtypes[n]) for n in ns)  # noqa
    naive = sum(plan.buffers[n].size for n in plan.schedule)  # a shared buffer has its values' size
    scratch = [b for b in unique if b.role == "workspace"]
    return {
        "naive_bytes": naive + memory.no_sharing(scratch),
        "workspace_bytes": memory.no_sharing(scratch),
        "planned_bytes": plan.arena_bytes,
        "lower_bound_bytes": memory.lower_bound(unique),
        "feed_bytes": size(feeds),
        "state_bytes": size(state),  # fed arrays a step updates in place (optimizer state)
        "param_bytes": size(params),
        "stored_activation_bytes": memory.stored_activations(unique),
        # the requested outputs (e.g. every weight gradient) are all live when the step
        # ends, so no plan of this graph goes below them
        "result_bytes": sum(b.size for b in unique if id(b) in result_buffers),
        "steps": len(plan.schedule),
        # steps writing into a buffer an earlier step owns (workspaces are not values)
        "inplace_steps": len(plan.schedule) - len({id(b) for b in plan.buffers.values()}),
        "fusion_groups": sum(1 for g in plan.groups if len(g) > 1),
        "buffers": [{"name": b.name, "bytes": b.nbytes, "first": b.first, "last": b.last,
                     "offset": b.offset, "role": b.role} for b in unique],
    }


def plan_tables(plan, node_of=None) -> dict:
    node_of = node_of or {}
    group_of = {n: i for i, g in enumerate(plan.groups) for n in g}
    shared = {}
    for node, buf in plan.buffers.items():
        shared.setdefault(id(buf), []).append(node)
    schedule = [{"step": i, "node": n.name, "layer": _layer(n, node_of), "op": n.op,
                 "shape": list(plan.shapes[n]), "bytes": nbytes(plan.shapes[n], plan.dtypes[n]),
                 "group": group_of.get(n, -1), "stream": plan.streams.get(n, 0),
                 "in place": "yes" if plan.buffers[n].name != n.name else ""}
                for i, n in enumerate(plan.schedule)]
    step_of = {n: i for i, n in enumerate(plan.schedule)}
    groups = [{"group": i, "ops": " → ".join(n.op for n in g), "nodes": len(g),
               "first step": step_of[g[0]]}
              for i, g in enumerate(plan.groups) if len(g) > 1]
    buffers = [{"buffer": b.name, "role": b.role, "bytes": b.nbytes, "first": b.first,
                "last": b.last, "offset": b.offset, "values": len(shared.get(id(b), ()))}
               for b in memory.distinct(plan.buffers, plan.workspaces)]
    return {"schedule": schedule, "fusion groups": groups, "buffers": buffers}


def _layer(node, node_of):
    return layer_of(node.name, node_of)


def layer_of(buffer_or_node_name, node_of):
    """The document node a compiled value or buffer came from: recomputed copies end in "'",
    workspace buffers are "<node>/<scratch name>", and names of values inside blocks carry
    their path ("stage1/conv.weight.update/tmp"): the longest known prefix wins."""
    name = buffer_or_node_name
    while True:
        found = node_of.get(name.rstrip("'"))
        if found is not None or "/" not in name:
            return found or ""
        name = name.rpartition("/")[0]
