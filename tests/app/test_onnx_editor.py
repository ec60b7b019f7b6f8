"""ONNX from the editor: File > Open takes an .onnx model (imported beside it, weights and
all), File > Export ONNX writes the inference graph with the last run's weights."""
import numpy as np
import onnx
import pytest

from app.main_window import EXAMPLES
from core import graphfile
from core.interop.onnx_export import export_file
from core.weights import load_weights


def test_opening_an_onnx_model_imports_it_beside_the_model(window, tmp_path):
    model = tmp_path / "digits.onnx"
    export_file(graphfile.load(EXAMPLES / "digits_mlp.loom.json"), model)
    (tmp_path / "digits.loom.json").write_text("{}")  # taken: the import must not overwrite it
    assert window.open_path(model)
    graph = tmp_path / "digits-2.loom.json"
    assert window.current_path == str(graph) and graph.exists()
    assert (tmp_path / "digits.loom.json").read_text() == "{}"
    doc = window.document
    kinds = {n.kind for n in doc.nodes.values()}
    assert "Linear" in kinds and "Input" in kinds
    weights = load_weights(tmp_path / doc.weights)
    assert any(v.shape == (64, 64) for v in weights.values())  # the first Linear's weight
    assert "Imported digits.onnx" in window.statusBar().currentMessage()


def test_a_broken_onnx_file_is_one_message_and_nothing_changes(window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("app.interop_actions.QMessageBox.warning", lambda *a: shown.append(a[2]))
    before = set(window.document.nodes)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert not window.open_path(bad)
    assert set(window.document.nodes) == before and "broken.onnx" in window.statusBar().currentMessage()
    assert len(shown) == 1 and "broken.onnx" in shown[0]
    assert not list(tmp_path.glob("*.loom.json"))


def test_export_onnx_writes_a_checked_model(window, tmp_path):
    out = tmp_path / "model.onnx"
    assert window.export_onnx(out)
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["logits"]
    assert "initial weights" in window.statusBar().currentMessage()


def test_a_graph_larger_than_the_default_canvas_is_framed_whole(window):
    doc = window.document
    far = doc.add_node("ReLU", {}, (21000.0, 13000.0), "far_away")
    window.view.frame_all()
    scene = window.view.scene()
    card = scene.nodes[far].sceneBoundingRect()
    assert scene.sceneRect().contains(card)
    visible = window.view.mapToScene(window.view.viewport().rect()).boundingRect()
    assert visible.contains(card.center())
