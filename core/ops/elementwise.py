"""Elementwise and broadcasting arithmetic, unary math and their gradient helpers."""
from __future__ import annotations

from functools import partial


from ..graph import Node
from . import native
from .base import (OpDef, broadcast_shapes, first_dtype, make, not_differentiable, register,
                   same_shape)


def _broadcast(shapes, attrs):
    return broadcast_shapes(*shapes)


def ufunc_binder(ufunc_name, *constants):
    """bind rule for ops that are one ufunc call: ufunc(*ins, *constants, out=out)."""
    def bind(xp, ins, attrs, out):
        return partial(getattr(xp, ufunc_name), *ins, *constants, out=out)
    return bind


def binary(name, ufunc_name, gradient, doc):
    def compute(xp, ins, attrs, out):
        getattr(xp, ufunc_name)(ins[0], ins[1], out=out)
    return register(OpDef(name, "broadcast", _broadcast, compute, gradient, inplace=(0, 1),
                          broadcasting=True, bind=ufunc_binder(ufunc_name), doc=doc))


def unary(name, compute, gradient, doc, dtype=None, ufunc=None, rows=True):
    """rows: worth splitting over CPU threads when large (transcendentals; not negation)."""
    return register(OpDef(name, "elementwise", same_shape, compute, gradient, dtype=dtype,
                          inplace=(0,), bind=ufunc_binder(ufunc) if ufunc else None, rows=rows,
                          doc=doc))


# ---- builders (the public API) ------------------------------------------------------------

def add(a, b, name=None): return make("add", a, b, name=name)
def sub(a, b, name=None): return make("sub", a, b, name=name)
def mul(a, b, name=None): return make("mul", a, b, name=name)
def div(a, b, name=None): return make("div", a, b, name=name)
def neg(x, name=None): return make("neg", x, name=name)
def relu(x, name=None): return make("relu", x, name=name)
def sigmoid(x, name=None): return make("sigmoid", x, name=name)
def tanh(x, name=None): return make("tanh", x, name=name)
def exp(x, name=None): return make("exp", x, name=name)
def log(x, name=None): return make("log", x, name=name)
def sqrt(x, name=None): return make("sqrt", x, name=name)


def power(x, p, name=None):
    if isinstance(p, Node):
        raise TypeError("** takes a scalar power, not a node")
    return make("power", x, name=name, p=float(p))


# ---- arithmetic -------------------------------------------------------------------------

binary("add", "add", lambda n, g: [g, g], "a + b with numpy broadcasting")
binary("sub", "subtract", lambda n, g: [g, neg(g)], "a - b with numpy broadcasting")
binary("mul", "multiply", lambda n, g: [mul(g, n.inputs[1]), mul(g, n.inputs[0])],
       "a * b with numpy broadcasting")
# d(a/b)/db = -a/b^2 = -(a/b)/b, reusing the forward output instead of squaring b.
binary("div", "divide", lambda n, g: [div(g, n.inputs[1]), neg(div(mul(g, n), n.inputs[1]))],
       "a / b with numpy broadcasting")

unary("neg", lambda xp, ins, a, out: xp.negative(ins[0], out=out),
      lambda n, g: [neg(g)], "-x", ufunc="negative", rows=False)
unary("exp", lambda xp, ins, a, out: xp.exp(ins[0], out=out),
      lambda n, g: [mul(g, n)], "e^x", ufunc="exp")
unary("log", lambda xp, ins, a, out: xp.log(ins[0], out=out),
      lambda n, g: [div(g, n.inputs[0])], "natural logarithm", ufunc="log")
unary("sqrt", lambda xp, ins, a, out: xp.sqrt(ins[0], out=out),
      lambda n, g: [div(mul(g, 0.5), n)], "square root", ufunc="sqrt")


def _power_compute(xp, ins, attrs, out):
    p = attrs["p"]
    if p == 2.0:  # the common case, exact and cheaper than pow
        xp.multiply(ins[0], ins[0], out=out)
    else:
        xp.power(ins[0], p, out=out)


unary("power", _power_compute,
      lambda n, g: [mul(g, mul(power(n.inputs[0], n.attrs["p"] - 1), n.attrs["p"]))],
      "x ** p for a scalar p")


# ---- activations: gradients use dedicated elementwise ops so they fuse and run in place --

def _relu(xp, ins, attrs, out):
    _bind_relu(xp, ins, attrs, out)()


def _bind_relu(xp, ins, attrs, out):
    """max(x, 0) as one call: numpy's maximum, or on host arrays its compiled loop (the same
    bits, ops/native.py)."""
    x = ins[0]
    if native.usable(x, out):
        zero = native.ZERO_ONE[out.dtype][:1]
        if native.same_array(x, out):
            return partial(native.kernel("relu_inplace"), out.reshape(-1), zero)
        return partial(native.kernel("relu"), x.reshape(-1), out.reshape(-1), zero)
    return partial(xp.maximum, x, 0, out=out)


