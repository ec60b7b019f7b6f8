"""The expression IR of a fused kernel: one value per output element (or per element of the
reduced value), built from input loads, constants and scalar ops. The same IR is emitted as
CUDA C (`gpu/emit.py`) and evaluated with numpy (`gpu/interp.py`), so the generated kernel's
arithmetic is checked against the unfused ops on machines without a GPU.

Every value carries the dtype it is computed in; a binary op's operands are cast to it first,
which is numpy's rule (the ufunc loop of the promoted dtype)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOATS = ("float32", "float64")  # the dtypes a fused value may be computed in
UNARY = ("neg", "exp", "log", "sqrt", "tanh", "relu", "gt0", "cast", "softplus")
BINARY = ("add", "sub", "mul", "div", "pow")
TERNARY = ("select",)  # select(cond, a, b): a where cond is nonzero, else b (numpy's where)


@dataclass(frozen=True)
class Load:
    """Input `slot` read at the current index. `view` is the input's shape as the iteration
    space sees it (numpy broadcasting, right-aligned; reduced axes re-inserted as 1s)."""
    slot: int
    view: tuple
    dtype: str


@dataclass(frozen=True)
class Const:
    value: float
    dtype: str


@dataclass(frozen=True)
class Weak:
    """A python scalar before it meets an array: it takes the dtype of the value it is
    combined with (numpy's weak scalars), so it becomes a `Const` when cast."""
    value: float


@dataclass(frozen=True)
class Op:
    name: str  # one of UNARY / BINARY / TERNARY
    args: tuple
    dtype: str


@dataclass(frozen=True)
class Program:
    """One kernel: `expr` over the iteration space `shape`; an elementwise program writes it
    to an output of `out_shape`, a reduction program sums it over `reduce_axes` first (and
    multiplies by `scale`, a reduce_mean's 1/count, in the output dtype)."""
    expr: object
    shape: tuple
    out_shape: tuple
    out_dtype: str
    in_dtypes: tuple
    reduce_axes: tuple | None = None
    scale: float | None = None

    @property
    def is_reduction(self) -> bool:
        return self.reduce_axes is not None


def dtype_of(expr):
    return None if isinstance(expr, Weak) else expr.dtype


def cast(expr, dtype):
    """expr as a value of `dtype` (a no-op when it already is one)."""
    dtype = np.dtype(dtype).name
    if isinstance(expr, Weak):  # numpy converts a python scalar to the array's dtype
        return Const(np.asarray(expr.value).astype(dtype).item(), dtype)
    if expr.dtype == dtype:
        return expr
    if isinstance(expr, Const):  # converted here exactly as the device would (round to nearest)
        return Const(np.asarray(expr.value, expr.dtype).astype(dtype).item(), dtype)
    return Op("cast", (expr,), dtype)


def op(name, dtype, *args):
    """An op computed in `dtype`: its operands are cast to it (numpy's loop selection)."""
    return Op(name, tuple(cast(a, dtype) for a in args), np.dtype(dtype).name)


def select(dtype, cond, a, b):
    """a where cond (read in its own dtype, any nonzero is true) else b, in `dtype`."""
    return Op("select", (cond, cast(a, dtype), cast(b, dtype)), np.dtype(dtype).name)


def walk(expr):
    """Every sub-expression once, operands before the ops that read them."""
    seen, order = set(), []

    def visit(e):
        if e in seen:
            return
        seen.add(e)
        for a in getattr(e, "args", ()):
            visit(a)
        order.append(e)
    visit(expr)
    return order


def loads(expr) -> list:
    return [e for e in walk(expr) if isinstance(e, Load)]


def insert_axes(expr, rank, axes):
    """The same value with unit axes inserted at `axes` (positions in the result, whose rank
    is rank + len(axes)): what expand_like does to a reduction's gradient before broadcasting.
    Pushed down to the loads, since every op in between is elementwise."""
    if isinstance(expr, Load):
        view = [1] * (rank - len(expr.view)) + list(expr.view)
        for a in sorted(axes):
            view.insert(a, 1)
        return Load(expr.slot, tuple(view), expr.dtype)
    if isinstance(expr, Op):
        return Op(expr.name, tuple(insert_axes(a, rank, axes) for a in expr.args), expr.dtype)
    return expr


def broadcasts_to(view, shape) -> bool:
    if len(view) > len(shape):
        return False
    return all(v in (1, s) for v, s in zip(reversed(view), reversed(shape)))
