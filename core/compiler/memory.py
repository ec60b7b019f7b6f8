"""Static memory planning: buffer lifetimes from a schedule, then offsets in one arena.

Lifetimes: `last_reads` gives each value the last step reading it; `assign_buffers` gives
every scheduled value a buffer alive from its step to that last read, or lets it overwrite
an input that dies at its step (in place); `workspace_buffers` adds the one-step scratch
arrays some ops declare; `assign_roles` labels buffers activation / gradient.

`plan_offsets` is greedy-by-size with best fit (TFLite's `GreedyMemoryPlanner`): largest
buffers first, each placed in the smallest gap left by the already-placed buffers whose
lifetimes overlap it. The gaps are those of the union of the byte ranges of those buffers,
so segment trees over schedule steps keep, per node, the union of the byte ranges placed
there (`_TimeIndex`): a buffer's gaps come from O(log steps) merged range lists instead of
every buffer placed before it, and a 20,000-step plan takes a fraction of a second instead
of minutes, with the same offsets. `plan_arena` (what the pipeline calls) keeps that result
where it is within 0.1% of the lower bound, and else also tries a few other placement
orders and keeps the smallest arena. Everything here is a pure function of a schedule and what the
caller passes in (which inputs a step reads, which it may overwrite): no op table, no device."""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate

from .shapes import nbytes

ALIGN = 64  # bytes: cache-line aligned views (and what cupy's allocator rounds to anyway)


@dataclass
class Buffer:
    name: str
    nbytes: int
    first: int  # schedule step that writes it
    last: int  # last step that reads it (inclusive)
    role: str = "activation"
    offset: int = -1

    @cached_property
    def size(self) -> int:  # nbytes is never changed after construction
        return aligned(self.nbytes)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


