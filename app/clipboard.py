"""Copy / paste of node selections as JSON on the system clipboard (with internal edges, and
the definitions of the blocks among them, so a block pasted into another graph comes with
what it is)."""
from __future__ import annotations

import copy
import json

from PySide6.QtWidgets import QApplication

from core.block_library import dependencies, import_block
from core.blocks import BlockDef, definitions, root

from . import commands
from .canvas.levels import real

MIME_PREFIX = "loom-nodes:"


def copy_nodes(doc, node_ids):
    ids = set(node_ids)
    data = {"nodes": [{"kind": doc.nodes[n].kind, "attrs": copy.deepcopy(doc.nodes[n].attrs),
                       "pos": list(doc.nodes[n].pos), "id": n} for n in node_ids],
            "edges": [{"src": list(e.src), "dst": list(e.dst)} for e in doc.edges
                      if e.src[0] in ids and e.dst[0] in ids],
            "blocks": _blocks_used(doc, node_ids)}
    QApplication.clipboard().setText(MIME_PREFIX + json.dumps(data))


def _blocks_used(doc, node_ids) -> dict:
    """The definitions the copied instances need (those they use too), by name."""
    known = definitions(real(doc))
    used = {}
    for n in node_ids:
        defn = known.get(doc.nodes[n].attrs.get("block")) if doc.nodes[n].kind == "Block" else None
        for d in dependencies(defn) if defn is not None else ():
            used[d.name] = d.to_dict()
    return used


def paste_commands(doc, offset=(40.0, 40.0), at=None):
    """Commands that add the clipboard's nodes (fresh ids) and their edges: shifted by
    `offset`, or, given a scene point `at`, placed with their top-left corner there."""
    text = QApplication.clipboard().text()
    if not text.startswith(MIME_PREFIX):
        return [], []
    data = json.loads(text[len(MIME_PREFIX):])
    taken, renamed, cmds = set(doc.nodes), {}, []
    blocks = _ImportBlocks(doc, data.get("blocks") or {})
    if blocks.wanted:
        cmds.append(blocks)
    if at is not None and data["nodes"]:
        left = min(n["pos"][0] for n in data["nodes"])
        top = min(n["pos"][1] for n in data["nodes"])
        offset = (at[0] - left, at[1] - top)
    for n in data["nodes"]:
        new_id = _fresh_id(n["kind"], taken)
        taken.add(new_id)
        renamed[n["id"]] = new_id
        pos = (n["pos"][0] + offset[0], n["pos"][1] + offset[1])
        add = commands.AddNode(doc, n["kind"], n["attrs"], pos, new_id)
        if n["kind"] == "Block":
            blocks.instances.append(add)
        cmds.append(add)
    for e in data["edges"]:
        cmds.append(_LazyEdge(doc, (renamed[e["src"][0]], e["src"][1]), (renamed[e["dst"][0]], e["dst"][1])))
    return cmds, list(renamed.values())


class _ImportBlocks(commands.QUndoCommand):
    """Brings the pasted instances' definitions into this graph (import_block: the same
    content is reused, a name taken by other content becomes Name-2, which the pasted
    instances then name); undo removes the ones it added."""

    def __init__(self, doc, wanted: dict):
        super().__init__("Import blocks")
        self.doc, self.wanted, self.instances, self.added = doc, wanted, [], []

    def redo(self):
        top = root(real(self.doc))
        before = set(top.blocks)
        names = {name: import_block(top, BlockDef.from_dict(name, d))
                 for name, d in self.wanted.items()}
        self.added = [n for n in top.blocks if n not in before]
        for add in self.instances:
            add.attrs["block"] = names.get(add.attrs.get("block"), add.attrs.get("block"))

    def undo(self):
        top = root(real(self.doc))
        for name in reversed(self.added):
            top.remove_block(name)


def _fresh_id(kind, taken):
    i = 1
    while f"{kind.lower()}{i}" in taken:
        i += 1
    return f"{kind.lower()}{i}"


class _LazyEdge(commands.AddEdge):
    """AddEdge whose 'replaced' edge is looked up when first run (the nodes are new)."""

    def __init__(self, doc, src, dst):
        commands.QUndoCommand.__init__(self, f"Connect {src[0]} → {dst[0]}")
        self.doc, self.edge, self.replaced = doc, commands.Edge(tuple(src), tuple(dst)), None
