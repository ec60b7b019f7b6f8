"""The palette's Blocks section: the graph's block definitions, then the blocks of the user's
library (core.block_library: $LOOM_BLOCKS_DIR or ~/.local/share/loom/blocks). Double-click
or drag one onto the canvas to add an instance (a library block is copied into the graph
first). Library files that cannot be read are listed, marked, with the reason, and said in
the status bar: one bad file hides nothing else."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QTreeWidgetItem

from core.block_library import library_dir, list_blocks

from . import block_actions, style
from .observe import observe
from .palette import BLOCK_ROLE

REFRESH_ON = ("block_added", "block_removed", "block_renamed", "reset")


class BlocksSection:
    def __init__(self, window):
        self.window, self.palette = window, window.palette
        self.group = QTreeWidgetItem(["Blocks"])
        self.group.setFlags(Qt.ItemIsEnabled)
        self.palette.tree.insertTopLevelItem(0, self.group)
        self.library: dict = {}  # name -> BlockDef, as last listed
        self.unreadable: list = []  # (file, message)
        observe(self.palette, window.document, self._on_event)
        self.palette.block_activated.connect(self.add_at_centre)
        window.view.block_dropped.connect(lambda key, at: self.add(key, (at.x(), at.y())))
        self.refresh()

    def _on_event(self, event, payload):
        if event in REFRESH_ON:
            self.refresh()

    def refresh(self):
        """List the graph's blocks and the library's again (after a save, a group, a load)."""
        self.group.takeChildren()
        for name, defn in self.window.document.blocks.items():
            self._item(name, f"doc:{name}", f"block of this graph: {len(defn.inputs())} in, "
                                            f"{len(defn.outputs())} out")
        defs, self.unreadable = list_blocks(library_dir())
        self.library = {d.name: d for d in defs}
        for defn in defs:
            self._item(f"{defn.name}  · library", f"lib:{defn.name}",
                       f"library block ({library_dir()}); adding one copies it into this graph")
        for path, message in self.unreadable:
            item = self._item(f"⚠ {path.name}", None, message)
            item.setForeground(0, QBrush(QColor(style.ERROR)))
        if self.unreadable:
            self.window.statusBar().showMessage(
                f"{len(self.unreadable)} block library file(s) could not be read: "
                + "; ".join(m for _, m in self.unreadable), 15000)
        self.group.setExpanded(True)
        self.palette.filter(self.palette.search.text())

    def _item(self, text, key, tooltip):
        item = QTreeWidgetItem(self.group, [text])
        item.setToolTip(0, tooltip)
        if key is None:
            item.setFlags(Qt.ItemIsEnabled)  # listed, not draggable
        else:
            item.setData(0, BLOCK_ROLE, key)
        return item

    def entries(self) -> list[str]:
        return [self.group.child(i).text(0) for i in range(self.group.childCount())]

    def add_at_centre(self, key):
        view = self.window.view
        centre = view.mapToScene(view.viewport().rect().center())
        return self.add(key, (centre.x(), centre.y()))

    def add(self, key, pos):
        source, _, name = key.partition(":")
        block = name if source == "doc" else self.library.get(name)
        if block is None or (source == "doc" and name not in self.window.document.blocks):
            self.window.statusBar().showMessage(f"no block {name!r} any more", 6000)
            return None
        return block_actions.add_block(self.window, source, block, pos)
