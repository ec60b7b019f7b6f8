"""Going into blocks and back out, as in Blender's node groups: double-click an instance card
(or Tab with one selected) to edit its block's inside; a breadcrumb bar above the canvas
(`graph › stage1 (Stage)`) shows where the canvas is, and its items, "‹ Up" and Escape go
back up, to the view left there, with the instance selected. A block used by several
instances asks first whether edits should change all of them or only this one."""
from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QToolButton, QVBoxLayout, QWidget

from . import block_actions
from .block_commands import restoring
from .canvas.levels import Level
from .observe import observe

EDIT_ALL, MAKE_UNIQUE, CANCEL = "Edit all", "Make this one unique", "Cancel"


def choose(parent, title, text, buttons) -> str:
    """A question with named buttons; returns the text of the one pressed."""
    box = QMessageBox(QMessageBox.Question, title, text, parent=parent)
    roles = [QMessageBox.AcceptRole] + [QMessageBox.ActionRole] * (len(buttons) - 2) + [QMessageBox.RejectRole]
    made = [box.addButton(b, role) for b, role in zip(buttons, roles)]
    box.setDefaultButton(made[0])
    box.setEscapeButton(made[-1])
    box.exec()
    return buttons[made.index(box.clickedButton())] if box.clickedButton() in made else buttons[-1]


class Breadcrumbs(QWidget):
    """‹ Up, then one button per level (the current one bold and inert), and a note when the
    block shown is shared."""
    level_chosen = Signal(int)  # depth: 0 is the graph

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("breadcrumbs")
        self.up = QToolButton(text="‹ Up")
        self.up.setToolTip("Back to the level above (Escape)")
        self.up.clicked.connect(lambda: self.level_chosen.emit(len(self.labels) - 2))
        self.crumbs = QHBoxLayout()
        self.crumbs.setSpacing(2)
        self.note = QLabel()
        self.note.setObjectName("hint")
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 3, 6, 3)
        row.addWidget(self.up)
        row.addSpacing(8)
        row.addLayout(self.crumbs)
        row.addStretch(1)
        row.addWidget(self.note)
        self.labels: list[str] = []
        self.buttons: list[QToolButton] = []

    def show_levels(self, labels, note=""):
        self.labels = list(labels)
        while self.crumbs.count():
            item = self.crumbs.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.buttons = []
        for depth, label in enumerate(labels):
            if depth:
                self.crumbs.addWidget(QLabel("›"))
            button = QToolButton(text=label)
            button.setAutoRaise(True)
            current = depth == len(labels) - 1
            button.setEnabled(not current)
            if current:
                button.setStyleSheet("font-weight: bold")
            button.clicked.connect(lambda _=False, d=depth: self.level_chosen.emit(d))
            self.crumbs.addWidget(button)
            self.buttons.append(button)
        self.note.setText(note)
        self.setVisible(len(labels) > 1)  # at the top level the canvas takes all the room

    def text(self) -> str:
        return " › ".join(self.labels)


