"""The layer table: editor-level node kinds built from primitive ops.

A `LayerKind` declares typed ports and attribute specs (which drive validation and the
editor's inspector form) and a `build` function that turns attribute values and input nodes
into output nodes. `macs` reports multiply-adds from shapes alone."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

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

    def check(self, value) -> str | None:
        """None if `value` is acceptable, else the reason (shown inline by the inspector)."""
        ...


@dataclass
class BuildContext:
    """What a build function may use: makes parameters with stable names and records them."""
    node_id: str
    training: bool = True
    seed: int = 0
    parameters: list = field(default_factory=list)  # core parameter nodes this layer created
    state: dict = field(default_factory=dict)  # non-trained state, e.g. batch-norm running stats


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


LAYERS: dict[str, LayerKind] = {}


def register(kind: LayerKind) -> LayerKind:
    if kind.name in LAYERS:
        raise ValueError(f"layer kind {kind.name!r} is registered twice")
    LAYERS[kind.name] = kind
    return kind
