"""The document model's rename: ids key nodes, edges and messages; a rename keeps the order
of nodes and edges (files stay stable) and refuses names a file could not hold."""
import pytest

from core import graphfile
from core.document import GraphDocument
from core.errors import GraphError
from tests.cli.conftest import EXAMPLES


def test_rename_keeps_order_and_wires_and_saves(tmp_path):
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    order, n_edges = list(doc.nodes), len(doc.edges)
    events = []
    doc.subscribe(lambda e, p: events.append((e, p)))
    doc.rename_node("linear1", "hidden")
    assert list(doc.nodes) == [("hidden" if n == "linear1" else n) for n in order]
    assert len(doc.edges) == n_edges and doc.edge_into("relu1", "in").src == ("hidden", "out")
    assert doc.nodes["hidden"].id == "hidden" and events[-1] == ("node_renamed", {"old": "linear1", "new": "hidden"})
    graphfile.save(doc, tmp_path / "g.loom.json")
    again = graphfile.load(tmp_path / "g.loom.json")
    assert "hidden" in again.nodes and again.edge_into("relu1", "in").src == ("hidden", "out")


@pytest.mark.parametrize("name, why", [("relu1", "taken"), ("two words", "letters"),
                                       ("", "letters"), ("a/b", "letters")])
def test_rename_refuses_names_a_file_could_not_hold(name, why):
    doc = GraphDocument()
    doc.add_node("ReLU", node_id="relu1")
    doc.add_node("Tanh", node_id="tanh1")
    with pytest.raises(GraphError, match=why):
        doc.rename_node("tanh1", name)
    assert list(doc.nodes) == ["relu1", "tanh1"]


def test_saved_positions_are_rounded_to_a_tenth(tmp_path):
    doc = GraphDocument()
    doc.add_node("ReLU", pos=(10.123456789012345, -3.0000000000001))
    graphfile.save(doc, tmp_path / "g.loom.json")
    text = (tmp_path / "g.loom.json").read_text()
    assert "10.1" in text and "10.12" not in text and "-3.0" in text
