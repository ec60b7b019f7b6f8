"""The palette: node kinds grouped by category (from the layer table) with a search box;
items are dragged onto the canvas. Blocks are listed in their own section
(app/block_palette.py); a block's port nodes only while the canvas is inside a block."""
from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from core.layers import LAYERS

from .canvas.view import BLOCK_MIME, KIND_MIME

CATEGORY_ORDER = ["Data", "Layers", "Activations", "Sequence", "Losses", "Ops"]
CATEGORY_LABELS = {"Block": "Block ports"}  # BlockInput / BlockOutput ("Blocks" lists blocks)
BLOCK_ROLE = Qt.UserRole + 1  # a Blocks entry's key ("doc:Name" / "lib:Name")
INTERFACE = {"BlockInput", "BlockOutput"}


def mime_for(kind: str, mime_type: str = KIND_MIME) -> QMimeData:
    mime = QMimeData()
    mime.setData(mime_type, kind.encode())
    return mime


class _KindTree(QTreeWidget):
    def startDrag(self, actions):
        item = self.currentItem()
        kind = item.data(0, Qt.UserRole) if item else None
        block = item.data(0, BLOCK_ROLE) if item else None
        if kind or block:
            drag = QDrag(self)
            drag.setMimeData(mime_for(kind) if kind else mime_for(block, BLOCK_MIME))
            drag.exec(Qt.CopyAction)


class Palette(QWidget):
    kind_activated = Signal(str)  # double-click: add at the centre of the view
    block_activated = Signal(str)  # double-click on a Blocks entry: its key

    def __init__(self, parent=None):
        super().__init__(parent)
        self.hidden_kinds = set(INTERFACE)  # offered inside a block only
        self.search = QLineEdit(placeholderText="Search nodes…")
        self.tree = _KindTree()
        self.tree.setHeaderHidden(True)
        self.tree.setDragEnabled(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.search)
        layout.addWidget(self.tree)
        self._fill()
        self.search.textChanged.connect(self.filter)
        self.tree.itemDoubleClicked.connect(self._activated)

    def _activated(self, item, column=0):
        kind, block = item.data(0, Qt.UserRole), item.data(0, BLOCK_ROLE)
        if kind:  # not a category row
            self.kind_activated.emit(kind)
        elif block:
            self.block_activated.emit(block)

    def show_interface(self, inside_block: bool):
        """BlockInput / BlockOutput are offered while the canvas shows a block's inside."""
        self.hidden_kinds = set() if inside_block else set(INTERFACE)
        self.filter(self.search.text())

    def _fill(self):
        groups = {}
        for cat in CATEGORY_ORDER + sorted({k.category for k in LAYERS.values()} - set(CATEGORY_ORDER)):
            groups[cat] = QTreeWidgetItem(self.tree, [CATEGORY_LABELS.get(cat, cat)])
            groups[cat].setFlags(Qt.ItemIsEnabled)
        for name, kind in sorted(LAYERS.items(), key=lambda kv: kv[0].lower()):
            if name == "Block":  # instances come from the Blocks section
                continue
            item = QTreeWidgetItem(groups[kind.category], [name])
            item.setData(0, Qt.UserRole, name)
            item.setToolTip(0, kind.help)
        for cat, group in groups.items():
            group.setExpanded(cat != "Ops")
        self.filter("")

    def filter(self, text):
        text = text.lower().strip()
        for i in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(i)
            shown = 0
            for j in range(group.childCount()):
                child = group.child(j)
                match = (not text or text in child.text(0).lower()) and \
                    child.data(0, Qt.UserRole) not in self.hidden_kinds
                child.setHidden(not match)
                shown += match
            group.setHidden(shown == 0)
            group.setExpanded(bool(text) or group.text(0) != "Ops")

    def visible_kinds(self):
        out = []
        for i in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(i)
            out += [group.child(j).text(0) for j in range(group.childCount())
                    if not group.child(j).isHidden() and not group.isHidden()]
        return out
