"""The graph IR: immutable `Node`s with operator overloads, and sources (placeholders,
parameters, constants). A node is (op name, inputs, attrs); nothing is computed here."""
from __future__ import annotations

import itertools
import numbers

import numpy as np

from .errors import GraphError

_ids = itertools.count()


class Node:
    __slots__ = ("op", "inputs", "attrs", "name", "id", "extras")

    def __init__(self, op: str, inputs=(), attrs=None, name: str | None = None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs or {})
        self.id = next(_ids)
        self.name = name or f"{op}_{self.id}"
        self.extras = {}  # side outputs a builder wants to expose (e.g. batch-norm statistics)

    def __repr__(self):
        return f"Node({self.name}: {self.op})"

    @property
    def opdef(self):
        return (_OP_TABLE or _op_table())[self.op]

    # Overloads build nodes; scalars on either side become (weakly typed) constants.
    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().sub(self, other)
    def __rsub__(self, other): return _ops().sub(other, self)
    def __mul__(self, other): return _ops().mul(self, other)
    def __rmul__(self, other): return _ops().mul(other, self)
    def __truediv__(self, other): return _ops().div(self, other)
    def __rtruediv__(self, other): return _ops().div(other, self)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __rmatmul__(self, other): return _ops().matmul(other, self)
    def __neg__(self): return _ops().neg(self)
    def __pow__(self, power): return _ops().power(self, power)

    # Nodes are dict keys (feed_dict) by identity.
    __hash__ = object.__hash__
    __eq__ = object.__eq__


def _ops():
    from . import ops  # not at the top: core.ops imports this module (see Node.opdef)
    return ops


_OP_TABLE: dict = {}  # core.ops.base.OPS once first needed: compile passes read opdef often


def _op_table() -> dict:
    # imported here, not at the top: the op modules build Nodes (core.ops imports this
    # module), so a top-level import of core.ops would be an import loop
    global _OP_TABLE
    from .ops.base import OPS
    _OP_TABLE = OPS
    return OPS


# ---- sources --------------------------------------------------------------------------

def placeholder(name: str, shape=None, dtype=None) -> Node:
    """A value fed at run time. `shape` may use None for the batch dimension."""
    attrs = {"shape": None if shape is None else tuple(shape), "dtype": dtype}
    return Node("placeholder", (), attrs, name)


def Variable(name: str, shape=None, dtype=None) -> Node:
    """A placeholder whose shape and dtype come from the feed (needle's naming)."""
    return placeholder(name, shape, dtype)


INITIALIZERS = {}


def _initializer(fn):
    INITIALIZERS[fn.__name__.rstrip("_")] = fn
    return fn


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    # Linear weights are (in, out); conv weights are (out, in, kh, kw).
    if len(shape) == 2:
        return shape[0], shape[1]
    return shape[1] * receptive, shape[0] * receptive


@_initializer
def zeros(rng, shape, scale): return np.zeros(shape)
@_initializer
def ones(rng, shape, scale): return np.ones(shape)
@_initializer
def normal(rng, shape, scale): return rng.normal(0.0, scale, shape)
@_initializer
def uniform(rng, shape, scale): return rng.uniform(-scale, scale, shape)


@_initializer
def xavier(rng, shape, scale):
    fan_in, fan_out = _fans(shape)
    bound = scale * np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape)


@_initializer
def he(rng, shape, scale):
    fan_in, _ = _fans(shape)
    return rng.normal(0.0, scale * np.sqrt(2.0 / fan_in), shape)


def parameter(name: str, shape, init: str = "xavier", scale: float | None = None,
              dtype="float32", trainable: bool = True) -> Node:
    if init not in INITIALIZERS:
        raise GraphError(f"parameter {name}: unknown initializer {init!r}; "
                         f"known: {', '.join(sorted(INITIALIZERS))}")
    scale = (0.01 if init == "normal" else 1.0) if scale is None else float(scale)
    attrs = {"shape": tuple(int(s) for s in shape), "init": init, "scale": scale,
             "dtype": np.dtype(dtype).name, "trainable": trainable}
    return Node("parameter", (), attrs, name)


def init_value(node: Node, rng: np.random.Generator) -> np.ndarray:
    """A fresh value for a parameter node, from its initializer spec."""
    a = node.attrs
    return INITIALIZERS[a["init"]](rng, a["shape"], a["scale"]).astype(a["dtype"])


def constant(value, name: str | None = None) -> Node:
    """A fixed value. Python scalars stay weakly typed: they take the dtype of what they meet."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return Node("constant", (), {"value": value}, name)
    return Node("constant", (), {"value": np.asarray(value)}, name)


def as_node(x) -> Node:
    if isinstance(x, Node):
        return x
    if isinstance(x, (numbers.Number, np.ndarray, list, tuple)):
        return constant(x)
    raise GraphError(f"cannot use {type(x).__name__} as a graph value")


# ---- traversal --------------------------------------------------------------------------

def topological_order(outputs) -> list[Node]:
    """Every node the outputs depend on, inputs before users (iterative: deep chains are fine)."""
    order, state = [], {}
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                state[node] = 2
                order.append(node)
                continue
            if state.get(node) == 2:
                continue
            if state.get(node) == 1:
                raise GraphError(f"cycle through node {node.name}")
            state[node] = 1
            stack.append((node, True))
            for inp in reversed(node.inputs):
                if state.get(inp) != 2:
                    stack.append((inp, False))
    return order


def verify(outputs) -> list[Node]:
    """Check every node names a registered op with the right rules; returns the order."""
    from .ops.base import OPS  # not at the top: core.ops imports this module (see Node.opdef)
    order = topological_order(outputs)
    for node in order:
        if node.op not in OPS:
            raise GraphError(f"node {node.name}: unknown op {node.op!r}")
        for inp in node.inputs:
            if not isinstance(inp, Node):
                raise GraphError(f"node {node.name}: input {inp!r} is not a Node")
    return order
