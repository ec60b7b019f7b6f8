"""The editor driven the way a user drives it: palette drops, port-to-port drags, the
inspector, undo/redo, saving and reopening, and what the canvas shows."""
import json

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

from app.canvas.view import KIND_MIME
from app.main_window import DEFAULT_EXAMPLE, MainWindow
from core import graphfile


def drop_kind(window, kind, scene_xy):
    """Drop a palette entry on the canvas at a scene position (what a palette drag ends in)."""
    view = window.view
    mime = QMimeData()
    mime.setData(KIND_MIME, kind.encode())
    pos = view.mapFromScene(QPointF(*scene_xy))
    event = QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    view.dropEvent(event)
    return window.scene.selected_node_ids()[0]


def port_point(window, node_id, port, is_input):
    item = window.scene.port_item((node_id, port), is_input)
    return window.view.mapFromScene(item.scene_anchor())


def drag_wire(window, src, dst):
    """Press on an output port, move, release on an input port: a real mouse drag."""
    vp = window.view.viewport()
    a, b = port_point(window, *src, False), port_point(window, *dst, True)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    QTest.mouseMove(vp, (a + b) / 2)
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, b)


def edit_attr(window, node_id, name, text):
    window.scene.select_node(node_id)
    editor = window.inspector.editors[name]
    if hasattr(editor, "setCurrentText"):
        editor.setCurrentText(text)
        return True
    editor.setText(text)
    return window.inspector.commit_text(name, text)


def canonical(doc):
    """Kinds/attrs per node and edges, with node ids replaced by a structural name."""
    names = {}
    for nid, spec in doc.nodes.items():
        names[nid] = spec.kind + "#" + str(sorted(spec.attrs.items()))
    edges = sorted((names[e.src[0]], e.src[1], names[e.dst[0]], e.dst[1]) for e in doc.edges)
    return sorted(names.values()), edges


def normalised_attrs(doc):
    from core.layers import LAYERS
    for spec in doc.nodes.values():
        defaults = {a.name: a.default for a in LAYERS[spec.kind].attrs}
        spec.attrs = {**defaults, **spec.attrs}
    return doc


def test_build_digits_mlp_from_empty_canvas(window, qtbot, tmp_path):
    window.new()
    assert not window.document.nodes
    ids = {}
    for i, kind in enumerate(["Dataset", "Flatten", "Linear", "ReLU", "Linear", "SoftmaxCrossEntropy", "Accuracy"]):
        ids[i] = drop_kind(window, kind, (i * 240, 0 if kind != "Accuracy" else 240))
    assert len(window.document.nodes) == 7
    drag_wire(window, (ids[0], "images"), (ids[1], "in"))
    drag_wire(window, (ids[1], "out"), (ids[2], "in"))
    drag_wire(window, (ids[2], "out"), (ids[3], "in"))
    drag_wire(window, (ids[3], "out"), (ids[4], "in"))
    for target in (ids[5], ids[6]):
        drag_wire(window, (ids[4], "out"), (target, "logits"))
        drag_wire(window, (ids[0], "labels"), (target, "labels"))
    assert len(window.document.edges) == 8
    assert edit_attr(window, ids[2], "out_features", "64")
    assert edit_attr(window, ids[4], "out_features", "10")
    edit_attr(window, ids[0], "name", "digits")
    assert window.windowTitle().endswith("* — Loom")
    path = tmp_path / "mine.loom.json"
    assert window.save_to(path)
    assert "*" not in window.windowTitle()
    mine = normalised_attrs(graphfile.load(path))
    bundled = normalised_attrs(graphfile.load(DEFAULT_EXAMPLE))
    assert canonical(mine) == canonical(bundled)
    qtbot.waitUntil(lambda: window.scene.analysis.problems == [])


def test_incompatible_connection_is_refused(window):
    doc = window.document
    ds = next(n for n in doc.nodes.values() if n.kind == "Dataset").id
    relu = next(n for n in doc.nodes.values() if n.kind == "ReLU").id
    before = list(doc.edges)
    drag_wire(window, (ds, "labels"), (relu, "in"))  # label -> data: refused
    assert doc.edges == before
    assert window.undo_stack.count() == 0


def test_ports_light_up_during_a_drag(window):
    doc = window.document
    ds = next(n for n in doc.nodes.values() if n.kind == "Dataset").id
    vp = window.view.viewport()
    a = port_point(window, ds, "labels", False)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    loss = next(n for n in doc.nodes.values() if n.kind == "SoftmaxCrossEntropy").id
    assert window.scene.port_item((loss, "labels"), True).scale() > 1
    assert window.scene.port_item((loss, "logits"), True).brush().color().alpha() < 255
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, a + QPoint(0, 300))
    window.last_popup.close()


def test_shape_change_updates_downstream(window, qtbot):
    doc = window.document
    lin1 = "linear1"
    relu_item = window.scene.nodes["relu1"]
    assert relu_item.info_lines[0] == "(N, 64)"
    assert edit_attr(window, lin1, "out_features", "32")
    qtbot.waitUntil(lambda: relu_item.info_lines[0] == "(N, 32)")
    assert window.scene.nodes["linear2"].info_lines[-1].startswith("330 params")  # 32*10 + 10
    assert doc.nodes[lin1].attrs["out_features"] == 32


def test_inspector_refuses_invalid_values_inline(window):
    assert not edit_attr(window, "linear1", "out_features", "0")
    assert "below the minimum" in window.inspector.errors["out_features"].text()
    assert not edit_attr(window, "linear1", "out_features", "many")
    assert window.document.nodes["linear1"].attrs["out_features"] == 64
    assert window.undo_stack.count() == 0


