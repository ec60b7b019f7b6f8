"""Matrix multiply with transpose flags (cuBLAS-style), so gradients never copy a transpose.
Operands of rank > 2 are stacks of matrices over their leading (batch) axes, which broadcast
as in numpy: attention's (B, H, T, D) @ (B, H, D, T)."""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..errors import GraphError, ShapeError
from . import cpu, gemm_worker
from .base import OpDef, broadcast_shapes, make, register
from .shape_ops import inverse_axes


def matmul(a, b, trans_A=False, trans_B=False, name=None):
    return make("matmul", a, b, name=name, trans_A=bool(trans_A), trans_B=bool(trans_B))


def _shape(shapes, attrs):
    a, b = (_permuted(s, attrs.get(key)) for s, key in zip(shapes, ("perm_A", "perm_B")))
    result = _product_shape(a, b, attrs)
    return _permuted(result, attrs.get("perm_out"))


def _permuted(shape, axes):
    return tuple(shape) if axes is None else tuple(shape[a] for a in axes)


def _product_shape(a, b, attrs):
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


def _operands(ins, attrs, out):
    """A, B and the result as the product sees them: through the permuted views the compiler
    folded transpositions into (compiler/fold_transposes.py), then the transpose flags."""
    a, b = (x if attrs.get(key) is None else x.transpose(attrs[key])
            for x, key in zip(ins, ("perm_A", "perm_B")))
    if attrs.get("perm_out") is not None:
        out = out.transpose(inverse_axes(attrs["perm_out"]))
    return _t(a, attrs["trans_A"]), _t(b, attrs["trans_B"]), out


def _compute(xp, ins, attrs, out):
    a, b, out = _operands(ins, attrs, out)
    xp.matmul(a, b, out=out)


def _bind(xp, ins, attrs, out):
    a, b, out = _operands(ins, attrs, out)
    return partial(xp.matmul, a, b, out=out)


def _gemm(shapes, attrs, out_shape) -> int:
    """Multiply-adds of the whole product: M·K·N times the matrices in the stack."""
    a = _permuted(shapes[0], attrs.get("perm_A"))
    k = a[-2] if attrs["trans_A"] else a[-1]
    if attrs.get("perm_out") is not None:
        out_shape = _permuted(out_shape, inverse_axes(attrs["perm_out"]))
    return math.prod(int(d) for d in out_shape) * int(k)


def _parts(xp, ins, attrs, out, threads):
    """A call computing the product in parts of its result's leading axis (a matrix's rows,
    a stack's matrices), each a GEMM on one BLAS thread, where cpu.split_gemm splits it;
    else None. An operand with that axis is cut alike; one without (a weight matrix, a
    broadcast stack) is read whole by every part. On numpy the parts past the first go to
    native workers (ops/gemm_worker.py), else to cpu.together: the same bits."""
    a, b, result = _operands(ins, attrs, out)
    count = cpu.split_gemm(_gemm([x.shape for x in ins], attrs, out.shape), threads)
    length = result.shape[0]
    if count < 2 or length < 2:
        return None
    stacked = result.ndim > 2

    def cut(x, lo, hi, rows):
        aligned = x.ndim == result.ndim and x.shape[0] == length and (stacked or rows)
        return x[lo:hi] if aligned else x
    parts = [(cut(a, lo, hi, True), cut(b, lo, hi, False), result[lo:hi])
             for lo, hi in cpu.split(0, length, count)]
    calls = [partial(xp.matmul, pa, pb, out=po) for pa, pb, po in parts]
    workers = gemm_worker.pool() if xp is np else None
    return partial(cpu.together, calls) if workers is None else workers.split(parts, calls)


def _gradient(n, g):
    if any(n.attrs.get(key) is not None for key in ("perm_A", "perm_B", "perm_out")):
        raise GraphError(f"{n.name}: a matmul with folded transpositions is compiled, not "
                         "differentiated")
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
               broadcasting=True, parts=_parts,
               doc="op(A) @ op(B), op = transpose where trans_A / trans_B"))
