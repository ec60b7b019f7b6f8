"""Plain tables (lists of dicts) describing a Plan, for `main.py plan` and its `--json`."""
from __future__ import annotations

from .shapes import nbytes


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
    groups = [{"group": i, "ops": " → ".join(n.op for n in g), "nodes": len(g),
               "first step": plan.schedule.index(g[0])}
              for i, g in enumerate(plan.groups) if len(g) > 1]
    scratch = [buf for ws in plan.workspaces.values() for buf, _, _ in ws.values()]
    buffers = [{"buffer": b.name, "role": b.role, "bytes": b.nbytes, "first": b.first,
                "last": b.last, "offset": b.offset, "values": len(shared.get(id(b), ()))}
               for b in list({id(b): b for b in plan.buffers.values()}.values()) + scratch]
    return {"schedule": schedule, "fusion groups": groups, "buffers": buffers}


def _layer(node, node_of):
    return layer_of(node.name, node_of)


def layer_of(buffer_or_node_name, node_of):
    """The document node a compiled value or buffer came from: recomputed copies end in "'",
    workspace buffers are "<node>/<scratch name>"."""
    return node_of.get(buffer_or_node_name.split("/")[0].rstrip("'"), "")
