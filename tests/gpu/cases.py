"""Hand-built graphs whose fusion groups exercise what the bundled examples do not:
broadcasting both ways, python / numpy / array constants, float64 and mixed dtypes, the
activation gradients, expand_like with and without keepdims, trailing reductions."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

import core
from core.autodiff import gradients
from core.executor import Executor
from core.graph import Node
from core.ops.reduce import broadcast_like, expand_like, sum_to_like


def _feed(rng, **shapes):
    nodes, feed = {}, {}
    for name, (shape, dtype) in shapes.items():
        nodes[name] = core.placeholder(name, shape, dtype)
        feed[nodes[name]] = (rng.standard_normal(shape) + 0.1).astype(dtype)
    return nodes, feed


def _broadcast_chain(n):
    h = core.tanh(n["x"] * 2.0 + n["b"])
    h = core.sigmoid(h) - 1
    return [core.reduce_mean(h * h, axis=(0, 2), keepdims=True)]


def _constants(n):
    scale = np.arange(1, 4, dtype=np.float32)  # an array constant: a kernel input
    h = (n["x"] * np.float32(3) + scale) / 7 - np.float32(0.25)
    return [core.relu(h) ** 3, core.sqrt(core.exp(-n["x"] * 0.5)) + np.array(2.0)]


def _float64(n):
    h = core.log(core.exp(n["d"]) + 1) * n["c"]  # (4, 3) float64 times (4, 1)
    return [core.reduce_sum(h / (n["d"] * n["d"] + 1), axis=1)]


def _mixed(n):
    h = n["x"] * 0.5 + n["d"]  # float32 (5, 4, 3) + float64 (4, 3) -> float64
    return [core.tanh(h) - core.sigmoid(n["x"])]


def _activation_grads(n):
    x = n["x"]
    loss = core.reduce_sum(core.tanh(x) * core.sigmoid(x) + core.relu(x) ** 2.5)
    return gradients(loss, [x])


def _expand(n):
    x, g = n["x"], n["g"]  # g: (5, 3), a reduction of x over axis 1
    up = expand_like(g * 2.0, x, axis=1, keepdims=False)
    mean_up = Node("expand_like", [core.exp(g), x], {"axis": 1, "keepdims": False, "mean": True})
    kept = expand_like(core.reduce_sum(x, axis=(0, 2), keepdims=True) * 3.0, x, axis=(0, 2),
                       keepdims=True)
    return [up * x - 1, mean_up + x, kept * x]


def _sum_to(n):
    x, b, c = n["x"], n["b"], n["c"]
    return [sum_to_like(core.exp(x) * 2 - x, b), sum_to_like(x * x, c),
            broadcast_like(core.neg(b) + 1, x) * 0.5, core.oneslike(x) * 3 + core.zeroslike(b)]


CASES = {
    "broadcast chain": _broadcast_chain, "constants": _constants, "float64": _float64,
    "mixed dtypes": _mixed, "activation gradients": _activation_grads, "expand_like": _expand,
    "sum_to_like": _sum_to,
}

SHAPES = {"x": ((5, 4, 3), "float32"), "b": ((3,), "float32"), "c": ((4, 1), "float32"),
          "d": ((4, 3), "float64"), "g": ((5, 3), "float32")}


@lru_cache(maxsize=None)
def hand_built_plans():
    """[(label, plan, feed)] compiled on the numpy backend."""
    out = []
    for label, build in CASES.items():
        nodes, feed = _feed(np.random.default_rng(3), **SHAPES)
        outputs = build(nodes)
        ex = Executor(outputs, backend="numpy")
        ex.run({n: v for n, v in feed.items() if n in set(ex.order)})
        out.append((label, ex.plan, feed))
    return out