def aligned(n: int) -> int:
    return max(ALIGN, (int(n) + ALIGN - 1) // ALIGN * ALIGN)


# Orders to place buffers in: largest first (TFLite's) and, where that leaves the arena above
# the lower bound, a few others (largest size × lifetime first, ...); the smallest arena wins.
ORDERS = (lambda b: (-b.size, b.first, b.name),
          lambda b: (-b.size * (b.last - b.first + 1), b.first, b.name),
          lambda b: (-b.size, -b.last, b.name),
          lambda b: (b.first, -b.size, b.name))


def plan_arena(buffers: list[Buffer], tolerance: float = 1e-3) -> int:
    """Assign `offset` to every buffer; returns the arena size in bytes. Best fit in size
    order (`plan_offsets`); unless that is within `tolerance` of the lower bound, the other
    ORDERS are tried too, and the first smallest arena is kept."""
    arena = plan_offsets(buffers)
    if arena <= lower_bound(buffers) * (1 + tolerance):
        return arena
    best, offsets = arena, [b.offset for b in buffers]
    for order in ORDERS[1:]:
        candidate = plan_offsets(buffers, order)
        if candidate < best:
            best, offsets = candidate, [b.offset for b in buffers]
    for b, offset in zip(buffers, offsets):
        b.offset = offset
    return best


def plan_offsets(buffers: list[Buffer], order=ORDERS[0]) -> int:
    """Best fit: each buffer, in `order`, at the start of the smallest gap between the placed
    buffers alive at some step of its lifetime; returns the arena size in bytes. Lifetimes
    are steps first..last with 0 <= first <= last."""
    index = _TimeIndex(max((b.last for b in buffers), default=0) + 1)
    for buf in sorted(buffers, key=order):
        size = buf.size
        buf.offset = best_fit(index.occupied(buf.first, buf.last), size)
        index.add(buf.first, buf.last, buf.offset, buf.offset + size)
    return max((b.offset + b.size for b in buffers), default=0)


def best_fit(ranges, size: int) -> int:
    """The start of the smallest gap (lowest first on ties) between byte `ranges` (start,
    end) sorted by start, that holds `size` bytes; else the end of them all."""
    best, best_gap, cursor = None, None, 0
    for start, end in ranges:
        gap = start - cursor
        if gap >= size and (best_gap is None or gap < best_gap):
            best, best_gap = cursor, gap
        if end > cursor:
            cursor = end
    return cursor if best is None else best


class _TimeIndex:
    """The byte ranges of the buffers placed so far, by lifetime. A buffer alive at some
    step of first..last either is alive at `first` or starts after it, by `last`. Two
    segment trees over steps answer that: `cover` holds a buffer at the O(log steps) nodes
    whose step ranges tile its lifetime (the buffers alive at a step are those on that
    leaf's path to the root), `starting` holds it at the leaf of its first step and every
    node above (the buffers starting within a range are those at the range's tiling nodes).
    Each node keeps only the union of its buffers' byte ranges (sorted, disjoint, touching
    ones merged): the gaps between them are all best fit needs."""

    def __init__(self, steps: int):
        self.leaves = 1 << max(0, steps - 1).bit_length()
        self.cover: dict[int, tuple[list, list]] = {}
        self.starting: dict[int, tuple[list, list]] = {}

    def tiling(self, first: int, last: int) -> list[int]:
        """The fewest tree nodes whose step ranges make up first..last."""
        nodes, lo, hi = [], first + self.leaves, last + self.leaves + 1
        while lo < hi:
            if lo & 1:
                nodes.append(lo)
                lo += 1
            if hi & 1:
                hi -= 1
                nodes.append(hi)
            lo >>= 1
            hi >>= 1
        return nodes

    def occupied(self, first: int, last: int):
        """The byte ranges of the placed buffers alive at some step of first..last, by start."""
        lists, v = [], first + self.leaves
        while v:
            ranges = self.cover.get(v)
            if ranges:
                lists.append(ranges)
            v >>= 1
        if last > first:
            lists += [r for r in map(self.starting.get, self.tiling(first + 1, last)) if r]
        if len(lists) == 1:
            return zip(*lists[0])
        starts, ends = [], []
        for s, e in lists:
            starts += s
            ends += e
        return sorted(zip(starts, ends))

    def add(self, first: int, last: int, start: int, end: int):
        for v in self.tiling(first, last):
            _merge_into(self.cover, v, start, end)
        v = first + self.leaves
        # a node's `starting` holds its children's: stop where the range is held already
        while v and _merge_into(self.starting, v, start, end):
            v >>= 1


def _merge_into(table: dict, node: int, start: int, end: int) -> bool:
    """Add [start, end) to the union of byte ranges table[node] (parallel start/end lists);
    False where the union held it already."""
    ranges = table.get(node)
    if ranges is None:
        table[node] = ([start], [end])
        return True
    starts, ends = ranges
    i = bisect_left(ends, start)  # the first range ending at or after start (touching merges)
    j = bisect_right(starts, end, i)  # ranges from i to j - 1 meet [start, end)
    if i == j:
        starts.insert(i, start)
        ends.insert(i, end)
        return True
    low, high = starts[i], ends[j - 1]
    if j == i + 1 and low <= start and end <= high:
        return False
    starts[i:j] = [low if low < start else start]
    ends[i:j] = [high if high > end else end]
    return True


def lower_bound(buffers: list[Buffer]) -> int:
    """The largest total of live bytes at any one step: no arena can be smaller."""
    return peak_live([(b.first, b.last, b.size) for b in buffers])


def peak_live(intervals) -> int:
    """The largest total of `size` over (first, last, size) intervals alive at one step."""
    events: dict[int, int] = {}
    get = events.get
    for first, last, size in intervals:
        events[first] = get(first, 0) + size
        events[last + 1] = get(last + 1, 0) - size
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        if live > peak:
            peak = live
    return peak


def live_bytes(buffers: list[Buffer], steps: int) -> list[int]:
    """Bytes alive at each step 0..steps-1 (lower_bound is their maximum)."""
    change = [0] * (steps + 1)
    for b in buffers:
        change[b.first] += b.size
        change[b.last + 1] -= b.size
    return list(accumulate(change[:steps]))


def largest_chunk(bytes_of, most: int, budget: int) -> int:
    """The largest chunk in 1..most whose bytes_of(chunk) (growing with it) is within budget;
    1 where none is."""
    lo, hi = 1, max(1, most)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if bytes_of(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def no_sharing(buffers: list[Buffer]) -> int:
    return sum(b.size for b in buffers)


def overlapping_pairs(buffers: list[Buffer]) -> list[tuple[Buffer, Buffer]]:
    """Pairs alive at the same step whose byte ranges intersect (must be empty)."""
    bad = []
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.overlaps_in_time(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                bad.append((a, b))
    return bad


# ---- lifetimes ----------------------------------------------------------------------------

def last_reads(steps, results, reads) -> dict:
    """node -> the last step reading its value (its own step if none does); `reads(node)`
    are the values a step reads. Results stay valid until the next run: past the last step."""
    last = {n: i for i, n in enumerate(steps)}
    for i, node in enumerate(steps):
        for src in reads(node):
            if src in last:
                last[src] = max(last[src], i)
    for r in results:
        if r in last:
            last[r] = len(steps)
    return last


def assign_buffers(steps, last, sizes, dtypes, overwritable=None, reinterpreted=None) -> dict:
    """node -> Buffer, from lifetimes `last`. With `overwritable(node)` (the values a step may
    overwrite, in order of preference) a step takes over such an input's buffer where that
    input is read last at this step and has the same size and dtype: the buffer is shared.
    With `reinterpreted(node)` (the value a reshape reads, or None) it shares that buffer
    whenever size and dtype agree: nothing is overwritten, so later readers still find it."""
    buffers = {}
    for i, node in enumerate(steps):
        candidates = overwritable(node) if overwritable else ()
        shared = _reinterpreted(node, buffers, sizes[node], dtypes, reinterpreted) \
            or _inplace_partner(node, i, buffers, sizes[node], dtypes, candidates)
        if shared is not None:
            shared.last = max(shared.last, last[node])
            buffers[node] = shared
        else:
            buffers[node] = Buffer(node.name, sizes[node], i, last[node])
    return buffers


def _reinterpreted(node, buffers, size, dtypes, reinterpreted):
    src = reinterpreted(node) if reinterpreted else None
    buf = buffers.get(src) if src is not None else None
    if buf is None or buf.nbytes != size or dtypes[src] != dtypes[node]:
        return None
    return buf


def _inplace_partner(node, step, buffers, size, dtypes, candidates):
    """The buffer of an input this op may overwrite: read last here, same size and dtype."""
    for src in candidates:
        buf = buffers.get(src)
        if buf is None or buf.last != step or buf.nbytes != size or dtypes[src] != dtypes[node]:
            continue
        return buf
    return None


def workspace_buffers(steps, specs_of) -> dict:
    """node -> {name: (Buffer, shape, dtype)}: the scratch arrays `specs_of(node)` declares
    ({name: (shape, dtype)}, or None), each alive for its one step."""
    out = {}
    for i, node in enumerate(steps):
        specs = specs_of(node)
        if specs is None:
            continue
        out[node] = {name: (Buffer(f"{node.name}/{name}", nbytes(shape, dtype), i, i,
                                   role="workspace"), tuple(shape), dtype)
                     for name, (shape, dtype) in specs.items()}
    return out


def distinct(buffers: dict, workspaces: dict) -> list[Buffer]:
    """Every buffer once (values computed in place share one), then the workspaces."""
    unique = list({id(b): b for b in buffers.values()}.values())
    return unique + [buf for ws in workspaces.values() for buf, _, _ in ws.values()]


COMMUNICATION = ("allreduce_start", "allreduce_wait")  # data-parallel gradient buckets


def assign_roles(buffers: dict, forward: set):
    """Values in `forward` (what the loss depends on) are activations; the rest of a training
    graph is the backward pass: gradients, and (data-parallel) the allreduce buckets."""
    for node, buf in buffers.items():
        if node.name == buf.name:  # a shared buffer takes the role of its first writer
            buf.role = ("activation" if node in forward else
                        "bucket" if node.op in COMMUNICATION else "gradient")


def plan_unshared(buffers: list[Buffer]) -> int:
    """Offsets one after another, nothing reused (planning off); returns the arena size."""
    offset = 0
    for b in buffers:
        b.offset = offset
        offset += b.size
    return offset


def stored_activations(buffers) -> int:
    """Bytes of forward values still held when the backward pass writes its first gradient:
    what the forward pass leaves for backward (all of it without checkpointing, about √n
    checkpoints with "sqrt"); 0 for a graph without a backward pass."""
    grads = [b.first for b in buffers if b.role == "gradient"]
    if not grads:
        return 0
    start = min(grads)
    return sum(b.size for b in buffers if b.role == "activation" and b.first < start <= b.last)
