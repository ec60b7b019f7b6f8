"""Lowering a fusion group (or one op) to a `Program` of the expression IR.

One rule per op, mirroring the op's numpy compute step by step (same operations, same order,
same dtypes), so the numpy evaluation of the IR equals the unfused ops and the CUDA version
differs only where libm does (exp, log, tanh, pow). Anything without a rule, or with a dtype
the kernels do not handle, is declined (`None`): the executor then runs the ops one by one."""
from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np

from core.graph import Node
from core.ops.base import normalize_axes
from core.ops.sequence import GELU_D0, GELU_D1, GELU_K0, GELU_K1

from .ir import (FLOATS, Const, Load, Program, Weak, broadcasts_to, cast, dtype_of, insert_axes,
                 loads, op, select)

LOADABLE = ("bool", "int8", "uint8", "int16", "int32", "int64", "float32", "float64")


class Reduction:
    """What a reduction rule returns: sum `expr` over `axes` of the iteration space `shape`."""

    def __init__(self, expr, shape, axes, scale=None):
        self.expr, self.shape, self.axes, self.scale = expr, tuple(shape), tuple(axes), scale


# ---- rules: (args, in_shapes, attrs, out_shape, dtype) -> expr | Reduction ----------------
# args[k] is the IR of input k (None for shape-only inputs); dtype the node's numpy dtype name.

def _binary(name):
    return lambda a, s, attrs, shape, d: op(name, d, a[0], a[1])


def _unary(name):
    return lambda a, s, attrs, shape, d: op(name, d, a[0])


def _power(a, s, attrs, shape, d):
    if attrs["p"] == 2.0:  # the compute squares with one multiply
        return op("mul", d, a[0], a[0])
    return op("pow", d, a[0], Weak(attrs["p"]))


def _sigmoid(a, s, attrs, shape, d):
    # exp(-softplus(-x)), one rounding per step as the numpy compute does
    return op("exp", d, op("neg", d, op("softplus", d, op("neg", d, a[0]))))


def _sigmoid_grad(a, s, attrs, shape, d):
    y, g = a
    one_minus = op("sub", dtype_of(y) or d, Weak(1), y)  # subtract(1, y) runs in y's dtype
    return op("mul", d, op("mul", d, one_minus, y), g)


def _tanh_grad(a, s, attrs, shape, d):
    y, g = a
    square = op("mul", dtype_of(y) or d, y, y)
    return op("mul", d, op("sub", d, Weak(1), square), g)


def _relu_grad(a, s, attrs, shape, d):
    x, g = a
    return op("mul", d, g, op("gt0", d, x))  # g * (x > 0)


def _where(a, s, attrs, shape, d):
    cond, x, y = a
    return select(d, cond, x, y)  # copyto(out, b) then copyto(out, a, where=cond)


# GELU's tanh form, step by step as core/ops/sequence.py computes it (-2u = x (K0 + K1 x^2));
# the erf form has no rule (declined: the op's own compute runs).
def _minus_two_u(x, d):
    return op("mul", d, op("add", d, op("mul", d, op("mul", d, x, x), Weak(GELU_K1)), Weak(GELU_K0)), x)


def _gelu(a, s, attrs, shape, d):
    if attrs["approximate"] != "tanh":
        return None
    x = a[0]
    return op("div", d, x, op("add", d, op("exp", d, _minus_two_u(x, d)), Weak(1.0)))


def _gelu_grad(a, s, attrs, shape, d):
    """As core/ops/sequence.py: P = y / x (1/2 where x is 0) read off the forward's y, then
    P (1 + x (1 - P) 2 du/dx)."""
    if attrs["approximate"] != "tanh":
        return None
    x, y, g = a
    share = select(d, x, op("div", d, y, x), Weak(0.5))  # x nonzero (NaN included): y / x
    one_minus = op("sub", d, Weak(1.0), share)
    square = op("mul", d, x, x)
    slope = op("mul", d, op("add", d, op("mul", d, square, Weak(GELU_D1)), Weak(GELU_D0)), x)
    factor = op("add", d, op("mul", d, slope, one_minus), Weak(1.0))
    return op("mul", d, op("mul", d, share, factor), g)


def _fill(value):
    return lambda a, s, attrs, shape, d: Const(value, d)


def _broadcast(a, s, attrs, shape, d):
    return cast(a[0], d)  # evaluated at the output index, broadcasting is the loads' business


def _expand_like(a, s, attrs, shape, d):
    g, (g_shape, x_shape) = a[0], s
    axes = normalize_axes(attrs["axis"], len(x_shape))
    if not attrs["keepdims"]:
        g = insert_axes(g, len(g_shape), axes)
    if attrs.get("mean"):
        g = op("mul", dtype_of(g) or d, g, Weak(1.0 / _count(x_shape, axes)))
    return cast(g, d)


def _count(shape, axes):
    return int(np.prod([shape[i] for i in axes], dtype=np.int64))


def _reduce(mean):
    def rule(a, s, attrs, shape, d):
        axes = normalize_axes(attrs["axis"], len(s[0]))
        scale = 1.0 / _count(s[0], axes) if mean else None
        return Reduction(a[0], s[0], axes, scale)
    return rule


def _sum_to_like(a, s, attrs, shape, d):
    g_shape, x_shape = s
    lead = len(g_shape) - len(x_shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(x_shape)
                                      if n == 1 and g_shape[lead + i] != 1)
    return Reduction(a[0], g_shape, axes) if axes else cast(a[0], d)


