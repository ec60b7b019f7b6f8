"""Symbolic reverse-mode autodiff: gradients are built as ordinary nodes (needle / autodidax
style), so the backward graph is shape-inferred, planned and fused like any other graph, and
a gradient of a gradient is just another call."""
from __future__ import annotations

from .errors import GraphError
from .graph import Node, topological_order
from .ops import add, oneslike, sum_to_like, zeroslike


def gradients(y: Node, xs) -> list[Node]:
    """Nodes for d(sum(y))/dx for each x in xs (zeros where y does not depend on x)."""
    order = topological_order([y])
    depends = _depends_on(order, xs)
    partials: dict[Node, list[Node]] = {y: [oneslike(y)]}
    total: dict[Node, Node] = {}
    for node in reversed(order):
        if node not in partials:
            continue
        g = total[node] = _sum(partials.pop(node))
        for inp, gi in _input_gradients(node, g, depends):
            partials.setdefault(inp, []).append(gi)
    return [total.get(x) or zeroslike(x) for x in xs]


def _depends_on(order, xs) -> set:
    """Nodes whose value depends on some x: only these need gradients."""
    depends = set(xs)
    for node in order:
        if any(i in depends for i in node.inputs):
            depends.add(node)
    return depends


def _input_gradients(node, g, depends):
    if not any(i in depends for i in node.inputs):
        return
    opdef = node.opdef
    if opdef.gradient is None:
        raise GraphError(f"node {node.name}: op {node.op} has no gradient rule")
    for inp, gi in zip(node.inputs, opdef.gradient(node, g)):
        if gi is None or inp not in depends:
            continue
        # The one place broadcast gradients are reduced back to the input's shape; the
        # compiler drops the reduction where shapes turn out equal.
        yield inp, sum_to_like(gi, inp) if opdef.broadcasting else gi


def _sum(parts):
    total = parts[0]
    for p in parts[1:]:
        total = add(total, p)
    return total
