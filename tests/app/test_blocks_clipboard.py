"""A block card copied into another graph brings its definition (and the blocks it uses);
undoing the paste takes them away again; an existing identical definition is reused."""
from app.main_window import EXAMPLES


def test_a_copied_block_pastes_into_another_graph_with_its_definition(window):
    assert window.open_path(EXAMPLES / "mnist_cnn.loom.json")
    window.scene.clearSelection()
    window.scene.select_node("stage2")
    window.copy_selection()
    window.new()
    assert "ConvStage" not in window.document.blocks
    window.paste(at_cursor=False)
    pasted = [n for n in window.document.nodes.values() if n.kind == "Block"]
    assert len(pasted) == 1 and pasted[0].attrs["block"] == "ConvStage"
    assert "ConvStage" in window.document.blocks
    window.scene.refresh_analysis()
    messages = [p.message for p in window.scene.analysis.problems_of(pasted[0].id)]
    assert messages and not any("unknown" in m for m in messages)  # only its open input
    assert set(window.scene.nodes[pasted[0].id].outputs) == {"out"}  # the definition's port
    window.undo()
    assert window.document.nodes == {} or not any(n.kind == "Block" for n in window.document.nodes.values())
    assert "ConvStage" not in window.document.blocks
    window.redo()
    assert "ConvStage" in window.document.blocks


def test_pasting_twice_reuses_the_definition(window):
    assert window.open_path(EXAMPLES / "mnist_cnn.loom.json")
    window.scene.clearSelection()
    window.scene.select_node("stage1")
    window.copy_selection()
    window.paste(at_cursor=False)
    doc = window.document
    assert list(doc.blocks) == ["ConvStage"]
    assert sum(n.kind == "Block" for n in doc.nodes.values()) == 3
