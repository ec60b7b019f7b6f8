"""Blocks in the engine: a grouped graph analyses, builds, plans and computes exactly as the
same graph drawn flat; problems inside a block are named by path and badge the block; the
block's kinds never reach the builder; documents tell their views about definitions."""
import numpy as np
import pytest

import core
from core.blocks import (TOP_LEVEL, BlockDef, add_instance, block_of, flatten, group, kind_of,
                         per_block, promote)
from core.document import GraphDocument
from core.errors import GraphError
from core.layers import analyze, build
from core.step import plan_report
from tests.cli.flat_examples import flat_doc

CONV_STAGE = ["conv2d1", "relu1", "maxpool2d1", "conv2d2", "relu2", "maxpool2d2"]


def cnn():
    """The CNN example drawn flat (its conv stages not yet a block)."""
    return flat_doc("mnist_cnn")


def grouped_cnn():
    doc = cnn()
    return doc, group(doc, CONV_STAGE, "ConvStage", "stage1")


def test_a_grouped_stage_shows_the_sums_of_what_it_holds():
    flat_doc = cnn()
    before = analyze(flat_doc).nodes
    doc, inst = grouped_cnn()
    analysis = analyze(doc)
    assert analysis.problems == []
    info = analysis.nodes[inst]
    assert info.params == sum(before[n].params for n in CONV_STAGE) > 0
    assert info.macs == sum(before[n].macs for n in CONV_STAGE) > 0
    assert info.out_shapes == {"out": before["maxpool2d2"].out_shapes["out"]} == {"out": (None, 16, 5, 5)}
    # the editor shows shapes inside the instance under path ids
    assert analysis.nodes["stage1/conv2d1"] == before["conv2d1"]
    assert analysis.nodes["linear1"] == before["linear1"]


def test_flatten_puts_inner_nodes_in_the_instance_place_under_paths():
    doc, inst = grouped_cnn()
    flat = flatten(doc)
    original = cnn()
    assert [block_of(n) or n for n in flat.nodes] == \
        ["data", *["stage1"] * 6, *list(original.nodes)[7:]]
    assert [n.split("/")[-1] for n in flat.nodes] == list(original.nodes)
    assert not any(n.kind.startswith("Block") for n in flat.nodes.values())
    strip = lambda end: (end[0].split("/")[-1], end[1])  # noqa: E731
    assert sorted((strip(e.src), strip(e.dst)) for e in flat.edges) == \
        sorted((e.src, e.dst) for e in original.edges)
    assert (flat.name, flat.training, flat.base_dir, flat.weights) == \
        (doc.name, doc.training, doc.base_dir, doc.weights)


def test_a_document_without_blocks_is_not_copied():
    doc = cnn()
    assert flatten(doc) is doc


def _first_loss(doc):
    """The loss of one step from initial weights (seed 0), on a fixed batch."""
    built = build(doc, training=True, batch=4)
    rng = np.random.default_rng(0)
    feed = {p: core.init_value(p, rng) for p in built.parameters}
    feed[built.feed_of("data")] = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    feed[built.feed_of("label")] = np.array([1, 2, 3, 4])
    return core.Executor([built.loss]).run(feed)[0], built


def test_a_grouped_graph_builds_the_same_parameters_in_the_same_order_and_computes_the_same():
    doc, _ = grouped_cnn()
    loss, built = _first_loss(doc)
    flat_loss, flat_built = _first_loss(cnn())
    assert [p.name.split("/")[-1] for p in built.parameters] == [p.name for p in flat_built.parameters]
    assert [p.attrs["shape"] for p in built.parameters] == [p.attrs["shape"] for p in flat_built.parameters]
    assert built.parameters[0].name == "stage1/conv2d1.weight"
    assert loss == flat_loss
    # an instance's output port names the value of the node computing it
    assert built.outputs[("stage1", "out")] is built.outputs[("stage1/maxpool2d2", "out")]


def test_inference_finds_outputs_and_losses_inside_blocks():
    from core.inference import inference_graph
    doc = GraphDocument("tiny")
    doc.add_node("Input", {"shape": [3]}, node_id="x")
    doc.add_node("Linear", {"out_features": 2}, node_id="lin")
    doc.add_edge(("x", "out"), ("lin", "in"))
    group(doc, ["lin"], "Head")
    graph = inference_graph(doc)  # no loss: the unread output, named by its path
    assert list(graph.outputs) == ["head1/lin"] and list(graph.inputs) == ["x"]
    doc = cnn()
    group(doc, ["linear3", "loss", "accuracy"], "Classifier")
    assert list(inference_graph(doc).outputs) == ["logits"]  # what feeds the loss, as before


