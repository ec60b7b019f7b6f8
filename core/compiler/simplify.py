"""Rewrites that need shapes: ops that turn out to be identities become aliases of their
input (e.g. the broadcast-gradient reduction autodiff inserts where nothing was broadcast)."""
from __future__ import annotations

# op name -> test on (input shapes, output shape) that makes the op a plain copy of input 0
IDENTITY_WHEN = {
    "sum_to_like": lambda ins, out: tuple(ins[0]) == tuple(out),
    "broadcast_like": lambda ins, out: tuple(ins[0]) == tuple(out),
    "broadcast_to": lambda ins, out: tuple(ins[0]) == tuple(out),
    "reshape_like": lambda ins, out: tuple(ins[0]) == tuple(out),
    "reshape": lambda ins, out: tuple(ins[0]) == tuple(out),
}


def identity_aliases(order, shapes, dtypes) -> dict:
    """node -> the node whose value it is (resolved through chains of aliases)."""
    alias = {}
    for node in order:
        test = IDENTITY_WHEN.get(node.op)
        src = node.inputs[0] if node.inputs else None
        if test and dtypes[src] == dtypes[node] and test([shapes[i] for i in node.inputs], shapes[node]):
            alias[node] = alias.get(src, src)
    return alias
