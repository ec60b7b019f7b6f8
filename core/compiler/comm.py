"""Where communication goes in a schedule: each bucket's allreduce starts right after the
last of its gradients is computed, and the waits (with the updates that read the summed
gradients) move to the end of the step, as in PyTorch DDP, so the rest of the backward pass
runs while the buckets travel. A pure function of the schedule: every other op keeps its
relative order, and moving an update later never breaks an ordering (updates are sinks)."""
from __future__ import annotations

STARTS = ("allreduce_start",)
WAITS = ("allreduce_wait",)


def overlap_communication(steps: list, alias=None) -> list:
    """`alias`: node -> the node whose value it is (aliased nodes are not in `steps`)."""
    if not any(n.op in STARTS for n in steps):
        return steps
    alias = alias or {}
    scheduled = set(steps)
    deferred = _after_waits(steps, alias)
    starts = [n for n in steps if n.op in STARTS]
    out, done = [], set()

    def emit(node):
        out.append(node)
        done.add(node)

    def emit_ready_starts():
        for start in starts:
            inputs = (alias.get(i, i) for i in start.inputs)
            if start not in done and all(i in done or i not in scheduled for i in inputs):
                emit(start)

    emit_ready_starts()
    for node in steps:
        if node.op not in STARTS and node not in deferred:
            emit(node)
            emit_ready_starts()
    out.extend(n for n in steps if n in deferred)
    return out


def _after_waits(steps, alias) -> set:
    """The waits and every op reading (through any chain) what a wait produced."""
    deferred = set()
    for node in steps:
        if node.op in WAITS or any(alias.get(i, i) in deferred for i in node.inputs):
            deferred.add(node)
    return deferred
