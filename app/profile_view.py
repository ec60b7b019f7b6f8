"""Profile overlay: time per editor node for one training step (measured in-process with
the executor's per-op clock), as a sortable table and as heat colours on the canvas."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableView, QVBoxLayout, QWidget


def profile_document(doc, batch=64, steps=5) -> dict:
    """{document node id: milliseconds per step} for the forward + backward pass."""
    from core import gradients, init_value, layers
    from core.executor import Executor
    built = layers.build(doc, training=True)
    params = [p for p in built.parameters if p.attrs.get("trainable", True)]
    ex = Executor([built.loss, *gradients(built.loss, params)], profile=True)
    rng = np.random.default_rng(0)
    feed = {p: init_value(p, rng) for p in built.parameters}
    for node in built.feeds.values():
        shape = tuple(batch if d is None else d for d in node.attrs["shape"])
        feed[node] = (rng.integers(0, 2, shape) if node.attrs.get("dtype") == "int64"
                      else rng.standard_normal(shape).astype(np.float32))
    for _ in range(steps):
        ex.run(feed, to_numpy=False)
    owner = _owners(ex.plan.schedule, built.node_of)
    per_node: dict = {}
    for name, seconds in ex.profile().items():
        key = owner.get(name, "(other)")
        per_node[key] = per_node.get(key, 0.0) + 1000 * seconds / steps
    return per_node


def _owners(schedule, node_of):
    """Backward nodes belong to the editor node whose values they read (nearest input)."""
    owner = {}
    for node in schedule:
        if node.name in node_of:
            owner[node.name] = node_of[node.name]
            continue
        for inp in node.inputs:
            found = node_of.get(inp.name) or owner.get(inp.name)
            if found:
                owner[node.name] = found
                break
    return owner


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
        bar = QHBoxLayout()
        bar.addWidget(self.button)
        bar.addWidget(self.clear)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table)
        self.button.clicked.connect(self.run)
        self.clear.clicked.connect(lambda: self.on_heat and self.on_heat({}))
        self.times = {}

    def run(self):
        from core.errors import LoomError
        try:
            self.times = profile_document(self.doc)
        except LoomError as exc:
            self.status.setText(f"cannot profile: {exc}")
            return
        self.show_times(self.times)

    def show_times(self, times):
        self.model.removeRows(0, self.model.rowCount())
        total = sum(times.values()) or 1.0
        for node, ms in times.items():
            cells = [QStandardItem(node), QStandardItem(f"{ms:.3f}"), QStandardItem(f"{100 * ms / total:.1f}%")]
            for c, key in zip(cells, (node, ms, ms / total)):
                c.setData(key, Qt.UserRole)
            self.model.appendRow(cells)
        self.table.sortByColumn(1, Qt.DescendingOrder)
        self.status.setText(f"{total:.2f} ms per step in {len(times)} nodes")
        if self.on_heat:
            peak = max(times.values(), default=1.0) or 1.0
            self.on_heat({n: ms / peak for n, ms in times.items()})
