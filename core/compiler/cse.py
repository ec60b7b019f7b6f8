"""Common-subexpression elimination: nodes with the same op, the same (deduplicated) inputs
and equal attributes compute the same value, so all but one become aliases. Random ops
(dropout masks) are never merged: two masks are two draws."""
from __future__ import annotations

import numpy as np

from ..ops.base import is_source


def _attr_key(attrs):
    items = []
    for k, v in sorted(attrs.items()):
        if k.startswith("_"):
            continue  # private state (e.g. a random generator), not part of the value
        items.append((k, v.tobytes() if isinstance(v, np.ndarray) else repr(v)))
    return tuple(items)


def _input_key(node):
    """Equal constants are equal inputs, whichever node holds them."""
    if node.op == "constant":
        return ("constant", _attr_key(node.attrs))
    return node.id


def common_subexpressions(order) -> dict:
    """node -> an earlier node computing the same value."""
    return common_subexpressions_with(order, {})


def common_subexpressions_with(order, known: dict) -> dict:
    """Like `common_subexpressions`, reading inputs through already-known aliases."""
    seen, alias = {}, dict(known)
    for node in order:
        if is_source(node) or node.opdef.random or node.opdef.effects or node.extras.get("recomputed"):
            continue
        key = (node.op, tuple(_input_key(alias.get(i, i)) for i in node.inputs), _attr_key(node.attrs))
        if node in alias:
            continue
        if key in seen:
            alias[node] = seen[key]
        else:
            seen[key] = node
    return {n: a for n, a in alias.items() if n not in known}
