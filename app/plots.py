"""Live plots: loss (per step, smoothed, validation per epoch), accuracy, samples/s and
memory. Events append to plain lists; a timer on the GUI thread redraws with downsampling,
so long runs stay smooth. Earlier runs stay overlaid, faded, for comparison."""
from __future__ import annotations

import csv

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QListView, QListWidget, QListWidgetItem,
                               QSizePolicy, QVBoxLayout, QWidget)

pg.setConfigOptions(antialias=True, background="#1e1f22", foreground="#c8c8c8")

COLOURS = {"loss": "#4fc3f7", "smooth": "#ffffff", "val": "#ffb74d", "acc": "#81c784",
           "val_acc": "#ffb74d", "speed": "#ba68c8", "planned": "#4fc3f7", "lower": "#81c784",
           "rss": "#ef5350", "device": "#fff176"}


STEP_SERIES = ("step", "loss", "accuracy", "samples_per_s", "planned", "lower", "rss", "device")


class RunData:
    """Everything one run reported, as growing lists."""

    def __init__(self, label):
        self.label = label
        self.step = {k: [] for k in STEP_SERIES}
        self.epoch = {k: [] for k in ("step", "epoch", "val_loss", "val_accuracy", "loss", "accuracy")}

    def add(self, e):
        if e["event"] == "step":
            mem = e.get("memory", {})
            for key, value in (("step", e["step"]), ("loss", e["loss"]), ("accuracy", e.get("accuracy", np.nan)),
                               ("samples_per_s", e.get("samples_per_s", np.nan)),
                               ("planned", mem.get("planned_bytes", np.nan)),
                               ("lower", mem.get("lower_bound_bytes", np.nan)),
                               ("rss", mem.get("rss_bytes", np.nan)),
                               # on a GPU: what the device's memory pool holds (arena included)
                               ("device", mem.get("device_used_bytes", np.nan))):
                self.step[key].append(value)
        elif e["event"] == "epoch":
            for key in self.epoch:
                value = e.get(key)
                self.epoch[key].append(np.nan if value is None else value)

    def smoothed(self, key, alpha=0.1):
        """Exponential moving average: per-step values are noisy (timer jitter, batches)."""
        out, acc = [], None
        for v in self.step[key]:
            acc = v if acc is None else (1 - alpha) * acc + alpha * v
            out.append(acc)
        return out


PLOTS = (("loss", "Loss", ""), ("accuracy", "Accuracy", ""),
         ("speed", "Throughput", "samples/s"), ("memory", "Memory", "MiB"))


def _plot(title, unit):
    """A plot whose legend sits below its axes, outside the data."""
    w = pg.PlotWidget(title=title)
    # four side by side share the width equally, whatever their legends would like
    w.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Expanding)
    w.showGrid(x=True, y=True, alpha=0.2)
    w.setLabel("bottom", "step")
    if unit:
        w.setLabel("left", unit)
        w.getAxis("left").enableAutoSIPrefix(False)  # no "(x0.001)" on an empty plot
    item = w.getPlotItem()
    legend = pg.LegendItem(colCount=2, labelTextSize="7pt", verSpacing=-8, horSpacing=6)
    item.layout.addItem(legend, 4, 1)  # the row under the bottom axis
    item.legend = legend  # plot(name=…) entries go there
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    return w


