"""Which steps of a plan must wait for which: what a device backend needs to run steps out
of order (several streams) or as one fused kernel. Pure functions of a Plan.

The arena reuses bytes, so two steps conflict when they touch overlapping byte ranges and
one of them writes (read-after-write, write-after-read, write-after-write), and also when
one updates a source in place (a parameter, optimizer state) that the other reads."""
from __future__ import annotations


def overwritten_while_fused(tail, plan) -> bool:
    """A source the kernel reads (a parameter) that an op between the group's first and
    last member updates in place: the kernel, running at the last member, would read the
    new value. Such a group runs op by op."""
    schedule, alias = plan.schedule, plan.alias
    first, last = plan.position[tail[0]], plan.position[tail[-1]]
    reads = {alias.get(i, i) for m in tail for i in m.inputs}
    for node in schedule[first:last]:
        if reads & {alias.get(node.inputs[k], node.inputs[k]) for k in node.opdef.mutates}:
            return True
    return False


def step_dependencies(plan, live, fused) -> list[list[int]]:
    """For each live step (positions in `live`), the earlier live steps it must wait for on
    another stream: read-after-write, write-after-read and write-after-write on arena byte
    ranges (buffers are reused) and on sources updated in place (parameters, state)."""
    schedule, alias = plan.schedule, plan.alias
    touched = []  # per live step: (reads, writes) as sets of resource keys / byte ranges
    for i in live:
        node = schedule[i]
        reads = fused[node].inputs if node in fused else node.inputs
        reads = [alias.get(r, r) for r in reads]
        writes = [node, *(alias.get(node.inputs[k], node.inputs[k]) for k in node.opdef.mutates)]
        touched.append((_resources(plan, reads), _resources(plan, writes, workspace_of=node)))
    deps = []
    for j, (reads_j, writes_j) in enumerate(touched):
        deps.append([i for i, (reads_i, writes_i) in enumerate(touched[:j])
                     if _conflict(writes_i, reads_j | writes_j) or _conflict(writes_j, reads_i)])
    return deps


def _resources(plan, nodes, workspace_of=None) -> set:
    out = set()
    for n in nodes:
        buf = plan.buffers.get(n)
        out.add(("bytes", buf.offset, buf.offset + buf.size) if buf is not None else ("value", id(n)))
    for buf, _, _ in plan.workspaces.get(workspace_of, {}).values():
        out.add(("bytes", buf.offset, buf.offset + buf.size))
    return out


def _conflict(a: set, b: set) -> bool:
    for x in a:
        for y in b:
            if x[0] == y[0] == "bytes":
                if x[1] < y[2] and y[1] < x[2]:
                    return True
            elif x == y:
                return True
    return False
