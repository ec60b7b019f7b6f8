"""The graph document: what the editor edits and a graph file stores (nodes with kinds,
attributes and positions, edges between named ports, the training section). Pure Python:
it emits change events, and Qt views subscribe to them (napari's model/view split)."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Callable

from .errors import GraphError

# What `to_dict` writes; core.graphfile validates and migrates against the same two.
ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")  # node ids: safe in file names, plans, messages
FORMAT = "loom.graph"
VERSION = 2  # 2: block definitions ("blocks")


@dataclass
class NodeSpec:
    id: str
    kind: str
    attrs: dict = field(default_factory=dict)
    pos: tuple = (0.0, 0.0)


@dataclass(frozen=True)
class Edge:
    src: tuple  # (node id, output port name)
    dst: tuple  # (node id, input port name)


class GraphDocument:
    """Every mutation goes through a method that emits `(event_name, payload)` to listeners.
    Events: node_added, node_removed, node_renamed, attr_changed, node_moved, edge_added,
    edge_removed, training_changed, reset; for block definitions (core.blocks): block_added,
    block_removed, block_renamed, and block_changed whenever a definition's body or promoted
    parameters change (so views of the top level refresh the instances)."""

    def __init__(self, name: str = "untitled"):
        self.name = name
        self.nodes: dict[str, NodeSpec] = {}
        self.edges: list[Edge] = []
        self.training: dict = {}
        self._listeners: list[Callable] = []
        self._into: dict[str, list] = {}  # node id -> the edges into it, in file order
        # the folder relative dataset paths are resolved against: the graph file's, once
        # loaded from or saved to one (None: the working directory)
        self.base_dir: str | None = None
        # an .npz of initial parameter values beside the graph file (imported models'
        # weights), keyed by parameter name; relative to base_dir
        self.weights: str | None = None
        # block definitions by name, in file order (core.blocks.BlockDef); a definition's body
        # is a document of its own whose `owner` is this one: instances inside a body name
        # definitions of the document that owns it
        self.blocks: dict = {}
        self.owner: GraphDocument | None = None
        self._body_hooks: dict = {}  # definition name -> its body listener

    # ---- events --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[str, dict], None]):
        self._listeners.append(callback)

    def unsubscribe(self, callback):
        self._listeners.remove(callback)

    def _emit(self, event: str, **payload):
        for cb in list(self._listeners):
            cb(event, payload)

    # ---- nodes -----------------------------------------------------------------------------
    def new_id(self, kind: str) -> str:
        base = kind.lower()
        i = 1
        while f"{base}{i}" in self.nodes:
            i += 1
        return f"{base}{i}"

    def add_node(self, kind: str, attrs=None, pos=(0.0, 0.0), node_id: str | None = None,
                 index: int | None = None) -> str:
        """`index` puts the node back at its old place in the order (undo keeps files identical)."""
        node_id = node_id or self.new_id(kind)
        if node_id in self.nodes:
            raise GraphError(f"node id {node_id!r} already exists")
        spec = NodeSpec(node_id, kind, dict(attrs or {}), tuple(pos))
        if index is None or index >= len(self.nodes):
            self.nodes[node_id] = spec  # appending: no copy of the whole table per node
        else:
            items = list(self.nodes.items())
            items.insert(index, (node_id, spec))
            self.nodes = dict(items)
        self._emit("node_added", node=node_id)
        return node_id

    def remove_node(self, node_id: str) -> list[Edge]:
        """Removes the node and its edges; returns the removed edges (for undo)."""
        removed = [e for e in self.edges if node_id in (e.src[0], e.dst[0])]
        for e in removed:
            self.remove_edge(e)
        del self.nodes[node_id]
        self._emit("node_removed", node=node_id)
        return removed

    def rename_node(self, old: str, new: str):
        """Give a node another id (its name in errors, plans and profiles); its wires and
        its place in the order stay."""
        problem = id_problem(new, self.nodes, old)
        if problem:
            raise GraphError(problem)
        self.nodes = {(new if k == old else k): v for k, v in self.nodes.items()}
        self.nodes[new].id = new
        rename = lambda end: (new, end[1]) if end[0] == old else end  # noqa: E731
        self.edges = [Edge(rename(e.src), rename(e.dst)) for e in self.edges]
        self._index_edges()
        self._emit("node_renamed", old=old, new=new)

    def set_attr(self, node_id: str, name: str, value):
        self.nodes[node_id].attrs[name] = value
        self._emit("attr_changed", node=node_id, attr=name)

    def unset_attr(self, node_id: str, name: str):
        """Back to the kind's default (undo of setting an attribute the file did not have)."""
        self.nodes[node_id].attrs.pop(name, None)
        self._emit("attr_changed", node=node_id, attr=name)

    def move_node(self, node_id: str, pos):
        self.nodes[node_id].pos = (float(pos[0]), float(pos[1]))
        self._emit("node_moved", node=node_id)

    # ---- edges -----------------------------------------------------------------------------
    def add_edge(self, src, dst, index: int | None = None) -> Edge:
        edge = Edge(tuple(src), tuple(dst))
        for end in (edge.src[0], edge.dst[0]):
            if end not in self.nodes:
                raise GraphError(f"edge {edge.src} -> {edge.dst}: no node {end!r}")
        into = self._into.setdefault(edge.dst[0], [])
        if edge in into:
            raise GraphError(f"edge {edge.src} -> {edge.dst} already exists")
        if index is None:
            self.edges.append(edge)
            into.append(edge)
        else:  # undo puts an edge back in its place: keep the per-node lists in file order
            self.edges.insert(index, edge)
            self._into[edge.dst[0]] = [e for e in self.edges if e.dst[0] == edge.dst[0]]
        self._emit("edge_added", edge=edge)
        return edge

    def remove_edge(self, edge: Edge):
        self.edges.remove(edge)
        self._into[edge.dst[0]].remove(edge)
        self._emit("edge_removed", edge=edge)

    def edge_into(self, node_id: str, port: str) -> Edge | None:
        """The first edge into an input port (analysis asks once per port: no scan of all edges)."""
        return next((e for e in self._into.get(node_id, ()) if e.dst[1] == port), None)

    def edges_into(self, node_id: str) -> list[Edge]:
        """Every edge into a node, in file order."""
        return list(self._into.get(node_id, ()))

    def _index_edges(self):
        self._into = {}
        for e in self.edges:
            self._into.setdefault(e.dst[0], []).append(e)

    # ---- block definitions -----------------------------------------------------------------
    def add_block(self, defn, index: int | None = None):
        """`index` puts a definition back at its old place (undo keeps files identical)."""
        if defn.name in self.blocks:
            raise GraphError(f"a block named {defn.name!r} already exists")
        if defn.body.owner not in (None, self):  # one body, one owner: it forwards its events
            raise GraphError(f"block {defn.name!r} belongs to another graph: add a copy "
                             f"(core.block_library.import_block)")
        items = list(self.blocks.items())
        items.insert(len(items) if index is None else index, (defn.name, defn))
        self.blocks = dict(items)
        self._adopt(defn)
        self._emit("block_added", block=defn.name)

    def remove_block(self, name: str):
        """Removes a definition (instances naming it stay: analysis reports them); returns it."""
        defn = self.blocks.pop(name)
        defn.body.unsubscribe(self._body_hooks.pop(name))
        defn.body.owner = None
        self._emit("block_removed", block=name)
        return defn

    def rename_block(self, old: str, new: str):
        """Renames a definition and every instance of it, here and inside every body."""
        problem = id_problem(new, self.blocks, old)
        if problem:
            raise GraphError(problem.replace("node name", "block name"))
        defn = self.blocks[old]
        self.blocks = {(new if k == old else k): v for k, v in self.blocks.items()}
        defn.name = defn.body.name = new
        self._body_hooks[new] = self._body_hooks.pop(old)
        for doc in (self, *(d.body for d in self.blocks.values())):
            for spec in list(doc.nodes.values()):
                if spec.kind == "Block" and spec.attrs.get("block") == old:
                    doc.set_attr(spec.id, "block", new)
        self._emit("block_renamed", old=old, new=new)

    def set_block_param(self, block: str, param: str, spec: dict | None):
        """Promote (or, with None, drop) a parameter of a definition: {"default", "targets"}."""
        params = self.blocks[block].params
        if spec is None:
            params.pop(param, None)
        else:
            params[param] = copy.deepcopy(spec)
        self._emit("block_changed", block=block, change="params_changed", param=param)

    def _adopt(self, defn):
        """The body's instances resolve definitions through its owner; every body event is
        forwarded as block_changed (the definition's name is read when it fires: renames)."""
        defn.body.owner = self
        hook = lambda event, payload: self._emit(  # noqa: E731
            "block_changed", block=defn.name, change=event, **payload)
        self._body_hooks[defn.name] = hook
        defn.body.subscribe(hook)

    # ---- whole document --------------------------------------------------------------------
    def set_training(self, training: dict):
        self.training = copy.deepcopy(training)
        self._emit("training_changed")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "name": self.name,
            "nodes": [{"id": n.id, "kind": n.kind, "attrs": copy.deepcopy(n.attrs),
                       # a tenth of a pixel is plenty: 15 decimals of drag noise are not
                       "pos": [round(float(n.pos[0]), 1), round(float(n.pos[1]), 1)]}
                      for n in self.nodes.values()],
            "edges": [{"src": list(e.src), "dst": list(e.dst)} for e in self.edges],
            "training": copy.deepcopy(self.training),
            **({"weights": self.weights} if self.weights else {}),
            **({"blocks": {name: d.to_dict() for name, d in self.blocks.items()}}
               if self.blocks else {}),
        }

    def load_dict(self, data: dict):
        """Replace the whole content (data already validated by core.graphfile)."""
        self.name = data.get("name", "untitled")
        self.nodes = {n["id"]: NodeSpec(n["id"], n["kind"], dict(n.get("attrs", {})),
                                        tuple(n.get("pos", (0.0, 0.0)))) for n in data["nodes"]}
        self.edges = [Edge(tuple(e["src"]), tuple(e["dst"])) for e in data["edges"]]
        self._index_edges()
        self.training = copy.deepcopy(data.get("training", {}))
        self.weights = data.get("weights")
        self._load_blocks(data.get("blocks", {}))
        self._emit("reset")

    def _load_blocks(self, blocks: dict):
        from .blocks.model import BlockDef  # blocks build on documents: imported when used
        for name, defn in self.blocks.items():
            defn.body.unsubscribe(self._body_hooks.pop(name))
        self.blocks = {name: BlockDef.from_dict(name, d) for name, d in blocks.items()}
        for defn in self.blocks.values():
            self._adopt(defn)

    @classmethod
    def from_dict(cls, data: dict) -> "GraphDocument":
        doc = cls()
        doc.load_dict(data)
        return doc


def id_problem(new: str, nodes, old=None) -> str | None:
    """Why `new` cannot name a node (None if it can): ids are letters, digits, _ and -."""
    if not new or not ID_PATTERN.fullmatch(new):
        return f"node name {new!r}: use letters, digits, _ and - only"
    if new != old and new in nodes:
        return f"node name {new!r} is taken"
    return None
