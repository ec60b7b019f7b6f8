"""The add-node search box (Tab, or a wire dropped on empty canvas): type to filter,
Enter or click to add. When opened from a wire, only kinds with a compatible port show.
Block instances are not a kind to add (they come from the palette's Blocks section), and a
block's port nodes are offered only inside a block."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout

from core.layers import LAYERS, compatible

from .palette import CATEGORY_ORDER


INTERFACE = ("BlockInput", "BlockOutput")


def offered_kinds(inside_block: bool = False) -> list[str]:
    """The kinds a user can add here, sorted."""
    hidden = {"Block", *(() if inside_block else INTERFACE)}
    return sorted((k for k in LAYERS if k not in hidden), key=str.lower)


def kinds_accepting(port_type: str, as_input: bool, inside_block: bool = False):
    """Kinds with an input (as_input) or output port that a `port_type` wire can attach to."""
    out = []
    for name in offered_kinds(inside_block):
        kind = LAYERS[name]
        ports = kind.inputs if as_input else kind.outputs
        if any(compatible(port_type, p.type) if as_input else compatible(p.type, port_type)
               for p in ports):
            out.append(name)
    return sorted(out, key=str.lower)


class SearchPopup(QFrame):
    chosen = Signal(str)

    def __init__(self, kinds=None, parent=None):
        super().__init__(parent, Qt.Popup)
        self.kinds = list(kinds) if kinds is not None else offered_kinds()
        self.edit = QLineEdit(placeholderText="Add node…")
        self.list = QListWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        self.resize(240, 300)
        self.edit.textChanged.connect(self.filter)
        self.edit.returnPressed.connect(self.accept_current)
        self.list.itemActivated.connect(lambda item: self._choose(item.data(Qt.UserRole)))
        self.list.itemClicked.connect(lambda item: self._choose(item.data(Qt.UserRole)))
        self.filter("")

    def filter(self, text):
        """Matching kinds, prefix matches first, then by palette category (layers before
        raw ops), each labelled with its category so Accuracy and accuracy tell apart."""
        self.list.clear()
        text = text.lower()
        for kind in sorted((k for k in self.kinds if text in k.lower()),
                           key=lambda k: (not k.lower().startswith(text), _rank(k), k.lower())):
            item = QListWidgetItem(f"{kind}    ·  {LAYERS[kind].category}")
            item.setData(Qt.UserRole, kind)
            item.setToolTip(LAYERS[kind].help)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def shown_kinds(self) -> list[str]:
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def accept_current(self):
        item = self.list.currentItem()
        if item:
            self._choose(item.data(Qt.UserRole))

    def _choose(self, kind):
        self.chosen.emit(kind)
        self.close()


def _rank(kind) -> int:
    category = LAYERS[kind].category
    return CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER)
