"""Fusion groups with TVM-like rules, computed on the schedule:
  - maximal chains of elementwise / broadcast ops fuse together;
  - an opaque matmul/conv (`OpDef.epilogue_head`) takes a following elementwise epilogue
    (bias add, activation);
  - elementwise producers fuse into a following reduction;
  - never fuse across a value with several consumers (it must be materialised).
On numpy the groups are reported (and drive the GPU backend's generated kernels)."""
from __future__ import annotations

FUSIBLE = ("elementwise", "broadcast")


def fusion_groups(schedule, readers_of, outputs) -> list[list]:
    groups, group_of = [], {}
    for node in schedule:
        producer = _fusible_producer(node, readers_of, outputs, group_of)
        if producer is not None:
            group = group_of[producer]
            group.append(node)
        else:
            group = [node]
            groups.append(group)
        group_of[node] = group
    return groups


def _fusible_producer(node, readers_of, outputs, group_of):
    kind = node.opdef.kind
    if kind not in FUSIBLE and kind != "reduction":
        return None
    for inp in node.inputs:
        if inp not in group_of or inp in outputs:
            continue
        if len(set(readers_of.get(inp, ()))) != 1:
            continue  # several consumers: the value is materialised
        head = group_of[inp][0]
        if group_of[inp][-1] is not inp:
            continue
        producer_kind = inp.opdef.kind
        if producer_kind in FUSIBLE or (head.opdef.epilogue_head and kind in FUSIBLE):
            if any(n.opdef.kind == "reduction" for n in group_of[inp]):
                continue  # nothing fuses after a reduction
            return inp
    return None
