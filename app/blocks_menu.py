"""Blocks in the editor's menus: Edit > Group (Ctrl+G), Ungroup (Ctrl+Shift+G), Enter Block
(Tab), Up a Level (Escape), Rename Block…, Save Block to Library…, and the canvas's
right-click menu on an instance card. `install` puts them, the breadcrumb navigation and the
palette's Blocks section into the window (`window.blocks`)."""
from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from . import block_actions as actions
from .block_nav import Navigator
from .block_palette import BlocksSection


class Blocks:
    def __init__(self, window):
        self.window = window
        self.ask_text = actions.ask_text  # injectable so tests answer the name prompts
        self.nav = Navigator(window)
        self.palette = BlocksSection(window)
        self._make_actions(window.edit_menu)
        window.view.search_requested.connect(self.nav.tab)
        window.scene.node_menu.connect(self.show_menu)

    def _make_actions(self, menu):
        w, a = self.window, self._action
        menu.addSeparator()
        self.group_action = a("Group", lambda: actions.group_selection(w), "Ctrl+G", menu)
        self.ungroup_action = a("Ungroup", lambda: actions.ungroup_selection(w), "Ctrl+Shift+G", menu)
        # Tab and Escape act on the canvas only (GraphView, Navigator): named here, not bound
        self.enter_action = a("Enter Block\tTab", self.enter_selected, None, menu)
        self.up_menu_action = a("Up a Level\tEsc", self.nav.up, None, menu)
        self.rename_block_action = a("Rename Block…", lambda: self._on_block(actions.rename_block), None, menu)
        self.save_block_action = a("Save Block to Library…",
                                   lambda: self._on_block(actions.save_to_library), None, menu)

    def _action(self, text, slot, shortcut, menu):
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _=False: slot())
        self.window.addAction(action)
        menu.addAction(action)
        return action

    def enter_selected(self):
        ids = actions.instance_ids(self.window)
        if len(ids) == 1:
            self.nav.enter(ids[0])
        else:
            self.window.statusBar().showMessage("Select one block to enter", 6000)

    def _on_block(self, act):
        """Rename / save: the selected instance's block, else the block the canvas is inside."""
        ids = actions.instance_ids(self.window)
        name = actions.block_of_instance(self.window, ids[0]) if len(ids) == 1 else self.nav.scene.levels.block
        if name is None:
            self.window.statusBar().showMessage("Select a block first", 6000)
            return False
        return act(self.window, name)

    # ---- the canvas's right-click menu ----------------------------------------------------------
    def menu_actions(self, node_id) -> list[QAction]:
        """What right-clicking a card (node_id) or the canvas (None) offers."""
        w, out = self.window, []
        name = actions.block_of_instance(w, node_id) if node_id else None
        if name is not None:
            out += [self._item("Enter", lambda: self.nav.enter(node_id)),
                    self._item("Ungroup", lambda: actions.ungroup_selection(w)),
                    self._item("Rename block…", lambda: actions.rename_block(w, name)),
                    self._item("Save block to library…", lambda: actions.save_to_library(w, name))]
            if actions.users(w, name) > 1:
                out.append(self._item("Make unique", lambda: actions.make_unique(w, node_id)))
        elif w.scene.selected_node_ids():
            out.append(self._item("Group", lambda: actions.group_selection(w)))
        if self.nav.path and node_id is None:
            out.append(self._item("Up a level", self.nav.up))
        return out

    def _item(self, text, slot):
        action = QAction(text, self.window)
        action.triggered.connect(lambda _=False: slot())
        return action

    def show_menu(self, node_id, screen_pos):
        items = self.menu_actions(node_id)
        if items:
            menu = QMenu(self.window)
            menu.addActions(items)
            menu.exec(screen_pos)


def install(window) -> Blocks:
    window.blocks = Blocks(window)
    return window.blocks
