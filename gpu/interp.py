"""numpy evaluation of a `Program`: the generated kernel's arithmetic, run on the host.

Each IR op is the numpy call the op's compute makes, in the same dtype, so the result equals
the unfused ops exactly; a reduction sums a contiguous copy of the value over the same axes
as the unfused reduction does on its arena buffer (rows by einsum where core/ops/rows.py
says so, else numpy's `add.reduce`)."""
from __future__ import annotations

import numpy as np

from core.ops import rows

from .ir import Const, Load, Op, walk

NUMPY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "softplus": lambda a: np.logaddexp(0, a),
}


def evaluate(program, ins) -> np.ndarray:
    """The program's output for host arrays `ins` (one per input slot)."""
    with np.errstate(all="ignore"):  # log(0), 0/0…: the values are compared, not warned about
        value = np.broadcast_to(_value(program.expr, ins), program.shape)
        if not program.is_reduction:
            return np.array(value, dtype=program.out_dtype).reshape(program.out_shape)
        total = _sum(np.ascontiguousarray(value), program.reduce_axes)
        total = total.astype(program.out_dtype, copy=False).reshape(program.out_shape)
        if program.scale is not None:
            total = np.multiply(total, program.scale, dtype=program.out_dtype)
        return np.asarray(total)


def _sum(value, axes):
    total = np.empty(tuple(1 if i in axes else d for i, d in enumerate(value.shape)), value.dtype)
    width = rows.trailing_width(value, axes, total)
    if width:
        rows.sum_rows(np, value, width, total)
    else:
        np.add.reduce(value, axis=axes, keepdims=True, out=total)
    return total


def _value(expr, ins):
    values = {}
    for e in walk(expr):
        if isinstance(e, Load):
            array = np.asarray(ins[e.slot])
            if array.dtype != e.dtype:
                raise TypeError(f"input {e.slot} is {array.dtype}, the program reads {e.dtype}")
            values[e] = array.reshape(e.view)
        elif isinstance(e, Const):
            values[e] = np.asarray(e.value, dtype=e.dtype)
        else:
            values[e] = _apply(e, [values[a] for a in e.args])
    return values[expr]


def _apply(e: Op, args):
    if e.name == "cast":
        return np.asarray(args[0]).astype(e.dtype)
    if e.name == "gt0":
        return np.greater(args[0], 0).astype(e.dtype)
    if e.name == "select":
        return np.where(np.asarray(args[0]).astype(bool), args[1], args[2]).astype(e.dtype)
    return np.asarray(NUMPY[e.name](*args), dtype=e.dtype)
