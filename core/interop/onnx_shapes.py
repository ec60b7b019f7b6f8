"""What the ONNX import's rules work with, and the rules of the ops that only move, pick or
make data (Reshape, Slice, Gather, Concat, Pad, Shape, Constant...).

A value is a `Const` (known at import: an initializer, a Constant, a folded subgraph) or a
`Wire` (an output port of a node in the document). A rule gets the node's context `cx` (see
onnx_import.NodeContext) and returns the node's outputs; where every input of a node is a
constant, its `FOLD` entry computes the outputs with numpy instead (shape arithmetic).

While importing, the batch axis of the inputs has size `BATCH`, a prime no model uses: a
shape entry that is a multiple of it depends on the batch size (a Shape -> Gather -> Concat
chain feeding a Reshape folds to such a shape, and that entry becomes -1)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..layers import LAYERS
from ..layers.builder import DISPLAY_BATCH
from ..limits import MAX_INT
from .onnx_safety import np_dtype

BATCH = DISPLAY_BATCH
MAX_FOLD = 1 << 24  # elements a folded constant may have: a shape chain is tiny


class Refusal(Exception):
    """Why a node cannot be imported; the importer adds the op type and node name."""


@dataclass(eq=False)
class Const:
    """A value known at import: an initializer, a Constant, or a folded subgraph."""
    value: np.ndarray
    name: str  # the ONNX tensor's name: its node id if it becomes a node
    trainable: bool = False  # a weight (Parameter) rather than a fixed tensor (Constant)
    batch: bool = False  # computed from the batch size: fine as a shape, not as data
    wire: object = None  # its node in the document, once made


@dataclass(frozen=True)
class Wire:
    """An output port of a node in the document."""
    node: str
    port: str = "out"


def show(shape) -> str:
    """A shape for messages, the batch size shown as N."""
    return "(" + ", ".join(_dim(d) for d in shape) + ")"


def _dim(d):
    if d and d % BATCH == 0:
        return "N" if d == BATCH else f"{d // BATCH}N"
    return str(d)


# ---- shared helpers ----------------------------------------------------------------------

def norm_axis(axis, rank):
    if axis is None or not -rank <= axis < max(rank, 1):
        raise Refusal(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis % max(rank, 1)


def fit_axis(axis, rank):
    """An axis as Loom's attributes take it (-4..4): negative where that fits."""
    if axis - rank >= -4:
        return axis - rank
    if axis <= 4:
        return axis
    raise Refusal(f"axis {axis} of a rank-{rank} tensor is beyond Loom's axis range (-4..4)")


def fits(kind, attrs) -> bool:
    """The attribute values are within the layer kind's ranges."""
    return all(spec.check(attrs[spec.name]) is None for spec in LAYERS[kind].attrs
               if spec.name in attrs)


def guard(elements):
    if elements > MAX_FOLD:
        raise Refusal(f"a constant of {elements} elements (more than {MAX_FOLD})")


def reshape_to(cx, x, target):
    """x with a new full shape (entries may hold the batch size): a Reshape layer where the
    first axis stays, else a reshape op."""
    target = tuple(int(d) for d in target)
    if isinstance(x, Const):
        return Const(x.value.reshape(target), x.name, x.trainable, x.batch)
    shape = tuple(cx.shape(x))
    if target == shape:
        return x
    if any(d <= 0 for d in target):
        raise Refusal(f"reshaping {show(shape)} to {show(target)}: Loom holds no empty tensors")
    if shape[:1] == target[:1] and not any(cx.is_batch(d) for d in target[1:]):
        if len(shape) > 2 and len(target) == 2:  # (N, everything else): what Flatten does
            return cx.emit("Flatten", {}, x)
        return cx.emit("Reshape", {"shape": list(target[1:])}, x)
    return cx.emit("reshape", {"shape": loom_shape(cx, shape, target)}, x)


def loom_shape(cx, shape, target):
    """The target with -1 at the one entry that depends on the batch size."""
    if not any(cx.is_batch(d) for d in shape):
        return list(target)
    depends = [i for i, d in enumerate(target) if cx.is_batch(d)]
    if len(depends) != 1:
        raise Refusal(f"reshaping {show(shape)} to {show(target)}: the batch size must stay "
                      f"in exactly one axis")
    out = list(target)
    out[depends[0]] = -1
    return out


