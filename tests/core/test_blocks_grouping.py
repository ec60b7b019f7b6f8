"""Group, ungroup, instances and promoted attributes, driven as the editor drives them:
grouping then ungrouping gives back the same document on every bundled example, refusals are
one clear line, nested blocks flatten to paths, and one definition serves several sizes."""
import pytest

from core import graphfile
from core.blocks import (add_instance, flatten, group, kind_of, promote, rename_port, ungroup,
                         unpromote)
from core.document import GraphDocument
from core.errors import GraphError
from core.layers import analyze, build
from tests.cli.conftest import EXAMPLES
from tests.cli.flat_examples import flat_doc

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.loom.json"))


def _nodes(doc):
    return [(n.id, n.kind, n.attrs, tuple(n.pos)) for n in doc.nodes.values()]


def _edges(doc):
    return sorted((e.src, e.dst) for e in doc.edges)


def _selections(doc):
    """Runs of 1, 2 and 3 nodes at a few places, and every other node of the first eight."""
    ids = list(doc.nodes)
    runs = [ids[i:i + n] for n in (1, 2, 3) for i in range(0, len(ids) - n + 1, max(1, len(ids) // 4))]
    return [(run, True) for run in runs] + [(ids[1:9:2], False)]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_group_then_ungroup_gives_the_document_back(path):
    tried = 0
    for selection, contiguous in _selections(graphfile.load(path)):
        doc = graphfile.load(path)
        before_nodes, before_edges, blocks = _nodes(doc), _edges(doc), list(doc.blocks)
        try:
            inst = group(doc, selection)
        except GraphError as exc:  # a selection an outside node reads from and feeds
            assert not contiguous and "both reads from and feeds the selection" in str(exc)
            assert _nodes(doc) == before_nodes and _edges(doc) == before_edges  # untouched
            continue
        tried += 1
        assert not set(selection) & (set(doc.nodes) - {inst})
        assert list(doc.nodes).index(inst) == [n[0] for n in before_nodes].index(selection[0])
        assert analyze(doc).problems == analyze(graphfile.load(path)).problems
        put_back = ungroup(doc, inst)
        assert sorted(put_back) == sorted(selection)
        after = _nodes(doc)
        assert (after if contiguous else sorted(after, key=str)) == \
            (before_nodes if contiguous else sorted(before_nodes, key=str))
        assert _edges(doc) == before_edges and list(doc.blocks) == blocks  # the new one gone
    assert tried >= 6


def test_a_saved_grouped_graph_ungroups_to_the_original(tmp_path):
    doc = flat_doc("mnist_cnn")
    before = doc.to_dict()
    inst = group(doc, ["relu1", "maxpool2d1", "conv2d2"])
    graphfile.save(doc, tmp_path / "g.loom.json")
    again = graphfile.load(tmp_path / "g.loom.json")
    ungroup(again, inst)
    after = again.to_dict()
    assert after["nodes"] == before["nodes"]
    assert sorted(map(str, after["edges"])) == sorted(map(str, before["edges"]))
    assert "blocks" not in after


def test_ungroup_moves_the_nodes_as_far_as_the_instance_moved():
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    before = {n.id: n.pos for n in doc.nodes.values()}
    inst = group(doc, ["linear1", "relu1"])
    x, y = doc.nodes[inst].pos
    doc.move_node(inst, (x + 100, y - 50))
    ungroup(doc, inst)
    assert doc.nodes["linear1"].pos == (before["linear1"][0] + 100, before["linear1"][1] - 50)
    assert doc.nodes["flatten1"].pos == before["flatten1"]


def test_group_names_ports_after_the_inner_ports_and_places_the_instance():
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    inst = group(doc, ["data", "flatten1"])
    assert inst == "group1_1" and list(doc.blocks) == ["Group1"] and list(doc.nodes)[0] == inst
    defn = doc.blocks["Group1"]
    assert defn.inputs() == [] and defn.outputs() == [("out", "data"), ("labels", "label")]
    assert list(defn.body.nodes) == ["data", "flatten1", "out", "out_labels"]
    xs = [defn.body.nodes[n].pos[0] for n in defn.body.nodes]
    assert xs[-1] > max(xs[:-2]) and doc.nodes[inst].pos == defn.origin
    assert doc.edge_into("loss", "labels").src == (inst, "labels")
    assert analyze(doc).problems == []
    second = group(doc, ["linear1", "relu1", "linear2"])
    assert doc.nodes[second].attrs == {"block": "Group2"}
    assert [kind_of(doc, doc.nodes[second]).inputs[0].name] == ["in"]


def test_one_outside_value_read_twice_inside_is_one_port():
    doc = GraphDocument()
    doc.add_node("Input", {"shape": [4]}, node_id="x")
    doc.add_node("Input", {"shape": [4]}, node_id="y")
    for n in ("a", "b"):
        doc.add_node("Add", node_id=n)
    doc.add_edge(("x", "out"), ("a", "a"))
    doc.add_edge(("x", "out"), ("b", "a"))
    doc.add_edge(("y", "out"), ("a", "b"))
    doc.add_edge(("y", "out"), ("b", "b"))
    inst = group(doc, ["a", "b"], "Pair")
    assert doc.blocks["Pair"].inputs() == [("a", "data"), ("b", "data")]
    assert doc.blocks["Pair"].outputs() == []
    assert [e.src for e in doc.edges_into(inst)] == [("x", "out"), ("y", "out")]


def test_refusals_are_one_clear_line_and_change_nothing():
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    snapshot = doc.to_dict()
    with pytest.raises(GraphError, match="nothing is selected"):
        group(doc, [])
    with pytest.raises(GraphError, match="node relu1 both reads from and feeds the selection"):
        group(doc, ["linear1", "linear2"])
    with pytest.raises(GraphError, match="no node 'ghost'"):
        group(doc, ["ghost"])
    with pytest.raises(GraphError, match="node id 'loss' is taken"):
        group(doc, ["relu1"], instance_id="loss")
    assert doc.to_dict() == snapshot
    inst = group(doc, ["relu1"], "Act")
    with pytest.raises(GraphError, match=f"node {inst} is an instance of block 'Act', which cannot contain itself"):
        group(doc, [inst, "linear2"], "Act")
    with pytest.raises(GraphError, match="a block named 'Act' already exists"):
        group(doc, ["linear2"], "Act")
    body = doc.blocks["Act"].body
    with pytest.raises(GraphError, match="cannot contain an instance of 'Act'"):
        add_instance(body, "Act", (0, 0))
    with pytest.raises(GraphError, match="is a port of the block"):
        group(body, ["in", "relu1"])
    with pytest.raises(GraphError, match="not a block instance"):
        ungroup(doc, "linear1")


def _nested():
    """digits_mlp with relu1 in block Act, and Act's instance with linear1 in block Dense."""
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    act = group(doc, ["relu1"], "Act")
    dense = group(doc, ["linear1", act], "Dense")
    return doc, dense, act


def test_nested_blocks_flatten_to_paths_and_compute_the_same():
    doc, dense, act = _nested()
    flat = flatten(doc)
    assert list(flat.nodes) == ["data", "flatten1", "dense1/linear1", "dense1/act1/relu1",
                                "linear2", "loss", "accuracy"]
    analysis = analyze(doc)
    assert analysis.problems == []
    original = analyze(graphfile.load(EXAMPLES / "digits_mlp.loom.json")).nodes
    assert analysis.nodes["dense1/act1"].out_shapes == original["relu1"].out_shapes
    assert analysis.nodes["dense1"].params == original["linear1"].params
    assert [p.name for p in build(doc).parameters][:2] == ["dense1/linear1.weight", "dense1/linear1.bias"]
    assert ungroup(doc, dense) == ["linear1", act]
    assert list(doc.blocks) == ["Act"] and analyze(doc).problems == []


def test_a_block_edited_inside_regroups_into_a_nested_block():
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    inst = group(doc, ["linear1", "relu1"], "Dense")
    body = doc.blocks["Dense"].body
    inner = group(body, ["relu1"], "Act")  # the editor, inside block Dense
    assert list(doc.blocks) == ["Dense", "Act"] and inner in body.nodes
    assert f"{inst}/{inner}/relu1" == "dense1/act1/relu1" in flatten(doc).nodes
    assert analyze(doc).problems == []


def _two_dense_layers():
    """digits_mlp whose hidden layer is an instance of Dense (width promoted), followed by a
    second instance of Dense of another width."""
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    first = group(doc, ["linear1", "relu1"], "Dense")
    promote(doc, "Dense", "width", [["linear1", "out_features"]])
    second = add_instance(doc, "Dense", (500.0, 0.0))
    doc.remove_edge(doc.edge_into("linear2", "in"))
    doc.add_edge((first, "out"), (second, "in"))
    doc.add_edge((second, "out"), ("linear2", "in"))
    doc.set_attr(second, "width", 16)
    return doc, first, second


def test_two_instances_of_one_definition_take_their_own_widths():
    doc, first, second = _two_dense_layers()
    assert doc.nodes[second].attrs == {"block": "Dense", "width": 16}
    analysis = analyze(doc)
    assert analysis.problems == []
    assert analysis.nodes[first].out_shapes == {"out": (None, 64)}
    assert analysis.nodes[second].out_shapes == {"out": (None, 16)}
    assert analysis.nodes[second].params == 64 * 16 + 16
    assert flatten(doc).nodes["dense2/linear1"].attrs["out_features"] == 16
    doc.set_attr(second, "width", 0)
    assert "node dense2/linear1: attribute out_features: 0 is below the minimum 1" in \
        [str(p) for p in analyze(doc).problems]


def test_ungroup_writes_promoted_values_into_the_nodes():
    doc, first, second = _two_dense_layers()
    assert ungroup(doc, second) == ["linear1", "relu1"]  # their ids are free at the top
    assert doc.nodes["linear1"].attrs["out_features"] == 16 and "Dense" in doc.blocks
    assert ungroup(doc, first) == ["linear3", "relu2"]  # taken now: fresh ids
    assert doc.nodes["linear3"].attrs["out_features"] == 64 and doc.blocks == {}
    assert doc.edge_into("linear1", "in").src == ("relu2", "out")
    assert analyze(doc).problems == []


def test_promotion_is_checked_and_can_be_taken_back():
    doc, first, second = _two_dense_layers()
    with pytest.raises(GraphError, match="has no attribute 'nope'"):
        promote(doc, "Dense", "w2", [["linear1", "nope"]])
    with pytest.raises(GraphError, match="already set by 'width'"):
        promote(doc, "Dense", "w2", [["linear1", "out_features"]])
    with pytest.raises(GraphError, match="has no node 'in'"):
        promote(doc, "Dense", "w2", [["in", "name"]])
    with pytest.raises(GraphError, match="default out_features: 0 is below"):
        promote(doc, "Dense", "width", [["linear1", "out_features"]], default=0)
    events = []
    doc.subscribe(lambda e, p: events.append((e, p.get("change"))))
    entry = unpromote(doc, "Dense", "width")
    assert entry == {"default": 64, "targets": [["linear1", "out_features"]]}
    assert ("block_changed", "params_changed") in events
    assert "width" not in doc.nodes[second].attrs and doc.blocks["Dense"].params == {}
    assert analyze(doc).nodes[second].out_shapes == {"out": (None, 64)}


def test_renaming_a_port_rewires_every_instance():
    doc, first, second = _two_dense_layers()
    order = list(doc.edges)
    assert rename_port(doc, "Dense", "out", "hidden") == "out"
    assert doc.blocks["Dense"].outputs() == [("hidden", "data")]
    assert [e.src for e in doc.edges_into(second)] == [(first, "hidden")]
    assert doc.edge_into("linear2", "in").src == (second, "hidden")
    assert len(doc.edges) == len(order) and analyze(doc).problems == []
    rename_port(doc, "Dense", "in", "x")
    assert doc.edge_into(second, "x").src == (first, "hidden")
    with pytest.raises(GraphError, match="already has a port named 'x'"):
        doc.blocks["Dense"].body.add_node("BlockInput", {"name": "y"}, node_id="in_y")
        rename_port(doc, "Dense", "in_y", "x")
    with pytest.raises(GraphError, match="no port node 'linear1'"):
        rename_port(doc, "Dense", "linear1", "z")
