"""Shape and dtype inference: one pass over a topological order, from the source values."""
from __future__ import annotations

import math

import numpy as np

from ..errors import FeedError, ShapeError


def infer(order, source_values: dict, shapes=None, dtypes=None):
    """Shapes and dtypes of every node. `source_values` maps placeholders and parameters to
    their arrays, or to anything with `.shape` and `.dtype` (see `ShapeSpec`): shape
    inference never reads values, so the editor runs it before any data exists."""
    shapes = {} if shapes is None else shapes  # known entries are kept (incremental use)
    dtypes = {} if dtypes is None else dtypes
    for node in order:
        if node in shapes:
            continue
        if node.opdef.fed:  # placeholders and parameters: their value (or spec) is given
            shapes[node], dtypes[node] = _source_shape(node, source_values)
            continue
        opdef = node.opdef
        in_shapes = [shapes[i] for i in node.inputs]
        in_dtypes = [dtypes[i] for i in node.inputs]
        try:
            shapes[node] = tuple(int(d) for d in opdef.shape(in_shapes, node.attrs))
            dtypes[node] = opdef.dtype(in_dtypes, node.attrs)
        except ShapeError as exc:
            names = ", ".join(f"{i.name} {tuple(s)}" for i, s in zip(node.inputs, in_shapes))
            raise ShapeError(f"node {node.name} (op {node.op}): {exc} [inputs: {names}]") from None
    return shapes, dtypes


def _source_shape(node, source_values):
    if node not in source_values:
        raise FeedError(f"placeholder {node.name!r} was not fed a value")
    value = source_values[node]
    declared = node.attrs.get("shape")
    if declared is not None and not _matches(declared, value.shape):
        raise FeedError(f"{node.op} {node.name!r} declared shape "
                        f"{show_shape(declared)} but was fed {tuple(value.shape)}")
    return tuple(value.shape), value.dtype


class ShapeSpec:
    """Stands in for an array during shape-only inference."""
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype="float32"):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def _matches(declared, actual):
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual))


def show_shape(shape) -> str:
    """A shape for messages, the batch axis (None) shown as N: "(N, 1, 28, 28)"."""
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def nbytes(shape, dtype) -> int:
    # exact (Python integers): an int64 product wraps around silently for absurd shapes,
    # and the size checks must see the real number
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
