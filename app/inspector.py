"""The inspector: a form generated from the selected node's attribute specs. A value is
parsed and checked by `AttrSpec.check`; a bad one is refused inline with the reason, a good
one becomes a SetAttr command. A block instance shows its promoted parameters as ordinary
attributes; inside a block, each attribute row offers to promote it (app/promote.py)."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QKeyCombination, QObject, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QInputDialog, QLabel, QLineEdit,
                               QVBoxLayout, QWidget)

from core.blocks import kind_of
from core.document import id_problem

from . import commands, promote
from .block_commands import RenamePort, port_name_problem, restoring
from .observe import observe


def parse(spec, text: str):
    """Text from a line edit -> the attribute's python value (ValueError if it can't be)."""
    text = text.strip()
    if spec.type == "int":
        return int(text)
    if spec.type == "float":
        return float(text)
    if spec.type == "ints":
        return [int(t) for t in text.replace("(", "").replace(")", "").replace(" ", "").split(",") if t]
    return text


def show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


class DocumentUndoKeys(QObject):
    """Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y in a field undo and redo the document (the window's
    actions), not the field's own typing history, which a committed field no longer has."""

    def eventFilter(self, watched, event):
        if event.type() == QEvent.ShortcutOverride and any(
                event.matches(k) for k in (QKeySequence.Undo, QKeySequence.Redo)) or \
                event.type() == QEvent.ShortcutOverride and event.keyCombination() == \
                QKeyCombination(Qt.ControlModifier, Qt.Key_Y):
            event.ignore()  # not the field's: the window's shortcut runs
            return True
        return False


def _ask_text(parent, title, label, text):
    return QInputDialog.getText(parent, title, label, text=text)


