"""Loom's editor: PySide6 + pyqtgraph views over core's document model."""
