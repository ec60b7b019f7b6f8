"""Static memory planning: buffer lifetimes from a schedule, then offsets in one arena.

`plan_offsets` is greedy-by-size with best fit (TFLite's `GreedyMemoryPlanner`): largest
buffers first, each placed in the smallest gap left by the already-placed buffers whose
lifetimes overlap it. It is a pure function of the intervals, tested with no device."""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 64  # bytes: cache-line aligned views (and what cupy's allocator rounds to anyway)


@dataclass
class Buffer:
    name: str
    nbytes: int
    first: int  # schedule step that writes it
    last: int  # last step that reads it (inclusive)
    role: str = "activation"
    offset: int = -1

    @property
    def size(self) -> int:
        return aligned(self.nbytes)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


def aligned(n: int) -> int:
    return max(ALIGN, (int(n) + ALIGN - 1) // ALIGN * ALIGN)


def plan_offsets(buffers: list[Buffer]) -> int:
    """Assign `offset` to every buffer; returns the arena size in bytes."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        buf.offset = _best_fit(buf, [p for p in placed if p.overlaps_in_time(buf)])
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)


def _best_fit(buf: Buffer, live: list[Buffer]) -> int:
    """The start of the smallest gap among `live` that holds buf, else the end of them all."""
    best, best_gap, cursor = None, None, 0
    for other in sorted(live, key=lambda b: b.offset):
        gap = other.offset - cursor
        if gap >= buf.size and (best_gap is None or gap < best_gap):
            best, best_gap = cursor, gap
        cursor = max(cursor, other.offset + other.size)
    return cursor if best is None else best


def lower_bound(buffers: list[Buffer]) -> int:
    """The largest total of live bytes at any one step: no arena can be smaller."""
    events: dict[int, int] = {}
    for b in buffers:
        events[b.first] = events.get(b.first, 0) + b.size
        events[b.last + 1] = events.get(b.last + 1, 0) - b.size
    live = peak = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak


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