class LivePlots(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.plots = {name: _plot(title, unit) for name, title, unit in PLOTS}
        row = QHBoxLayout()  # side by side: each plot gets the panel's full height
        for w in self.plots.values():
            row.addWidget(w)
        self.log_loss = QCheckBox("log-scale loss")
        self.log_loss.toggled.connect(lambda on: self.plots["loss"].setLogMode(y=on))
        self.run_list = QListWidget()  # one checkbox per run: show or hide its curves
        self.run_list.setFlow(QListView.LeftToRight)
        self.run_list.setFixedHeight(28)
        self.run_list.itemChanged.connect(self._run_toggled)
        bar = QHBoxLayout()
        bar.addWidget(self.log_loss)
        bar.addWidget(self.run_list, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addLayout(row, 1)
        self.runs: list[RunData] = []
        self.curves = {}
        self.hints = {}
        self._show_hints()
        self.timer = QTimer(self, interval=200, timeout=self.redraw)
        self.timer.start()
        self._dirty = False

    @property
    def current(self):
        return self.runs[-1] if self.runs else None

    def new_run(self, label):
        for (_, plot, _), curve in self.curves.items():  # fade the previous runs
            pen = curve.opts["pen"]
            colour = pg.mkColor(pen.color() if hasattr(pen, "color") else pen)
            colour.setAlpha(70)
            curve.setPen(pg.mkPen(colour, width=1))
            self.plots[plot].getPlotItem().legend.removeItem(curve)  # the legend: this run
        self.runs.append(RunData(label))
        self._list_run(self.runs[-1])
        self._dirty = True

    def _list_run(self, run):
        item = QListWidgetItem(run.label)
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked)
        item.setData(Qt.UserRole, id(run))
        self.run_list.addItem(item)

    def _run_toggled(self, item):
        shown = item.checkState() == Qt.Checked
        for (run, _, _), curve in self.curves.items():
            if id(run) == item.data(Qt.UserRole):
                curve.setVisible(shown)

    def run_shown(self, label) -> bool:
        items = self.run_list.findItems(label, Qt.MatchExactly)
        return bool(items) and items[0].checkState() == Qt.Checked

    def add_event(self, event):
        if self.current is None:
            self.new_run("run 1")
        self.current.add(event)
        self._dirty = True

    def clear_runs(self, keep_current=False):
        """Forget the runs (all of them, or all but the one still training)."""
        kept = self.runs[-1:] if keep_current else []
        for w in self.plots.values():
            w.clear()
        self.runs, self.curves = kept, {}
        self.run_list.clear()
        for run in kept:
            self._list_run(run)
        self._dirty = bool(kept)
        if kept:
            self.redraw()
        else:
            self._show_hints()

    def _show_hints(self):
        """Empty plots say what fills them instead of showing bare 0..1 axes."""
        for name, w in self.plots.items():
            hint = pg.TextItem("press Train to watch a run", color="#8a8d93", anchor=(0.5, 0.5))
            hint.setPos(0.5, 0.5)
            w.addItem(hint)
            self.hints[name] = hint

    def _hide_hints(self):
        for name, hint in self.hints.items():
            self.plots[name].removeItem(hint)
        self.hints = {}

    def _curve(self, run, key, plot, colour, symbol=None, width=2):
        """The curve named `key` on `plot` for `run` (names repeat across plots: "smoothed")."""
        if (run, plot, key) not in self.curves:
            name = key
            pen = None if symbol and width == 0 else pg.mkPen(colour, width=width)
            self.curves[(run, plot, key)] = self.plots[plot].plot(
                name=name, pen=pen, symbol=symbol, symbolBrush=colour if symbol else None, symbolSize=7)
        return self.curves[(run, plot, key)]

    def redraw(self):
        if not self._dirty or self.current is None:
            return
        self._dirty = False
        self._hide_hints()
        run = self.current
        s, e = run.step, run.epoch
        steps = np.asarray(s["step"], dtype=float)
        self._curve(run, "loss", "loss", COLOURS["loss"], width=1).setData(steps, s["loss"])
        self._curve(run, "smoothed", "loss", COLOURS["smooth"]).setData(steps, run.smoothed("loss"))
        self._curve(run, "val_loss", "loss", COLOURS["val"], symbol="o").setData(e["step"], e["val_loss"])
        self._curve(run, "train", "accuracy", COLOURS["acc"]).setData(steps, s["accuracy"])
        self._curve(run, "val", "accuracy", COLOURS["val_acc"], symbol="o").setData(e["step"], e["val_accuracy"])
        self._curve(run, "samples/s", "speed", COLOURS["speed"], width=1).setData(steps, s["samples_per_s"])
        self._curve(run, "smoothed", "speed", COLOURS["smooth"]).setData(steps, run.smoothed("samples_per_s", 0.05))
        mib = lambda k: np.asarray(s[k], dtype=float) / 2 ** 20  # noqa: E731
        self._curve(run, "planned arena", "memory", COLOURS["planned"]).setData(steps, mib("planned"))
        self._curve(run, "lower bound", "memory", COLOURS["lower"]).setData(steps, mib("lower"))
        self._curve(run, "process", "memory", COLOURS["rss"]).setData(steps, mib("rss"))
        if np.isfinite(mib("device")).any():
            self._curve(run, "device pool", "memory", COLOURS["device"]).setData(steps, mib("device"))

    def point_count(self, plot):
        return sum(len(c.getData()[0] if c.getData()[0] is not None else [])
                   for c in self.curves.values() if c in self.plots[plot].getPlotItem().items)

    def export_png(self, path):
        return self.grab().save(str(path))

    def export_csv(self, path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["run", "step", "loss", "accuracy", "samples_per_s", "planned_bytes",
                        "lower_bound_bytes", "rss_bytes", "device_used_bytes"])
            for run in self.runs:
                cols = [run.step[k] for k in STEP_SERIES]
                for row in zip(*cols):
                    w.writerow([run.label, *row])
