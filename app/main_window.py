"""The editor window: canvas in the middle, palette, inspector and undo history in docks,
menus and toolbar, title with an unsaved marker, autosave and crash recovery."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtGui import QAction, QCursor, QKeySequence, QUndoStack
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QMainWindow, QMessageBox, QPushButton,
                               QToolTip,
                               QUndoView)

from core import graphfile
from core.document import GraphDocument
from core.layers import LAYERS, compatible
from core.layout import layered_positions

from . import block_actions, blocks_menu, clipboard, commands, style
from . import interop_actions, run_panel
from .autosave import Autosave
from .canvas.scene import GraphScene
from .canvas.view import GraphView
from .inspector import Inspector
from .palette import Palette
from .problems import ProblemsPanel
from .canvas.levels import graph_totals
from .search_popup import SearchPopup, kinds_accepting, offered_kinds

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "resources" / "examples"
DEFAULT_EXAMPLE = EXAMPLES / "digits_mlp.loom.json"
FILTER = "Loom graphs (*.loom.json);;All files (*)"
OPEN_FILTER = "Loom graphs and ONNX models (*.loom.json *.onnx);;ONNX models (*.onnx);;All files (*)"


def _ask_yes_no(parent, title, text):
    return QMessageBox.question(parent, title, text) == QMessageBox.Yes


class MainWindow(QMainWindow):
    def __init__(self, path=None, recovery_dir=None, ask=_ask_yes_no, settings=None):
        super().__init__()
        self.ask = ask  # injectable so tests answer dialogs
        self.panels_menu = None
        self.settings = settings or QSettings("Loom", "Loom")
        self.document = GraphDocument()
        self.undo_stack = QUndoStack(self)
        self.current_path: str | None = None
        self.scene = GraphScene(self.document, self.undo_stack, self)
        self.view = GraphView(self.scene)
        self.setCentralWidget(self.view)
        self.palette = Palette()
        self.inspector = Inspector(self.document, self.undo_stack, self.scene.levels)
        self.add_dock(self.palette, "Nodes", Qt.LeftDockWidgetArea)
        inspector = self.add_dock(self.inspector, "Inspector", Qt.RightDockWidgetArea)
        history = self.add_dock(QUndoView(self.undo_stack), "History", Qt.RightDockWidgetArea)
        self.problems = ProblemsPanel()
        self.problems_dock = self.add_dock(self.problems, "Problems", Qt.RightDockWidgetArea)
        self.tabifyDockWidget(history, self.problems_dock)
        history.raise_()
        # the graph summary stays in the status bar (messages come and go beside it)
        self.summary = QPushButton()
        self.summary.setFlat(True)
        self.summary.setToolTip("Show the Problems panel")
        self.summary.clicked.connect(self.show_problems)
        self.statusBar().addPermanentWidget(self.summary)
        # the inspector's form and its inline errors need the room more than the history list
        self.resizeDocks([inspector, history], [340, 140], Qt.Vertical)
        self.resizeDocks([inspector], [310], Qt.Horizontal)
        self._make_actions()
        self._connect()
        blocks_menu.install(self)  # group, enter, breadcrumbs, the Blocks palette
        self.setStyleSheet(style.stylesheet())
        self.resize(1400, 860)
        self.autosave = Autosave(self, recovery_dir)
        if not self._offer_recovery():
            self.open_path(path or DEFAULT_EXAMPLE, remember=path is not None)
        self._install_run_panel()

    # ---- construction --------------------------------------------------------------------
    def add_dock(self, widget, title, area=Qt.RightDockWidgetArea):
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        if self.panels_menu is not None:  # docks added after the menus exist (the Run panel)
            self.panels_menu.addAction(dock.toggleViewAction())
        return dock

    def _action(self, text, slot, shortcut=None, menu=None):
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)
        if menu is not None:
            menu.addAction(action)
        return action

    def _make_actions(self):
        bar = self.menuBar()
        file_menu, edit_menu, view_menu = bar.addMenu("&File"), bar.addMenu("&Edit"), bar.addMenu("&View")
        self.edit_menu = edit_menu
        run_menu = bar.addMenu("&Run")
        a = self._action
        self.new_action = a("New", self.new, QKeySequence.New, file_menu)
        self.open_action = a("Open…", self.open_dialog, QKeySequence.Open, file_menu)
        examples = file_menu.addMenu("Open Example")
        for path in sorted(EXAMPLES.glob("*.loom.json")):
            a(path.name.split(".")[0], lambda _=False, p=path: self.open_example(p), None, examples)
        self.recent_menu = file_menu.addMenu("Recent Files")
        self.save_action = a("Save", self.save, QKeySequence.Save, file_menu)
        self.save_as_action = a("Save As…", self.save_as, QKeySequence.SaveAs, file_menu)
        file_menu.addSeparator()
        self.export_onnx_action = a("Export ONNX…", lambda _=False: interop_actions.export_onnx_dialog(self),
                                    None, file_menu)
        self.export_python_actions = {
            flavour: a(f"Export as Python ({name})…",
                       lambda _=False, f=flavour: interop_actions.export_python_dialog(self, f), None, file_menu)
            for flavour, name in interop_actions.FLAVOUR_NAMES.items()}
        # Fixed texts (the stack's own actions grow "Undo Change training settings" and
        # stretch the toolbar); the history panel names the steps.
        self.undo_action = a("Undo", self.undo, QKeySequence.Undo)
        self.redo_action = a("Redo", self.redo, QKeySequence.Redo)
        self.redo_action.setShortcuts(_distinct(QKeySequence.keyBindings(QKeySequence.Redo)
                                                + [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")]))
        for action in (self.undo_action, self.redo_action):  # also while a text field has focus
            action.setShortcutContext(Qt.ApplicationShortcut)
        self.undo_stack.canUndoChanged.connect(self.undo_action.setEnabled)
        self.undo_stack.canRedoChanged.connect(self.redo_action.setEnabled)
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        edit_menu.addActions([self.undo_action, self.redo_action])
        edit_menu.addSeparator()
        self.delete_action = a("Delete", self.delete_selection, QKeySequence.Delete, edit_menu)
        self.copy_action = a("Copy", self.copy_selection, QKeySequence.Copy, edit_menu)
        self.cut_action = a("Cut", self.cut_selection, QKeySequence.Cut, edit_menu)
        self.paste_action = a("Paste", self.paste, QKeySequence.Paste, edit_menu)
        self.duplicate_action = a("Duplicate", self.duplicate, "Ctrl+D", edit_menu)
        # Tab opens it on the canvas only (GraphView.event); elsewhere Tab moves focus
        self.add_node_action = a("Add Node…\tTab", self.open_search_at_cursor, None, edit_menu)
        self.frame_action = a("Frame Selection", self.view.frame_selection, "F", view_menu)
        self.frame_all_action = a("Frame All", self.view.frame_all, "Home", view_menu)
        self.rename_action = a("Rename Node", self.rename_selected, "F2", edit_menu)
        self.layout_action = a("Auto Layout", self.auto_layout, "L", view_menu)
        self.top_down_action = a("Lay Out Top-Down", self._set_top_down, None, view_menu)
        self.top_down_action.setCheckable(True)
        self.top_down_action.setChecked(self.settings.value("layout/direction", "LR") == "TB")
        self.panels_menu = view_menu.addMenu("Panels")
        file_menu.addSeparator()
        self.quit_action = a("Quit", self.close, QKeySequence.Quit, file_menu)
        self.quit_action.setShortcuts(_distinct(QKeySequence.keyBindings(QKeySequence.Quit)
                                                + [QKeySequence("Ctrl+Q")]))
        self.train_action = QAction("Train", self)
        self.train_action.setShortcut(QKeySequence("Ctrl+R"))
        run_menu.addAction(self.train_action)
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main toolbar")
        for act in (self.new_action, self.open_action, self.save_action, self.undo_action,
                    self.redo_action, self.layout_action, self.train_action):
            toolbar.addAction(act)
        for dock in self.findChildren(QDockWidget):  # View > Panels shows or hides each
            self.panels_menu.addAction(dock.toggleViewAction())
        self._refresh_recent()

    def _connect(self):
        self.undo_stack.cleanChanged.connect(self._update_title)
        self.undo_stack.indexChanged.connect(self._update_title)
        self.scene.selectionChanged.connect(self._selection_changed)
        self.scene.analysis_updated.connect(self._show_analysis)
        self.scene.wire_dropped_on_empty.connect(self.open_search_for_wire)
        self.view.kind_dropped.connect(self.add_node)
        self.problems.node_chosen.connect(self.select_node)
        self.palette.kind_activated.connect(
            lambda kind: self.add_node(kind, self.view.mapToScene(self.view.viewport().rect().center())))

    def _install_run_panel(self):
        run_panel.install(self)

    # ---- files ------------------------------------------------------------------------------
    def open_path(self, path, remember=True):
        if str(path).lower().endswith(".onnx"):
            return self.open_onnx(path)
        try:
            doc = graphfile.load(path)
        except graphfile.GraphFileError as exc:
            QMessageBox.warning(self, "Cannot open graph", str(exc)) if self.isVisible() else None
            self.statusBar().showMessage(str(exc))
            return False
        self._replace_document(doc.to_dict(), doc.base_dir)
        self.current_path = str(path) if remember else None
        if remember:
            self._remember(path)
        self._update_title()
        self.view.frame_all()
        return True

    def open_onnx(self, path):
        return interop_actions.open_onnx(self, path)

    def export_onnx(self, path):
        return interop_actions.export_onnx(self, path)

    def export_python(self, path, flavour):
        return interop_actions.export_python(self, path, flavour)

    def _replace_document(self, data, base_dir=None):
        """base_dir: the folder the graph's relative dataset paths are relative to (its
        file's folder); None for a new graph (the working directory)."""
        self.scene.levels.path.clear()  # another graph: its top level, not a block of the old one
        self.document.load_dict(data)
        self.document.base_dir = base_dir
        self.undo_stack.clear()
        self.undo_stack.setClean()

    def new(self):
        if self.confirm_discard():
            self._replace_document(GraphDocument("untitled").to_dict())
            self.current_path = None
            self._update_title()

    def open_dialog(self):
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open graph", str(Path.cwd()), OPEN_FILTER)
        if path:
            self.open_path(path)

    def save(self):
        if self.current_path is None:
            return self.save_as()
        return self.save_to(self.current_path)

    def save_as(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save graph", f"{self.document.name}.loom.json", FILTER)
        return self.save_to(path) if path else False

    def save_to(self, path):
        if not str(path).endswith(".json"):
            path = f"{path}.loom.json"
        if self.current_path is None or Path(path).name != Path(self.current_path).name:
            self.document.name = Path(path).name.split(".")[0]
        graphfile.save(self.document, path)
        self.current_path = str(path)
        self.undo_stack.setClean()
        self.autosave.discard()
        self._remember(path)
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def _remember(self, path):
        recent = [str(Path(path).resolve())] + [p for p in self.settings.value("recent", [], list)
                                                if p != str(Path(path).resolve())]
        self.settings.setValue("recent", recent[:8])
        self._refresh_recent()

    def _refresh_recent(self):
        self.recent_menu.clear()
        for p in self.settings.value("recent", [], list) or []:
            self._action(p, lambda _=False, p=p: self.confirm_discard() and self.open_path(p),
                         None, self.recent_menu)

    def confirm_discard(self):
        if self.undo_stack.isClean():
            return True
        return self.ask(self, "Unsaved changes", "Discard the unsaved changes to this graph?")

    def closeEvent(self, event):
        if self.confirm_discard():
            self.autosave.discard()
            event.accept()
        else:
            event.ignore()

    def _offer_recovery(self):
        pending = self.autosave.pending()
        if pending is None:
            return False
        doc, original = pending
        if self.ask(self, "Restore unsaved work?", "Loom closed without saving. Restore the graph "
                    "you were editing?"):
            self._replace_document(doc.to_dict(), doc.base_dir)
            self.current_path = original
            self.undo_stack.resetClean()  # restored work is unsaved until saved
            self._update_title()
            return True
        self.autosave.discard()
        return False

    def _update_title(self, *_):
        name = Path(self.current_path).name if self.current_path else f"{self.document.name} (unsaved)"
        self.setWindowTitle(f"{name}{'' if self.undo_stack.isClean() else ' *'} — Loom")

    # ---- editing ----------------------------------------------------------------------------
    @property
    def editing(self):
        """The document the canvas shows: the graph, or the body of the block entered."""
        return self.scene.doc

    def add_node(self, kind, pos: QPointF):
        """Add a node (dropped on a wire whose ends fit its ports, it is spliced in)."""
        attrs = block_actions.initial_attrs(self.editing, kind)
        cmd = commands.AddNode(self.editing, kind, attrs, (pos.x(), pos.y()))
        self.undo_stack.beginMacro(f"Add {kind}")
        self.undo_stack.push(cmd)
        for splice in self.scene.splice_commands(cmd.node_id):
            self.undo_stack.push(splice)
        self.undo_stack.endMacro()
        self.scene.select_node(cmd.node_id)
        return cmd.node_id

    def delete_selection(self):
        """Selected nodes (with their wires) and selected wires, as one undo step."""
        ids = self.scene.selected_node_ids()
        wires = [e for e in self.scene.selected_edges() if e.src[0] not in ids and e.dst[0] not in ids]
        cmds = ([commands.RemoveNodes(self.editing, ids)] if ids else []) + \
            [commands.RemoveEdge(self.editing, e) for e in wires]
        what = [_count(n, noun) for n, noun in ((len(ids), "node"), (len(wires), "wire")) if n]
        if cmds:
            commands.macro(self.undo_stack, "Delete " + " and ".join(what), cmds)

    def copy_selection(self):
        ids = self.scene.selected_node_ids()
        if ids:
            clipboard.copy_nodes(self.editing, ids)

    def cut_selection(self):
        self.copy_selection()
        self.delete_selection()

    def paste(self, at_cursor=True):
        """Paste at the mouse when it is over the canvas (else beside the originals)."""
        cmds, new_ids = clipboard.paste_commands(self.editing, at=self._cursor_on_canvas()
                                                 if at_cursor else None)
        if cmds:
            commands.macro(self.undo_stack, f"Paste {_count(len(new_ids), 'node')}", cmds)
            self.scene.clearSelection()
            for n in new_ids:
                self.scene.nodes[n].setSelected(True)

    def duplicate(self):
        self.copy_selection()
        self.paste(at_cursor=False)

    def _cursor_on_canvas(self):
        local = self.view.mapFromGlobal(QCursor.pos())
        if not self.view.viewport().rect().contains(local):
            return None
        point = self.view.mapToScene(local)
        return point.x(), point.y()

    def undo(self):
        self._commit_focused_editor()
        self.undo_stack.undo()

    def redo(self):
        self._commit_focused_editor()
        self.undo_stack.redo()

    def _commit_focused_editor(self):
        """An inspector field being typed in commits on focus loss: take focus first, so
        Ctrl+Z undoes the edit just made instead of racing it."""
        focused = QApplication.focusWidget()
        if focused is not None and focused is not self.view and self.isAncestorOf(focused):
            self.view.setFocus()

    def open_example(self, path):
        if self.confirm_discard():
            self.open_path(path, remember=False)

    def rename_selected(self):
        """F2: the inspector's name field, selected, for the one selected node."""
        ids = self.scene.selected_node_ids()
        if len(ids) == 1 and self.inspector.node_id == ids[0]:
            self.inspector.parentWidget().show()
            self.inspector.name_editor.setFocus()
            self.inspector.name_editor.selectAll()

    def layout_direction(self) -> str:
        return "TB" if self.top_down_action.isChecked() else "LR"

    def _set_top_down(self, on):
        self.settings.setValue("layout/direction", "TB" if on else "LR")
        self.auto_layout()

    def auto_layout(self):
        doc = self.editing
        positions = layered_positions(doc, self.layout_direction())
        moves = {n: (doc.nodes[n].pos, p) for n, p in positions.items() if tuple(doc.nodes[n].pos) != p}
        if moves:
            self.undo_stack.push(commands.MoveNodes(doc, moves, "Lay out"))
        self.scene.flush_routes()
        self.view.frame_all()

    def open_search_at_cursor(self):
        pos = self.view.mapToScene(self.view.mapFromGlobal(QCursor.pos()))
        popup = SearchPopup(offered_kinds(bool(self.scene.levels.path)), self)
        popup.chosen.connect(lambda kind: self.add_node(kind, pos))
        self._show_popup(popup)

    def open_search_for_wire(self, port_item, scene_pos):
        """A wire dropped on empty canvas: offer kinds that fit, add one and connect it."""
        kinds = kinds_accepting(port_item.port.type, not port_item.is_input, bool(self.scene.levels.path))
        if not kinds:  # e.g. a loss output: an end point, nothing reads it
            side = "reads" if not port_item.is_input else "feeds"
            message = (f"No node kind {side} a {port_item.port.type!r} "
                       f"{'output' if not port_item.is_input else 'input'}"
                       + (": a loss is where the graph ends; training minimises it"
                          if port_item.port.type == "loss" else ""))
            QToolTip.showText(QCursor.pos(), message, self.view)
            self.statusBar().showMessage(message, 6000)
            return
        popup = SearchPopup(kinds, self)
        popup.chosen.connect(lambda kind: self.add_connected(kind, port_item.key, port_item.is_input, scene_pos))
        self._show_popup(popup)

    def add_connected(self, kind, port_key, from_input, scene_pos):
        src_item = self.scene.port_item(port_key, from_input)
        add = commands.AddNode(self.editing, kind, block_actions.initial_attrs(self.editing, kind),
                               (scene_pos.x(), scene_pos.y()))
        ports = LAYERS[kind].outputs if from_input else LAYERS[kind].inputs
        port = next(p for p in ports if (compatible(p.type, src_item.port.type) if from_input
                                         else compatible(src_item.port.type, p.type)))
        new_key = (add.node_id, port.name)
        edge = commands.AddEdge(self.editing, new_key, port_key) if from_input else \
            commands.AddEdge(self.editing, port_key, new_key)
        commands.macro(self.undo_stack, f"Add connected {kind}", [add, edge])
        return add.node_id

    def _show_popup(self, popup):
        self.last_popup = popup
        popup.move(QCursor.pos())
        popup.show()
        popup.edit.setFocus()

    # ---- views of the model --------------------------------------------------------------------
    def _selection_changed(self):
        ids = self.scene.selected_node_ids()
        self.inspector.show_node(ids[0] if len(ids) == 1 else None)

    def _show_analysis(self, analysis):
        params, macs = graph_totals(analysis)
        problems = len(analysis.problems)
        text = (f"{len(self.document.nodes)} nodes · {params:,} parameters · {macs:,} MACs/sample · "
                + (f"{problems} problem{'s' * (problems != 1)}" if problems else "valid"))
        self.summary.setText(text)
        self.summary.setObjectName("error" if problems else "")
        self.problems.show_problems(analysis.problems)

    def show_problems(self):
        self.problems_dock.show()
        self.problems_dock.raise_()

    def select_node(self, node_id):
        """Select a node by its flat id (`stage1/conv1`: inside block instance stage1)."""
        self.blocks.nav.reveal(node_id)

    def set_node_heat(self, heat: dict):
        self.scene.set_heat(heat)


def run_editor(path=None) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Loom")
    app.setOrganizationName("Loom")
    window = MainWindow(path)
    window.show()
    return app.exec()


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _distinct(sequences):
    """Key sequences without repeats: a platform's standard binding may equal one we add,
    and an action holding the same sequence twice makes it ambiguous (it never fires)."""
    seen, out = set(), []
    for seq in sequences:
        if seq.toString() and seq.toString() not in seen:
            seen.add(seq.toString())
            out.append(seq)
    return out

