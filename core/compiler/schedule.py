"""Scheduling: the dependency edges between the ops to schedule (data flow, plus
write-after-read edges for ops updating a source in place); the topological order is the
baseline; a memory-aware greedy order (run the ready node that frees the most bytes and
allocates the least) is kept only when its peak of live bytes is lower. Also: stream
assignment for independent branches (GPU backend)."""
from __future__ import annotations

import heapq
from itertools import accumulate

from ..ops.base import is_source
from . import memory


def mutated_sources(node, alias=None) -> set:
    """The source arrays an op overwrites in place (OpDef.mutates): it must be ordered after
    every other reader of them."""
    alias = alias or {}
    return {alias.get(node.inputs[k], node.inputs[k]) for k in node.opdef.mutates}


def edges(candidates, alias):
    """(deps, readers): node -> the candidates it must run after / that must run after it."""
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
            if is_source(src):
                readers_of.setdefault(src, []).append(n)
    for n in candidates:
        for src in mutated_sources(n, alias):
            for r in readers_of.get(src, ()):
                if r is not n and r not in deps[n] and src not in mutated_sources(r, alias):
                    deps[n].append(r)
                    readers.setdefault(r, []).append(n)


def choose(candidates, mode, sizes, readers, deps, results):
    """topo: breadth-first topological order (the baseline); memory: the greedy order;
    auto: whichever of the greedy order, the graph's depth-first construction order and the
    baseline has the lowest peak (so auto is never worse than the baseline)."""
    baseline = breadth_first(candidates, deps, readers)
    if mode == "topo":
        return baseline
    greedy = memory_aware(candidates, sizes, readers, deps, results)
    if mode == "memory":
        return greedy
    peak = lambda s: live_peak(s, sizes, readers, results)  # noqa: E731
    return min((greedy, list(candidates), baseline), key=peak)


def breadth_first(schedule, deps_of, readers_of):
    """Kahn's algorithm with a FIFO queue: every ready op runs in the order it became ready
    (how a dataflow runtime without memory awareness executes) — the baseline order."""
    members = set(schedule)
    waiting = {n: len([d for d in deps_of[n] if d in members]) for n in schedule}
    queue = [n for n in schedule if waiting[n] == 0]
    for node in queue:  # the list grows while we walk it
        for user in readers_of.get(node, ()):
            if user in members:
                waiting[user] -= 1
                if waiting[user] == 0:
                    queue.append(user)
    return queue


def live_peak(schedule, sizes, readers_of, outputs) -> int:
    """Peak live bytes of `schedule` (values die after their last reader)."""
    step = {n: i for i, n in enumerate(schedule)}
    change = [0] * (len(schedule) + 2)  # live bytes at step i: the sum of change[:i + 1]
    for i, n in enumerate(schedule):
        last = i
        if n in outputs:
            last = len(schedule)
        else:
            for r in readers_of.get(n, ()):
                j = step.get(r, -1)
                if j > last:
                    last = j
        size = memory.aligned(sizes[n])
        change[i] += size
        change[last + 1] -= size
    return max(accumulate(change))


def memory_aware(schedule, sizes, readers_of, deps_of, outputs):
    """Greedy list scheduling by (bytes allocated - bytes freed), ties by original order."""
    position = {n: i for i, n in enumerate(schedule)}
    members = set(schedule)
    waiting = {n: len([d for d in deps_of[n] if d in members]) for n in schedule}
    remaining_readers = {n: len([r for r in readers_of.get(n, ()) if r in members]) for n in schedule}
    ready = [(0, position[n], n) for n in schedule if waiting[n] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, _, node = heapq.heappop(ready)
        order.append(node)
        for user in readers_of.get(node, ()):
            if user in members:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, (_score(user, sizes, deps_of, remaining_readers, outputs),
                                           position[user], user))
        for d in deps_of[node]:
            if d in remaining_readers:
                remaining_readers[d] -= 1
    return order


def _score(node, sizes, deps_of, remaining_readers, outputs):
    freed = sum(sizes[d] for d in deps_of[node]
                if d in remaining_readers and remaining_readers[d] == 1 and d not in outputs)
    return sizes[node] - freed


def assign_streams(schedule, deps_of, n_streams=4) -> dict:
    """node -> stream id: a node continues its first dependency's stream unless that
    stream was already continued; independent branches get different streams."""
    stream, taken, next_free = {}, set(), 0
    for node in schedule:
        parent = next((d for d in deps_of[node] if d in stream), None)
        if parent is not None and (parent, stream[parent]) not in taken:
            stream[node] = stream[parent]
            taken.add((parent, stream[parent]))
        else:
            stream[node] = next_free % n_streams
            next_free += 1
    return stream