def test_build_order_follows_the_document_where_dependencies_allow():
    doc = GraphDocument()
    for name in ("c", "a", "b"):
        doc.add_node("Input", {"shape": [2]}, node_id=name)
    doc.add_node("Add", node_id="sum")
    doc.add_edge(("b", "out"), ("sum", "a"))
    doc.add_edge(("a", "out"), ("sum", "b"))
    assert core.layers.doc_order(doc) == ["c", "a", "b", "sum"]


def test_the_plan_is_the_same_and_totals_per_block_add_up():
    doc, _ = grouped_cnn()
    grouped, flat = plan_report(doc, 16), plan_report(cnn(), 16)
    unnamed = lambda mem: {**mem, "buffers": [{**b, "name": ""} for b in mem["buffers"]]}  # noqa: E731
    assert unnamed(grouped["memory"]) == unnamed(flat["memory"])
    assert [r["bytes"] for r in grouped["schedule"]] == [r["bytes"] for r in flat["schedule"]]
    assert "blocks" not in flat
    rows = {r["block"]: r for r in grouped["blocks"]}
    assert list(rows) == ["stage1", TOP_LEVEL]
    params = sum(r["bytes"] for r in grouped["persistent"] if r["role"] == "parameter")
    assert sum(r["parameter bytes"] for r in rows.values()) == params
    assert rows["stage1"]["parameter bytes"] == 4 * 2572
    info = analyze(doc).nodes
    assert rows["stage1"]["multiply-adds"] == 16 * info["stage1"].macs
    assert rows[TOP_LEVEL]["multiply-adds"] == 16 * sum(info[n].macs for n in ("linear1", "linear2", "linear3"))


def test_per_block_sums_by_top_level_instance():
    totals = {"stage1/conv1": 2, "data": 1, "stage1/inner/leaf": 3, "stage2/x": 5, "loss": 1}
    assert per_block(totals) == {"stage1": 5, TOP_LEVEL: 2, "stage2": 5}
    assert block_of("outer/inner/leaf") == "outer" and block_of("linear1") is None


def test_problems_inside_a_block_are_named_by_path_and_badge_it():
    doc, inst = grouped_cnn()
    doc.blocks["ConvStage"].body.set_attr("conv2d2", "kernel", 0)
    analysis = analyze(doc)
    assert [str(p) for p in analysis.problems] == \
        ["node stage1/conv2d2: attribute kernel: 0 is below the minimum 1"]
    assert analysis.problems_of("stage1") == analysis.problems
    assert analysis.problems_of("stage") == [] and "stage1" not in analysis.nodes


def test_an_unknown_definition_is_reported_and_its_readers_skipped():
    doc, inst = grouped_cnn()
    doc.set_attr(inst, "block", "Missing")
    problems = [str(p) for p in analyze(doc).problems]
    assert problems == ["node stage1: unknown block 'Missing'"]
    with pytest.raises(GraphError, match="^node stage1: unknown block 'Missing'$"):
        flatten(doc)
    with pytest.raises(GraphError, match="node stage1: unknown block"):
        build(doc)


def test_a_wire_to_a_port_the_block_lacks_names_the_instance():
    doc, inst = grouped_cnn()
    doc.add_edge(("data", "images"), (inst, "nope"))
    assert "node stage1, port nope: Block has no input port 'nope'" in [str(p) for p in analyze(doc).problems]
    with pytest.raises(GraphError, match="^node stage1: block 'ConvStage' has no input port 'nope'$"):
        flatten(doc)


def test_a_wire_from_a_port_a_node_lacks_is_reported_not_a_crash():
    doc = cnn()
    doc.remove_edge(doc.edge_into("linear2", "in"))
    doc.add_edge(("relu3", "nope"), ("linear2", "in"))
    assert [str(p) for p in analyze(doc).problems] == ["node relu3, port nope: ReLU has no output port 'nope'"]


def test_an_unconnected_block_input_is_reported_on_the_instance_only():
    doc, inst = grouped_cnn()
    doc.remove_edge(doc.edge_into(inst, "in"))
    assert [str(p) for p in analyze(doc).problems] == ["node stage1, port in: required input is not connected"]


