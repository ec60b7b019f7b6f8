"""Which document the canvas shows: the graph, or the body of a block entered through one of
its instances (nested: a path of instances, one per level), and how the graph's events and
analysis look from there.

A body is reached by its definition's name at every use (`BodyRef`), never held: undoing a
Group restores the whole document (`load_dict`), which replaces every definition object, and
an undo command made inside a block must then edit the new body, not the discarded one."""
from __future__ import annotations

from dataclasses import dataclass

from core.layers.block_layers import port_name


class BodyRef:
    """Stands for the body of definition `name` of `root`: every attribute is the current
    body's. Commands and views hold this, so they survive a restore; the name follows
    renames (Levels.renamed)."""

    def __init__(self, root, name):
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "name", name)

    def target(self):
        return self.root.blocks[self.name].body

    def __getattr__(self, attr):
        return getattr(self.target(), attr)

    def __setattr__(self, attr, value):
        setattr(self.target(), attr, value)


@dataclass
class Level:
    instance: str  # the instance entered (an id in the level above)
    block: str  # its definition's name


def real(doc):
    """The document itself for core functions that compare documents by identity."""
    return doc.target() if isinstance(doc, BodyRef) else doc


class Levels:
    def __init__(self, root):
        self.root = root
        self.path: list[Level] = []
        self.refs: dict[str, BodyRef] = {}

    def ref(self, name) -> BodyRef:
        if name not in self.refs:
            self.refs[name] = BodyRef(self.root, name)
        return self.refs[name]

    def doc_at(self, depth):
        return self.root if depth == 0 else self.ref(self.path[depth - 1].block)

    @property
    def doc(self):
        return self.doc_at(len(self.path))

    @property
    def block(self) -> str | None:
        return self.path[-1].block if self.path else None

    @property
    def prefix(self) -> str:
        """Flat ids of the nodes shown are this + their id (`stage1/` inside stage1)."""
        return "".join(f"{level.instance}/" for level in self.path)

    def parent(self):
        """(document, instance id) the shown body was entered through."""
        return self.doc_at(len(self.path) - 1), self.path[-1].instance

    # ---- keeping the path true to the document -------------------------------------------
    def renamed(self, old, new):
        ref = self.refs.pop(old, None)
        if ref is not None:
            object.__setattr__(ref, "name", new)
            self.refs[new] = ref
        for level in self.path:
            if level.block == old:
                level.block = new

    def current_path(self) -> list[Level]:
        """The path as the document now has it: the canvas is inside instances, so each level
        is the block its instance names now (a rename, an undone "make unique"), and the path
        ends where an instance is gone (an undone group)."""
        out, nodes = [], self.root.nodes
        for level in self.path:
            spec = nodes.get(level.instance)
            block = spec.attrs.get("block") if spec is not None and spec.kind == "Block" else None
            if not isinstance(block, str) or block not in self.root.blocks:
                break
            out.append(Level(level.instance, block))
            nodes = self.root.blocks[block].body.nodes
        return out

    def translate(self, event, payload):
        """A graph event as the shown level sees it: (event, payload), or None when it is
        not about the shown document (a body's events arrive as block_changed)."""
        if event == "reset" or not self.path:
            return (event, payload) if not event.startswith("block_") else None
        if event == "block_changed" and payload.get("block") == self.block \
                and payload.get("change") != "params_changed":
            rest = {k: v for k, v in payload.items() if k not in ("block", "change")}
            return payload["change"], rest
        return None

    # ---- what the analysis of the whole graph says about a shown node ---------------------
    def flat_id(self, node_id) -> str:
        return self.prefix + node_id

    def info(self, analysis, node_id):
        """The analysis entry of a shown node; interface nodes (flattened away) get the shape
        that passes through them in the instance entered."""
        entry = analysis.nodes.get(self.flat_id(node_id))
        spec = self.doc.nodes[node_id]
        if entry is not None or not self.path or spec.kind not in ("BlockInput", "BlockOutput"):
            return entry
        shape = self._port_shape(analysis, spec)
        return None if shape is None else _Shape({"out": shape})

    def _port_shape(self, analysis, spec):
        parent, instance = self.parent()
        outer = self.prefix[:-1]  # the instance's own flat id
        name = port_name(spec)
        if spec.kind == "BlockOutput":
            entry = analysis.nodes.get(outer)
            return entry.out_shapes.get(name) if entry else None
        edge = parent.edge_into(instance, name)
        if edge is None:
            return None
        above = self.prefix[:-len(instance) - 1]
        entry = analysis.nodes.get(above + edge.src[0])
        return entry.out_shapes.get(edge.src[1]) if entry else None


@dataclass
class _Shape:
    out_shapes: dict
    params: int = 0
    macs: int = 0


def graph_totals(analysis) -> tuple[int, int]:
    """Parameters and multiply-adds of the whole graph: an instance's entry sums the nodes
    inside it, which have entries of their own, so instances are not counted again."""
    instances = {p for i in analysis.nodes for p in _ancestors(i)}
    real_nodes = [info for i, info in analysis.nodes.items() if i not in instances]
    return sum(i.params for i in real_nodes), sum(i.macs for i in real_nodes)


def _ancestors(path):
    parts = path.split("/")
    return ["/".join(parts[:k]) for k in range(1, len(parts))]


def heat_by_card(times: dict, prefix: str, node_ids) -> dict:
    """{shown node id: its share of the hottest card}: a card's time is its own node's,
    or for an instance the sum of the nodes inside it."""
    totals = {}
    for node_id in node_ids:
        flat = prefix + node_id
        total = sum(t for k, t in times.items() if k == flat or k.startswith(flat + "/"))
        if total:
            totals[node_id] = total
    peak = max(totals.values(), default=0.0) or 1.0
    return {n: t / peak for n, t in totals.items()}
