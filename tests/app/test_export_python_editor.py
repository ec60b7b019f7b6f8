"""File > Export as Python from the editor: the script (blocks as classes or functions) and
its weights beside it, as `main.py export --python` writes them; a refusal is one message."""
import importlib.util
import py_compile

import numpy as np
import pytest

from app.main_window import EXAMPLES


def _open_cnn(window):
    assert window.open_path(EXAMPLES / "mnist_cnn.loom.json")


def test_the_loom_flavour_writes_a_function_per_block_and_runs(window, tmp_path):
    _open_cnn(window)
    action = window.export_python_actions["loom"]
    assert action.text() == "Export as Python (Loom)…"
    out = tmp_path / "cnn.py"
    assert window.export_python(out, "loom")
    py_compile.compile(str(out), doraise=True)
    source = out.read_text()
    assert "def conv_stage(" in source and source.count("conv_stage(") >= 3  # 1 def + 2 calls
    assert (tmp_path / "cnn.weights.npz").exists()
    assert "Exported" in window.statusBar().currentMessage()
    assert "initial weights" in window.statusBar().currentMessage()


def test_the_torch_flavour_writes_a_module_per_block(window, tmp_path):
    pytest.importorskip("torch", reason="torch is installed by `make bench`, not by `make test`")
    _open_cnn(window)
    out = tmp_path / "cnn_torch.py"
    assert window.export_python(out, "torch")
    py_compile.compile(str(out), doraise=True)
    assert "class ConvStage(nn.Module)" in out.read_text()


def test_a_graph_the_flavour_cannot_write_is_one_message(window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("app.interop_actions.QMessageBox.warning", lambda *a: shown.append(a[2]))
    doc = window.document  # the digits MLP
    first = next(n for n in doc.nodes if doc.nodes[n].kind == "Linear")
    reader, port = next(e.dst for e in doc.edges if e.src[0] == first)
    doc.remove_edge(next(e for e in doc.edges if e.src[0] == first))
    doc.add_node("exp", {}, (0.0, 0.0), "raw_exp")  # a raw op: the torch flavour refuses it
    doc.add_edge((first, "out"), ("raw_exp", "x"))
    doc.add_edge(("raw_exp", "out"), (reader, port))
    out = tmp_path / "refused.py"
    assert not window.export_python(out, "torch")
    assert not out.exists() and len(shown) == 1 and "raw_exp" in shown[0]
