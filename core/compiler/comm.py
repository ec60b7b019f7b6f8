"""Where communication goes in a schedule: each bucket's allreduce starts right after the
last of its gradients is computed, and is waited on (its parts unpacked) right before the
first op that reads one of them, so the rest of the backward pass runs while it travels.
A pure function of the schedule; every other op keeps its relative order."""
from __future__ import annotations

STARTS = ("allreduce_start",)
LATE = ("allreduce_wait", "bucket_part")


def overlap_communication(steps: list, alias=None) -> list:
    """`alias`: node -> the node whose value it is (aliased nodes are not in `steps`)."""
    if not any(n.op in STARTS for n in steps):
        return steps
    alias = alias or {}
    scheduled = set(steps)
    starts = [n for n in steps if n.op in STARTS]
    late = [n for n in steps if n.op in LATE]
    readers = _late_readers(steps, set(late))
    out, done = [], set()

    def emit(node):
        out.append(node)
        done.add(node)

    def emit_ready_starts():
        for start in starts:
            inputs = (alias.get(i, i) for i in start.inputs)
            if start not in done and all(i in done or i not in scheduled for i in inputs):
                emit(start)

    emit_ready_starts()  # a bucket of gradients that need no step (none in practice)
    for node in steps:
        if node.op in STARTS or node.op in LATE:
            continue
        for waiting in readers.get(node, ()):  # the wait and parts this op reads, in order
            if waiting not in done:
                emit(waiting)
        emit(node)
        emit_ready_starts()
    out.extend(n for n in late if n not in done)  # parts no op reads (outputs)
    return out


def _late_readers(steps, late) -> dict:
    """op -> the waits and parts that must run just before it (its late inputs, and their
    late inputs first), in schedule order."""
    position = {n: i for i, n in enumerate(steps)}
    needs = {}
    for node in steps:
        if node in late:
            continue
        chain, stack = set(), [i for i in node.inputs if i in late]
        while stack:
            n = stack.pop()
            if n not in chain:
                chain.add(n)
                stack.extend(i for i in n.inputs if i in late)
        if chain:
            needs[node] = sorted(chain, key=position.get)
    return needs
