"""Fusion groups with TVM-like rules, computed on the schedule:
  - maximal chains of elementwise / broadcast ops fuse together;
  - an opaque matmul/conv (`OpDef.epilogue_head`) takes a following elementwise epilogue
    (bias add, activation);
  - elementwise producers fuse into a following reduction;
  - never fuse across a value with several consumers (it must be materialised).
On numpy the groups are reported (and drive the GPU backend's generated kernels)."""
from __future__ import annotations

FUSIBLE = ("elementwise", "broadcast")


def fusion_groups(schedule, readers_of, outputs, alias=None) -> list[list]:
    alias = alias or {}
    groups, group_of = [], {}
    for node in schedule:
        producer = _fusible_producer(node, readers_of, outputs, group_of, alias)
        if producer is not None:
            group = group_of[producer]
            group.append(node)
        else:
            group = [node]
            groups.append(group)
        group_of[node] = group
    return groups


def _fusible_producer(node, readers_of, outputs, group_of, alias):
    kind = node.opdef.kind
    if kind not in FUSIBLE and kind != "reduction":
        return None
    for inp in node.inputs:
        if inp not in group_of or inp in outputs:
            continue
        if len(_value_readers(inp, readers_of, alias)) != 1:
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


def _value_readers(node, readers_of, alias) -> set:
    """Readers of node's value. Not: an op ordered after it without reading it (an
    optimizer update waiting for every reader of its parameter), nor one reading only its
    shape (sum_to_like's target): neither needs the value materialised."""
    readers = set()
    for r in readers_of.get(node, ()):
        positions = [k for k, i in enumerate(r.inputs) if alias.get(i, i) is node]
        if any(k not in r.opdef.shape_only for k in positions):
            readers.add(r)
    return readers


def kernel_tail(group) -> list:
    """The members one generated kernel computes: the group without an opaque head (a
    matmul/conv runs as its own step, its elementwise epilogue fused); [] for a group that
    leaves nothing to fuse."""
    tail = group[1:] if group[0].opdef.kind not in (*FUSIBLE, "reduction") else group
    return tail if len(tail) >= 2 else []


def extend_lifetimes(last, groups, steps, alias):
    """Where groups run as single kernels, every external input of a kernel is read at the
    kernel's step (its last member's), not at the member that reads it: keep it alive until
    then, so the planner gives nothing else its bytes in between."""
    position = {n: i for i, n in enumerate(steps)}
    for group in groups:
        tail = kernel_tail(group)
        members = set(tail)
        end = position[tail[-1]] if tail else None
        for member in tail:
            for inp in member.inputs:
                src = alias.get(inp, inp)
                if src not in members and src in last:
                    last[src] = max(last[src], end)