RULES = {
    "add": _binary("add"), "sub": _binary("sub"), "mul": _binary("mul"), "div": _binary("div"),
    "neg": _unary("neg"), "exp": _unary("exp"), "log": _unary("log"), "sqrt": _unary("sqrt"),
    "tanh": _unary("tanh"), "relu": _unary("relu"), "power": _power, "sigmoid": _sigmoid,
    "sigmoid_grad": _sigmoid_grad, "tanh_grad": _tanh_grad, "relu_grad": _relu_grad,
    "oneslike": _fill(1), "zeroslike": _fill(0), "broadcast_to": _broadcast,
    "broadcast_like": _broadcast, "expand_like": _expand_like,
    "reduce_sum": _reduce(False), "reduce_mean": _reduce(True), "sum_to_like": _sum_to_like,
    "where": _where, "gelu": _gelu, "gelu_grad": _gelu_grad,
}


# ---- groups ---------------------------------------------------------------------------------

class _Inputs:
    """The group's external inputs, one slot per distinct node, in first-use order."""

    def __init__(self, plan):
        self.plan, self.nodes, self.slot = plan, [], {}

    def value(self, node):
        """IR for reading `node`: a weak or strong constant, a load, or None (declined)."""
        if node.op == "constant":
            v = node.attrs["value"]
            if isinstance(v, numbers.Number) and not isinstance(v, np.generic):
                return Weak(v) if isinstance(v, (int, float)) else None  # python scalar: weak
            if np.ndim(v) == 0 and np.asarray(v).dtype.name in LOADABLE:
                return Const(np.asarray(v).item(), np.asarray(v).dtype.name)  # typed: strong
        dtype = np.dtype(self.plan.dtypes[node]).name
        if dtype not in LOADABLE:
            return None
        if node not in self.slot:
            self.slot[node] = len(self.nodes)
            self.nodes.append(node)
        return Load(self.slot[node], tuple(self.plan.shapes[node]), dtype)


def lower_group(nodes, plan):
    """(Program, external input nodes) for a fusion group's members in schedule order, or
    None when some member or dtype is not supported. Only the last member is read outside."""
    inputs, exprs = _Inputs(plan), {}
    for k, node in enumerate(nodes):
        result = _lower_member(node, plan, inputs, exprs)
        if result is None or (isinstance(result, Reduction) and k != len(nodes) - 1):
            return None
        exprs[node] = result
    program = _program(exprs[nodes[-1]], nodes[-1], plan, inputs)
    return None if program is None else (program, inputs.nodes)


def _lower_member(node, plan, inputs, exprs):
    rule = RULES.get(node.op)
    dtype = _dtype_name(plan.dtypes[node])
    if rule is None or node.opdef.random or dtype not in FLOATS:
        return None
    args, shapes = [], []
    for k, inp in enumerate(node.inputs):
        src = plan.alias.get(inp, inp)
        shapes.append(tuple(plan.shapes[src]))
        if k in node.opdef.shape_only:
            args.append(None)
            continue
        arg = exprs.get(src) if src in exprs else inputs.value(src)
        if arg is None or isinstance(arg, Reduction):
            return None
        args.append(arg)
    return rule(args, shapes, node.attrs, tuple(plan.shapes[node]), dtype)


def _dtype_name(d):
    try:
        return np.dtype(d).name
    except TypeError:  # a weak python scalar's "dtype" is the value itself
        return None


def _program(result, last, plan, inputs):
    out_shape, out_dtype = tuple(plan.shapes[last]), np.dtype(plan.dtypes[last]).name
    in_dtypes = tuple(np.dtype(plan.dtypes[n]).name for n in inputs.nodes)
    if isinstance(result, Reduction):
        if dtype_of(result.expr) not in (None, out_dtype):
            return None  # a reduction that also converts: left to the op itself
        program = Program(cast(result.expr, out_dtype), result.shape, out_shape, out_dtype,
                          in_dtypes, result.axes, result.scale)
    else:
        program = Program(cast(result, out_dtype), out_shape, out_shape, out_dtype, in_dtypes)
    if not all(broadcasts_to(ld.view, program.shape) for ld in loads(program.expr)):
        return None  # defensive: a view the index math could not express
    return program


# ---- one op on concrete arrays (the per-op kernels of elementwise ops) ----------------------

def lower_op(op_name, ins, attrs, out_shape, out_dtype):
    """Program for one op applied to `ins` (device arrays or python / numpy scalars), as if it
    were a group of one: the per-op kernels of elementwise, broadcast and reduction ops."""
    shapes, dtypes, sources = {}, {}, []
    for value in ins:
        if isinstance(value, (numbers.Number, np.generic)):
            src = Node("constant", (), {"value": value})
            shapes[src], dtypes[src] = (), np.asarray(value).dtype
        else:
            src = Node("placeholder", (), {"shape": tuple(value.shape)})
            shapes[src], dtypes[src] = tuple(value.shape), np.dtype(value.dtype)
        sources.append(src)
    node = Node(op_name, sources, attrs)
    shapes[node], dtypes[node] = tuple(out_shape), np.dtype(out_dtype)
    plan = SimpleNamespace(shapes=shapes, dtypes=dtypes, alias={})
    lowered = lower_group([node], plan)
    if lowered is None:
        return None
    program, nodes = lowered
    return program, [sources.index(n) for n in nodes]