def test_a_definition_containing_itself_is_refused_by_path():
    doc, inst = grouped_cnn()
    body = doc.blocks["ConvStage"].body
    with pytest.raises(GraphError, match="contain itself"):
        add_instance(body, "ConvStage", (0, 0))
    body.add_node("Block", {"block": "ConvStage"}, node_id="again")  # as a hand-edited file could
    with pytest.raises(GraphError, match=r"^node stage1/again: block 'ConvStage' contains itself "
                                         r"\(ConvStage -> ConvStage\)$"):
        flatten(doc)
    assert "node stage1/again: block 'ConvStage' contains itself (ConvStage -> ConvStage)" in \
        [str(p) for p in analyze(doc).problems]


@pytest.mark.parametrize("kind", ["BlockInput", "BlockOutput", "Block"])
def test_block_kinds_are_never_built(kind):
    doc = GraphDocument()
    doc.add_node(kind, {"name": "x"} if kind != "Block" else {"block": "Ghost"}, node_id="n")
    if kind == "BlockOutput":
        doc.add_node("Input", {"shape": [3]}, node_id="x")
        doc.add_edge(("x", "out"), ("n", "in"))
    problems = [str(p) for p in analyze(doc).problems]
    expected = "unknown block 'Ghost'" if kind == "Block" else f"{kind} only lives inside a block"
    assert any(expected in p for p in problems), problems
    with pytest.raises(GraphError, match=expected):
        build(doc)


def test_kind_of_gives_an_instance_its_definition_ports_and_promoted_attributes():
    doc, inst = grouped_cnn()
    body = doc.blocks["ConvStage"].body
    body.set_attr("in", "name", "pixels")
    promote(doc, "ConvStage", "channels", [["conv2d2", "out_channels"]])
    kind = kind_of(doc, doc.nodes[inst])
    assert [(p.name, p.type) for p in kind.inputs] == [("pixels", "data")]
    assert [(p.name, p.type) for p in kind.outputs] == [("out", "data")]
    channels = kind.attrs[1]
    assert (kind.attrs[0].name, channels.name, channels.type, channels.default, channels.min) == \
        ("block", "channels", "int", 16, 1)
    assert kind_of(doc, doc.nodes["relu3"]) is core.layers.LAYERS["ReLU"]
    body.set_attr("in", "type", "label")
    assert kind_of(body, body.nodes["in"]).outputs[0].type == "label"
    doc.set_attr(inst, "block", "Ghost")
    ghost = kind_of(doc, doc.nodes[inst])
    assert ghost.inputs == ghost.outputs == ()


def test_definitions_tell_the_document_views_when_they_change():
    doc, inst = grouped_cnn()
    seen = []
    doc.subscribe(lambda event, payload: seen.append((event, payload)))
    body = doc.blocks["ConvStage"].body
    body.set_attr("conv2d1", "out_channels", 8)
    assert seen[-1] == ("block_changed", {"block": "ConvStage", "change": "attr_changed",
                                          "node": "conv2d1", "attr": "out_channels"})
    doc.rename_block("ConvStage", "Features")
    assert doc.nodes[inst].attrs["block"] == "Features" and list(doc.blocks) == ["Features"]
    assert seen[-1] == ("block_renamed", {"old": "ConvStage", "new": "Features"})
    body.move_node("relu1", (1, 2))
    assert seen[-1][0] == "block_changed" and seen[-1][1]["block"] == "Features"
    defn = doc.remove_block("Features")
    assert seen[-1] == ("block_removed", {"block": "Features"})
    count = len(seen)
    body.move_node("relu1", (3, 4))  # a removed definition no longer speaks for the document
    assert len(seen) == count
    doc.add_block(defn)
    assert seen[-1] == ("block_added", {"block": "Features"}) and analyze(doc).problems == []
    with pytest.raises(GraphError, match="already exists"):
        doc.add_block(BlockDef("Features", GraphDocument()))
    with pytest.raises(GraphError, match="block name"):
        doc.rename_block("Features", "two words")
    with pytest.raises(GraphError, match="belongs to another graph"):
        GraphDocument().add_block(doc.blocks["Features"])


def test_loaded_blocks_keep_telling_the_document():
    doc, _ = grouped_cnn()
    again = GraphDocument.from_dict(doc.to_dict())
    seen = []
    again.subscribe(lambda event, payload: seen.append(event))
    again.blocks["ConvStage"].body.move_node("relu1", (0, 0))
    assert seen == ["block_changed"] and again.blocks["ConvStage"].body.owner is again
