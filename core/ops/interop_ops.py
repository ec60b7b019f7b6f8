"""Ops imported models need that Loom's own layers did not: the error function, a power with a
tensor exponent and local response normalisation (AlexNet-era CNNs). Each has its forward
compute and its gradient rule here, like every other op module."""
from __future__ import annotations

import math

from ..errors import ShapeError
from ..limits import MAX_INT
from .base import (OpDef, broadcast_shapes, gradient_not_implemented, make, register, same_shape,
                   scratch)
from .elementwise import exp, log, mul, neg, sub, ufunc_binder
from .reduce import _axis_attr, _cached_axes, _reduced_shape


def erf(x, name=None): return make("erf", x, name=name)
def pow(a, b, name=None): return make("pow", a, b, name=name)  # noqa: A001 - the op's name


def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0, name=None):
    """Local response normalisation across channels (axis 1), as ONNX and AlexNet define it:
    x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels) ** beta."""
    return make("lrn", x, name=name, size=int(size), alpha=float(alpha), beta=float(beta),
                bias=float(bias))


def reduce_max(x, axis=None, keepdims=False, name=None):
    return make("reduce_max", x, name=name, axis=_axis_attr(axis), keepdims=bool(keepdims))


def pad(x, pads, value=0.0, lowest=False, name=None):
    """x inside a border: pads[i] entries before axis i and pads[rank + i] after it, filled
    with `value` (or -infinity with `lowest`, what max pooling pads with)."""
    return make("pad", x, name=name, pads=tuple(int(p) for p in pads), value=float(value),
                lowest=bool(lowest))


# ---- erf ------------------------------------------------------------------------------------
# W. J. Cody's rational Chebyshev approximations (Math. Comp. 1969), accurate to double
# precision. The 1.5e-7 formula GELU uses is not smooth enough for an op with a gradient:
# its slope is off the true 2/sqrt(pi) e^(-x^2) by up to 3e-5.

_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_SMALL, _LARGE = 0.46875, 4.0
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def _rational(t, num, den):
    """Cody's evaluation order: (((num[-1] t + num[0]) t + ...) + num[-2]) / (... + den[-1])."""
    n, d = num[-1] * t, t
    for p, q in zip(num[:-2], den[:-1]):
        n = (n + p) * t
        d = (d + q) * t
    return (n + num[-2]) / (d + den[-1])


def erf_values(xp, x, out):
    """erf(x) into out, to double precision; each range is evaluated on clipped arguments so
    no branch overflows, then the right one is picked per element."""
    y = xp.abs(x)
    near = xp.clip(x, -_SMALL, _SMALL)
    small = near * _rational(near * near, _A, _B)
    mid = xp.clip(y, _SMALL, _LARGE)
    tail = xp.maximum(y, _LARGE)
    z = 1.0 / (tail * tail)
    erfc_tail = (_INV_SQRT_PI - z * _rational(z, _P, _Q)) / tail * xp.exp(-tail * tail)
    erfc = xp.where(y <= _LARGE, _rational(mid, _C, _D) * xp.exp(-mid * mid), erfc_tail)
    xp.copyto(out, xp.where(y <= _SMALL, small, xp.sign(x) * (1.0 - erfc)))
    return out


def _erf_grad(n, g):
    x = n.inputs[0]
    return [mul(g, mul(exp(neg(mul(x, x))), 2.0 * _INV_SQRT_PI))]


# "opaque" (not fused) until gpu/lower.py has rules for them: the GPU backend needs a kernel
# for every elementwise and broadcast op; their own computes run on any backend
register(OpDef("erf", "opaque", same_shape, lambda xp, ins, a, out: erf_values(xp, ins[0], out),
               _erf_grad, doc="the error function, 2/sqrt(pi) * integral of e^(-t^2) from 0 to x"))


# ---- pow: a tensor exponent (a scalar one is `power`) -------------------------------------------

def _pow_grad(n, g):
    a, b = n.inputs
    # d/da = b a^(b-1); d/db = ln(a) a^b (NaN for a < 0, as the math says)
    return [mul(g, mul(b, pow(a, sub(b, 1.0)))), mul(g, mul(log(a), n))]


register(OpDef("pow", "opaque", lambda shapes, attrs: broadcast_shapes(*shapes),
               lambda xp, ins, a, out: xp.power(ins[0], ins[1], out=out), _pow_grad,
               inplace=(0, 1), broadcasting=True, bind=ufunc_binder("power"),
               doc="a ** b elementwise, with numpy broadcasting (b a tensor)"))


# ---- local response normalisation -----------------------------------------------------------------

def _window(attrs, transposed=False):
    """Channels below and above c that c's window covers (ONNX: floor and ceil of (size-1)/2);
    the transposed window (which windows cover c) swaps them."""
    below, above = (attrs["size"] - 1) // 2, attrs["size"] // 2
    return (above, below) if transposed else (below, above)


def _channel_sums(a, below, above, out):
    """out[:, c] = sum of a[:, c - below .. c + above], channels outside the tensor left out."""
    out.fill(0)
    channels = a.shape[1]
    for off in range(-below, above + 1):
        if abs(off) >= channels:
            continue
        if off >= 0:
            out[:, :channels - off] += a[:, off:]
        else:
            out[:, -off:] += a[:, :channels + off]