class Inspector(QWidget):
    def __init__(self, doc, stack, levels=None, parent=None):
        super().__init__(parent)
        self.document_undo_keys = DocumentUndoKeys(self)
        self.root, self.stack = doc, stack
        self.levels = levels  # the canvas's levels: inside a block, nodes are the body's
        self.ask_text = _ask_text  # injectable so tests answer the name prompts
        self.node_id = None
        self.editors, self.errors = {}, {}
        self.title = QLabel("Select a node to edit its attributes")
        self.title.setWordWrap(True)
        self.form = QFormLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(self.form)
        layout.addStretch(1)
        observe(self, doc, self._on_event)

    @property
    def doc(self):
        return self.levels.doc if self.levels is not None else self.root

    @property
    def block(self) -> str | None:
        """The block whose body is shown (None: the graph's top level)."""
        return self.levels.block if self.levels is not None else None

    def kind(self):
        return kind_of(self.doc, self.doc.nodes[self.node_id])

    def show_node(self, node_id):
        self.node_id = node_id if node_id in self.doc.nodes else None
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors, self.errors = {}, {}
        if self.node_id is None:
            self.title.setText("Select a node to edit its attributes")
            return
        spec = self.doc.nodes[self.node_id]
        kind = self.kind()
        self.title.setText(_title(spec, kind))
        self._add_name_row(spec.id)
        for attr in (kind.attrs if kind else ()):
            if spec.kind == "Block" and attr.name == "block":
                continue  # the title names the block; Rename block… renames it everywhere
            self._add_row(attr, spec.attrs.get(attr.name, attr.default))

    def _add_name_row(self, node_id):
        """The node's name (its id): what errors, plans and profiles call it."""
        editor = QLineEdit(node_id)
        editor.setToolTip("The node's name, used in problems, plans and profiles (F2 on the canvas)")
        editor.editingFinished.connect(lambda e=editor: self.rename(e.text().strip()))
        editor.installEventFilter(self.document_undo_keys)
        self._add_field("name", editor)
        self.name_editor = editor

    def rename(self, new) -> bool:
        old = self.node_id
        if old is None or new == old:
            return True
        problem = id_problem(new, self.doc.nodes, old)
        if problem:
            return self._refuse("name", problem)
        self.errors["name"].hide()
        if self.block is not None and promote.sets_attributes_of(self.root.blocks[self.block], old):
            return promote.rename_node(self, old, new)
        self.stack.push(commands.RenameNode(self.doc, old, new))
        return True

    def _add_row(self, attr, value):
        editor = self._editor(attr, value)
        editor.setToolTip(attr.help)
        port = self.doc.nodes[self.node_id].kind in ("BlockInput", "BlockOutput") and attr.name == "name"
        label = self._add_field(attr.name, editor, "port name" if port else None)
        self.editors[attr.name] = editor
        if self.block is not None and promote.can_promote(self.doc.nodes[self.node_id]):
            promote.decorate_row(self, attr, label, editor)

    def _add_field(self, name, editor, label=None):
        """A form row: the editor with its inline error line under it (hidden until refused)."""
        error = QLabel("")
        error.setObjectName("error")
        error.setWordWrap(True)
        error.hide()
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(editor)
        col.addWidget(error)
        self.form.addRow(label or name, box)
        self.errors[name] = error
        return self.form.labelForField(box)

    def _editor(self, attr, value):
        if attr.type == "bool":
            w = QCheckBox()
            w.setChecked(bool(value))
            w.toggled.connect(lambda v, a=attr: self.commit(a.name, v))
        elif attr.type == "choice":
            w = QComboBox()
            w.addItems([str(c) for c in attr.choices])
            w.setCurrentText(str(value))
            w.currentTextChanged.connect(lambda v, a=attr: self.commit(a.name, v))
        else:
            w = QLineEdit(show(value))
            w.editingFinished.connect(lambda a=attr, e=w: self.commit_text(a.name, e.text()))
            w.installEventFilter(self.document_undo_keys)
        return w

    def spec_of(self, name):
        return next(a for a in self.kind().attrs if a.name == name)

    def commit_text(self, name, text):
        spec = self.spec_of(name)
        try:
            value = parse(spec, text)
        except ValueError:
            return self._refuse(name, f"{name}: {text!r} is not a valid {spec.type}")
        return self.commit(name, value)

    def commit(self, name, value) -> bool:
        """Check and push; returns False (and shows why) when the value is refused."""
        reason = self.spec_of(name).check(value)
        if reason:
            return self._refuse(name, reason)
        spec = self.doc.nodes[self.node_id]
        if spec.kind in ("BlockInput", "BlockOutput") and name == "name" and self.block:
            return self._rename_port(value)
        self.errors[name].hide()
        if spec.attrs.get(name) != value:
            self.stack.push(commands.SetAttr(self.doc, self.node_id, name, value))
        return True

    def _rename_port(self, new) -> bool:
        """A block's port node: its name is the instances' port, their wires follow."""
        if new == self.doc.nodes[self.node_id].attrs.get("name"):
            return True
        problem = port_name_problem(self.doc, self.node_id, new)
        if problem:
            return self._refuse("name", problem)
        self.errors["name"].hide()
        self.stack.push(RenamePort(self.root, self.block, self.node_id, new))
        return True

    def _refuse(self, name, reason):
        self.errors[name].setText(reason)
        self.errors[name].show()
        return False

    def _on_event(self, event, payload):
        if event == "block_changed" and payload.get("change") == "params_changed":
            return self.show_node(self.node_id)  # promoted: rows link, instances gain a field
        seen = self.levels.translate(event, payload) if self.levels is not None else (event, payload)
        if seen is None:
            return
        event, payload = seen
        if event == "attr_changed" and payload["node"] == self.node_id and payload["attr"] == "block":
            self.show_node(self.node_id)  # renamed block, or made unique: the title says which
        elif event == "attr_changed" and payload["node"] == self.node_id:
            editor = self.editors.get(payload["attr"])
            value = self.doc.nodes[self.node_id].attrs.get(payload["attr"])
            if isinstance(editor, QLineEdit) and value is not None:
                editor.setText(show(value))
        elif event == "node_renamed" and payload["old"] == self.node_id:
            self.show_node(payload["new"])
        elif event == "reset":  # an undo restoring the graph keeps the node shown
            self.show_node(self.node_id if restoring() else None)
        elif event == "node_removed" and payload.get("node") == self.node_id:
            self.show_node(None)


def _title(spec, kind) -> str:
    if spec.kind == "Block":
        return (f"Block <b>{spec.attrs.get('block')}</b> · {spec.id}<br><i>{kind.help}; "
                f"double-click the card or press Tab to edit inside</i>")
    return f"<b>{spec.kind}</b> · {spec.id}<br><i>{kind.help if kind else 'unknown kind'}</i>"
