"""Transpositions folded into the matrix products that read or write them.

Attention splits its heads with a transposition ((N, T, H, D) -> (N, H, T, D)) and merges
them with another, and the backward pass transposes each gradient back: 32 copies per step of
the baby GPT. A batched matmul can read an operand, and write its result, through a permuted
view instead, as long as each matrix of the stack keeps unit stride along its rows (the last
axis stays last): BLAS then takes it as it is, with a leading dimension, and computes the very
same products (the bits do not change). A transposition whose every reader is such a matmul
(`perm_A`/`perm_B`), or that only transposes a matmul's result (`perm_out`), is dropped.

A rewrite of the compiled graph, after autodiff and checkpointing, on backends whose matmul is
numpy's (the GPU runs its own GEMM kernels on contiguous operands)."""
from __future__ import annotations

from collections import defaultdict

from ..graph import Node, topological_order
from ..ops.base import is_source
from .simplify import is_identity


def fold(outputs, shapes, dtypes) -> list:
    """New outputs computing the same values with foldable transpositions folded."""
    order = topological_order(outputs)
    readers = defaultdict(list)  # the nodes reading each value (not just its shape)
    for node in order:
        shape_only = node.opdef.shape_only if not is_source(node) else ()
        for k, i in enumerate(node.inputs):
            if k not in shape_only:
                readers[i].append(node)
    kept = set(outputs)
    mapped: dict = {}

    def now(node):
        return mapped.get(node, node)

    for node in order:
        if is_source(node):
            continue
        inputs, attrs = [now(i) for i in node.inputs], dict(node.attrs)
        if node.op == "matmul":
            for k, key in ((0, "perm_A"), (1, "perm_B")):
                src = node.inputs[k]
                if _foldable(src, shapes, kept) and all(r.op == "matmul" for r in readers[src]):
                    inputs[k], attrs[key] = now(src.inputs[0]), _axes(src, shapes)
        elif node.op == "transpose":
            src = _through_identities(node.inputs[0], shapes, dtypes, readers, kept)
            if (_foldable(node, shapes, kept - {node}) and src.op == "matmul" and src not in kept
                    and len(readers[src]) == 1 and "perm_out" not in now(src).attrs):
                head = now(src)
                mapped[node] = _like(node, Node("matmul", head.inputs,
                                                {**head.attrs, "perm_out": _axes(node, shapes)}, node.name))
                continue
        if any(a is not b for a, b in zip(inputs, node.inputs)) or attrs != node.attrs:
            mapped[node] = _like(node, Node(node.op, inputs, attrs, node.name))
    return [now(o) for o in outputs]


def _like(old, new):
    """new, carrying old's marks (a recomputed copy stays one: CSE must not merge it back into
    the forward value, which would then live through the whole backward pass)."""
    new.extras.update(old.extras)
    return new


def _through_identities(node, shapes, dtypes, readers, kept):
    """The value under ops that turn out identities (the gradient's sum over broadcast axes
    where nothing was broadcast), each read by one node only."""
    while (not is_source(node) and node not in kept and len(readers[node]) == 1
           and is_identity(node, shapes, dtypes)):
        node = node.inputs[0]
    return node


def _axes(transpose, shapes) -> tuple:
    rank = len(shapes[transpose.inputs[0]])
    axes = transpose.attrs.get("axes")
    return tuple(range(rank))[::-1] if axes is None else tuple(int(a) % rank for a in axes)


def _foldable(node, shapes, kept) -> bool:
    """A transposition of rank 3 or more that keeps the last axis last (the matrices of a
    stack keep unit-stride rows), and whose value nobody outside the step asks for."""
    if node.op != "transpose" or node in kept or node not in shapes:
        return False
    axes = _axes(node, shapes)
    return len(axes) >= 3 and axes[-1] == len(axes) - 1