def test_invalid_node_gets_badge_and_check_message(window):
    doc = window.document
    edge = doc.edge_into("linear1", "in")
    window.undo_stack.push(__import__("app.commands", fromlist=["RemoveEdge"]).RemoveEdge(doc, edge))
    window.scene.refresh_analysis()
    item = window.scene.nodes["linear1"]
    assert item.problems == ["node linear1, port in: required input is not connected"]
    assert item.toolTip() == item.problems[0]
    assert "1 problem" in window.summary.text()
    window.statusBar().showMessage("Saved somewhere", 4000)  # messages do not hide the summary
    assert window.summary.isVisible() and "1 problem" in window.summary.text()
    window.summary.click()  # opens the Problems panel on that problem
    assert window.problems_dock.isVisible()
    assert window.problems.rows() == ["required input is not connected"]
    window.problems.list.itemClicked.emit(window.problems.list.topLevelItem(0), 0)
    assert window.scene.selected_node_ids() == ["linear1"]


def snapshot(doc):
    return json.dumps(doc.to_dict(), sort_keys=True)


def test_undo_redo_of_every_command_kind_restores_exactly(window):
    from app import commands
    doc, stack = window.document, window.undo_stack
    states = [snapshot(doc)]
    window.add_node("Tanh", QPointF(100, 500))
    states.append(snapshot(doc))
    drag_wire(window, ("relu1", "out"), ("tanh1", "in"))
    states.append(snapshot(doc))
    edit_attr(window, "linear1", "bias", "x") if False else window.scene.select_node("linear1")
    window.inspector.commit("bias", False)
    states.append(snapshot(doc))
    stack.push(commands.MoveNodes(doc, {"tanh1": ((100, 500), (300, 600))}))
    states.append(snapshot(doc))
    window.scene.select_node("relu1")
    window.delete_selection()
    states.append(snapshot(doc))
    window.scene.select_node("linear2")
    window.duplicate()
    states.append(snapshot(doc))
    window.auto_layout()
    states.append(snapshot(doc))
    stack.push(commands.SetTraining(doc, {**doc.training, "lr": 0.5}))
    states.append(snapshot(doc))
    assert len(set(states)) == len(states)
    for expected in reversed(states[:-1]):
        stack.undo()
        assert snapshot(doc) == expected
    for expected in states[1:]:
        stack.redo()
        assert snapshot(doc) == expected


def test_moving_a_node_by_mouse_pushes_one_command(window):
    item = window.scene.nodes["relu1"]
    vp = window.view.viewport()
    start = window.view.mapFromScene(item.scenePos() + QPointF(60, 8))
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, start)
    for dx in (10, 20, 40, 60):
        QTest.mouseMove(vp, start + QPoint(dx, dx))
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, start + QPoint(60, 60))
    assert window.undo_stack.count() == 1
    assert window.document.nodes["relu1"].pos != (item.pos().x() - 1, 0)
    window.undo_stack.undo()
    assert tuple(window.document.nodes["relu1"].pos) == (item.pos().x(), item.pos().y())


def test_wire_dropped_on_empty_space_adds_a_connected_node(window):
    vp = window.view.viewport()
    a = port_point(window, "relu1", "out", False)
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    QTest.mouseMove(vp, a + QPoint(50, 250))
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, a + QPoint(50, 250))
    popup = window.last_popup
    kinds = popup.kinds
    assert "Linear" in kinds and "Dataset" not in kinds and "Accuracy" in kinds
    popup.edit.setText("Sigm")
    popup.accept_current()
    new = next(n for n in window.document.nodes.values() if n.kind == "Sigmoid")
    assert window.document.edge_into(new.id, "in").src == ("relu1", "out")
    window.undo_stack.undo()
    assert all(n.kind != "Sigmoid" for n in window.document.nodes.values())


def test_palette_search_filters(window):
    window.palette.search.setText("pool")
    assert set(window.palette.visible_kinds()) == {"AvgPool2D", "MaxPool2D", "avg_pool2d", "max_pool2d"}


def test_close_with_unsaved_changes_asks(window):
    window.add_node("ReLU", QPointF(0, 0))
    window.answers.append(False)
    assert not window.close()
    window.answers.append(True)
    assert window.close()


def test_autosave_and_recovery(qtbot, tmp_path):
    from PySide6.QtCore import QSettings
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    first = MainWindow(recovery_dir=tmp_path / "rec", ask=lambda *a: True, settings=settings)
    qtbot.addWidget(first)
    first.add_node("Tanh", QPointF(10, 10))
    first.autosave.save_now()  # what the timer does every 30 s
    assert first.autosave.graph_path.exists()
    # "crash": no closeEvent, the recovery file stays; the next start restores it
    second = MainWindow(recovery_dir=tmp_path / "rec", ask=lambda *a: True, settings=settings)
    qtbot.addWidget(second)
    assert any(n.kind == "Tanh" for n in second.document.nodes.values())
    assert "*" in second.windowTitle()


def test_window_renders_to_png(window, tmp_path):
    path = tmp_path / "shot.png"
    assert window.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_frame_and_zoom(window):
    window.view.frame_all()
    before = window.view.transform().m11()
    from PySide6.QtGui import QWheelEvent
    center = QPointF(window.view.viewport().rect().center())
    ev = QWheelEvent(center, window.view.mapToGlobal(center.toPoint()).toPointF(), QPoint(0, 0),
                     QPoint(0, 120), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    window.view.wheelEvent(ev)
    assert window.view.transform().m11() > before
