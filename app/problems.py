"""The Problems panel: every problem of the live analysis as a row (node, port, message);
clicking a row selects the node on the canvas. The status bar's count opens it."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget


class ProblemsPanel(QWidget):
    node_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.empty = QLabel("No problems: the graph can be trained.")
        self.list = QTreeWidget()
        self.list.setHeaderLabels(["node", "port", "problem"])
        self.list.setRootIsDecorated(False)
        self.list.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.empty)
        layout.addWidget(self.list)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)

    def show_problems(self, problems):
        self.list.clear()
        for p in problems:
            item = QTreeWidgetItem([p.node_id or "(graph)", p.port or "", p.message])
            item.setData(0, Qt.UserRole, p.node_id)
            item.setToolTip(2, str(p))
            self.list.addTopLevelItem(item)
        self.list.resizeColumnToContents(0)
        self.empty.setVisible(not problems)
        self.list.setVisible(bool(problems))

    def rows(self) -> list[str]:
        return [self.list.topLevelItem(i).text(2) for i in range(self.list.topLevelItemCount())]

    def _clicked(self, item, column=0):
        node = item.data(0, Qt.UserRole)
        if node:
            self.node_chosen.emit(node)
