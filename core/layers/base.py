"""The layer table: editor-level node kinds built from primitive ops.

A `LayerKind` declares typed ports and attribute specs (which drive validation and the
editor's inspector form) and a `build` function that turns attribute values and input nodes
into output nodes. `macs` reports multiply-adds from shapes alone."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..graph import parameter
from ..limits import MAX_INT
from ..registry import add_unique

# Port types: the editor colours ports by type and only connects equal types.
PORT_TYPES = ("data", "label", "loss", "metric")


@dataclass(frozen=True)
class Port:
    name: str
    type: str = "data"
    optional: bool = False
    help: str = ""


@dataclass(frozen=True)
class AttrSpec:
    name: str
    type: str  # "int" | "float" | "bool" | "choice" | "str" | "ints" (tuple of ints)
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    help: str = ""
    # a file or folder name: relative ones are resolved against the graph file's folder
    path: bool = False

    def check(self, value) -> str | None:
        """None if `value` is acceptable, else the reason (shown inline by the inspector)."""
        checker = _TYPE_CHECKS[self.type]
        reason = checker(value, self)
        if reason:
            return f"{self.name}: {reason}"
        return None


def _number(kind):
    def check(value, spec):
        # an integer attribute takes integers only: 64.0 or 1e308 in a file is a mistake
        ok = isinstance(value, int if kind is int else (int, float)) and not isinstance(value, bool)
        if not ok:
            return f"expected {'an integer' if kind is int else 'a number'}, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if kind is int and abs(value) > MAX_INT:
            return f"{value!r} is too large"
        if spec.min is not None and value < spec.min:
            return f"{value} is below the minimum {spec.min}"
        if spec.max is not None and value > spec.max:
            return f"{value} is above the maximum {spec.max}"
        return None
    return check


def _ints(value, spec):
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"expected a list of integers, got {value!r}"
    if any(abs(v) > MAX_INT for v in value):
        return "an entry is too large"
    if spec.min is not None and any(v < spec.min and v != -1 for v in value):
        return f"every entry must be at least {spec.min} (or -1)"
    return None


_TYPE_CHECKS = {
    "int": _number(int),
    "float": _number(float),
    "bool": lambda v, s: None if isinstance(v, bool) else f"expected true or false, got {v!r}",
    "choice": lambda v, s: None if v in s.choices else
    f"{v!r} is not one of {', '.join(map(str, s.choices))}",
    "str": lambda v, s: None if isinstance(v, str) else f"expected text, got {v!r}",
    "ints": _ints,
}


@dataclass
class BuildContext:
    """What a build function may use: input shapes, and parameters with stable names
    (`<node id>.<name>`, which checkpoints key on)."""
    node_id: str
    shape_of: Callable  # core Node -> shape tuple (inferred so far)
    training: bool = True
    seed: int = 0
    distributed: bool = False  # data-parallel: batch statistics are the global batch's
    parameters: list = field(default_factory=list)  # core parameter nodes this layer created
    state: list = field(default_factory=list)  # batch-norm statistics for the trainer

    def param(self, name, shape, init="xavier", scale=None, trainable=True):
        node = parameter(f"{self.node_id}.{name}", shape, init=init, scale=scale,
                         trainable=trainable)
        self.parameters.append(node)
        return node


@dataclass(frozen=True)
class LayerKind:
    name: str
    category: str  # palette group: "Data", "Layers", "Activations", "Losses", "Math", ...
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    attrs: tuple[AttrSpec, ...]
    build: Callable  # (ctx: BuildContext, attrs: dict, inputs: dict[str, Node]) -> dict[str, Node]
    macs: Callable | None = None  # (in_shapes: dict, out_shapes: dict, attrs) -> int
    help: str = ""
    # The training data: its outputs are the feeds the trainer fills with batches
    # (`Built.feeds`, keyed by output port name: one "data" port, one "label" port) and its
    # attrs name the dataset (`Built.dataset`). `load(attrs)` returns the dataset object
    # (split / batches / len, as core.data.Dataset); `signature(attrs)` says what analysis
    # needs to know of it (data_layers.Signature) without loading it where it can.
    load: Callable | None = None
    signature: Callable | None = None

    @property
    def feeds(self) -> bool:
        return self.load is not None


LAYERS: dict[str, LayerKind] = {}


def register(kind: LayerKind) -> LayerKind:
    return add_unique(LAYERS, kind.name, kind, "layer kind")
