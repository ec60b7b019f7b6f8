"""Gradient checkpointing by recomputation ("Training Deep Nets with Sublinear Memory Cost"):
only some forward values are kept for the backward pass; backward consumers of the others
read a recomputed copy, built from the nearest kept values right before it is needed, so
forward activations die early. Random ops are always kept, so results stay bit-identical.

Modes: "sqrt" keeps every ⌈√n⌉-th forward value; "budget=BYTES" keeps a value whenever the
unkept bytes since the last kept one exceed the budget (the paper's greedy); "cheap" keeps
everything but elementwise ops, which are recomputed. A set of nodes keeps exactly those
(e.g. each transformer block's output: per-block checkpointing)."""
from __future__ import annotations

import math

from ..errors import LoomError
from ..graph import Node, topological_order
from ..ops.base import is_source
from .schedule import mutated_sources
from .shapes import nbytes

CHECKPOINT_MODES = ("none", "sqrt", "cheap", "budget=1048576")


def kept_values(forward, mode, shapes, dtypes) -> set:
    must = {n for n in forward if n.opdef.random or n.opdef.effects}
    if isinstance(mode, frozenset):
        return must | (mode & set(forward))
    if mode == "sqrt":
        k = max(1, math.ceil(math.sqrt(len(forward))))
        return must | {n for i, n in enumerate(forward) if i % k == k - 1}
    if mode == "cheap":
        return must | {n for n in forward if n.opdef.kind not in ("elementwise", "broadcast")}
    if mode.startswith("budget="):
        try:
            budget = int(mode.split("=", 1)[1])
        except ValueError:
            raise LoomError(f"checkpoint mode {mode!r}: the budget must be a number of bytes") from None
        kept, acc = set(must), 0
        for n in forward:
            acc += nbytes(shapes[n], dtypes[n])
            if acc > budget:
                kept.add(n)
                acc = 0
        return kept
    raise LoomError(f"unknown checkpoint mode {mode!r}; known: none, sqrt, cheap, budget=BYTES")


def _with_tail(forward, keep):
    """Also keep every value after the last kept one: the backward pass starts right where
    the forward pass ends, so recomputing that tail would cost time and save no memory."""
    last = max((i for i, n in enumerate(forward) if n in keep), default=-1)
    return keep | set(forward[last + 1:])


def recompute(outputs, mode, shapes, dtypes):
    """New outputs where backward nodes read recomputed copies of unkept forward values.
    outputs[0] is the loss: everything it depends on is the forward pass."""
    forward = [n for n in topological_order(outputs[:1]) if not is_source(n)]
    fset = set(forward)
    keep = _with_tail(forward, kept_values(forward, mode, shapes, dtypes)) | {outputs[0]}
    copies: dict = {}

    def recomputed(n):
        if n not in fset or n in keep:
            return n
        if n not in copies:
            copy = copies[n] = Node(n.op, [recomputed(i) for i in n.inputs], n.attrs, n.name + "'")
            copy.extras["recomputed"] = True  # CSE must not merge it back into the original
        return copies[n]

    mapped: dict = {}
    for n in topological_order(outputs):
        if n in fset or is_source(n):
            continue
        shape_only = n.opdef.shape_only
        new = [i if k in shape_only else (recomputed(i) if i in fset else mapped.get(i, i))
               for k, i in enumerate(n.inputs)]
        changed = any(a is not b for a, b in zip(new, n.inputs))
        mapped[n] = Node(n.op, new, n.attrs, n.name) if changed else n
    return [outputs[0]] + [mapped.get(o, o) for o in outputs[1:]]


def sink_recomputes(schedule):
    """Move every recomputed copy to just before its first consumer: recomputation only
    saves memory if it happens late, when the backward pass needs the value."""
    out, placed = [], set()
    scheduled = set(schedule)
    recomputes = [n for n in schedule if n.extras.get("recomputed")]

    def place(node):
        for inp in _scheduled_inputs(node, scheduled):
            if inp.extras.get("recomputed") and inp not in placed:
                place(inp)
        overwritten = mutated_sources(node)
        for r in recomputes:  # a recompute reading what this op overwrites must not sink past it
            if overwritten and r not in placed and overwritten.intersection(r.inputs):
                place(r)
        placed.add(node)
        out.append(node)

    for node in schedule:
        if not node.extras.get("recomputed"):
            place(node)
    return out


def _scheduled_inputs(node, scheduled):
    """The scheduled values a node reads: its inputs, or, for an input the compiler dropped
    (a copy that turned out to be an identity, or a duplicate merged by CSE: an alias), what
    that input reads in turn. A dropped copy is never put back in the schedule."""
    found, stack, seen = [], list(reversed(node.inputs)), set()
    while stack:  # depth first, inputs in order (the order the sunk copies are placed in)
        inp = stack.pop()
        if inp in seen:
            continue
        seen.add(inp)
        if inp in scheduled:
            found.append(inp)
        else:
            stack.extend(reversed(inp.inputs))
    return found
