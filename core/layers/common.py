"""Small helpers shared by the layer definitions."""
from __future__ import annotations

from .base import AttrSpec, LayerKind, Port, register

IN = (Port("in", "data"),)
OUT = (Port("out", "data"),)


def simple(name, category, fn, help, attrs=(), inputs=IN, macs=None):
    """A layer with one data output computed by `fn(ctx, attrs, *input nodes)`."""
    def build(ctx, a, ins):
        return {"out": fn(ctx, a, *[ins[p.name] for p in inputs if p.name in ins])}
    return register(LayerKind(name, category, inputs, OUT, tuple(attrs), build, macs, help))


def int_attr(name, default, lo=1, hi=None, help=""):
    return AttrSpec(name, "int", default, min=lo, max=hi, help=help)


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n