class Navigator(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window, self.scene, self.view = window, window.scene, window.view
        self.choose = choose  # injectable so tests answer the shared-block question
        self.agreed: set[str] = set()  # blocks the user chose to edit for all their instances
        self.views: dict = {}  # depth -> (transform, centre) the view had when left
        self.bar = Breadcrumbs()
        self._place_bar()
        self.up_action = QAction("Up a Level", self.view)
        self.up_action.setShortcut(QKeySequence(Qt.Key_Escape))
        self.up_action.setShortcutContext(Qt.WidgetWithChildrenShortcut)  # the canvas's Escape
        self.up_action.triggered.connect(self.up)
        self.view.addAction(self.up_action)
        self.bar.level_chosen.connect(self.go_to)
        self.scene.level_changed.connect(self._level_changed)
        self.scene.node_activated.connect(self.activate)
        observe(self, window.document, self._on_event)
        self._level_changed()

    def _on_event(self, event, payload):
        if event == "reset" and not restoring():  # another graph: its blocks were never agreed to
            self.agreed.clear()
            self.views.clear()

    def _place_bar(self):
        view = self.window.takeCentralWidget()
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.bar)
        column.addWidget(view)
        self.window.setCentralWidget(box)

    @property
    def path(self):
        return self.scene.levels.path

    # ---- entering -----------------------------------------------------------------------------
    def activate(self, node_id):
        """A card double-clicked: an instance is entered (other cards: nothing)."""
        if block_actions.block_of_instance(self.window, node_id) is not None:
            self.enter(node_id)

    def enter(self, instance_id) -> bool:
        name = block_actions.block_of_instance(self.window, instance_id)
        if name is None or name not in self.window.document.blocks:
            self.window.statusBar().showMessage(f"{instance_id}: no block {name!r} to enter", 6000)
            return False
        count = block_actions.users(self.window, name)
        if count > 1 and name not in self.agreed:
            answer = self.choose(self.window, "Edit a shared block",
                                 f"Block {name} is used by {count} nodes: edits change all of them",
                                 [EDIT_ALL, MAKE_UNIQUE, CANCEL])
            if answer == CANCEL:
                return False
            if answer == MAKE_UNIQUE and block_actions.make_unique(self.window, instance_id) is None:
                return False
            if answer == EDIT_ALL:
                self.agreed.add(name)
        self._remember_view()
        self.scene.enter(instance_id)
        self.view.frame_all()
        return True

    def tab(self):
        """Tab on the canvas: enter the one selected instance; inside a block with nothing
        selected, go back up; otherwise the node search."""
        ids = self.scene.selected_node_ids()
        if len(ids) == 1 and block_actions.block_of_instance(self.window, ids[0]) is not None:
            self.enter(ids[0])
        elif not ids and self.path:
            self.up()
        else:
            self.window.open_search_at_cursor()

    # ---- going back up --------------------------------------------------------------------------
    def up(self):
        if self.path:
            self.go_to(len(self.path) - 1)

    def go_to(self, depth):
        """Back to level `depth` (0: the graph), its view as it was, the instance selected."""
        if not 0 <= depth < len(self.path):
            return
        came_from = self.path[depth].instance
        self.scene.show_path(self.path[:depth])
        self._restore_view(depth)
        self.scene.select_node(came_from)

    def reveal(self, flat_id):
        """Show the node a flat id names (`stage1/conv1`): enter the blocks on its way (no
        question: looking is not editing) and select it."""
        parts = flat_id.split("/")
        path, levels = [], self.scene.levels
        for instance in parts[:-1]:
            doc = levels.root if not path else levels.ref(path[-1].block)
            spec = doc.nodes.get(instance)
            if spec is None or spec.kind != "Block" or spec.attrs.get("block") not in levels.root.blocks:
                break
            path.append(Level(instance, spec.attrs["block"]))
        if path != self.path:
            self._remember_view()
            self.scene.show_path(path)
        target = parts[len(path)]
        self.scene.select_node(target)
        if target in self.scene.nodes:
            self.view.centerOn(self.scene.nodes[target])

    # ---- the view of each level ---------------------------------------------------------------
    def _remember_view(self):
        centre = self.view.mapToScene(self.view.viewport().rect().center())
        self.views[len(self.path)] = (self.view.transform(), centre)

    def _restore_view(self, depth):
        saved = self.views.pop(depth, None)
        if saved is None:
            return self.view.frame_all()
        self.view.setTransform(saved[0])
        self.view.centerOn(saved[1])

    def _level_changed(self):
        inside = bool(self.path)
        labels = [self.window.document.name or "graph"] + \
            [f"{level.instance} ({level.block})" for level in self.path]
        note = ""
        if inside and block_actions.users(self.window, self.path[-1].block) > 1:
            count = block_actions.users(self.window, self.path[-1].block)
            note = f"block {self.path[-1].block} is used by {count} nodes: edits here change all of them"
        self.bar.show_levels(labels, note)
        self.up_action.setEnabled(inside)  # at the top, Escape is left to others
        self.window.palette.show_interface(inside)
        for depth in [d for d in self.views if d > len(self.path)]:
            del self.views[depth]  # views of levels below the one shown are of other blocks now
