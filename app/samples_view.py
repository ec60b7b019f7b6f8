"""The Run panel's "Text samples" tab: what a text model writes after each epoch (the
trainer's `sample` events), newest at the bottom, in a fixed-width font so verse lines up."""
from __future__ import annotations

from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget


class SamplesView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.caption = QLabel("")
        self.caption.setObjectName("dim")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.text, 1)
        self.samples: list[dict] = []

    def add_sample(self, event: dict):
        self.samples.append(event)
        self.caption.setText(f"after epoch {event['epoch']}, from the prompt "
                             f"{event.get('prompt', '')!r} (temperature 0.8)")
        self.text.appendPlainText(f"── epoch {event['epoch']} ──\n{event['text']}\n")
        self.text.moveCursor(QTextCursor.End)

    def clear(self):
        self.samples.clear()
        self.caption.setText("")
        self.text.clear()
