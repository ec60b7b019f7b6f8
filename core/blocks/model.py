"""A block definition: a named body (a normal GraphDocument holding the inner nodes, the
BlockInput / BlockOutput nodes that make its interface, and their edges), the attributes it
promotes to its instances, and where its instance stood when it was grouped (so ungrouping
puts the nodes back where they were, moved as far as the instance was)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..document import GraphDocument
from ..layers.block_layers import port_name, port_type


@dataclass(eq=False)  # identity: documents subscribe to bodies, and bodies are mutable
class BlockDef:
    name: str
    body: GraphDocument
    # promoted attributes: {"width": {"default": 64, "targets": [["linear1", "units"], ...]}}
    params: dict = field(default_factory=dict)
    origin: tuple | None = None  # the instance's position when the block was grouped

    def inputs(self) -> list[tuple[str, str]]:
        """(port name, type) of each BlockInput, in body order."""
        return _interface(self.body, "BlockInput")

    def outputs(self) -> list[tuple[str, str]]:
        """(port name, type) of each BlockOutput, in body order."""
        return _interface(self.body, "BlockOutput")

    def to_dict(self) -> dict:
        """What a graph file's "blocks" section holds for this definition."""
        body = self.body.to_dict()
        data = {"nodes": body["nodes"], "edges": body["edges"],
                "params": copy.deepcopy(self.params)}
        if self.origin is not None:
            data["origin"] = [round(float(self.origin[0]), 1), round(float(self.origin[1]), 1)]
        return data

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "BlockDef":
        """From a validated "blocks" entry (core.graphfile checks it)."""
        body = GraphDocument(name)
        body.load_dict({"name": name, "nodes": data["nodes"], "edges": data["edges"]})
        origin = data.get("origin")
        return cls(name, body, copy.deepcopy(data.get("params", {})),
                   None if origin is None else (float(origin[0]), float(origin[1])))

    def content(self) -> dict:
        """What makes two definitions the same block (the origin is only layout)."""
        data = self.to_dict()
        data.pop("origin", None)
        return data


def _interface(body, kind) -> list[tuple[str, str]]:
    return [(port_name(n), port_type(n)) for n in body.nodes.values() if n.kind == kind]
