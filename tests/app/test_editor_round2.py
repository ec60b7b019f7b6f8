"""The editor's second round (issue 14), driven with real key presses and menu actions:
nothing replaces unsaved work without asking, Tab belongs to the canvas, settings edits are
one undo step and Train changes nothing, paste lands at the cursor, undo works from a field."""
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QCursor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.main_window import EXAMPLES



def example_action(window, name):
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    examples = next(a.menu() for a in menu.actions() if a.text() == "Open Example")
    return next(a for a in examples.actions() if a.text() == name)


def test_open_example_asks_before_replacing_unsaved_work(window):
    window.document.add_node("ReLU")  # an edit through the model...
    window.undo_stack.push(__import__("app.commands", fromlist=["AddNode"]).AddNode(
        window.document, "Tanh", {}, (0.0, 0.0)))  # ...and one the undo stack knows
    before = set(window.document.nodes)
    window.answers.append(False)  # "Discard the unsaved changes?" -> No
    example_action(window, "mnist_cnn").trigger()
    assert set(window.document.nodes) == before
    window.answers.append(True)
    example_action(window, "mnist_cnn").trigger()
    # the CNN's convolutions may sit inside its blocks: look at the graph flattened
    flat = __import__("core.blocks", fromlist=["flatten"]).flatten(window.document)
    assert any(spec.kind == "Conv2D" for spec in flat.nodes.values())


def test_tab_in_a_field_moves_focus_and_opens_no_search(window, qtbot):
    epochs = window.run_panel.fields["epochs"]
    epochs.setFocus()
    qtbot.waitUntil(epochs.hasFocus)
    popups = getattr(window, "last_popup", None)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key_Tab)
    assert getattr(window, "last_popup", None) is popups  # no "Add node…" popup
    assert not epochs.hasFocus()


def test_tab_on_the_canvas_opens_the_search(window, qtbot):
    window.view.setFocus()
    qtbot.waitUntil(window.view.hasFocus)
    QTest.keyClick(window.view, Qt.Key_Tab)
    popup = window.last_popup
    assert popup.isVisible()
    popup.close()


def test_typing_epochs_is_one_undo_step_and_train_changes_nothing(window, qtbot):
    stack = window.undo_stack
    assert stack.isClean() and stack.count() == 0
    epochs = window.run_panel.fields["epochs"]
    epochs.setFocus()
    epochs.selectAll()
    QTest.keyClicks(epochs, "400")
    assert window.document.training["epochs"] == 400
    assert stack.count() == 1 and stack.text(0) == "Change training settings"
    window.run_panel.save_training()  # what Train does first
    assert stack.count() == 1
    stack.undo()
    assert window.document.training["epochs"] != 400 and stack.isClean()
    window.run_panel.save_training()  # showing the (default) settings writes nothing
    assert stack.isClean() and stack.count() == 1


def test_paste_lands_at_the_cursor_and_history_counts_right(window, qtbot):
    window.scene.select_node("relu1")
    window.copy_selection()
    target = window.view.viewport().rect().center() + QPoint(120, 90)
    QCursor.setPos(window.view.viewport().mapToGlobal(target))
    expected = window.view.mapToScene(target)
    window.paste()
    new = [n for n in window.scene.selected_node_ids() if n != "relu1"]
    assert len(new) == 1
    x, y = window.document.nodes[new[0]].pos
    assert abs(x - expected.x()) < 6 and abs(y - expected.y()) < 6  # at the cursor
    ox, oy = window.document.nodes["relu1"].pos
    assert abs(x - ox) > 60 or abs(y - oy) > 60  # not on top of the original
    assert window.undo_stack.text(window.undo_stack.count() - 1) == "Paste 1 node"


def test_ctrl_z_undoes_while_an_inspector_field_has_focus_and_ctrl_y_redoes(window, qtbot):
    window.scene.select_node("linear1")
    field = window.inspector.editors["out_features"]
    field.setFocus()
    field.setText("32")
    window.inspector.commit_text("out_features", "32")
    assert window.document.nodes["linear1"].attrs["out_features"] == 32
    qtbot.waitUntil(field.hasFocus)
    QTest.keyClick(field, Qt.Key_Z, Qt.ControlModifier)
    assert window.document.nodes["linear1"].attrs.get("out_features") != 32
    QTest.keyClick(QApplication.focusWidget(), Qt.Key_Y, Qt.ControlModifier)
    assert window.document.nodes["linear1"].attrs["out_features"] == 32


