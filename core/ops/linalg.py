"""Matrix multiply with transpose flags (cuBLAS-style), so gradients never copy a transpose."""
from __future__ import annotations

from functools import partial

from ..errors import ShapeError
from .base import OpDef, make, register


def matmul(a, b, trans_A=False, trans_B=False, name=None):
    return make("matmul", a, b, name=name, trans_A=bool(trans_A), trans_B=bool(trans_B))


def _shape(shapes, attrs):
    a, b = shapes
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"matmul needs 2-D operands, got {tuple(a)} and {tuple(b)}")
    m, k = (a[1], a[0]) if attrs["trans_A"] else (a[0], a[1])
    k2, n = (b[1], b[0]) if attrs["trans_B"] else (b[0], b[1])
    if k != k2:
        raise ShapeError(f"matmul inner dimensions differ: {tuple(a)}"
                         f"{'ᵀ' if attrs['trans_A'] else ''} @ {tuple(b)}"
                         f"{'ᵀ' if attrs['trans_B'] else ''} ({k} vs {k2})")
    return (m, n)


def _compute(xp, ins, attrs, out):
    a, b = ins
    xp.matmul(a.T if attrs["trans_A"] else a, b.T if attrs["trans_B"] else b, out=out)


def _bind(xp, ins, attrs, out):
    a, b = ins
    return partial(xp.matmul, a.T if attrs["trans_A"] else a, b.T if attrs["trans_B"] else b, out=out)


def _gradient(n, g):
    a, b = n.inputs
    ta, tb = n.attrs["trans_A"], n.attrs["trans_B"]
    # C = op(A) op(B); each case written out so no transpose is ever materialised.
    if not ta and not tb:
        return [matmul(g, b, trans_B=True), matmul(a, g, trans_A=True)]
    if ta and not tb:
        return [matmul(b, g, trans_B=True), matmul(a, g)]
    if not ta and tb:
        return [matmul(g, b), matmul(g, a, trans_A=True)]
    return [matmul(b, g, trans_A=True, trans_B=True), matmul(g, a, trans_A=True, trans_B=True)]


register(OpDef("matmul", "opaque", _shape, _compute, _gradient, bind=_bind, epilogue_head=True,
               doc="op(A) @ op(B), op = transpose where trans_A / trans_B"))
