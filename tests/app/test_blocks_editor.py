"""Blocks in the editor, driven as a user drives them: Ctrl+G groups the selection into one
card, double-click (or Tab) goes inside and the breadcrumbs or Escape come back out, the
palette's Blocks section and the library, promoted attributes, problems inside a block, the
memory plan and profile by block, and files that keep all of it. Every graph here is built
by the test (the bundled examples change), then grouped through the editor."""
import json

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from app import block_nav, promote
from app.commands import AddEdge, MoveNodes, RemoveEdge
from app.memory_view import block_colours
from core import graphfile
from core.document import GraphDocument


def tiny_mlp():
    """digits → flatten → linear1 (64) → relu1 → linear2 (10) → loss: a graph to group."""
    doc = GraphDocument("tiny")
    for node_id, kind, attrs, x in [("data", "Dataset", {"name": "digits", "path": ""}, 0),
                                    ("flatten1", "Flatten", {}, 270),
                                    ("linear1", "Linear", {"out_features": 64}, 540),
                                    ("relu1", "ReLU", {}, 810),
                                    ("linear2", "Linear", {"out_features": 10}, 1080),
                                    ("loss", "SoftmaxCrossEntropy", {}, 1350)]:
        doc.add_node(kind, attrs, (x, 0.0), node_id)
    for src, dst in [(("data", "images"), ("flatten1", "in")), (("flatten1", "out"), ("linear1", "in")),
                     (("linear1", "out"), ("relu1", "in")), (("relu1", "out"), ("linear2", "in")),
                     (("linear2", "out"), ("loss", "logits")), (("data", "labels"), ("loss", "labels"))]:
        doc.add_edge(src, dst)
    return doc.to_dict()


@pytest.fixture
def tiny(window, qtbot):
    window._replace_document(tiny_mlp())
    window.view.frame_all()
    qtbot.waitUntil(lambda: bool(window.scene.nodes["linear2"].info_lines))
    return window


def select(window, *ids):
    window.scene.clearSelection()
    for node_id in ids:
        window.scene.nodes[node_id].setSelected(True)


def group_with_keys(window, qtbot, *ids):
    select(window, *ids)
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_G, Qt.ControlModifier)
    (instance,) = window.scene.selected_node_ids()
    return instance


def card_point(window, node_id) -> QPoint:
    card = window.scene.nodes[node_id]
    return window.view.mapFromScene(card.sceneBoundingRect().center())


def double_click(window, node_id):
    QTest.mouseDClick(window.view.viewport(), Qt.LeftButton, Qt.NoModifier, card_point(window, node_id))


def shown(window, qtbot, node_id, text):
    """Wait until the card's info lines show `text` (the live analysis runs on a timer)."""
    qtbot.waitUntil(lambda: any(text in line for line in window.scene.nodes[node_id].info_lines))


def last_step(window):
    return window.undo_stack.text(window.undo_stack.index() - 1)


def action_named(actions, text):
    return next(a for a in actions if a.text() == text)


def test_ctrl_g_groups_into_one_card_and_undo_gives_the_file_back(tiny, qtbot):
    window = tiny
    before = json.dumps(window.document.to_dict())
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    card = window.scene.nodes[instance]
    name = window.document.nodes[instance].attrs["block"]
    assert card.title == name and name in window.document.blocks
    assert (list(card.inputs), list(card.outputs)) == (["in"], ["out"])
    assert not {"linear1", "relu1"} & set(window.scene.nodes)
    shown(window, qtbot, instance, "(N, 64)")
    assert any("4.2k params" in line and "4.1k MACs" in line for line in card.info_lines)
    assert "4,810 parameters" in window.summary.text()  # the instance is not counted twice
    assert last_step(window) == "Group"
    grouped = json.dumps(window.document.to_dict())

    window.undo()
    assert json.dumps(window.document.to_dict()) == before  # byte for byte the file it was
    assert {"linear1", "relu1"} <= set(window.scene.nodes) and instance not in window.scene.nodes
    window.redo()
    assert json.dumps(window.document.to_dict()) == grouped
    assert window.scene.nodes[instance].title == name


def test_double_click_enters_and_an_edit_inside_shows_on_the_instance(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    name = window.document.nodes[instance].attrs["block"]
    double_click(window, instance)
    bar = window.blocks.nav.bar
    assert bar.text() == f"tiny › {instance} ({name})" and bar.isVisible()
    body = window.document.blocks[name].body
    assert set(window.scene.nodes) == set(body.nodes) == {"in", "linear1", "relu1", "out"}
    assert window.scene.nodes["in"].title == "Input in" and window.scene.nodes["out"].title == "Output out"
    shown(window, qtbot, "in", "(N, 64)")  # what flows in through the instance entered
    shown(window, qtbot, "linear1", "4.2k params")

    window.scene.select_node("linear1")
    window.inspector.commit_text("out_features", "32")
    assert body.nodes["linear1"].attrs["out_features"] == 32  # the definition changed
    shown(window, qtbot, "out", "(N, 32)")

    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Escape)
    assert not window.scene.levels.path and not bar.isVisible()
    assert window.scene.selected_node_ids() == [instance]  # back where we came from
    shown(window, qtbot, instance, "(N, 32)")
    window.undo()  # the edit made inside, undone from the top level
    assert body.nodes["linear1"].attrs["out_features"] == 64
    shown(window, qtbot, instance, "(N, 64)")


