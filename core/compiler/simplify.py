"""Rewrites that need shapes: ops that turn out to be identities become aliases of their
input (e.g. the broadcast-gradient reduction autodiff inserts where nothing was broadcast).
Which ops can turn out so, and when, is each op's `OpDef.identity_when`."""
from __future__ import annotations


def identity_aliases(order, shapes, dtypes) -> dict:
    """node -> the node whose value it is (resolved through chains of aliases)."""
    alias = {}
    for node in order:
        test = node.opdef.identity_when
        src = node.inputs[0] if node.inputs else None
        if test and dtypes[src] == dtypes[node] and test([shapes[i] for i in node.inputs], shapes[node]):
            alias[node] = alias.get(src, src)
    return alias
