"""Profile overlay: time per editor node for one training step (measured in-process with
the executor's per-op clock), as a sortable table and as heat colours on the canvas. Nodes
inside blocks are listed by path (`stage1/conv1`); the table can instead total each block
(top-level instance) and "(top level)"."""
from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPushButton, QTableView, QVBoxLayout,
                               QWidget)

from core.blocks import per_block
from core.errors import LoomError
from core.step import profile_step


class ProfileView(QWidget):
    def __init__(self, doc, on_heat=None, parent=None):
        super().__init__(parent)
        self.doc, self.on_heat = doc, on_heat
        self.model = QStandardItemModel(0, 3)
        self.model.setHorizontalHeaderLabels(["node", "ms / step", "share"])
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)  # row numbers mean nothing once sorted
        self.button = QPushButton("Profile one training step")
        self.clear = QPushButton("Clear heat")
        self.status = QLabel()
        self.rows = QComboBox()
        self.rows.addItems(["per node", "per block"])
        self.rows.setToolTip("per block: the time of each block (top-level instance) summed")
        self.rows.currentTextChanged.connect(lambda *_: self.times and self.show_times(self.times))
        bar = QHBoxLayout()
        bar.addWidget(self.button)
        bar.addWidget(self.clear)
        bar.addWidget(self.rows)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table)
        self.button.clicked.connect(self.run)
        self.clear.clicked.connect(lambda: self.on_heat and self.on_heat({}))
        self.times = {}

    def run(self):
        try:
            self.times = profile_step(self.doc)
        except LoomError as exc:
            self.status.setText(f"cannot profile: {exc}")
            return
        self.show_times(self.times)

    def clear_times(self):
        self.times = {}
        self.model.removeRows(0, self.model.rowCount())
        self.status.setText("")
        if self.on_heat:
            self.on_heat({})

    def show_times(self, times):
        self.model.removeRows(0, self.model.rowCount())
        total = sum(times.values()) or 1.0
        by_block = self.rows.currentText() == "per block"
        self.model.setHorizontalHeaderLabels(["block" if by_block else "node", "ms / step", "share"])
        for node, ms in (per_block(times) if by_block else times).items():
            cells = [QStandardItem(node), QStandardItem(f"{ms:.3f}"), QStandardItem(f"{100 * ms / total:.1f}%")]
            for c, key in zip(cells, (node, ms, ms / total)):
                c.setData(key, Qt.UserRole)
            self.model.appendRow(cells)
        self.table.sortByColumn(1, Qt.DescendingOrder)
        self.status.setText(f"{total:.2f} ms per step in {len(times)} nodes")
        if self.on_heat:
            peak = max(times.values(), default=1.0) or 1.0
            self.on_heat({n: ms / peak for n, ms in times.items()})
