"""Ops for sequence models: embedding lookup, GELU, where, the causal mask (layer norm has
its own module, ops/norm_ops.py).

Each has one forward compute and a dedicated gradient op, so attention blocks plan and run
like any other graph."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..graph import constant
from . import native
from .base import (OpDef, broadcast_shapes, gradient_not_implemented, make, normalize_axes,
                   register, same_shape, scratch)
from .elementwise import like_shape
from .interop_ops import erf_values  # double-precision erf (numpy has none)

# ---- gather: rows of a table picked by integer ids (embedding lookup) -------------------------


def gather(table, ids, axis=0, name=None):
    """table indexed by integer ids along `axis`: the result's shape is
    table.shape[:axis] + ids.shape + table.shape[axis + 1:] (numpy's take)."""
    return make("gather", table, ids, name=name, axis=int(axis))


def _gather_shape(shapes, attrs):
    table, ids = shapes
    if not table:
        raise ShapeError("gather needs a table of rank 1 or more, got a scalar")
    axis = normalize_axes(attrs["axis"], len(table))[0]
    return tuple(table[:axis]) + tuple(ids) + tuple(table[axis + 1:])


def _gather(xp, ins, attrs, out):
    table, ids = ins
    xp.take(table, ids, axis=attrs["axis"], out=out)


def _gather_grad(n, g):
    table, ids = n.inputs
    return [make("gather_grad", g, ids, table, axis=n.attrs["axis"]), None]


def _scatter_add(xp, ins, attrs, out):
    """out = zeros like the table, then each gradient row added at its id: repeated ids add up
    (add.at is unbuffered, unlike out[ids] += g)."""
    g, ids, table = ins
    axis = attrs["axis"] % table.ndim
    out.fill(0)
    if xp is np and axis == 0 and ids.size:
        _sum_rows_by_id(ids.reshape(-1), g.reshape(ids.size, -1), out.reshape(len(out), -1))
        return
    xp.add.at(out, (np.s_[:],) * axis + (ids,), g)


def _sum_rows_by_id(ids, rows, out):
    """out[id] += the rows with that id, each id's rows summed in order of occurrence: a
    stable sort and one segmented sum (numpy's add.at takes 1.5 ms for the baby GPT's
    embedding gradient, this about a tenth)."""
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    out[ordered[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def _gather_dtype(dtypes, attrs):
    if np.dtype(dtypes[1]).kind not in "iu":
        raise ShapeError(f"gather ids must be integers, got {np.dtype(dtypes[1]).name}")
    return np.result_type(dtypes[0])


register(OpDef("gather", "opaque", _gather_shape, _gather, _gather_grad, dtype=_gather_dtype,
               doc="rows of a table picked by integer ids (embedding lookup)"))
register(OpDef("gather_grad", "opaque", lambda s, a: tuple(s[2]), _scatter_add,
               lambda n, g: [gather(g, n.inputs[1], n.attrs["axis"]), None, None],
               shape_only=(2,), dtype=lambda d, a: np.result_type(d[0]),
               doc="gradient of gather: rows of g added into a zero table at their ids"))


# ---- where --------------------------------------------------------------------------------------

def where(cond, a, b, name=None):
    """a where cond is true, else b (numpy broadcasting over all three)."""
    return make("where", cond, a, b, name=name)


def _where(xp, ins, attrs, out):
    cond, a, b = ins
    if _where_native(cond, a, b, out):
        return
    cond = xp.asarray(cond, dtype=bool) if cond.dtype != bool else cond
    if xp.may_share_memory(out, a):  # computed in a's buffer: only b's places change
        xp.copyto(out, b, where=xp.logical_not(cond))
        return
    xp.copyto(out, b)
    xp.copyto(out, a, where=cond)


def _where_native(cond, a, b, out) -> bool:
    """A boolean mask over out's trailing axes, a of out's shape and a scalar b (attention's
    causal mask and its gradient): one compiled pass, the values copied as numpy's copyto
    does. 140-185 µs → 55-85 on attention's (12, 4, 64, 64) scores. Returns whether it ran."""
    if not (type(cond) is np.ndarray and cond.dtype == bool and cond.flags.c_contiguous and cond.ndim
            and np.size(b) == 1 and native.usable(a, out)  # a: an array, not a Python scalar
            and out.shape[out.ndim - cond.ndim:] == cond.shape and a.shape == out.shape):
        return False
    width = cond.size
    fill = np.asarray(b, out.dtype).reshape(1)
    rows = out.reshape(-1, width)
    if native.same_array(a, out):
        native.kernel("where_scalar_inplace")(cond.reshape(-1), fill, rows)
    else:
        native.kernel("where_scalar")(cond.reshape(-1), a.reshape(-1, width), fill, rows)
    return True


def _where_grad(n, g):
    cond = n.inputs[0]
    return [None, where(cond, g, 0.0), where(cond, 0.0, g)]


register(OpDef("where", "broadcast", lambda s, a: broadcast_shapes(*s), _where, _where_grad,
               broadcasting=True, dtype=lambda d, a: np.result_type(*d[1:]), inplace=(1,),
               doc="a where cond is true, else b"))


def causal_mask(length, name=None):
    """A constant (length, length) boolean matrix, true on and below the diagonal: position t
    may attend to positions 0..t. A constant is placed once, never recomputed per step."""
    return constant(np.tri(int(length), dtype=bool), name=name)


# ---- GELU -----------------------------------------------------------------------------------

GELU_FORMS = ("tanh", "erf")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(x, approximate="tanh", name=None):
    """x * Phi(x): the erf form exactly, or GPT-2's tanh approximation."""
    if approximate not in GELU_FORMS:
        raise ValueError(f"gelu: approximate must be one of {GELU_FORMS}, got {approximate!r}")
    return make("gelu", x, name=name, approximate=approximate)


# The tanh form through exp: 0.5 (1 + tanh(u)) = sigmoid(2u), so gelu(x) = x / (1 + e^(-2u))
# with u = sqrt(2/pi) (x + 0.044715 x^3): numpy's exp is vectorised, its tanh much slower,
# and every step writes into a planned buffer (a temporary per step costs page faults).
GELU_K0 = -2.0 * _SQRT_2_OVER_PI  # -2u = x (GELU_K0 + GELU_K1 x^2)
GELU_K1 = GELU_K0 * 0.044715
GELU_D0 = 2.0 * _SQRT_2_OVER_PI  # 2 du/dx = GELU_D0 + GELU_D1 x^2
GELU_D1 = 3.0 * GELU_D0 * 0.044715


def _minus_two_u(xp, x, out):
    xp.multiply(x, x, out=out)
    out *= GELU_K1
    out += GELU_K0
    out *= x


def _gelu(xp, ins, attrs, out):
    x = ins[0]
    if attrs["approximate"] == "tanh" and native.usable(x, out):
        _gelu_tanh_native(x.reshape(-1), out.reshape(-1))
        return
    if attrs["approximate"] == "tanh":
        _minus_two_u(xp, x, out)
        with np.errstate(over="ignore"):  # far below 0: e = inf and x / (1 + e) = -0, right
            xp.exp(out, out=out)
        out += 1.0
        xp.divide(x, out, out=out)
        return
    erf_values(xp, x * _INV_SQRT_2, out)
    out += 1.0
    out *= x
    out *= 0.5


def _gelu_tanh_native(x, out):
    """The tanh form in three passes instead of six, numpy's bits: the compiled loops
    (ops/native.py) do the arithmetic before and after numpy's vectorised exp."""
    native.kernel("gelu_minus_two_u")(x, out, _FORWARD_CONSTANTS[out.dtype])
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    native.kernel("gelu_divide")(x, out, _FORWARD_CONSTANTS[out.dtype][2:])


def _gelu_grad(xp, ins, attrs, out, ws=None):
    """g * d gelu / dx, read off the forward's y = gelu(x) = x P(x), where P is sigmoid(2u)
    for the tanh form and Phi for the erf form: P = y / x (1/2 at x = 0), so neither exp nor
    erf is computed again for it. Then gelu' = P (1 + x (1 - P) 2 du/dx) for the tanh form,
    Phi(x) + x phi(x) for the erf form. (P from exp(-2u) instead, as before, made
    inf * 0 = NaN where exp(-2u) overflows: x below about -10 in float32.)"""
    x, y, g = ins
    if attrs["approximate"] == "tanh" and native.usable(x, y, g, out):  # one pass, same bits
        _gelu_tanh_grad_native(*(a.reshape(-1) for a in (x, y, g, out)))
        return
    ws = ws or scratch(_gelu_grad_scratch, xp, ins, attrs, out)
    a, b = ws["a"], ws["b"]
    _share(xp, y, x, out, _as_mask(a, x.shape))  # P (a's bytes hold the mask until then)
    if attrs["approximate"] == "tanh":
        xp.subtract(1.0, out, out=b)  # 1 - P
        xp.multiply(x, x, out=a)
        a *= GELU_D1
        a += GELU_D0
        a *= x
        a *= b
        a += 1.0
        out *= a
    else:
        xp.multiply(x, x, out=b)
        b *= -0.5
        xp.exp(b, out=b)
        b *= x
        b *= _INV_SQRT_2PI
        out += b
    out *= g


# the compiled tanh form's scalars in each dtype, in the order native.py's loops read them
_FORWARD_CONSTANTS = {t: np.array((GELU_K0, GELU_K1, 1.0), t) for t in native.DTYPES}
# the compiled tanh gradient's scalars (native.py's gelu_tanh_grad reads them in this order)
_GRAD_CONSTANTS = {t: np.array((GELU_D0, GELU_D1, 1.0, 0.5, 0.0), t) for t in native.DTYPES}


def _gelu_tanh_grad_native(x, y, g, out):
    constants = _GRAD_CONSTANTS[out.dtype]
    if native.same_array(y, out):  # the planner computes it over y's buffer (inplace=(1,))
        native.kernel("gelu_tanh_grad_inplace")(x, y, g, constants)
    else:
        native.kernel("gelu_tanh_grad")(x, y, g, out, constants)


def _share(xp, y, x, out, zero):
    """out = y / x, and 1/2 where x is 0 (the limit of gelu(x) / x)."""
    with np.errstate(invalid="ignore"):  # 0 / 0, replaced next (numpy's flags; cupy has none)
        xp.divide(y, x, out=out)
    xp.copyto(out, 0.5, where=xp.equal(x, 0, out=zero))


def _as_mask(buf, shape):
    """A boolean array of `shape` in the first bytes of the contiguous float buffer buf."""
    return buf.reshape(-1).view(np.bool_)[:math.prod(shape)].reshape(shape)


def _gelu_grad_ws(shapes, attrs, out_shape, dtype):
    """Planned scratch: none where the compiled loop will run (where it then cannot, the
    numpy rule makes its own, `_gelu_grad_scratch`)."""
    if attrs["approximate"] == "tanh" and native.expected(dtype):
        return None
    return _gelu_grad_scratch(shapes, attrs, out_shape, dtype)


def _gelu_grad_scratch(shapes, attrs, out_shape, dtype):
    return {"a": (tuple(out_shape), dtype), "b": (tuple(out_shape), dtype)}


register(OpDef("gelu", "elementwise", same_shape, _gelu,
               lambda n, g: [make("gelu_grad", n.inputs[0], n, g, approximate=n.attrs["approximate"])],
               rows=True, doc="x * Phi(x), Gaussian error linear unit (tanh or erf form)"))
register(OpDef("gelu_grad", "elementwise", like_shape, _gelu_grad,
               gradient_not_implemented("second order through gelu is not supported"),
               # y is read once, first, where its own element is written: out may be y's buffer
               workspace=_gelu_grad_ws, rows=True, inplace=(1,),
               dtype=lambda d, a: np.result_type(d[2]), doc="g * gelu'(x), from x and y = gelu(x)"))

