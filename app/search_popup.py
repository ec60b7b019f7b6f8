"""The add-node search box (Tab, or a wire dropped on empty canvas): type to filter,
Enter or click to add. When opened from a wire, only kinds with a compatible port show."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLineEdit, QListWidget, QVBoxLayout

from core.layers import LAYERS, compatible


def kinds_accepting(port_type: str, as_input: bool):
    """Kinds with an input (as_input) or output port that a `port_type` wire can attach to."""
    out = []
    for name, kind in LAYERS.items():
        ports = kind.inputs if as_input else kind.outputs
        if any(compatible(port_type, p.type) if as_input else compatible(p.type, port_type)
               for p in ports):
            out.append(name)
    return sorted(out, key=str.lower)


class SearchPopup(QFrame):
    chosen = Signal(str)

    def __init__(self, kinds=None, parent=None):
        super().__init__(parent, Qt.Popup)
        self.kinds = list(kinds) if kinds is not None else sorted(LAYERS, key=str.lower)
        self.edit = QLineEdit(placeholderText="Add node…")
        self.list = QListWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        self.resize(240, 300)
        self.edit.textChanged.connect(self.filter)
        self.edit.returnPressed.connect(self.accept_current)
        self.list.itemActivated.connect(lambda item: self._choose(item.text()))
        self.list.itemClicked.connect(lambda item: self._choose(item.text()))
        self.filter("")

    def filter(self, text):
        self.list.clear()
        text = text.lower()
        self.list.addItems([k for k in self.kinds if text in k.lower()])
        if self.list.count():
            self.list.setCurrentRow(0)

    def accept_current(self):
        item = self.list.currentItem()
        if item:
            self._choose(item.text())

    def _choose(self, kind):
        self.chosen.emit(kind)
        self.close()
