"""The memory-plan view: the compiler's buffer table as rectangles (x = schedule steps the
buffer lives, y = its byte range in the arena), coloured by role, with the planned arena, the
lower bound and the peak step marked; parameters and optimizer state (their own allocations,
alive across steps) are stacked above the arena. Buffers can instead be coloured by the
block (top-level instance) their node is in. Clicking a buffer selects its node. The view
re-plans when it is shown after the graph or the training settings changed."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import (QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel, QSpinBox,
                               QVBoxLayout, QWidget)

from core.compiler import CHECKPOINT_MODES
from core.blocks import TOP_LEVEL, block_of
from core.compiler.report import layer_of
from core.errors import LoomError
from core.settings import training_config
from core.step import plan_report

from .observe import observe

ROLE_COLOURS = {"activation": "#4fc3f7", "gradient": "#ef5350", "workspace": "#9e9e9e",
                "bucket": "#81c784", "parameter": "#ba68c8", "optimizer": "#ffb74d"}
ROLE_NAMES = {"optimizer": "optimizer state", "bucket": "allreduce bucket"}
KIB = 1024
BLOCK_COLOURS = ["#4fc3f7", "#ffb74d", "#ba68c8", "#81c784", "#f06292", "#fff176", "#4db6ac",
                 "#a1887f", "#7986cb", "#e57373"]  # one per block, in document order
UNKNOWN = "(no node)"  # a buffer the plan does not attribute to a node (most gradients)


def legend_html(colours=None) -> str:
    colours = colours or {ROLE_NAMES.get(r, r): c for r, c in ROLE_COLOURS.items()}
    return " ".join(f'<span style="color:{c}">■</span> {name}&nbsp;&nbsp;' for name, c in colours.items())


def block_colours(blocks) -> dict:
    """{block or "(top level)": colour}; buffers of no known node are grey."""
    colours = {b: BLOCK_COLOURS[i % len(BLOCK_COLOURS)] for i, b in enumerate(blocks)}
    return {**colours, TOP_LEVEL: "#cfd8dc", UNKNOWN: "#5f6368"}


class BufferRect(QGraphicsRectItem):
    def __init__(self, buf, on_click, colour=None):
        first, last = buf["first"], buf["last"]
        super().__init__(QRectF(first, buf["offset"] / KIB, last - first + 1, max(buf["bytes"], 1) / KIB))
        self.buf, self.on_click = buf, on_click
        colour = QColor(colour or ROLE_COLOURS.get(buf["role"], "#9e9e9e"))
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
        self.colour_by = QComboBox()
        self.colour_by.addItems(["role", "block"])
        self.colour_by.setToolTip("block: each buffer in the colour of the block its node is in")
        self.summary = QLabel()
        self.legend = QLabel(legend_html())
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "schedule step")
        self.plot.setLabel("left", "offset (KiB)")
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # no "kKiB"
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        bar = QHBoxLayout()
        for label, w in (("graph", self.mode), ("checkpointing", self.checkpoint),
                         ("schedule", self.schedule), ("batch", self.batch), ("colour", self.colour_by)):
            bar.addWidget(QLabel(label))
            bar.addWidget(w)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.summary)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot)
        self.rects: list[BufferRect] = []  # arena buffers
        self.persistent_rects: list[BufferRect] = []  # parameters and optimizer state
        for w in (self.mode, self.checkpoint, self.schedule):
            w.currentTextChanged.connect(self._on_doc_event)
        self.batch.valueChanged.connect(self._on_doc_event)
        self.colour_by.currentTextChanged.connect(lambda *_: self.report and self.draw(self.report))
        self.stale = True
        self._replan = QTimer(self, singleShot=True, interval=300, timeout=self._refresh_if_visible)
        observe(self, doc, self._on_doc_event)

    def _on_doc_event(self, *_):
        """Edits and settings make the plan stale; a visible view re-plans once they settle
        (a hidden one when it is next shown)."""
        self.stale = True
        self._replan.start()

    def _refresh_if_visible(self):
        if self.isVisible():
            self.refresh()

    def showEvent(self, event):
        super().showEvent(event)
        if self.stale:
            self.refresh()

    def refresh(self):
        self.stale = False
        try:
            self.report = plan_report(self.doc, self.batch.value(), self.checkpoint.currentText(),
                                      self.mode.currentText() == "inference",
                                      self.schedule.currentText(), self._procs())
        except LoomError as exc:
            self.summary.setText(f"cannot plan this graph: {exc}")
            return
        self.draw(self.report)

    def _procs(self) -> int:
        """Data-parallel runs plan one rank's step (its share of the batch, the buckets)."""
        try:
            return training_config(self.doc).get("procs", 1)
        except LoomError:
            return 1

    def draw(self, report):
        self.plot.clear()
        mem = report["memory"]
        colour = self._colouring(report)
        self.rects = [BufferRect(b, self._clicked, colour(b)) for b in mem["buffers"]]
        self.persistent_rects = [BufferRect(b, self._clicked, colour(b))
                                 for b in persistent_layout(report.get("persistent", []), mem)]
        for r in self.rects + self.persistent_rects:
            self.plot.addItem(r)
        step, live = peak_step(mem["buffers"])
        self.plot.addItem(pg.InfiniteLine(pos=step + 0.5, angle=90,
                                          pen=pg.mkPen("#ffd54f", width=1, style=Qt.DotLine),
                                          label=f"peak: step {step}", labelOpts={"position": 0.95}))
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
        kept = {role: sum(b["bytes"] for b in report.get("persistent", []) if b["role"] == role)
                for role in ("parameter", "optimizer")}
        self.summary.setText(
            f"{len(self.rects)} buffers · arena {mib(mem['planned_bytes'])} (lower bound "
            f"{mib(mem['lower_bound_bytes'])}, no sharing {mib(mem['naive_bytes'])}) · "
            f"parameters {mib(kept['parameter'])} · optimizer state {mib(kept['optimizer'])}"
            + "".join(f"\n{note}" for note in report.get("notes", ())))

    def _colouring(self, report):
        """Buffer -> colour (None: by role), and the legend to match."""
        if self.colour_by.currentText() != "block":
            self.legend.setText(legend_html())
            return lambda buf: None
        blocks = {n.id: n.attrs.get("block") for n in self.doc.nodes.values() if n.kind == "Block"}
        colours = block_colours(blocks)
        owner = lambda buf: buffer_block(buf, report.get("node_of", {}), set(blocks))  # noqa: E731
        used = {owner(b) for b in report["memory"]["buffers"] + report.get("persistent", [])}
        self.legend.setText(legend_html({(f"{k} ({blocks[k]})" if k in blocks else k): c
                                         for k, c in colours.items() if k in used or k in blocks}))
        return lambda buf: colours[owner(buf)]

    def _clicked(self, buffer_name):
        persistent = {b["name"]: b["node"] for b in (self.report or {}).get("persistent", [])}
        node_id = persistent.get(buffer_name) or layer_of(buffer_name, (self.report or {}).get("node_of", {}))
        if node_id:
            self.buffer_clicked.emit(node_id)


