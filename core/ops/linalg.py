"""Matrix multiply with transpose flags (cuBLAS-style), so gradients never copy a transpose.
Operands of rank > 2 are stacks of matrices over their leading (batch) axes, which broadcast
as in numpy: attention's (B, H, T, D) @ (B, H, D, T)."""
from __future__ import annotations

from functools import partial

from ..errors import ShapeError
from .base import OpDef, broadcast_shapes, make, register


def matmul(a, b, trans_A=False, trans_B=False, name=None):
    return make("matmul", a, b, name=name, trans_A=bool(trans_A), trans_B=bool(trans_B))


def _shape(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(f"matmul needs operands of rank 2 or more, got {tuple(a)} and {tuple(b)}")
    m, k = (a[-1], a[-2]) if attrs["trans_A"] else (a[-2], a[-1])
    k2, n = (b[-1], b[-2]) if attrs["trans_B"] else (b[-2], b[-1])
    if k != k2:
        raise ShapeError(f"matmul inner dimensions differ: {tuple(a)}"
                         f"{'ᵀ' if attrs['trans_A'] else ''} @ {tuple(b)}"
                         f"{'ᵀ' if attrs['trans_B'] else ''} ({k} vs {k2})")
    try:
        batch = broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    except ShapeError:
        raise ShapeError(f"matmul batch axes of {tuple(a)} and {tuple(b)} do not broadcast") from None
    return (*batch, m, n)


def _t(x, flag):
    """The last two axes swapped (a view) where the flag asks for it."""
    if not flag:
        return x
    return x.T if x.ndim == 2 else x.swapaxes(-1, -2)


def _compute(xp, ins, attrs, out):
    a, b = ins
    xp.matmul(_t(a, attrs["trans_A"]), _t(b, attrs["trans_B"]), out=out)


def _bind(xp, ins, attrs, out):
    a, b = ins
    return partial(xp.matmul, _t(a, attrs["trans_A"]), _t(b, attrs["trans_B"]), out=out)


def _gemm(shapes, attrs, out_shape) -> int:
    """One matrix of the stack: M·K·N."""
    a = shapes[0]
    k = a[-2] if attrs["trans_A"] else a[-1]
    return int(out_shape[-2]) * int(k) * int(out_shape[-1])


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


# broadcasting: a gradient towards an operand whose batch axes were broadcast is summed back
register(OpDef("matmul", "opaque", _shape, _compute, _gradient, bind=_bind, epilogue_head=True,
               broadcasting=True, gemm=_gemm,
               doc="op(A) @ op(B), op = transpose where trans_A / trans_B"))
