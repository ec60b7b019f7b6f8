"""Training as a child process (`main.py train FILE --events -`) read through QProcess: a
crash in training never takes the editor down. JSON lines arrive in pieces, so stdout is
buffered until each newline."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, Signal

MAIN = Path(__file__).resolve().parents[1] / "main.py"


class TrainingProcess(QObject):
    event = Signal(dict)
    failed = Signal(str)  # a message the user should see
    finished = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.proc = None
        self._buffer = b""
        self._stderr = b""
        self._error_seen = False
        self.paused = False

    def start(self, graph_path, out_dir, extra_args=()):
        self.proc = QProcess(self)
        self.proc.setWorkingDirectory(str(MAIN.parent))
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._finished)
        self.proc.errorOccurred.connect(self._process_error)
        self._buffer, self._stderr, self._error_seen, self.paused = b"", b"", False, False
        args = [str(MAIN), "train", str(graph_path), "--events", "-", "--out", str(out_dir), *extra_args]
        self.proc.start(sys.executable, args)

    def running(self):
        return self.proc is not None and self.proc.state() != QProcess.NotRunning

    def pause(self, paused: bool):
        if self.running():
            os.kill(self.proc.processId(), signal.SIGSTOP if paused else signal.SIGCONT)
            self.paused = paused

    def stop(self):
        """SIGTERM: the child finishes its step, saves a checkpoint and exits (130)."""
        if self.running():
            if self.paused:
                self.pause(False)
            os.kill(self.proc.processId(), signal.SIGTERM)

    def _read_stdout(self):
        self._buffer += bytes(self.proc.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._handle_line(line)

    def _handle_line(self, line):
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return  # not ours (a stray print): ignore rather than crash the editor
        if event.get("event") == "error":
            self._error_seen = True
            self.failed.emit(event.get("message", "training failed"))
        self.event.emit(event)

    def _read_stderr(self):
        self._stderr += bytes(self.proc.readAllStandardError())

    def _finished(self, code, status):
        self._read_stdout()
        if (code not in (0, 130) or status == QProcess.CrashExit) and not self._error_seen:
            tail = self._stderr.decode(errors="replace").strip().splitlines()[-4:]
            self.failed.emit("\n".join(tail) or f"training exited with code {code}")
        self.finished.emit(code)

    def _process_error(self, error):
        if error == QProcess.FailedToStart:
            self.failed.emit(f"could not start {sys.executable} {MAIN}")
