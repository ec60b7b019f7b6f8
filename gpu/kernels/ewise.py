"""Elementwise, broadcast and reduction ops one at a time, through the same generator as the
fused kernels (`lower_op` builds a group of one on the actual arrays' shapes)."""
from __future__ import annotations

import numbers

import numpy as np

from ..cache import active
from ..emit import kernel_for
from ..fused import FusedKernel
from ..lower import RULES, lower_op
from ..launch import is_scalar
from .common import fallback


def _signature(value):
    if is_scalar(value):
        return ("scalar", type(value).__name__, repr(value))  # repr: NaN equals itself
    return (value.shape, value.dtype.char)


def _attrs_key(attrs):
    items = tuple(sorted((k, v) for k, v in attrs.items() if not k.startswith("_")))
    try:
        hash(items)
        return items
    except TypeError:  # an unhashable attribute value: its text is as good a key
        return repr(items)


def _launcher(op_name, ins, attrs, out):
    """(kernel, positions of the inputs it reads) for this call's signature, built once per
    signature (None: the generator declines, the op's own compute runs)."""
    launchers = active().memo.setdefault("ewise", {})
    key = (op_name, tuple(_signature(v) for v in ins), _attrs_key(attrs), out.shape, out.dtype.char)
    if key not in launchers:
        lowered = lower_op(op_name, ins, attrs, out.shape, out.dtype)
        if lowered is not None:
            program, positions = lowered
            lowered = (FusedKernel(program, positions), positions)
        launchers[key] = lowered
    return launchers[key]


def _compute_for(op_name):
    def compute(xp, ins, attrs, out, ws=None):
        launcher = _launcher(op_name, ins, attrs, out) if out.flags.c_contiguous else None
        if launcher is None:
            return fallback(op_name, xp, ins, attrs, out, ws)
        kernel, positions = launcher
        kernel([ins[k] for k in positions], out)
    compute.__name__ = f"gpu_{op_name}"
    return compute


KERNELS = {name: _compute_for(name) for name in RULES}


# ---- sources for the compile tests ----------------------------------------------------------

class _Shape:
    """Stands in for a device array where only shape and dtype are read."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


EXAMPLES = {  # op -> (input shapes or python scalars, attrs, output shape)
    "add": ([(4, 3), (3,)], {}, (4, 3)), "sub": ([1.0, (4, 3)], {}, (4, 3)),
    "mul": ([(4, 1), (1, 3)], {}, (4, 3)), "div": ([(4, 3), (4, 3)], {}, (4, 3)),
    "neg": ([(5,)], {}, (5,)), "exp": ([(5,)], {}, (5,)), "log": ([(5,)], {}, (5,)),
    "sqrt": ([(5,)], {}, (5,)), "tanh": ([(5,)], {}, (5,)), "relu": ([(6, 2)], {}, (6, 2)),
    "power": ([(5,)], {"p": 3.0}, (5,)), "sigmoid": ([(5,)], {}, (5,)),
    "sigmoid_grad": ([(5,), (5,)], {}, (5,)), "tanh_grad": ([(5,), (5,)], {}, (5,)),
    "relu_grad": ([(6, 2), (6, 2)], {}, (6, 2)), "oneslike": ([(2, 3)], {}, (2, 3)),
    "zeroslike": ([(2, 3)], {}, (2, 3)),
    "broadcast_to": ([(3, 1)], {"shape": (2, 3, 4)}, (2, 3, 4)),
    "broadcast_like": ([(4,), (3, 4)], {}, (3, 4)),
    "expand_like": ([(3,), (3, 4)], {"axis": 1, "keepdims": False, "mean": True}, (3, 4)),
    "reduce_sum": ([(6, 5, 4)], {"axis": (0, 2), "keepdims": False}, (5,)),
    "reduce_mean": ([(6, 5)], {"axis": None, "keepdims": True}, (1, 1)),
    "sum_to_like": ([(8, 6, 5), (6, 1)], {}, (6, 1)),
    "where": ([(4, 1), (4, 3), (3,)], {}, (4, 3)),
    "gelu": ([(5,)], {"approximate": "tanh"}, (5,)),
    "gelu_grad": ([(5,), (5,), (5,)], {"approximate": "tanh"}, (5,)),
}


def examples() -> dict:
    out = {}
    for dtype in ("float32", "float64"):
        for op_name, (shapes, attrs, out_shape) in EXAMPLES.items():
            ins = [s if isinstance(s, numbers.Number) else _Shape(s, dtype) for s in shapes]
            program, _ = lower_op(op_name, ins, attrs, out_shape, dtype)
            out[f"{op_name}/{dtype}"] = kernel_for(program).source
    return out