def _lrn_ws(shapes, attrs, out_shape, dtype):
    return {"sq": (tuple(out_shape), dtype), "den": (tuple(out_shape), dtype)}


def _denominator(xp, x, attrs, ws):
    """den = bias + alpha / size * (window sums of x^2), in ws["den"]."""
    xp.multiply(x, x, out=ws["sq"])
    den = ws["den"]
    _channel_sums(ws["sq"], *_window(attrs), den)
    den *= attrs["alpha"] / attrs["size"]
    den += attrs["bias"]
    return den


def _lrn(xp, ins, attrs, out, ws=None):
    x = ins[0]
    ws = ws or scratch(_lrn_ws, xp, ins, attrs, out)
    den = _denominator(xp, x, attrs, ws)
    xp.power(den, -attrs["beta"], out=out)
    out *= x


def _lrn_grad_ws(shapes, attrs, out_shape, dtype):
    return {**_lrn_ws(shapes, attrs, out_shape, dtype), "part": (tuple(out_shape), dtype)}


def _lrn_grad(xp, ins, attrs, out, ws=None):
    """dx = g den^-beta - 2 alpha beta / size * x * (transposed window sums of
    g x den^(-beta-1))."""
    x, g = ins
    ws = ws or scratch(_lrn_grad_ws, xp, ins, attrs, out)
    den, part = _denominator(xp, x, attrs, ws), ws["part"]
    xp.power(den, -attrs["beta"] - 1.0, out=part)
    part *= g
    part *= x
    _channel_sums(part, *_window(attrs, transposed=True), ws["sq"])
    ws["sq"] *= x
    ws["sq"] *= -2.0 * attrs["alpha"] * attrs["beta"] / attrs["size"]
    xp.power(den, -attrs["beta"], out=out)
    out *= g
    out += ws["sq"]


def _lrn_shape(shapes, attrs):
    if len(shapes[0]) < 2:
        raise ShapeError(f"lrn needs (N, C, ...), got {tuple(shapes[0])}")
    return tuple(shapes[0])


register(OpDef("lrn", "opaque", _lrn_shape, _lrn,
               lambda n, g: [make("lrn_grad", n.inputs[0], g, **n.attrs)], workspace=_lrn_ws,
               doc="local response normalisation across channels (ONNX LRN)"))
register(OpDef("lrn_grad", "opaque", lambda s, a: tuple(s[0]), _lrn_grad,
               gradient_not_implemented("second order through lrn is not supported"),
               workspace=_lrn_grad_ws, doc="gradient of lrn towards its input"))


# ---- constant padding ------------------------------------------------------------------------

def _pad_shape(shapes, attrs):
    shape, pads = shapes[0], attrs["pads"]
    rank = len(shape)
    if len(pads) != 2 * rank or any(p < 0 for p in pads):
        raise ShapeError(f"pad needs {2 * rank} pads of 0 or more for rank {rank}, got {list(pads)}")
    return tuple(d + pads[i] + pads[rank + i] for i, d in enumerate(shape))


def _inside(attrs, shape):
    """Where the input sits in the padded output."""
    return tuple(slice(b, b + d) for b, d in zip(attrs["pads"], shape))


def _pad(xp, ins, attrs, out):
    out.fill(-xp.inf if attrs["lowest"] else attrs["value"])
    out[_inside(attrs, ins[0].shape)] = ins[0]


def _pad_grad(n, g):
    pads = n.attrs["pads"]
    rank = len(pads) // 2
    return [make("slice", g, begin=tuple(pads[:rank]),
                 end=tuple(-p if p else MAX_INT for p in pads[rank:]))]


register(OpDef("pad", "injective", _pad_shape, _pad, _pad_grad,
               doc="a border of a constant (or -infinity) around x, any width per side"))


# ---- maximum over axes --------------------------------------------------------------------------

def _max(xp, ins, attrs, out):
    xp.max(ins[0], axis=_cached_axes(attrs, ins[0].ndim), keepdims=attrs["keepdims"], out=out)


def _max_grad(xp, ins, attrs, out):
    """g shared equally by the entries equal to their maximum (ties split it, as the
    subgradient that keeps sum(dx) = g)."""
    g, x, y = ins
    axes = _cached_axes(attrs, x.ndim)
    if not attrs["keepdims"]:
        g, y = xp.expand_dims(g, axes), xp.expand_dims(y, axes)
    xp.equal(x, y, out=out)
    out /= xp.sum(out, axis=axes, keepdims=True)
    out *= g


register(OpDef("reduce_max", "opaque", _reduced_shape, _max,
               lambda n, g: [make("reduce_max_grad", g, n.inputs[0], n, **n.attrs)],
               doc="maximum over axis (None = all), optionally keeping reduced axes"))
register(OpDef("reduce_max_grad", "opaque", lambda s, a: tuple(s[1]), _max_grad,
               gradient_not_implemented("second order through reduce_max is not supported"),
               dtype=lambda d, a: d[1], doc="gradient of reduce_max: g at each maximum"))
