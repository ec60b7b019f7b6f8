"""Undo commands for blocks. Group, ungroup, promote, make unique and adding a library block
change many things at once, and their inverses in core restore nodes exactly but wires only as
a set: those are undone by restoring the whole document as it was (a snapshot), so undo gives
back a byte-identical file. Renames have exact inverses and are ordinary commands."""
from __future__ import annotations

from contextlib import contextmanager

from PySide6.QtGui import QUndoCommand

from core.blocks import rename_port
from core.document import ID_PATTERN, id_problem
from core.errors import GraphError
from core.layers.block_layers import port_name

_restoring = [False]


def restoring() -> bool:
    """Whether the document is being reset by an undo or redo of a snapshot (the same graph,
    not another one: views that forget a graph's runs on reset keep them)."""
    return _restoring[0]


@contextmanager
def _restore():
    _restoring[0] = True
    try:
        yield
    finally:
        _restoring[0] = False


class Snapshot(QUndoCommand):
    """The graph before and after an edit already made; undo and redo load one of them."""

    def __init__(self, root, text, before, after):
        super().__init__(text)
        self.root, self.before, self.after = root, before, after
        self.done = True  # pushed right after the edit: the first redo has nothing to do

    def redo(self):
        if self.done:
            self.done = False
            return
        self._load(self.after)

    def undo(self):
        self._load(self.before)

    def _load(self, data):
        with _restore():
            self.root.load_dict(data)


def snapshot_edit(stack, root, text, change):
    """Run `change()` on the graph and push it as one undo step; returns what it returned.
    A change that fails (GraphError) leaves the graph as it was and raises."""
    before = root.to_dict()
    try:
        result = change()
    except GraphError:
        if root.to_dict() != before:  # failed half-way: put everything back
            with _restore():
                root.load_dict(before)
        raise
    after = root.to_dict()
    if after != before:
        stack.push(Snapshot(root, text, before, after))
    return result


class RenameBlock(QUndoCommand):
    """Renames a definition and points every instance at the new name."""

    def __init__(self, root, old, new):
        super().__init__(f"Rename block {old} → {new}")
        self.root, self.old, self.new = root, old, new

    def redo(self):
        self.root.rename_block(self.old, self.new)

    def undo(self):
        self.root.rename_block(self.new, self.old)


def block_name_problem(root, new, old=None) -> str | None:
    problem = id_problem(new, root.blocks, old)
    return problem.replace("node name", "block name") if problem else None


class RenamePort(QUndoCommand):
    """Renames the port a BlockInput / BlockOutput makes; every instance's wire follows."""

    def __init__(self, root, block, node_id, new):
        super().__init__(f"Rename port {block}.{node_id} → {new}")
        self.root, self.block, self.node_id, self.new = root, block, node_id, new
        self.old = port_name(root.blocks[block].body.nodes[node_id])

    def redo(self):
        rename_port(self.root, self.block, self.node_id, self.new)

    def undo(self):
        rename_port(self.root, self.block, self.node_id, self.old)


def port_name_problem(body, node_id, new) -> str | None:
    """Why `new` cannot name the port node `node_id` makes (None: it can)."""
    if not isinstance(new, str) or not ID_PATTERN.fullmatch(new):
        return f"port name {new!r}: use letters, digits, _ and - only"
    spec = body.nodes[node_id]
    taken = {port_name(n) for n in body.nodes.values() if n.kind == spec.kind and n.id != node_id}
    return f"the block already has a port named {new!r}" if new in taken else None
