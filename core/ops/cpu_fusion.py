"""Fusion groups the numpy backend runs as one compiled pass (compiler/fusion.py forms the
groups; `fuse` takes those it has a loop for and builds the kernel).

One pattern so far, the commonest epilogue of a convolution or a linear layer: a bias added,
then ReLU, relu(x + b). numpy makes two passes over memory (the sum written, then read again
for the maximum); on this VM's memory that is the cost, not the arithmetic: on the wide
bench CNN's first layer (64×32×28×28 float32), the add took 0.66 ms and the ReLU after it
0.87. The fused loop reads x once and writes the result once, with the same two IEEE
operations per element, so the bits are numpy's (x + b rounded, then max(·, 0) with NaN kept
and -0 turned to +0, as numpy's maximum against 0 does).

A group outside the patterns runs op by op, as before; so does every group where numba is
missing or LOOM_NATIVE=0 (checked when the step is compiled)."""
from __future__ import annotations

import math

import numpy as np

from . import cpu, native


def fuse(tail, plan):
    """The kernel for a fusion group (compiler/fusion.kernel_tail) the numpy backend runs as
    one pass (`kernel.inputs`, `kernel(args, out)`, run at the group's last step), or None.
    Only groups of adjacent steps: the plan is made as for op-by-op runs (Backend.
    fused_inputs_planned is False), and with no step in between, nothing can overwrite an
    input before the kernel reads it (the skipped members write nothing)."""
    if not _adjacent(tail, plan):
        return None
    layout = _bias_relu_layout(tail, plan.shapes)
    return None if layout is None else BiasReLU(*layout)


def _adjacent(tail, plan) -> bool:
    first = plan.position[tail[0]]
    return plan.schedule[first:first + len(tail)] == list(tail)


def _bias_relu_layout(tail, shapes):
    """(x node, b node, (A, C, B)) where tail is [add(x, b), relu(that)] with b either of x's
    shape or constant but along one axis (a channel or feature bias): x seen as (A, C, B)
    and b as (C,). None otherwise."""
    if [n.op for n in tail] != ["add", "relu"] or tail[1].inputs[0] is not tail[0]:
        return None
    if not native.available():
        return None
    add = tail[0]
    for x, b in (add.inputs, add.inputs[::-1]):
        xs, bs = tuple(shapes.get(x, ())), tuple(shapes.get(b, ()))
        if xs != tuple(shapes[add]) or not xs:
            continue
        layout = _channel_layout(xs, bs)
        if layout is not None:
            return x, b, layout
    return None


def _channel_layout(xs, bs):
    """(A, C, B) with x = (A, C, B) and b broadcasting as (1, C, 1), where b has x's shape
    (C = all of it) or one axis of x and ones elsewhere."""
    if bs == xs:
        return (1, math.prod(xs), 1)
    padded = (1,) * (len(xs) - len(bs)) + bs
    if len(padded) != len(xs):
        return None
    axes = [k for k, size in enumerate(padded) if size != 1]
    if len(axes) > 1 or any(padded[k] != xs[k] for k in axes):
        return None
    axis = axes[0] if axes else len(xs) - 1
    if not axes:  # a scalar bias of shape (1,...): one channel of size 1 is not this pattern
        return None
    return (math.prod(xs[:axis]), xs[axis], math.prod(xs[axis + 1:]))


class BiasReLU:
    """relu(x + b) in one pass (ops/native_loops.py), split over the CPU threads by the first
    axis of the (A, C, B) view where large, like a row-wise op."""

    def __init__(self, x, b, layout):
        self.inputs = [x, b]
        self.layout = layout

    def __call__(self, args, out):
        x, b = args
        if not native.usable(x, b, out):  # a dtype the loops do not take: numpy's two passes
            np.add(x, b, out=out)
            np.maximum(out, 0, out=out)
            return
        a, c, inner = self.layout
        x3, out3, b1 = x.reshape(a, c, inner), out.reshape(a, c, inner), b.reshape(c)
        zero = native.ZERO_ONE[out.dtype][:1]
        name = "bias_relu_inplace" if native.same_array(x, out) else "bias_relu"
        loop = native.kernel(name)

        def rows(lo, hi):
            if name == "bias_relu_inplace":
                loop(out3[lo:hi], b1, zero)
            else:
                loop(x3[lo:hi], b1, out3[lo:hi], zero)
        # rows are independent and the loop holds no lock (numba, nogil): a run per thread
        if a > 1:
            cpu.for_each_run(rows, 0, a, out.nbytes)
        else:
            rows(0, 1)