def test_quit_and_panel_toggles_are_in_the_menus(window):
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    quit_action = next(a for a in file_menu.actions() if a.text() == "Quit")
    assert "Ctrl+Q" in [s.toString() for s in quit_action.shortcuts()]
    panels = [a.text() for a in window.panels_menu.actions()]
    assert {"Nodes", "Inspector", "History", "Run"} <= set(panels)
    run = next(a for a in window.panels_menu.actions() if a.text() == "Run")
    run.trigger()  # hides the Run panel, and again shows it
    assert not window.run_panel.isVisible()
    run.trigger()
    assert window.run_panel.isVisible()


def test_search_labels_categories_and_ranks_layers_before_raw_ops(window, qtbot):
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Tab)
    popup = window.last_popup
    accuracies = sum(s.kind == "Accuracy" for s in window.document.nodes.values())
    popup.edit.setText("acc")
    labels = [popup.list.item(i).text() for i in range(popup.list.count())]
    assert popup.shown_kinds()[:2] == ["Accuracy", "accuracy"]
    assert "Losses" in labels[0] and "Ops" in labels[1]
    popup.accept_current()  # Enter takes the first: the Accuracy layer, not the raw op
    assert sum(s.kind == "Accuracy" for s in window.document.nodes.values()) == accuracies + 1


def test_palette_double_click_adds_at_the_view_centre(window):
    tree = window.palette.tree
    item = next(tree.topLevelItem(i).child(j) for i in range(tree.topLevelItemCount())
                for j in range(tree.topLevelItem(i).childCount())
                if tree.topLevelItem(i).child(j).text(0) == "Tanh")
    before = set(window.document.nodes)
    tree.itemDoubleClicked.emit(item, 0)
    (new,) = set(window.document.nodes) - before
    centre = window.view.mapToScene(window.view.viewport().rect().center())
    x, y = window.document.nodes[new].pos
    assert abs(x - centre.x()) < 2 and abs(y - centre.y()) < 2


def test_an_empty_canvas_says_how_to_start(window, qtbot, tmp_path):
    from PySide6.QtGui import QImage
    window.new()
    qtbot.wait(50)
    image = window.view.viewport().grab().toImage()
    centre = image.rect().center()
    row = [QImage.pixelColor(image, x, centre.y()).lightness() for x in range(image.width())]
    assert max(row) > 100  # hint text drawn across the middle of a dark canvas
    assert window.view.EMPTY_HINT.startswith("Drag a node")


def test_one_checkpointing_setting_for_training_and_the_memory_plan(window):
    panel = window.run_panel
    panel.memory.checkpoint.setCurrentText("sqrt")
    assert window.document.training["checkpoint"] == "sqrt"
    assert panel.fields["checkpoint"].currentData() == "sqrt"
    panel.fields["checkpoint"].setCurrentIndex(panel.fields["checkpoint"].findData("none"))
    assert panel.memory.checkpoint.currentText() == "none"


def test_runs_and_timings_belong_to_their_graph(window):
    panel = window.run_panel
    panel.plots.add_event({"event": "step", "step": 1, "loss": 1.0})
    panel.profile.show_times({"linear1": 1.0})
    window.open_path(EXAMPLES / "mnist_cnn.loom.json", remember=False)
    assert panel.plots.runs == [] and panel.profile.model.rowCount() == 0


def test_clear_runs_keeps_the_run_in_progress(window, monkeypatch):
    plots = window.run_panel.plots
    plots.new_run("run 1")
    plots.add_event({"event": "step", "step": 1, "loss": 1.0})
    plots.new_run("run 2")
    plots.add_event({"event": "step", "step": 1, "loss": 0.5})
    monkeypatch.setattr(window.run_panel.process, "running", lambda: True)
    window.run_panel.clear_button.click()
    assert [r.label for r in plots.runs] == ["run 2"]


# ---- wires -------------------------------------------------------------------------------

def wire_point(window, edge, t=0.5):
    """A viewport point on the wire's curve."""
    return window.view.mapFromScene(window.scene.wires[edge].path().pointAtPercent(t))


def edge_into(window, node, port):
    return window.document.edge_into(node, port)


def test_a_clicked_wire_is_selected_and_delete_removes_only_it(window):
    edge = edge_into(window, "relu1", "in")
    vp = window.view.viewport()
    QTest.mouseClick(vp, Qt.LeftButton, Qt.NoModifier, wire_point(window, edge))
    assert window.scene.selected_edges() == [edge] and window.scene.selected_node_ids() == []
    nodes = set(window.document.nodes)
    window.delete_action.trigger()
    assert edge not in window.document.edges and set(window.document.nodes) == nodes
    window.undo_stack.undo()
    assert edge in window.document.edges