def buffer_block(buf, node_of, instances) -> str:
    """The top-level instance a buffer belongs to, "(top level)", or "(no node)". A buffer of
    no known node whose name is under an instance's path (an update's scratch space,
    `stage1/conv1.weight.update/tmp`) is that instance's."""
    node = buf.get("node") or layer_of(buf["name"], node_of)
    if node:
        return block_of(node) or TOP_LEVEL
    head = buf["name"].split("/")[0]
    return head if head in instances else UNKNOWN


def mib(n) -> str:
    return f"{n / 2**20:.2f} MiB"


def persistent_layout(rows, mem) -> list[dict]:
    """Parameters and optimizer state as buffers spanning every step, stacked above the arena
    (a small gap marks that they are separate allocations)."""
    steps = max((b["last"] for b in mem["buffers"]), default=0)
    offset = mem["planned_bytes"] + max(mem["planned_bytes"] // 25, KIB)
    out = []
    for row in rows:
        out.append({**row, "first": 0, "last": steps, "offset": offset})
        offset += row["bytes"]
    return out


def peak_step(buffers) -> tuple[int, int]:
    """The schedule step with the most live arena bytes, and those bytes."""
    last = max((b["last"] for b in buffers), default=0)
    live = [0] * (last + 2)
    for b in buffers:
        live[b["first"]] += b["bytes"]
        live[b["last"] + 1] -= b["bytes"]
    best, total, best_live = 0, 0, -1
    for step in range(last + 1):
        total += live[step]
        if total > best_live:
            best, best_live = step, total
    return best, best_live


def checkpoint_modes():
    return list(CHECKPOINT_MODES)
