"""Static memory planning: buffer lifetimes from a schedule, then offsets in one arena.

Lifetimes: `last_reads` gives each value the last step reading it; `assign_buffers` gives
every scheduled value a buffer alive from its step to that last read, or lets it overwrite
an input that dies at its step (in place); `workspace_buffers` adds the one-step scratch
arrays some ops declare; `assign_roles` labels buffers activation / gradient.

`plan_offsets` is greedy-by-size with best fit (TFLite's `GreedyMemoryPlanner`): largest
buffers first, each placed in the smallest gap left by the already-placed buffers whose
lifetimes overlap it. Everything here is a pure function of a schedule and what the caller
passes in (which inputs a step reads, which it may overwrite): no op table, no device."""
from __future__ import annotations

from dataclasses import dataclass

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


def assign_buffers(steps, last, sizes, dtypes, overwritable=None) -> dict:
    """node -> Buffer, from lifetimes `last`. With `overwritable(node)` (the values a step may
    overwrite, in order of preference) a step takes over such an input's buffer where that
    input is read last at this step and has the same size and dtype: the buffer is shared."""
    buffers = {}
    for i, node in enumerate(steps):
        candidates = overwritable(node) if overwritable else ()
        shared = _inplace_partner(node, i, buffers, sizes[node], dtypes, candidates)
        if shared is not None:
            shared.last = max(shared.last, last[node])
            buffers[node] = shared
        else:
            buffers[node] = Buffer(node.name, sizes[node], i, last[node])
    return buffers


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


def assign_roles(buffers: dict, forward: set):
    """Values in `forward` (what the loss depends on) are activations; the rest of a training
    graph is the backward pass: gradients."""
    for node, buf in buffers.items():
        if node.name == buf.name:  # a shared buffer takes the role of its first writer
            buf.role = "activation" if node in forward else "gradient"


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
