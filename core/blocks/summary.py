"""Totals per block: what the plan report, the memory-plan view and the profile show for
each top-level instance ("(top level)" for nodes outside blocks). They count flat node ids
(`stage1/conv1`), which is what the engine reports everything under."""
from __future__ import annotations

from ..compiler.report import layer_of
from ..layers.flatten import block_of

TOP_LEVEL = "(top level)"


def per_block(totals_by_flat_id: dict) -> dict:
    """{top-level instance id or "(top level)": sum of its nodes' totals}, in first-seen order."""
    out: dict = {}
    for flat_id, total in totals_by_flat_id.items():
        key = block_of(flat_id) or TOP_LEVEL
        out[key] = out.get(key, 0) + total
    return out


def _sum_by(rows, key, value) -> dict:
    out: dict = {}
    for row in rows:
        node = key(row)
        if node:
            out[node] = out.get(node, 0) + value(row)
    return out


def plan_rows(doc, report, macs, batch) -> list[dict]:
    """One row per top-level instance (document order) and one for the rest: parameter and
    optimizer-state bytes, the bytes of the forward buffers its nodes compute, and its
    multiply-adds for the planned batch (forward pass)."""
    node_of = report["node_of"]
    persistent = report.get("persistent", [])
    columns = {
        "parameter bytes": _sum_by([r for r in persistent if r["role"] == "parameter"],
                                   lambda r: r["node"], lambda r: r["bytes"]),
        "optimizer bytes": _sum_by([r for r in persistent if r["role"] == "optimizer"],
                                   lambda r: r["node"], lambda r: r["bytes"]),
        "activation bytes": _sum_by([b for b in report.get("buffers", []) if b["role"] == "activation"],
                                    lambda b: layer_of(b["buffer"], node_of), lambda b: b["bytes"]),
        "multiply-adds": {node: m * batch for node, m in macs.items()},
    }
    totals = {name: per_block(values) for name, values in columns.items()}
    keys = [n.id for n in doc.nodes.values() if n.kind == "Block"] + [TOP_LEVEL]
    return [{"block": key, **{name: totals[name].get(key, 0) for name in columns}} for key in keys]
