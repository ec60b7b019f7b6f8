"""The op table: one `OpDef` per primitive, registered right after its definition.

Every op has four rules (as in autodidax's per-interpretation tables, kept together here):
  shape(in_shapes, attrs) -> out shape      pure, no arrays needed
  dtype(in_dtypes, attrs) -> out dtype      weak scalars are passed as python numbers
  compute(xp, ins, attrs, out)              writes the result into `out` (a preallocated buffer)
  gradient(node, g) -> [Node | None]        builds gradient *nodes*, one per input
and optionally
  workspace(in_shapes, attrs, out_shape, out_dtype) -> {name: (shape, dtype)}
                                            scratch arrays the compute needs for one step
                                            (im2col columns, padded copies…): the planner
                                            places them in the arena like any buffer, and
                                            compute(xp, ins, attrs, out, ws) gets them as views
                                            (with chunked_workspace, attrs["chunk"] says
                                            how many samples it holds)
  identity_when(in_shapes, out_shape) -> bool
                                            True where the op is a plain copy of input 0:
                                            the compiler aliases it instead of running it

`xp` is the array module of the backend (numpy or cupy), so one compute serves both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import GraphError, ShapeError
from ..graph import Node, as_node
from ..registry import add_unique

# Kinds follow TVM's operator patterns; the fusion pass groups by them.
KINDS = ("source", "elementwise", "broadcast", "injective", "reduction", "opaque")

OPS: dict[str, "OpDef"] = {}


def not_differentiable(node, g):
    """Explicit gradient rule for ops whose output carries no gradient (ids, masks, metrics)."""
    return [None] * len(node.inputs)


def gradient_not_implemented(why: str):
    """Gradient rule for an op that does depend on its inputs but has no gradient here:
    `gradients()` raises naming the op, instead of silently treating it as constant."""
    def rule(node, g):
        raise GraphError(f"node {node.name}: op {node.op} has no gradient ({why})")
    return rule


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    shape: Callable
    compute: Callable | None
    gradient: Callable | None
    dtype: Callable = None  # filled with default_dtype in __post_init__
    inplace: tuple = ()  # indices of inputs whose buffer the output may overwrite
    # the output is input 0's elements in C order under another shape (a reshape): it may
    # share input 0's buffer even where that input is read again later (nothing is
    # overwritten), and then its compute has nothing to copy
    reinterprets: bool = False
    shape_only: tuple = ()  # input indices read for their shape, never their values
    random: bool = False  # draws random numbers: never recomputed by checkpointing
    # acts beyond its output (communication): never merged, recomputed or fused away
    effects: bool = False
    broadcasting: bool = False  # inputs may be broadcast: autodiff sums gradients back
    # Optional fast path: (xp, ins, attrs, out) -> a zero-argument callable doing the compute,
    # e.g. functools.partial(np.add, a, b, out=out): the run loop then enters no Python frame.
    bind: Callable | None = None
    workspace: Callable | None = None  # see the module docstring
    # the workspace holds a chunk of the batch (input 0's first axis), attrs["chunk"] samples
    # (its rule's default where absent), and the result does not depend on it: the memory
    # planner picks it
    chunked_workspace: bool = False
    # indices of source inputs (parameters, optimizer state) the compute overwrites in
    # place: the compiler schedules the op after every other reader of those arrays
    mutates: tuple = ()
    identity_when: Callable | None = None  # see the module docstring (e.g. `same_as_input`)
    epilogue_head: bool = False  # an opaque op a following elementwise op fuses into
    # rows of the output are independent and costly: computed on a run of its first-axis
    # rows, with each input and workspace array of the output's rank and first axis cut
    # alike, the op gives those rows, and enough work per element (transcendentals, row
    # statistics) that splitting large ones over CPU threads pays (ops.cpu; memory-bound
    # arithmetic does not); True, or (attrs, output rank) -> bool where it depends on them
    rows: bool | Callable = False
    # a GEMM that splits over CPU threads on a host BLAS (ops/cpu.py split_gemm): (xp, ins,
    # attrs, out, threads) -> a zero-argument call computing `out` in parts, or None (whole)
    parts: Callable | None = None
    # a source whose value is bound at run time (feeds, parameters), not held in its attrs
    fed: bool = False
    doc: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"op {self.name}: unknown kind {self.kind!r}")
        if self.dtype is None:
            object.__setattr__(self, "dtype", default_dtype)


def register(opdef: OpDef) -> OpDef:
    return add_unique(OPS, opdef.name, opdef, "op")


def make(op, *inputs, name=None, **attrs) -> Node:
    """The node builder every op module uses; scalars and arrays become constants."""
    return Node(op, [as_node(i) for i in inputs], attrs, name)


def is_source(node) -> bool:
    """A value from outside the computation (placeholder, parameter, constant): not scheduled."""
    return node.opdef.kind == "source"


def default_dtype(in_dtypes, attrs):
    """numpy's promotion, python scalars staying weak (5 + float32 stays float32)."""
    return np.result_type(*in_dtypes)


def first_dtype(in_dtypes, attrs):
    return np.result_type(in_dtypes[0])


# ---- shape helpers shared by the rule modules -------------------------------------------

def broadcast_shapes(*shapes):
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def normalize_axes(axis, ndim):
    """None -> all axes; "all_but_1" -> every axis but the channel axis (batch norm);
    int or sequence -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if axis == "all_but_1":
        return tuple(a for a in range(ndim) if a != 1)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} out of range for rank {ndim}")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def same_shape(shapes, attrs):
    return tuple(shapes[0])


def same_as_input(in_shapes, out_shape) -> bool:
    """identity_when rule: the output shape is input 0's (nothing was broadcast, reduced or
    reshaped)."""
    return tuple(in_shapes[0]) == tuple(out_shape)


def scratch(workspace, xp, ins, attrs, out) -> dict | None:
    """Allocate an op's workspace itself: for a compute called outside a planned arena.
    None where the rule plans none for these shapes (the op then needs none, or makes its
    own: GELU's and ReLU's gradients where their compiled loops run)."""
    specs = workspace([i.shape for i in ins], attrs, out.shape, out.dtype)
    if specs is None:
        return None
    return {name: xp.empty(shape, dtype=dtype) for name, (shape, dtype) in specs.items()}
