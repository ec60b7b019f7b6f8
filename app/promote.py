"""Promoting an attribute of a node inside a block to a parameter of the block (Blender's
group inputs): every instance then sets it, so one definition serves several sizes. In the
inspector of a node inside a block, each attribute row's context menu offers "Promote to
block parameter…"; a promoted row reads "units → width", shows the value of the instance
the block was entered through, and is set on the instances (its menu can stop promoting).
Promoting the name of an existing parameter adds the attribute to what it sets (the width
of every Linear inside). Each is one undo step restoring the graph exactly."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLineEdit, QMenu

from core.blocks import promote, unpromote
from core.errors import GraphError
from core.layers.block_layers import INTERFACE_KINDS

from . import style
from .block_commands import snapshot_edit
from .canvas.levels import real

PROMOTE = "Promote to block parameter…"


def can_promote(spec) -> bool:
    return spec.kind not in INTERFACE_KINDS


def linked_param(defn, node_id, attr) -> str | None:
    """The parameter of `defn` that sets node_id.attr (None: not promoted)."""
    return next((p for p, d in defn.params.items() if [node_id, attr] in d.get("targets", ())), None)


def decorate_row(inspector, attr, label, editor):
    """Mark a promoted row, and give the row its promote / stop promoting menu."""
    defn = inspector.root.blocks[inspector.block]
    param = linked_param(defn, inspector.node_id, attr.name)
    if param is not None:
        label.setText(f"{attr.name} → {param}")
        _show(editor, _entered_value(inspector, defn, param))
        editor.setEnabled(False)  # set on the instances, not here
        editor.setStyleSheet(f"color: {style.DIM_TEXT}")
        editor.setToolTip(f"set by the block parameter {param!r} of each {defn.name} instance "
                          f"(shown: the instance entered); right-click the name to stop promoting")
    for widget in (label, editor):
        widget.setContextMenuPolicy(Qt.CustomContextMenu)
        widget.customContextMenuRequested.connect(
            lambda pos, w=widget: _popup(inspector, attr.name, w, pos))


def row_actions(inspector, attr_name) -> list[QAction]:
    """What an attribute row's context menu offers (tests trigger these directly)."""
    defn = inspector.root.blocks[inspector.block]
    param = linked_param(defn, inspector.node_id, attr_name)
    if param is None:
        action = QAction(PROMOTE, inspector)
        action.triggered.connect(lambda: promote_attr(inspector, attr_name))
    else:
        action = QAction(f"Stop promoting {param!r}", inspector)
        action.triggered.connect(lambda: stop_promoting(inspector, attr_name, param))
    return [action]


def _popup(inspector, attr_name, widget, pos):
    if isinstance(widget, QLineEdit):  # its own cut / copy / paste, then ours
        menu = widget.createStandardContextMenu()
        menu.addSeparator()
    else:
        menu = QMenu(widget)
    for action in row_actions(inspector, attr_name):
        menu.addAction(action)
    menu.exec(widget.mapToGlobal(pos))


def promote_attr(inspector, attr_name) -> bool:
    """Ask the parameter's name (its default: the attribute's current value) and promote."""
    block, node_id = inspector.block, inspector.node_id
    name, ok = inspector.ask_text(inspector, "Promote to block parameter",
                                  f"Parameter of block {block} that sets {node_id}.{attr_name} "
                                  f"on each instance (an existing name adds to what it sets):",
                                  attr_name)
    if not ok or not name.strip():
        return False
    name = name.strip()
    defn = inspector.root.blocks[block]
    entry = defn.params.get(name)
    targets = [*(entry["targets"] if entry else []), [node_id, attr_name]]
    default = entry["default"] if entry else None  # None: the attribute's current value
    change = lambda: promote(inspector.root, block, name, targets, default)  # noqa: E731
    return _edit(inspector, attr_name, f"Promote {node_id}.{attr_name} → {name}", change)


def stop_promoting(inspector, attr_name, param) -> bool:
    """This attribute is no longer set by `param` (the parameter goes with its last target)."""
    block, node_id, root = inspector.block, inspector.node_id, inspector.root
    entry = root.blocks[block].params[param]
    rest = [t for t in entry["targets"] if t != [node_id, attr_name]]
    change = (lambda: promote(root, block, param, rest, entry["default"])) if rest else \
        (lambda: unpromote(root, block, param))
    return _edit(inspector, attr_name, f"Stop promoting {node_id}.{attr_name}", change)


def sets_attributes_of(defn, node_id) -> bool:
    return any(t[0] == node_id for d in defn.params.values() for t in d.get("targets", ()))


def rename_node(inspector, old, new) -> bool:
    """Rename a node inside a block whose attributes are promoted: the parameters keep
    setting it (the document's rename knows nothing of the block's parameters). One step."""
    root, block, body = inspector.root, inspector.block, real(inspector.doc)

    def change():
        body.rename_node(old, new)
        for param, entry in list(root.blocks[block].params.items()):
            if any(t[0] == old for t in entry["targets"]):
                moved = [[new if t[0] == old else t[0], t[1]] for t in entry["targets"]]
                root.set_block_param(block, param, {**entry, "targets": moved})
    return _edit(inspector, "name", f"Rename {old} → {new}", change)


def _edit(inspector, attr_name, text, change) -> bool:
    try:
        snapshot_edit(inspector.stack, inspector.root, text, change)
    except GraphError as exc:
        if attr_name in inspector.errors:  # the form is still this node's
            inspector._refuse(attr_name, str(exc))
        return False
    return True


def _entered_value(inspector, defn, param):
    parent, instance = inspector.levels.parent()
    spec = parent.nodes.get(instance)
    default = defn.params[param].get("default")
    return spec.attrs.get(param, default) if spec is not None else default


def _show(editor, value):
    from .inspector import show  # the inspector imports this module: import when used
    editor.blockSignals(True)  # showing a value is not an edit
    if hasattr(editor, "setChecked"):
        editor.setChecked(bool(value))
    elif hasattr(editor, "setCurrentText"):
        editor.setCurrentText(str(value))
    else:
        editor.setText(show(value))
    editor.blockSignals(False)
