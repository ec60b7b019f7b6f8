"""Autosave to a recovery file while there are unsaved changes; the next start after a
crash offers to restore it. A clean exit removes it."""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QTimer

from core import graphfile


def default_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)
    return Path(base or Path.home() / ".local" / "share" / "loom")


class Autosave(QObject):
    def __init__(self, window, directory=None, interval_ms=30_000):
        super().__init__(window)
        self.window = window
        self.dir = Path(directory) if directory else default_dir()
        self.timer = QTimer(self, interval=interval_ms, timeout=self.save_now)
        self.timer.start()

    @property
    def graph_path(self):
        return self.dir / "recovery.loom.json"

    @property
    def meta_path(self):
        return self.dir / "recovery.json"

    def save_now(self):
        if self.window.undo_stack.isClean():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        graphfile.save(self.window.document, self.graph_path)
        self.meta_path.write_text(json.dumps({"original": self.window.current_path}))

    def discard(self):
        for p in (self.graph_path, self.meta_path):
            p.unlink(missing_ok=True)

    def pending(self):
        """(recovered document, original path) if a previous session left one."""
        if not self.graph_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}
            return graphfile.load(self.graph_path), meta.get("original")
        except (graphfile.GraphFileError, ValueError):
            self.discard()
            return None