def test_dragging_a_connected_input_off_detaches_and_onto_another_input_moves(window):
    vp = window.view.viewport()
    edge = edge_into(window, "relu1", "in")
    start = window.view.mapFromScene(window.scene.port_item(("relu1", "in"), True).scene_anchor())
    away = start + QPoint(0, 150)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, start)
    QTest.mouseMove(vp, away)
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, away)
    assert edge not in window.document.edges and edge_into(window, "relu1", "in") is None
    window.undo_stack.undo()
    assert edge in window.document.edges


def test_ctrl_right_drag_cuts_the_wires_it_crosses(window):
    vp = window.view.viewport()
    edge = edge_into(window, "relu1", "in")
    mid = wire_point(window, edge)
    a, b = mid + QPoint(0, -8), mid + QPoint(0, 8)  # a short cut across this wire only
    QTest.mousePress(vp, Qt.RightButton, Qt.ControlModifier, a)
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.RightButton, Qt.ControlModifier, b)
    assert edge not in window.document.edges
    assert window.undo_stack.text(window.undo_stack.count() - 1).startswith("Cut 1 wire")


def test_a_node_dropped_on_a_wire_is_spliced_into_it(window):
    edge = edge_into(window, "relu1", "in")  # linear1.out -> relu1.in
    point = window.scene.wires[edge].path().pointAtPercent(0.5)
    drop_at = point - QPointF(40, 30)  # the card's top-left, so the card covers the wire
    node = window.add_node("Tanh", drop_at)
    assert edge_into(window, node, "in").src == edge.src
    assert edge_into(window, "relu1", "in").src[0] == node
    window.undo_stack.undo()  # one step: the node and both wires
    assert node not in window.document.nodes and edge in window.document.edges


def test_train_on_an_invalid_graph_names_the_node_and_selects_it(window):
    doc = window.document
    window.undo_stack.push(__import__("app.commands", fromlist=["RemoveEdge"]).RemoveEdge(
        doc, doc.edge_into("relu1", "in")))
    panel = window.run_panel
    panel.train_button.click()
    assert not panel.process.running()
    assert panel.message.text().startswith("cannot train: node relu1, port in")
    assert window.scene.selected_node_ids() == ["relu1"] and window.problems_dock.isVisible()


# ---- plots -------------------------------------------------------------------------------

def feed_two_runs(plots):
    for label in ("run 1", "run 2"):
        plots.new_run(label)
        for step in range(1, 40):
            plots.add_event({"event": "step", "step": step, "loss": 2.0 / step, "accuracy": 0.5,
                             "samples_per_s": 1000.0, "memory": {"planned_bytes": 1 << 20}})
        plots.redraw()


def test_plots_get_room_legends_sit_below_the_data_and_runs_can_be_hidden(window, qtbot):
    plots = window.run_panel.plots
    feed_two_runs(plots)
    qtbot.wait(50)
    for name, widget in plots.plots.items():
        item = widget.getPlotItem()
        view = item.vb.sceneBoundingRect()
        legend = item.legend.sceneBoundingRect()
        assert view.height() > 100, name  # room for the data in the default window
        assert legend.top() >= view.bottom(), name  # the legend is outside the data
    plots.log_loss.setChecked(True)
    assert plots.plots["loss"].getPlotItem().ctrl.logYCheck.isChecked()
    first = plots.run_list.item(0)
    first.setCheckState(Qt.Unchecked)
    hidden = [c for (run, _, _), c in plots.curves.items() if run.label == "run 1"]
    assert hidden and not any(c.isVisible() for c in hidden)
    assert all(c.isVisible() for (run, _, _), c in plots.curves.items() if run.label == "run 2")


def test_title_and_node_id_never_overlap(window):
    from PySide6.QtGui import QFont, QFontMetricsF
    from app.canvas.node_item import WIDTH
    node = window.add_node("SoftmaxCrossEntropy", QPointF(0, 600))
    item = window.scene.nodes[node]
    title, shown_id = item.header_texts()
    bold = QFont()
    bold.setBold(True)
    used = QFontMetricsF(bold).horizontalAdvance(title) + QFontMetricsF(QFont()).horizontalAdvance(shown_id)
    assert used <= WIDTH - 16 and shown_id != node  # elided or dropped, never drawn over
    assert node in item.toolTip()  # the full id is still one hover away
    short = window.scene.nodes["relu1"].header_texts()
    assert short == ("ReLU", "relu1")


