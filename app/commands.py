"""Every edit is a QUndoCommand that calls GraphDocument methods only (the scene observes)."""
from __future__ import annotations

import copy

from PySide6.QtGui import QUndoCommand

from core.document import Edge


class AddNode(QUndoCommand):
    def __init__(self, doc, kind, attrs, pos, node_id=None):
        super().__init__(f"Add {kind}")
        self.doc, self.kind, self.attrs, self.pos = doc, kind, dict(attrs), tuple(pos)
        self.node_id = node_id or doc.new_id(kind)

    def redo(self):
        self.doc.add_node(self.kind, self.attrs, self.pos, self.node_id)

    def undo(self):
        self.doc.remove_node(self.node_id)


class RemoveNodes(QUndoCommand):
    """Removes nodes with their edges; undo restores both exactly."""

    def __init__(self, doc, node_ids):
        super().__init__(f"Delete {len(node_ids)} node{'s' * (len(node_ids) != 1)}")
        self.doc = doc
        order = list(doc.nodes)
        self.specs = sorted(((order.index(n), copy.deepcopy(doc.nodes[n])) for n in node_ids),
                            key=lambda p: p[0])
        self.edges = [(i, e) for i, e in enumerate(doc.edges)
                      if e.src[0] in node_ids or e.dst[0] in node_ids]

    def redo(self):
        for _, spec in self.specs:
            self.doc.remove_node(spec.id)

    def undo(self):  # back at their old indices, so the saved file is byte-identical
        for index, spec in self.specs:
            self.doc.add_node(spec.kind, copy.deepcopy(spec.attrs), spec.pos, spec.id, index)
        for index, e in self.edges:
            self.doc.add_edge(e.src, e.dst, index)


class SetAttr(QUndoCommand):
    def __init__(self, doc, node_id, name, value):
        super().__init__(f"Set {node_id}.{name} = {value!r}")
        self.doc, self.node_id, self.name, self.value = doc, node_id, name, value
        self.had = name in doc.nodes[node_id].attrs
        self.old = copy.deepcopy(doc.nodes[node_id].attrs.get(name))

    def redo(self):
        self.doc.set_attr(self.node_id, self.name, self.value)

    def undo(self):
        if self.had:
            self.doc.set_attr(self.node_id, self.name, self.old)
        else:
            self.doc.unset_attr(self.node_id, self.name)


class MoveNodes(QUndoCommand):
    """One command per drag: old and new positions of every node that moved."""

    def __init__(self, doc, moves: dict, text="Move"):
        super().__init__(f"{text} {len(moves)} node{'s' * (len(moves) != 1)}")
        self.doc = doc
        self.moves = {n: (tuple(old), tuple(new)) for n, (old, new) in moves.items()}

    def redo(self):
        for n, (_, new) in self.moves.items():
            self.doc.move_node(n, new)

    def undo(self):
        for n, (old, _) in self.moves.items():
            self.doc.move_node(n, old)


class AddEdge(QUndoCommand):
    """Connect src -> dst, replacing whatever fed dst before (an input takes one wire)."""

    def __init__(self, doc, src, dst):
        super().__init__(f"Connect {src[0]}.{src[1]} → {dst[0]}.{dst[1]}")
        self.doc, self.edge = doc, Edge(tuple(src), tuple(dst))
        self.replaced = doc.edge_into(*dst)

    def redo(self):
        self.index = None
        if self.replaced is not None:
            self.index = self.doc.edges.index(self.replaced)
            self.doc.remove_edge(self.replaced)
        self.doc.add_edge(self.edge.src, self.edge.dst)

    def undo(self):
        self.doc.remove_edge(self.edge)
        if self.replaced is not None:
            self.doc.add_edge(self.replaced.src, self.replaced.dst, self.index)


class RemoveEdge(QUndoCommand):
    def __init__(self, doc, edge):
        super().__init__(f"Disconnect {edge.dst[0]}.{edge.dst[1]}")
        self.doc, self.edge = doc, edge

    def redo(self):
        self.index = self.doc.edges.index(self.edge)
        self.doc.remove_edge(self.edge)

    def undo(self):
        self.doc.add_edge(self.edge.src, self.edge.dst, self.index)


class RenameNode(QUndoCommand):
    def __init__(self, doc, old, new):
        super().__init__(f"Rename {old} → {new}")
        self.doc, self.old, self.new = doc, old, new

    def redo(self):
        self.doc.rename_node(self.old, self.new)

    def undo(self):
        self.doc.rename_node(self.new, self.old)


class SetTraining(QUndoCommand):
    """Consecutive settings edits merge into one undo step (typing "400" is one edit)."""
    ID = 1001

    def __init__(self, doc, training):
        super().__init__("Change training settings")
        self.doc, self.new, self.old = doc, copy.deepcopy(training), copy.deepcopy(doc.training)

    def id(self):
        return self.ID

    def mergeWith(self, other):
        self.new = copy.deepcopy(other.new)
        return True

    def redo(self):
        self.doc.set_training(self.new)

    def undo(self):
        self.doc.set_training(self.old)


def macro(stack, text, commands):
    """Push several commands as one undo step."""
    stack.beginMacro(text)
    for c in commands:
        stack.push(c)
    stack.endMacro()