def test_tab_enters_the_selected_block_and_leaves_it_with_nothing_selected(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Tab)
    assert [level.instance for level in window.scene.levels.path] == [instance]
    assert "BlockInput" in window.palette.visible_kinds()  # ports can be added inside
    window.scene.clearSelection()
    QTest.keyClick(window.view, Qt.Key_Tab)
    assert not window.scene.levels.path
    assert "BlockInput" not in window.palette.visible_kinds()
    assert "Block" not in window.palette.visible_kinds()
    window.scene.select_node("linear2")  # not a block: Tab is the node search as before
    QTest.keyClick(window.view, Qt.Key_Tab)
    assert window.last_popup.isVisible() and not window.scene.levels.path
    assert "Block" not in window.last_popup.kinds and "BlockInput" not in window.last_popup.kinds
    window.last_popup.close()


def test_the_breadcrumbs_go_up_from_a_nested_block(tiny, qtbot):
    window = tiny
    outer = group_with_keys(window, qtbot, "flatten1", "linear1", "relu1")
    window.blocks.nav.enter(outer)
    inner = group_with_keys(window, qtbot, "linear1", "relu1")  # a block inside the block
    window.blocks.nav.enter(inner)
    bar = window.blocks.nav.bar
    assert bar.text().count("›") == 2 and bar.labels[1].startswith(outer)
    shown(window, qtbot, "linear1", "(N, 64)")
    assert window.scene.levels.flat_id("linear1") == f"{outer}/{inner}/linear1"
    bar.buttons[1].click()  # the outer block's crumb
    assert [level.instance for level in window.scene.levels.path] == [outer]
    assert window.scene.selected_node_ids() == [inner]
    window.undo()  # the inner group, undone inside the outer block: the nodes are back there
    assert {"linear1", "relu1"} <= set(window.scene.nodes) and inner not in window.scene.nodes
    assert len(window.document.blocks) == 1
    bar.buttons[0].click()  # the graph's crumb
    assert not window.scene.levels.path and window.scene.selected_node_ids() == [outer]


def test_a_shared_block_asks_before_entering(tiny, qtbot, monkeypatch):
    window = tiny
    first = group_with_keys(window, qtbot, "linear1", "relu1")
    name = window.document.nodes[first].attrs["block"]
    window.palette.block_activated.emit(f"doc:{name}")  # double-click in the Blocks section
    (second,) = window.scene.selected_node_ids()
    assert second != first and window.document.nodes[second].attrs["block"] == name
    asked = []
    answer = lambda *a: asked.append(a[2]) or answers.pop(0)  # noqa: E731
    answers = [block_nav.CANCEL, block_nav.MAKE_UNIQUE, block_nav.EDIT_ALL]
    window.blocks.nav.choose = answer

    assert not window.blocks.nav.enter(second)
    assert asked[0] == f"Block {name} is used by 2 nodes: edits change all of them"
    assert not window.scene.levels.path

    before = window.document.to_dict()
    assert window.blocks.nav.enter(second)  # made unique: a copy of its own
    unique = window.document.nodes[second].attrs["block"]
    assert unique != name and window.scene.levels.block == unique
    assert window.document.nodes[first].attrs["block"] == name
    assert last_step(window) == f"Make {second} unique"
    window.blocks.nav.up()
    window.undo()
    assert window.document.to_dict() == before

    window.palette.block_activated.emit(f"doc:{name}")
    (third,) = window.scene.selected_node_ids()
    assert window.blocks.nav.enter(third) and window.scene.levels.block == name  # edit all
    assert "used by 3 nodes" in window.blocks.nav.bar.note.text()
    window.blocks.nav.up()
    assert window.blocks.nav.enter(first) and len(asked) == 3  # not asked again for this block


def test_ungroup_puts_the_nodes_back_in_one_undo_step(tiny, qtbot):
    window = tiny
    original = window.document.to_dict()
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    grouped = window.document.to_dict()
    select(window, instance)
    QTest.keyClick(window.view, Qt.Key_G, Qt.ControlModifier | Qt.ShiftModifier)
    back = window.document.to_dict()
    assert back["nodes"] == original["nodes"] and "blocks" not in back
    assert sorted(map(str, back["edges"])) == sorted(map(str, original["edges"]))
    assert sorted(window.scene.selected_node_ids()) == ["linear1", "relu1"]
    assert last_step(window) == "Ungroup"
    window.undo()
    assert window.document.to_dict() == grouped


