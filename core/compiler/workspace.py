"""Workspaces: the scratch arrays ops declare (OpDef.workspace), as buffers of one step each.

An op whose workspace holds a chunk of the batch (OpDef.chunked_workspace: im2col columns
of a convolution; the batch is input 0's first axis) lets the planner pick the chunk, since
its result does not depend on it beyond rounding: one sample per chunk needs least memory,
the ops' defaults (enough columns for an efficient GEMM, conv.py GEMM_COLUMNS) run fastest.
`candidates` offers the pipeline: the defaults; each such op given as many samples as fit
in the room its step leaves under the peak the plan has with one sample per chunk
everywhere (so the chunks never raise that peak), at most the whole batch, and at most the
op's default; and one sample everywhere (smaller buffers pack better). Every chunk is
balanced: as few chunks per thread's run of the batch as that many samples make, all of
one size. The pipeline picks among them (pipeline._place).
"""
from __future__ import annotations

from . import memory
from .shapes import nbytes


def specs(alias, shapes, dtypes, chunks=None, host_threads=1):
    """node -> the scratch arrays it declares at its planned shapes ({name: (shape, dtype)}),
    or None; `chunks`: node -> samples per chunk, for ops with OpDef.chunked_workspace, which
    also learn the CPU threads their chunks may run on at once (attrs["threads"], where more
    than one: a slot of workspace each)."""
    chunks = chunks or {}

    def specs_of(node, chunk=None):
        rule = node.opdef.workspace
        if rule is None:
            return None
        in_shapes = [shapes[alias.get(inp, inp)] for inp in node.inputs]
        chunk = chunk or chunks.get(node)
        attrs = node.attrs if chunk is None else {**node.attrs, "chunk": chunk}
        if host_threads > 1 and node.opdef.chunked_workspace:
            attrs = {**attrs, "threads": host_threads}
        return rule(in_shapes, attrs, shapes[node], dtypes[node])
    return specs_of


def candidates(steps, buffers, alias, shapes, dtypes, plan_memory, host_threads=1,
               defaults_only=False) -> list[dict]:
    """Workspace sets to place (memory.workspace_buffers of each), largest chunks first: the
    ops' own defaults where no op has a chunked workspace (or memory is not planned), else
    the choices the module docstring describes (fewer where they coincide); with
    `defaults_only`, only the first of them (the ops' default chunks, balanced)."""
    chunked = [n for n in steps if n.opdef.chunked_workspace]
    default = specs(alias, shapes, dtypes, host_threads=host_threads)
    if not chunked or not plan_memory:
        return [memory.workspace_buffers(steps, default)]
    if defaults_only:
        return [memory.workspace_buffers(steps, specs(alias, shapes, dtypes, _balanced_defaults(
            chunked, alias, shapes, default), host_threads))]
    smallest = memory.workspace_buffers(steps, specs(alias, shapes, dtypes, dict.fromkeys(chunked, 1),
                                                     host_threads))
    live = memory.live_bytes(memory.distinct(buffers, smallest), len(steps) + 1)
    peak, position = max(live), {n: i for i, n in enumerate(steps)}
    choices = (_balanced_defaults(chunked, alias, shapes, default), {}, {}, dict.fromkeys(chunked, 1))
    for node in chunked:
        room = peak - live[position[node]] + sum(buf.size for buf, _, _ in smallest[node].values())
        batch = shapes[alias.get(node.inputs[0], node.inputs[0])][0]
        bytes_of = lambda b, node=node: _bytes(default(node, b))  # noqa: E731
        spec = default(node)
        slots = _slots(spec)
        for choice, budget in zip(choices[1:], (room, min(room, _bytes(spec)))):
            choice[node] = balanced(memory.largest_chunk(bytes_of, batch, budget), batch, slots)
    unique = [c for k, c in enumerate(choices) if c not in choices[:k]]
    return [smallest if c == choices[-1] else
            memory.workspace_buffers(steps, specs(alias, shapes, dtypes, c, host_threads))
            for c in unique]


def _balanced_defaults(chunked, alias, shapes, default) -> dict:
    """node -> its default chunk (conv.py _default_chunk, the first axis of its columns per
    slot), balanced over its slots' runs of the batch."""
    chunks = {}
    for node in chunked:
        spec = default(node)
        slots = _slots(spec)
        batch = shapes[alias.get(node.inputs[0], node.inputs[0])][0]
        chunks[node] = balanced(spec["cols"][0][0] // slots, batch, slots)
    return chunks


def balanced(chunk: int, batch: int, slots: int = 1) -> int:
    """The smallest chunk that covers each slot's run of the batch (conv.py _each_chunk) in
    as many chunks as `chunk` does: 64 samples in chunks of 21 are 4 chunks, the last of 1;
    chunks of 16 are as many calls, none short, in less memory."""
    run = -(-batch // slots)
    pieces = -(-run // chunk)
    return -(-run // pieces)


def _slots(specs_of_node) -> int:
    """Chunks an op runs at once (a workspace with several slots declares `slots`: conv.py)."""
    return specs_of_node["slots"][0][0] if "slots" in specs_of_node else 1


def _bytes(specs_of_node) -> int:
    return sum(memory.aligned(nbytes(shape, dtype)) for shape, dtype in specs_of_node.values())