def _relu_grad(xp, ins, attrs, out, ws=None):
    x, g = ins
    if native.usable(x, g, out):  # one pass, numpy's bits (ops/native_loops.py)
        _relu_grad_native(x.reshape(-1), g.reshape(-1), out.reshape(-1))
        return
    mask = xp.greater(x, 0, out=None if ws is None else ws["mask"])  # planned: no temporary
    xp.multiply(g, mask, out=out)


def _relu_grad_native(y, g, out):
    c = native.ZERO_ONE[out.dtype]
    if native.same_array(out, y):
        native.kernel("relu_grad_into_y")(y, g, c)
    elif native.same_array(out, g):
        native.kernel("relu_grad_into_g")(y, g, c)
    else:
        native.kernel("relu_grad")(y, g, out, c)


def _relu_grad_ws(shapes, attrs, out_shape, dtype):
    if native.expected(dtype):
        return None  # the compiled loop needs no mask (where it cannot run, compute makes one)
    return {"mask": (tuple(out_shape), bool)}


# The gradient reads relu's output, not its input ((y > 0) == (x > 0)): the pre-activation
# is then dead after the forward op, so relu overwrites it in place in training graphs too.
register(OpDef("relu", "elementwise", same_shape, _relu,
               lambda n, g: [make("relu_grad", n, g)], inplace=(0,),
               bind=_bind_relu, doc="max(x, 0)"))

def like_shape(shapes, attrs):
    return tuple(shapes[1])


register(OpDef("relu_grad", "elementwise", like_shape,
               _relu_grad, lambda n, g: [None, make("relu_grad", n.inputs[0], g)],
               workspace=_relu_grad_ws,
               dtype=lambda d, a: first_dtype(d[1:], a), inplace=(0, 1), doc="g * (x > 0)"))


def _sigmoid(xp, ins, attrs, out):
    # 1/(1+e^-x) = exp(-softplus(-x)), softplus(z) = logaddexp(0, z) (log1p inside): no
    # overflow, and no cancellation for negative x (0.5 * (1 + tanh(x/2)) gave 5.96e-8 for
    # float32 sigmoid(-17), not 4.14e-8, and 0 for float64 sigmoid(-40)). Each step reads
    # only `out`, so it may overwrite x (in place).
    xp.negative(ins[0], out=out)
    xp.logaddexp(0, out, out=out)
    xp.negative(out, out=out)
    xp.exp(out, out=out)


def _sigmoid_grad(xp, ins, attrs, out):
    y, g = ins
    xp.subtract(1, y, out=out)
    out *= y
    out *= g


def _tanh_grad(xp, ins, attrs, out):
    y, g = ins
    xp.multiply(y, y, out=out)
    xp.subtract(1, out, out=out)
    out *= g


def _sigmoid_grad_grad(n, g):
    y, gy = n.inputs
    # out = gy*y*(1-y): d/dy = gy*(1-2y), d/dgy = y*(1-y)
    return [mul(g, mul(gy, sub(1, mul(2, y)))), mul(g, mul(y, sub(1, y)))]


def _tanh_grad_grad(n, g):
    y, gy = n.inputs
    return [mul(g, mul(gy, mul(-2, y))), mul(g, sub(1, mul(y, y)))]


unary("sigmoid", _sigmoid, lambda n, g: [make("sigmoid_grad", n, g)], "logistic function")
unary("tanh", lambda xp, ins, a, out: xp.tanh(ins[0], out=out),
      lambda n, g: [make("tanh_grad", n, g)], "hyperbolic tangent")
register(OpDef("sigmoid_grad", "elementwise", like_shape, _sigmoid_grad, _sigmoid_grad_grad,
               rows=True, doc="g * y * (1 - y) with y = sigmoid(x)"))
register(OpDef("tanh_grad", "elementwise", like_shape, _tanh_grad, _tanh_grad_grad,
               rows=True, doc="g * (1 - y^2) with y = tanh(x)"))


# ---- shape-only sources ------------------------------------------------------------------

def oneslike(x, name=None): return make("oneslike", x, name=name)
def zeroslike(x, name=None): return make("zeroslike", x, name=name)


register(OpDef("oneslike", "elementwise", same_shape,
               lambda xp, ins, a, out: out.fill(1), not_differentiable, shape_only=(0,),
               doc="ones with the shape and dtype of x"))
register(OpDef("zeroslike", "elementwise", same_shape,
               lambda xp, ins, a, out: out.fill(0), not_differentiable, shape_only=(0,),
               doc="zeros with the shape and dtype of x"))