def test_a_block_saved_to_the_library_is_listed_and_dropped_into_another_graph(tiny, qtbot, block_library):
    block_library.mkdir()
    (block_library / "Broken.loom-block.json").write_text("{not json")
    window = tiny
    window.blocks.palette.refresh()
    assert "⚠ Broken.loom-block.json" in window.blocks.palette.entries()
    assert "could not be read" in window.statusBar().currentMessage()
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.blocks.ask_text = lambda *a: ("Dense", True)
    action_named(window.blocks.menu_actions(instance), "Save block to library…").trigger()
    assert (block_library / "Dense.loom-block.json").exists()
    assert "Dense  · library" in window.blocks.palette.entries()

    window._replace_document(tiny_mlp())  # another graph, without the block
    assert "Dense  · library" in window.blocks.palette.entries()
    item = next(window.blocks.palette.group.child(i) for i in range(window.blocks.palette.group.childCount())
                if window.blocks.palette.group.child(i).text(0) == "Dense  · library")
    window.palette.tree.itemDoubleClicked.emit(item, 0)
    (added,) = window.scene.selected_node_ids()
    assert window.document.nodes[added].attrs["block"] == "Dense" and "Dense" in window.document.blocks
    assert list(window.scene.nodes[added].inputs) == ["in"]
    assert "Dense" in window.blocks.palette.entries()  # now a block of this graph too
    window.undo()
    assert "Dense" not in window.document.blocks and added not in window.document.nodes


def _group_and_promote_width(window, qtbot):
    """Group linear1 + relu1, enter the block and promote linear1's out_features as `width`
    from the inspector's row menu; stays inside. Returns (instance id, block name)."""
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    name = window.document.nodes[instance].attrs["block"]
    window.blocks.nav.enter(instance)
    window.scene.select_node("linear1")
    window.inspector.ask_text = lambda *a: ("width", True)
    action_named(promote.row_actions(window.inspector, "out_features"), promote.PROMOTE).trigger()
    return instance, name


def test_a_promoted_width_gives_two_instances_their_own_shapes(tiny, qtbot):
    window = tiny
    first, name = _group_and_promote_width(window, qtbot)
    inspector = window.inspector
    assert window.document.blocks[name].params["width"] == {"default": 64, "targets": [["linear1", "out_features"]]}
    label = inspector.form.labelForField(inspector.editors["out_features"].parentWidget())
    assert label.text() == "out_features → width" and not inspector.editors["out_features"].isEnabled()
    assert inspector.rename("dense")  # renaming the node keeps the parameter setting it
    assert window.document.blocks[name].params["width"]["targets"] == [["dense", "out_features"]]
    assert last_step(window) == "Rename linear1 → dense"
    window.blocks.nav.up()

    window.palette.block_activated.emit(f"doc:{name}")
    (second,) = window.scene.selected_node_ids()
    window.undo_stack.push(AddEdge(window.document, ("flatten1", "out"), (second, "in")))
    window.scene.select_node(second)
    assert "width" in inspector.editors and "block" not in inspector.editors
    inspector.editors["width"].setText("32")
    assert inspector.commit_text("width", "32")
    assert last_step(window) == f"Set {second}.width = 32"
    shown(window, qtbot, second, "(N, 32)")
    shown(window, qtbot, first, "(N, 64)")
    window.blocks.nav.choose = lambda *a: block_nav.EDIT_ALL
    window.blocks.nav.enter(second)  # inside, the shapes are the instance entered's
    shown(window, qtbot, "dense", "(N, 32)")
    window.scene.select_node("dense")
    assert inspector.editors["out_features"].text() == "32"  # the value of the instance entered


