"""The memory-plan view: the compiler's buffer table as rectangles (x = schedule steps the
buffer lives, y = its byte range in the arena), coloured by role, with the planned arena and
the lower bound marked. Clicking a buffer selects the node that produced it."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import (QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel, QSpinBox,
                               QVBoxLayout, QWidget)

ROLE_COLOURS = {"activation": "#4fc3f7", "gradient": "#ef5350", "parameter": "#ba68c8",
                "optimizer": "#ffb74d", "workspace": "#9e9e9e"}
KIB = 1024


class BufferRect(QGraphicsRectItem):
    def __init__(self, buf, on_click):
        first, last = buf["first"], buf["last"]
        super().__init__(QRectF(first, buf["offset"] / KIB, last - first + 1, max(buf["bytes"], 1) / KIB))
        self.buf, self.on_click = buf, on_click
        colour = QColor(ROLE_COLOURS.get(buf["role"], "#9e9e9e"))
        self.setPen(QPen(colour.darker(160), 0))
        colour.setAlpha(170)
        self.setBrush(QBrush(colour))
        self.setToolTip(f"{buf['name']} ({buf['role']})\n{buf['bytes']:,} bytes at offset "
                        f"{buf['offset']:,}\nsteps {first}–{last}")
        self.setAcceptHoverEvents(True)

    def mousePressEvent(self, event):
        self.on_click(self.buf["name"])
        event.accept()


class MemoryPlanView(QWidget):
    buffer_clicked = Signal(str)  # document node id

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.report = None
        self.mode = QComboBox()
        self.mode.addItems(["training", "inference"])
        self.checkpoint = QComboBox()
        self.checkpoint.addItems(checkpoint_modes())
        self.schedule = QComboBox()
        self.schedule.addItems(["auto", "memory", "topo"])
        self.schedule.setToolTip("auto: memory-aware order when its peak is lower; "
                                 "memory: always the memory-aware greedy; topo: breadth-first")
        self.batch = QSpinBox(minimum=1, maximum=4096, value=64)
        self.summary = QLabel()
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "schedule step")
        self.plot.setLabel("left", "arena offset", units="KiB")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        bar = QHBoxLayout()
        for label, w in (("graph", self.mode), ("checkpointing", self.checkpoint),
                         ("schedule", self.schedule), ("batch", self.batch)):
            bar.addWidget(QLabel(label))
            bar.addWidget(w)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.summary)
        layout.addWidget(self.plot)
        self.rects: list[BufferRect] = []
        for w in (self.mode, self.checkpoint, self.schedule):
            w.currentTextChanged.connect(self.refresh)
        self.batch.valueChanged.connect(self.refresh)

    def refresh(self):
        from core.cli.plan import plan_report
        from core.errors import LoomError
        try:
            self.report = plan_report(self.doc, self.batch.value(), self.checkpoint.currentText(),
                                      self.mode.currentText() == "inference",
                                      self.schedule.currentText())
        except LoomError as exc:
            self.summary.setText(f"cannot plan this graph: {exc}")
            return
        self.draw(self.report)

    def draw(self, report):
        self.plot.clear()
        mem = report["memory"]
        self.rects = [BufferRect(b, self._clicked) for b in mem["buffers"]]
        for r in self.rects:
            self.plot.addItem(r)
        peak = pg.InfiniteLine(pos=mem["planned_bytes"] / KIB, angle=0,
                               pen=pg.mkPen("#ffd54f", width=2, style=Qt.DashLine),
                               label=f"arena {mem['planned_bytes'] / 2**20:.2f} MiB",
                               labelOpts={"position": 0.9, "color": "#ffd54f"})
        low = pg.InfiniteLine(pos=mem["lower_bound_bytes"] / KIB, angle=0,
                              pen=pg.mkPen("#81c784", width=1, style=Qt.DotLine),
                              label="lower bound", labelOpts={"position": 0.1, "color": "#81c784"})
        self.plot.addItem(peak)
        self.plot.addItem(low)
        self.plot.autoRange()
        self.summary.setText(
            f"{len(self.rects)} buffers · planned {mem['planned_bytes'] / 2**20:.2f} MiB · lower bound "
            f"{mem['lower_bound_bytes'] / 2**20:.2f} MiB · no sharing {mem['naive_bytes'] / 2**20:.2f} MiB")

    def _clicked(self, buffer_name):
        from core.compiler.report import layer_of
        node_id = layer_of(buffer_name, (self.report or {}).get("node_of", {}))
        if node_id:
            self.buffer_clicked.emit(node_id)


def checkpoint_modes():
    try:
        from core.compiler import CHECKPOINT_MODES
        return list(CHECKPOINT_MODES)
    except ImportError:
        return ["none"]