def resolve_reshape(shape, target, allowzero):
    """ONNX Reshape's output shape: 0 copies the input's entry, -1 takes what is left."""
    out = [shape[i] if d == 0 and not allowzero and i < len(shape) else int(d)
           for i, d in enumerate(target)]
    size = math.prod(shape)
    if out.count(-1) > 1:
        raise Refusal(f"shape {list(target)} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or size % known:
            raise Refusal(f"cannot reshape {show(shape)} to {list(target)}")
        out[out.index(-1)] = size // known
    if math.prod(out) != size:
        raise Refusal(f"cannot reshape {show(shape)} to {list(target)}")
    return out


def axes_arg(cx, since, index=1):
    """A list of axes: the attribute before opset `since`, the optional input from it on
    (None when absent)."""
    if cx.opset < since:
        axes = cx.attr("axes")
        return None if axes is None else [int(a) for a in axes]
    if cx.input(index) is None:
        return None
    return [int(a) for a in cx.const(index, "axes").reshape(-1)]


# ---- shapes ----------------------------------------------------------------------------------

def _reshape(cx):
    x = cx.input(0)
    shape = tuple(cx.shape(x))
    target = [int(d) for d in cx.const(1, "shape").reshape(-1)]
    allowzero = cx.attr("allowzero", 0)
    try:
        out = resolve_reshape(shape, target, allowzero)
    except Refusal:
        # a model exported with a fixed batch names that size in literal shapes: it is the batch
        if not (target and shape and cx.is_batch(shape[0]) and target[0] == cx.declared_batch):
            raise
        out = resolve_reshape(shape, [0, *target[1:]], False)
    return [reshape_to(cx, x, out)]


def _flatten(cx):
    x = cx.input(0)
    xs = tuple(cx.shape(x))
    axis = cx.attr("axis", 1)
    if not -len(xs) <= axis <= len(xs):
        raise Refusal(f"axis {axis} is out of range for a tensor of rank {len(xs)}")
    axis += len(xs) if axis < 0 else 0
    target = (math.prod(xs[:axis]), math.prod(xs[axis:]))
    if target == xs:
        return [x]
    if axis == 1 and isinstance(x, Wire):
        return [cx.emit("Flatten", {}, x)]
    return [reshape_to(cx, x, target)]


def _unsqueeze(cx):
    x = cx.input(0)
    shape = list(cx.shape(x))
    axes = axes_arg(cx, 13)
    if axes is None:
        raise Refusal("axes are missing")
    for a in sorted(norm_axis(a, len(shape) + len(axes)) for a in axes):
        shape.insert(a, 1)
    return [reshape_to(cx, x, shape)]


def _squeeze(cx):
    x = cx.input(0)
    shape = list(cx.shape(x))
    axes = axes_arg(cx, 13)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else \
        [norm_axis(a, len(shape)) for a in axes]
    if any(shape[a] != 1 for a in axes):
        raise Refusal(f"cannot squeeze axes {axes} of {show(shape)}: they are not of size 1")
    return [reshape_to(cx, x, [d for i, d in enumerate(shape) if i not in axes])]


def _perm(cx, rank):
    perm = cx.attr("perm")
    perm = list(reversed(range(rank))) if perm is None else [int(p) % max(rank, 1) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise Refusal(f"perm {cx.attr('perm')} is not a permutation of {rank} axes")
    return perm


def _transpose(cx):
    x = cx.input(0)
    perm = _perm(cx, len(cx.shape(x)))
    return [x if perm == sorted(perm) else cx.emit("transpose", {"axes": perm}, x)]


def _concat(cx):
    parts = [v for v in cx.inputs if v is not None]
    rank = len(cx.shape(parts[0]))
    axis = fit_axis(norm_axis(cx.attr("axis"), rank), rank)
    # an earlier Concat of the same leading parts is reused: DenseNet joins every earlier
    # layer's features again in each layer, so each of its Concats adds one part to the last
    joins = cx.imp.joins
    done = max((n for n in range(2, len(parts) + 1) if (axis, *parts[:n]) in joins), default=1)
    out = joins.get((axis, *parts[:done]), parts[0])
    while done < len(parts):  # Loom's Concat joins up to three: the result so far and two
        more = parts[done:done + 2]
        out, done = cx.emit("Concat", {"axis": axis}, out, *more), done + len(more)
        joins[(axis, *parts[:done])] = out
    return [out]


def slice_params(cx, rank):
    """(starts, ends, axes, steps) as lists of ints, axes non-negative."""
    if cx.opset < 10:
        starts, ends = list(cx.attr("starts")), list(cx.attr("ends"))
        axes, steps = cx.attr("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = (list(cx.const(i, w).reshape(-1)) for i, w in ((1, "starts"), (2, "ends")))
        axes = cx.const(3, "axes").reshape(-1) if cx.input(3) is not None else range(len(starts))
        steps = cx.const(4, "steps").reshape(-1) if cx.input(4) is not None else [1] * len(starts)
    axes = [norm_axis(int(a), rank) for a in axes]
    return [int(s) for s in starts], [int(e) for e in ends], axes, [int(s) for s in steps]


def _clamp(v):
    return max(-MAX_INT, min(MAX_INT, v))


def _slice(cx):
    x = cx.input(0)
    xs = cx.shape(x)
    starts, ends, axes, steps = slice_params(cx, len(xs))
    if any(s != 1 for s in steps):
        raise Refusal(f"steps {steps}: Loom's slice takes contiguous blocks (step 1)")
    span = max(axes, default=-1) + 1
    whole = [MAX_INT if cx.is_batch(d) else d for d in xs[:span]]  # each axis to its end
    begin, end = [0] * span, list(whole)
    for a, s, e in zip(axes, starts, ends):
        if cx.is_batch(xs[a]):
            begin[a], end[a] = _clamp(s), _clamp(e)  # counted from either end at any batch
        else:
            begin[a], end[a], _ = slice(s, e).indices(xs[a])
    if begin == [0] * span and end == whole:
        return [x]
    return [cx.emit("slice", {"begin": begin, "end": end}, x)]


def _fold_slice(cx, x, *_):
    starts, ends, axes, steps = slice_params(cx, x.ndim)
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = slice(_clamp(s), _clamp(e), st)
    return [x[tuple(index)]]


def _gather(cx):
    data, ids = cx.input(0), cx.input(1)
    ds = cx.shape(data)
    axis = norm_axis(cx.attr("axis", 0), len(ds))
    if not isinstance(ids, Const):
        if isinstance(data, Const) and len(ds) == 2 and axis == 0:
            return [cx.layer("Embedding", {"vocab": ds[0], "width": ds[1]}, ids, weight=data.value)]
        return [cx.emit("gather", {"axis": fit_axis(axis, len(ds))}, data, ids)]
    idx = ids.value.astype(np.int64)
    if not cx.is_batch(ds[axis]):
        if ((idx < -ds[axis]) | (idx >= ds[axis])).any():
            raise Refusal(f"an index is out of range for an axis of {ds[axis]}")
        idx = np.where(idx < 0, idx + ds[axis], idx)
    elif (idx < 0).any():
        raise Refusal("a negative index along the batch axis")
    attrs = {"axis": fit_axis(axis, len(ds)), "indices": idx.ravel().tolist(),
             "indices_shape": list(idx.shape)}
    return [cx.emit("gather", attrs, data)]


def _fold_gather(cx, data, ids):
    axis = norm_axis(cx.attr("axis", 0), data.ndim)
    guard(ids.size * data.size // max(data.shape[axis], 1))
    return [np.take(data, ids.astype(np.int64), axis=axis)]


def _where(cx):
    cond, a, b = cx.input(0), cx.input(1), cx.input(2)
    if isinstance(cond, Const) and cond.value.dtype.kind != "f":
        # Loom's constants are floating point, and its where reads a condition as != 0
        cond = Const((cond.value != 0).astype(np.float32), cond.name, batch=cond.batch)
    return [cx.emit("where", {}, cond, a, b)]


def _fold_where(cx, cond, a, b):
    guard(math.prod(np.broadcast_shapes(cond.shape, a.shape, b.shape)))
    return [np.where(cond, a, b)]


# ---- padding --------------------------------------------------------------------------------

def _pad_op(cx):
    """ONNX Pad, constant mode."""
    mode = cx.attr("mode", "constant")
    if mode != "constant":
        raise Refusal(f"mode {mode!r}: Loom pads with a constant only")
    x = cx.input(0)
    rank = len(cx.shape(x))
    if cx.opset < 11:
        pads, value = list(cx.attr("pads")), float(cx.attr("value", 0.0))
    else:
        pads = [int(p) for p in cx.const(1, "pads").reshape(-1)]
        value = float(cx.const(2, "constant_value").reshape(())) if cx.input(2) is not None else 0.0
    axes = axes_arg(cx, 18, index=3)
    if axes is not None:
        full = [0] * 2 * rank
        for i, a in enumerate(norm_axis(a, rank) for a in axes):
            full[a], full[rank + a] = pads[i], pads[len(axes) + i]
        pads = full
    if any(p < 0 for p in pads):
        raise Refusal(f"negative pads {pads} (cropping): use Slice")
    return [x if not any(pads) else cx.emit("pad", {"pads": pads, "value": value}, x)]


# ---- constants -------------------------------------------------------------------------------

CONSTANT_VALUES = {"value": None, "value_float": np.float32, "value_floats": np.float32,
                   "value_int": np.int64, "value_ints": np.int64}


def _constant(cx):
    for key, dtype in CONSTANT_VALUES.items():
        value = cx.attr(key)
        if value is not None:
            return [Const(np.asarray(value, dtype=dtype), cx.proto.output[0])]
    raise Refusal("only tensor, float and integer values (no strings or sparse tensors)")


def _constant_of_shape(cx):
    source = cx.input(0)
    if not isinstance(source, Const) or source.batch:
        raise Refusal("the shape must be a constant that does not depend on the batch size")
    shape = [int(d) for d in source.value.reshape(-1)]
    if any(d < 0 for d in shape):
        raise Refusal(f"negative shape {shape}")
    guard(math.prod(shape))
    fill = cx.attr("value")
    fill = np.zeros(1, np.float32) if fill is None else fill.reshape(-1)
    return [Const(np.full(shape, fill[0], dtype=fill.dtype), cx.proto.output[0])]


def _shape(cx):
    dims = list(cx.shape(cx.input(0)))[slice(cx.attr("start", 0), cx.attr("end"))]
    return [Const(np.array(dims, dtype=np.int64), cx.proto.output[0],
                  batch=any(cx.is_batch(d) for d in dims))]


def _size(cx):
    shape = cx.shape(cx.input(0))
    return [Const(np.array(math.prod(shape), dtype=np.int64), cx.proto.output[0],
                  batch=any(cx.is_batch(d) for d in shape))]


def _cast_like(cx):
    return _cast_to(cx, cx.dtype(cx.input(1)))


def _cast(cx):
    return _cast_to(cx, np_dtype(cx.attr("to"), "the cast's target"))


def _cast_to(cx, to):
    x = cx.input(0)
    have = np.dtype(cx.dtype(x))
    if (have.kind == "f") != (to.kind == "f") or to.kind not in "fiu":
        raise Refusal(f"a cast from {have.name} to {to.name}: Loom has no cast; it computes "
                      f"in floating point and takes integers only as ids")
    return [x]  # float to float, ids to ids: Loom's dtype follows the data


# ---- the tables (merged into onnx_rules') ----------------------------------------------------

SHAPE_RULES = {
    "Reshape": _reshape, "Flatten": _flatten, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
    "Transpose": _transpose, "Concat": _concat, "Slice": _slice, "Gather": _gather,
    "Where": _where,
    "Pad": _pad_op, "Identity": lambda cx: [cx.input(0)], "Cast": _cast, "CastLike": _cast_like,
    "Constant": _constant, "ConstantOfShape": _constant_of_shape, "Shape": _shape, "Size": _size,
}

SHAPE_FOLDS = {
    "Identity": lambda cx, a: [a],
    "Cast": lambda cx, a: [a.astype(np_dtype(cx.attr("to"), "the cast's target"))],
    "CastLike": lambda cx, a, like: [a.astype(like.dtype)],
    "Concat": lambda cx, *xs: [np.concatenate([x for x in xs if x is not None],
                                              norm_axis(cx.attr("axis"), xs[0].ndim))],
    "Transpose": lambda cx, a: [np.transpose(a, _perm(cx, a.ndim))],
    "Slice": _fold_slice, "Gather": _fold_gather, "Where": _fold_where,
}

# inputs the import needs as constants (the conformance backend passes such graph inputs so)
SHAPE_CONSTANT_INPUTS = {"Reshape": (1,), "Slice": (1, 2, 3, 4), "Unsqueeze": (1,),
                         "Squeeze": (1,), "ConstantOfShape": (0,), "Gather": (1,),
                         "Pad": (1, 2, 3)}