# ---- auto layout ---------------------------------------------------------------------------

def cards_crossed(window):
    """(wire, node) pairs where a wire's curve runs through a card other than its ends."""
    from app.canvas.node_item import NodeItem
    from app.canvas.wire_item import stroke
    window.scene.flush_routes()
    bad = []
    for edge, wire in window.scene.wires.items():
        for item in window.scene.items(stroke(wire.path(), 2.0)):
            if isinstance(item, NodeItem) and item.node_id not in (edge.src[0], edge.dst[0]):
                bad.append((edge.dst, item.node_id))
    return bad


@pytest.mark.parametrize("example", ["digits_mlp", "mnist_cnn", "mnist_mlp", "digits_logreg"])
def test_auto_layout_keeps_wires_off_other_cards_and_the_graph_readable(window, example):
    window.open_path(EXAMPLES / f"{example}.loom.json", remember=False)
    window.auto_layout()
    assert cards_crossed(window) == []
    window.view.frame_all()
    # Frame All: titles (drawn large below LEGIBLE_ZOOM) stay readable; a 17-node strip was 0.2
    assert window.view.transform().m11() >= 0.35


def test_top_down_layout_is_a_remembered_choice(window):
    window.top_down_action.trigger()
    assert window.settings.value("layout/direction") == "TB"
    pos = {n: s.pos for n, s in window.document.nodes.items()}
    assert pos["flatten1"][1] < pos["linear1"][1] < pos["linear2"][1]  # down the page
    window.top_down_action.trigger()
    pos = {n: s.pos for n, s in window.document.nodes.items()}
    assert pos["flatten1"][0] < pos["linear1"][0] < pos["linear2"][0]  # across again


def test_minimap_appears_for_a_graph_larger_than_the_view_and_moves_it(window, qtbot):
    minimap = window.view.minimap
    window.view.frame_all()
    assert not minimap.isVisible()  # the whole graph is in view
    window.view.resetTransform()
    window.view.scale(2.0, 2.0)
    window.view.centerOn(window.scene.nodes["flatten1"])
    minimap.refresh()
    assert minimap.isVisible()
    target = window.scene.nodes["softmaxcrossentropy1" if "softmaxcrossentropy1" in window.scene.nodes
                                else "loss"].sceneBoundingRect().center()
    QTest.mouseClick(minimap.viewport(), Qt.LeftButton, Qt.NoModifier, minimap.mapFromScene(target))
    assert minimap.visible_area().contains(target)


def test_a_wire_from_a_loss_dropped_on_empty_canvas_explains_instead_of_an_empty_list(window):
    loss = next(n for n, s in window.document.nodes.items() if s.kind == "SoftmaxCrossEntropy")
    port = window.scene.port_item((loss, "loss"), False)
    popups = getattr(window, "last_popup", None)
    window.open_search_for_wire(port, QPointF(2000, 2000))
    assert getattr(window, "last_popup", None) is popups  # no empty list
    assert "a loss is where the graph ends" in window.statusBar().currentMessage()


def test_f2_renames_a_node_everywhere_and_undo_restores_it(window, qtbot):
    window.scene.select_node("linear1")
    window.rename_action.trigger()  # F2
    field = window.inspector.name_editor
    qtbot.waitUntil(field.hasFocus)
    field.setText("hidden")
    field.editingFinished.emit()
    doc = window.document
    assert "hidden" in doc.nodes and "linear1" not in doc.nodes
    assert doc.edge_into("relu1", "in").src == ("hidden", "out")
    assert window.scene.selected_node_ids() == ["hidden"] and "hidden" in window.scene.nodes
    window.run_panel.memory.refresh()  # plans name the node by its new name
    assert "hidden" in window.run_panel.memory.report["node_of"].values()
    window.undo_stack.undo()
    assert "linear1" in doc.nodes and doc.edge_into("relu1", "in").src == ("linear1", "out")


def test_a_bad_or_taken_name_is_refused_in_the_inspector(window):
    window.scene.select_node("linear1")
    assert not window.inspector.rename("relu1")
    assert "taken" in window.inspector.errors["name"].text()
    assert not window.inspector.rename("two words")
    assert "letters, digits" in window.inspector.errors["name"].text()
    assert "linear1" in window.document.nodes


def test_more_logits_than_classes_is_a_problem_in_the_editor(window):
    window.scene.select_node("linear2")
    assert window.inspector.commit("out_features", 64)
    window.scene.refresh_analysis()
    assert "1 problem" in window.summary.text()
    assert any("64 logits" in row for row in window.problems.rows())