def test_a_problem_inside_a_block_badges_it_and_the_problems_panel_goes_there(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.blocks.nav.enter(instance)
    wire = window.editing.edge_into("linear1", "in")
    window.undo_stack.push(RemoveEdge(window.editing, wire))
    window.blocks.nav.up()
    card = window.scene.nodes[instance]
    qtbot.waitUntil(lambda: bool(card.problems))
    assert f"node {instance}/linear1, port in: required input is not connected" in card.toolTip()
    panel = window.problems
    row = next(panel.list.topLevelItem(i) for i in range(panel.list.topLevelItemCount())
               if panel.list.topLevelItem(i).text(0) == f"{instance}/linear1")
    panel.list.itemClicked.emit(row, 0)
    assert [level.instance for level in window.scene.levels.path] == [instance]
    assert window.scene.selected_node_ids() == ["linear1"]
    assert window.scene.nodes["linear1"].problems


def test_renaming_a_block_input_renames_the_instance_port(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.blocks.nav.enter(instance)
    window.scene.select_node("in")
    assert window.inspector.commit("name", "features")
    window.blocks.nav.up()
    assert list(window.scene.nodes[instance].inputs) == ["features"]
    assert window.document.edge_into(instance, "features").src == ("flatten1", "out")
    window.undo()
    assert list(window.scene.nodes[instance].inputs) == ["in"]


def test_renaming_a_block_renames_every_instance(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.blocks.ask_text = lambda *a: ("Dense", True)
    action_named(window.blocks.menu_actions(instance), "Rename block…").trigger()
    assert window.scene.nodes[instance].title == "Dense" and "Dense" in window.document.blocks
    window.blocks.nav.enter(instance)
    assert window.blocks.nav.bar.labels[-1] == f"{instance} (Dense)"
    window.undo()  # undone while inside: the canvas keeps showing the block, under its old name
    assert window.scene.levels.block != "Dense" and window.scene.levels.block in window.document.blocks
    assert set(window.scene.nodes) == {"in", "linear1", "relu1", "out"}


def test_undoing_the_group_while_inside_goes_back_to_the_graph(tiny, qtbot):
    window = tiny
    before = window.document.to_dict()
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.blocks.nav.enter(instance)
    window.undo()
    assert not window.scene.levels.path and not window.blocks.nav.bar.isVisible()
    assert window.document.to_dict() == before and "linear1" in window.scene.nodes


def test_a_graph_with_blocks_saves_and_reopens_the_same(tiny, qtbot, tmp_path):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    window.blocks.nav.enter(instance)
    window.scene.select_node("linear1")
    window.inspector.commit_text("out_features", "48")
    window.blocks.nav.up()
    window.undo_stack.push(MoveNodes(window.document, {instance: (window.document.nodes[instance].pos,
                                                                  (600.0, 200.0))}))
    path = tmp_path / "grouped.loom.json"
    assert window.save_to(str(path))
    saved = window.document.to_dict()
    window.new()
    assert window.open_path(str(path))
    assert window.document.to_dict() == saved == graphfile.load(path).to_dict()
    assert window.document.nodes[instance].pos == (600.0, 200.0)
    assert window.scene.nodes[instance].title in window.document.blocks
    shown(window, qtbot, instance, "(N, 48)")


def test_the_memory_plan_colours_buffers_by_block(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    name = window.document.nodes[instance].attrs["block"]
    view = window.run_panel.memory
    view.refresh()
    view.colour_by.setCurrentText("block")
    legend = view.legend.text()
    assert f"{instance} ({name})" in legend and "(top level)" in legend
    colours = {r.brush().color().name() for r in view.rects + view.persistent_rects}
    block_colour = block_colours([instance])[instance]
    assert block_colour in colours  # its weights and activations
    view.colour_by.setCurrentText("role")
    assert "activation" in view.legend.text() and instance not in view.legend.text()


def test_the_profile_totals_each_block_and_heats_its_card(tiny, qtbot):
    window = tiny
    instance = group_with_keys(window, qtbot, "linear1", "relu1")
    profile = window.run_panel.profile
    profile.run()
    assert f"{instance}/linear1" in profile.times
    profile.rows.setCurrentText("per block")
    rows = {profile.model.item(i, 0).text(): profile.model.item(i, 1).data(Qt.UserRole)
            for i in range(profile.model.rowCount())}
    inside = sum(t for k, t in profile.times.items() if k.startswith(f"{instance}/"))
    assert set(rows) == {instance, "(top level)"} and rows[instance] == pytest.approx(inside)
    hottest = max(inside, *(t for k, t in profile.times.items() if "/" not in k))
    assert window.scene.nodes[instance].heat == pytest.approx(inside / hottest)


def test_grouping_inside_a_block_keeps_its_promoted_attributes_working(tiny, qtbot):
    window = tiny
    outer, name = _group_and_promote_width(window, qtbot)
    window.blocks.nav.up()
    window.scene.select_node(outer)
    assert window.inspector.commit_text("width", "32")
    window.blocks.nav.enter(outer)

    inner = group_with_keys(window, qtbot, "linear1")  # the promoted Linear into a nested block
    params = window.document.blocks[name].params
    assert params["width"]["targets"] == [[inner, "width"]]  # the outer width sets the nested one
    shown(window, qtbot, inner, "(N, 32)")
    select(window, inner)
    QTest.keyClick(window.view, Qt.Key_G, Qt.ControlModifier | Qt.ShiftModifier)
    assert params["width"]["targets"] == [["linear1", "out_features"]]
    shown(window, qtbot, "linear1", "(N, 32)")
