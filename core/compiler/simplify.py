"""Rewrites that need shapes: ops that turn out to be identities become aliases of their
input (e.g. the broadcast-gradient reduction autodiff inserts where nothing was broadcast).
Which ops can turn out so, and when, is each op's `OpDef.identity_when`."""
from __future__ import annotations


def identity_aliases(order, shapes, dtypes) -> dict:
    """node -> the node whose value it is (resolved through chains of aliases)."""
    alias = {}
    for node in order:
        if is_identity(node, shapes, dtypes):
            src = node.inputs[0]
            alias[node] = alias.get(src, src)
    return alias


def is_identity(node, shapes, dtypes) -> bool:
    """Whether node's value is its first input's, same dtype, at these shapes."""
    test = node.opdef.identity_when
    return bool(test and node.inputs and dtypes[node.inputs[0]] == dtypes[node]
                and test([shapes[i] for i in node.inputs], shapes[node]))
