"""The run panel: hyperparameters (saved into the graph's training section), Train / Pause /
Stop of a child training process, progress, errors, and tabs with the live plots, the
memory-plan view and the profile."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSizePolicy, QSpinBox, QTabWidget,
                               QVBoxLayout, QWidget)

from core import backend as backends, graphfile
from core.generate import is_text_model
from core.layers import analyze
from core.settings import choices, training_config

from . import commands
from .block_commands import restoring
from .observe import observe
from .memory_view import MemoryPlanView
from .plots import LivePlots
from .profile_view import ProfileView
from .samples_view import SamplesView
from .training_process import TrainingProcess



class RunPanel(QWidget):
    def __init__(self, doc, undo_stack=None, window=None, parent=None):
        super().__init__(parent)
        self.doc, self.stack, self.window = doc, undo_stack, window
        self.process = TrainingProcess(self)
        self.plots = LivePlots()
        self.memory = MemoryPlanView(doc)
        self.profile = ProfileView(doc, on_heat=getattr(window, "set_node_heat", None))
        self.run_dir = None
        self.graph_path = None
        self._build_form()
        self._build_controls()
        tabs = QTabWidget()
        tabs.addTab(self.plots, "Live plots")
        tabs.addTab(self.memory, "Memory plan")
        tabs.addTab(self.profile, "Profile")
        self.tabs = tabs
        self.samples = SamplesView()  # a tab only while a text model is open or sampled
        self._show_samples_tab(is_text_model(doc))
        left = QVBoxLayout()
        left.addLayout(self.form)
        left.addLayout(self.buttons)
        left.addWidget(self.progress)
        left.addWidget(self.progress_label)
        folder_row = QHBoxLayout()  # one row: the settings column must not push the canvas up
        folder_row.addWidget(self.folder_label, 1)
        folder_row.addWidget(self.open_folder)
        left.addLayout(folder_row)
        left.addWidget(self.message)
        left.addStretch(1)
        settings = QWidget()  # narrow, so the plots get the width
        settings.setLayout(left)
        settings.setMaximumWidth(340)
        layout = QHBoxLayout(self)
        layout.addWidget(settings, 0)
        layout.addWidget(tabs, 1)
        self.process.event.connect(self.on_event)
        self.process.failed.connect(self.show_error)
        self.process.finished.connect(self.on_finished)
        self.memory.buffer_clicked.connect(lambda n: window and window.select_node(n))
        # the memory plan's checkpointing is the training setting, edited from either place
        self.memory.checkpoint.currentTextChanged.connect(self._checkpoint_from_plan)
        observe(self, doc, self._on_doc_event)
        self.load_training()

    # ---- hyperparameter form ------------------------------------------------------------
    def _build_form(self):
        self.form = QFormLayout()
        self.fields = {
            "optimizer": QComboBox(), "lr": QLineEdit(), "batch_size": QSpinBox(minimum=1, maximum=65536),
            "epochs": QSpinBox(minimum=1, maximum=100000), "backend": QComboBox(), "checkpoint": QComboBox(),
            "procs": QSpinBox(minimum=1, maximum=64)}
        allowed = choices()
        for key in ("optimizer", "backend", "checkpoint"):
            fill_choices(self.fields[key], allowed[key])
        labels = {"lr": "learning rate", "batch_size": "batch size", "checkpoint": "checkpointing",
                  "procs": "processes"}
        self.fields["procs"].setToolTip("data-parallel: this many MPI processes share each batch")
        for key, w in self.fields.items():
            self.form.addRow(labels.get(key, key), w)
            signal = getattr(w, "currentTextChanged", None) or getattr(w, "valueChanged", None) \
                or w.editingFinished
            signal.connect(self.save_training)

    def load_training(self):
        cfg = training_config(self.doc)
        self._loading = True
        for key, w in self.fields.items():
            value = cfg.get(key)
            if isinstance(w, QComboBox):
                w.setCurrentIndex(max(0, w.findData(str(value))))
            elif isinstance(w, QSpinBox):
                w.setValue(int(value))
            else:
                w.setText(f"{value:g}")
        self.memory.batch.setValue(int(cfg.get("batch_size", 64)))  # plan what training runs
        self.memory.checkpoint.setCurrentText(str(cfg.get("checkpoint", "none")))  # one setting
        self._loading = False

    def form_values(self):
        values = {}
        for key, w in self.fields.items():
            values[key] = (w.currentData() if isinstance(w, QComboBox)
                           else w.value() if isinstance(w, QSpinBox) else float(w.text()))
        return values

    def save_training(self, *_):
        if getattr(self, "_loading", False):
            return
        try:
            values = self.form_values()
        except ValueError:
            return self.show_error(f"learning rate: {self.fields['lr'].text()!r} is not a number")
        if values["lr"] <= 0:
            return self.show_error("learning rate must be positive")
        effective = training_config(self.doc)  # the file's settings over the defaults
        changed = {k: v for k, v in values.items() if effective.get(k) != v}
        if changed:  # only what the user changed: showing a default writes nothing
            cmd = commands.SetTraining(self.doc, {**self.doc.training, **changed})
            self.stack.push(cmd) if self.stack is not None else cmd.redo()

    def _checkpoint_from_plan(self, mode):
        combo = self.fields["checkpoint"]
        if combo.currentData() != mode and combo.findData(mode) >= 0:
            combo.setCurrentIndex(combo.findData(mode))  # saves it like any settings edit

    def _on_doc_event(self, event, payload):
        if event in ("training_changed", "reset"):
            self.load_training()
        if event == "reset" and not restoring():  # another graph: its runs and timings were the old one's
            self.plots.clear_runs(keep_current=self.process.running())
            self.profile.clear_times()
            self.samples.clear()
        if event in ("reset", "node_added", "node_removed"):
            self._show_samples_tab(is_text_model(self.doc) or bool(self.samples.samples))

    def _show_samples_tab(self, show):
        index = self.tabs.indexOf(self.samples)
        if show and index < 0:
            self.tabs.addTab(self.samples, "Text samples")
        elif not show and index >= 0:
            self.tabs.removeTab(index)

    # ---- run controls ---------------------------------------------------------------------
    def _build_controls(self):
        self.train_button, self.pause_button = QPushButton("Train"), QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.export_png, self.export_csv = QPushButton("Export PNG"), QPushButton("Export CSV")
        self.clear_button = QPushButton("Clear runs")
        self.buttons = QVBoxLayout()  # run controls, then what to do with the results
        controls = QHBoxLayout()
        for b in (self.train_button, self.pause_button, self.stop_button):
            controls.addWidget(b)
        self.buttons.addLayout(controls)
        self.progress = QProgressBar()
        self.progress_label = QLabel("idle")
        self.folder_label = QLabel("")  # where the current run writes (set at Train)
        self.folder_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.folder_label.setObjectName("dim")
        self.folder_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # clip long paths
        self.open_folder = QPushButton("Open folder")
        self.open_folder.setEnabled(False)
        self.open_folder.clicked.connect(self.open_run_folder)
        self.message = QLabel()
        self.message.setObjectName("error")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.message.hide()  # shown with an error only
        self.train_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.process.stop)
        self.clear_button.clicked.connect(lambda: self.plots.clear_runs(keep_current=self.process.running()))
        self.export_png.clicked.connect(lambda: self._export("png"))
        self.export_csv.clicked.connect(lambda: self._export("csv"))
        extra = QHBoxLayout()
        for b in (self.export_png, self.export_csv, self.clear_button):
            extra.addWidget(b)
        self.buttons.addLayout(extra)
        self._set_running(False)

    def _set_running(self, running):
        self.train_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)

    def start(self):
        """Save the graph to a run directory and start `main.py train` on it."""
        if self.process.running() or not self._trainable():
            return
        self.save_training()
        self.run_dir = new_run_folder(self.runs_root(), self.doc.name)
        self.graph_path = self.run_dir / "graph.loom.json"  # what this run trained, kept with it
        graphfile.save(self.doc, self.graph_path)
        self.folder_label.setText(f"run folder: {self.run_dir}")
        self.folder_label.setToolTip(str(self.run_dir))
        self.open_folder.setEnabled(True)
        cfg = training_config(self.doc)
        self.total_steps, self.speed = None, None
        self.epochs = cfg["epochs"]
        self.started = time.time()
        self.message.clear()
        self.message.hide()
        self.plots.new_run(f"run {len(self.plots.runs) + 1}")
        self.progress.setValue(0)
        self.progress_label.setText("starting…")
        self.process.start(self.graph_path, self.run_dir)
        self._set_running(True)

    def _trainable(self) -> bool:
        """An invalid graph is not sent to training: say why in node terms and show it."""
        problems = analyze(self.doc).problems
        if not problems:
            return True
        more = f" (and {len(problems) - 1} more in the Problems panel)" if len(problems) > 1 else ""
        self.show_error(f"cannot train: {problems[0]}{more}")
        if self.window is not None:
            self.window.show_problems()
            if problems[0].node_id:
                self.window.select_node(problems[0].node_id)
        return False

    def toggle_pause(self):
        self.process.pause(not self.process.paused)
        self.pause_button.setText("Resume" if self.process.paused else "Pause")

    def on_event(self, event):
        self.plots.add_event(event)
        kind = event["event"]
        if kind == "step":
            self._progress(event)
        elif kind == "epoch" and self.total_steps is None:
            self.total_steps = event["step"] * self.epochs
        elif kind == "sample":
            self._show_samples_tab(True)
            self.samples.add_sample(event)
        elif kind == "done":
            loss = event.get("val_loss")
            self.progress_label.setText(
                f"{event['status']}: {event['epochs']} epochs, val acc "
                f"{(event.get('val_accuracy') or 0):.3f}"
                + ("" if loss is None else f", val loss {loss:.3f}")
                + f" in {event['seconds']:.1f}s"
                + (f" on {event['backend']}" if event.get("backend") else ""))

    def _progress(self, e):
        speed = e["samples_per_s"]
        self.speed = speed if self.speed is None else 0.95 * self.speed + 0.05 * speed
        elapsed = time.time() - self.started
        total = self.total_steps or e["step"] * self.epochs / max(e["epoch"] - 0.5, 0.5)
        fraction = min(e["step"] / max(total, 1), 1.0)
        self.progress.setValue(int(100 * fraction))
        remaining = elapsed * (1 - fraction) / fraction if fraction > 0 else 0
        self.progress_label.setText(f"epoch {e['epoch']}/{self.epochs} · step {e['step']} · "
                                    f"{self.speed:,.0f} samples/s · {remaining:.0f}s left")

    def on_finished(self, code):
        self._set_running(False)
        self.pause_button.setText("Pause")
        if code == 0:
            self.progress.setValue(100)

    def show_error(self, message):
        self.message.setText(message)
        self.message.setVisible(bool(message))
        if self.window is not None:
            self.window.statusBar().showMessage(f"Training failed: {message.splitlines()[0]}", 10000)

    @property
    def checkpoint_path(self):
        return None if self.run_dir is None else self.run_dir / "checkpoint.npz"

    def runs_root(self) -> Path:
        """runs/ beside the saved graph file; for an unsaved graph the user's Loom folder
        (settings key "runs/folder" overrides it)."""
        path = getattr(self.window, "current_path", None)
        if path:
            return Path(path).resolve().parent / "runs"
        settings = getattr(self.window, "settings", None)
        override = settings.value("runs/folder") if settings is not None else None
        return Path(override) if override else user_runs_folder()

    def open_run_folder(self):
        if self.run_dir is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.run_dir)))

    def _export(self, kind):
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"metrics.{kind}")
        if path:
            (self.plots.export_png if kind == "png" else self.plots.export_csv)(path)


def install(window):
    """Called by MainWindow: the panel docks at the bottom and the Train action starts it."""
    panel = RunPanel(window.document, window.undo_stack, window)
    window.run_panel = panel
    dock = window.add_dock(panel, "Run", Qt.BottomDockWidgetArea)
    window.resizeDocks([dock], [300], Qt.Vertical)  # the canvas keeps most of the height
    window.train_action.triggered.connect(panel.start)
    return panel


def fill_choices(combo, values):
    """One item per allowed value (its data); a backend that cannot run here is listed,
    disabled, with the reason ("cupy (no GPU found)")."""
    for value in values:
        usable = value == "auto" or value not in backends.names() or backends.available(value)
        combo.addItem(value if usable else f"{value} (no GPU found)", value)
        if not usable:
            combo.model().item(combo.count() - 1).setEnabled(False)


def user_runs_folder() -> Path:
    """Runs of unsaved graphs: the platform's per-user data folder, e.g.
    ~/.local/share/Loom/runs on Linux."""
    base = QStandardPaths.writableLocation(QStandardPaths.AppLocalDataLocation)
    return Path(base or Path.home() / ".loom") / "runs"


def new_run_folder(root, graph_name) -> Path:
    """root/<graph>/<timestamp>: a fresh folder per run, never an earlier run's."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    folder = Path(root) / (graph_name or "untitled") / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = folder.with_name(f"{stamp}_{suffix}")
    folder.mkdir(parents=True)
    return folder
