"""Grouped graphs from the command line, as a user saves and runs them: a graph with blocks
trains to exactly the losses of the same graph drawn flat, plans the same memory with a
per-block table, infers and exports the same outputs, and `check` names problems inside a
block by path."""
import json
import subprocess
import sys

import numpy as np
import pytest

from core import graphfile
from core.blocks import group, promote

from .conftest import events, run_cli
from .flat_examples import flat_data
from .test_text_models import tiny_gpt

CONV_STAGE = ["conv2d1", "relu1", "maxpool2d1", "conv2d2", "relu2", "maxpool2d2"]


def _short_cnn(tmp_path):
    """mnist_cnn drawn flat with a training section of a few steps (the seed fixed)."""
    data = flat_data("mnist_cnn")
    data["training"].update(epochs=2, steps_per_epoch=4, batch_size=32, seed=5)
    path = tmp_path / "flat.loom.json"
    path.write_text(json.dumps(data))
    return path


def _grouped(flat_path, selection=CONV_STAGE, name="ConvStage", instance="stage1"):
    doc = graphfile.load(flat_path)
    group(doc, selection, name, instance)
    path = flat_path.with_name("grouped.loom.json")
    graphfile.save(doc, path)
    return path


def _losses(graph, out):
    result = run_cli("train", graph, "--out", out, "--events", "-")
    assert result.returncode == 0, result.stderr
    return [(e["event"], e.get("loss"), e.get("val_loss")) for e in events(result.stdout)
            if e["event"] in ("step", "epoch")]


def test_a_grouped_graph_trains_to_exactly_the_same_losses(tmp_path):
    flat = _short_cnn(tmp_path)
    grouped = _grouped(flat)
    assert "blocks" in json.loads(grouped.read_text())
    flat_losses, grouped_losses = _losses(flat, tmp_path / "a"), _losses(grouped, tmp_path / "b")
    assert len(flat_losses) == 2 * 4 + 2 and grouped_losses == flat_losses
    with np.load(tmp_path / "b" / "checkpoint.npz") as saved:
        assert "param/stage1/conv2d1.weight" in saved.files


def test_check_names_problems_inside_a_block_by_path(tmp_path):
    flat = _short_cnn(tmp_path)
    doc = graphfile.load(flat)
    group(doc, ["linear1", "relu3", "linear2"], "Head", "block1")
    doc.blocks["Head"].body.set_attr("linear2", "out_features", 0)
    path = tmp_path / "bad.loom.json"
    graphfile.save(doc, path)
    result = run_cli("check", path)
    assert result.returncode == 1
    assert f"{path}: node block1/linear2: attribute out_features: 0 is below the minimum 1" in \
        result.stdout.splitlines()
    refused = run_cli("train", path, "--out", tmp_path / "run")
    assert refused.returncode == 1 and "node block1/linear2" in refused.stderr
    ok = run_cli("check", _grouped(flat))
    assert ok.returncode == 0 and ok.stdout.endswith("ok (10 nodes, 11 edges)\n")


def test_plan_has_a_table_per_block_and_the_same_memory(tmp_path):
    flat = _short_cnn(tmp_path)
    grouped = _grouped(flat)
    plans = []
    for graph in (flat, grouped):
        result = run_cli("plan", graph, "--batch", "16", "--json")
        assert result.returncode == 0, result.stderr
        plans.append(json.loads(result.stdout))
    strip = lambda mem: {k: v for k, v in mem.items() if k != "buffers"}  # noqa: E731 (names differ)
    assert strip(plans[0]["memory"]) == strip(plans[1]["memory"])
    assert "blocks" not in plans[0]
    rows = plans[1]["blocks"]
    assert [r["block"] for r in rows] == ["stage1", "(top level)"]
    assert sum(r["parameter bytes"] for r in rows) == plans[1]["memory"]["param_bytes"]
    assert rows[0]["multiply-adds"] == 16 * (117600 + 240000)  # the two convolutions
    table = run_cli("plan", grouped, "--batch", "16")
    assert table.returncode == 0 and "blocks" in table.stdout and "stage1" in table.stdout


def test_infer_and_exported_scripts_give_the_flat_graph_outputs(tmp_path):
    flat = _short_cnn(tmp_path)
    grouped = _grouped(flat)
    np.savez(tmp_path / "in.npz", images=np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32))
    outputs = {}
    for name, graph in (("flat", flat), ("grouped", grouped)):
        result = run_cli("infer", graph, "--input", tmp_path / "in.npz", "--output", tmp_path / f"{name}.npz")
        assert result.returncode == 0, result.stderr
        with np.load(tmp_path / f"{name}.npz") as saved:
            outputs[name] = saved["logits"]
    np.testing.assert_array_equal(outputs["flat"], outputs["grouped"])  # same seed, same weights
    script = tmp_path / "model.py"
    result = run_cli("export", grouped, "--python", script, "--flavour", "loom")
    assert result.returncode == 0, result.stderr
    run = subprocess.run([sys.executable, str(script), "--input", str(tmp_path / "in.npz"),
                          "--output", str(tmp_path / "script.npz")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with np.load(tmp_path / "script.npz") as saved:
        np.testing.assert_allclose(saved["logits"], outputs["grouped"], rtol=1e-5, atol=1e-6)


def test_an_onnx_export_of_a_grouped_graph_infers_the_same(tmp_path):
    pytest.importorskip("onnx")
    grouped = _grouped(_short_cnn(tmp_path))
    np.savez(tmp_path / "in.npz", images=np.ones((2, 1, 28, 28), np.float32))
    exported = run_cli("export", grouped, "-o", tmp_path / "m.onnx")
    assert exported.returncode == 0, exported.stderr
    for name, model in (("loom", grouped), ("onnx", tmp_path / "m.onnx")):
        result = run_cli("infer", model, "--input", tmp_path / "in.npz", "--output", tmp_path / f"{name}.npz")
        assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "loom.npz") as a, np.load(tmp_path / "onnx.npz") as b:
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-6)


def test_a_transformer_block_with_a_promoted_width_trains_and_samples(tmp_path):
    """The tiny GPT's transformer block grouped, its MLP width promoted: the same losses as
    the flat graph, and `sample` writes text from the grouped graph's checkpoint."""
    flat = tiny_gpt(tmp_path, flat=True, epochs=1, sample_chars=0)
    doc = graphfile.load(flat)
    block = ["ln1a", "attn1", "res1a", "ln1b", "mlp1_in", "gelu1", "mlp1_out", "res1b"]
    inst = group(doc, block, "Transformer", "block1")
    promote(doc, "Transformer", "mlp_width", [["mlp1_in", "out_features"]])
    assert doc.nodes[inst].attrs == {"block": "Transformer"}
    grouped = tmp_path / "grouped.loom.json"
    graphfile.save(doc, grouped)
    assert _losses(grouped, tmp_path / "b") == _losses(flat, tmp_path / "a")
    sample = run_cli("sample", grouped, "--checkpoint", tmp_path / "b" / "checkpoint.npz",
                     "--prompt", "ROMEO:", "--chars", "20")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout) == len("ROMEO:") + 21


@pytest.mark.parametrize("width", [32, 48])
def test_a_promoted_width_is_set_from_the_instance(tmp_path, width):
    flat = _short_cnn(tmp_path)
    doc = graphfile.load(flat)
    inst = group(doc, ["linear2", "relu4"], "Dense")
    promote(doc, "Dense", "width", [["linear2", "out_features"]])
    doc.set_attr(inst, "width", width)
    path = tmp_path / "wide.loom.json"
    graphfile.save(doc, path)
    result = run_cli("plan", path, "--batch", "4", "--json")
    assert result.returncode == 0, result.stderr
    params = {r["name"]: r["bytes"] for r in json.loads(result.stdout)["persistent"]
              if r["role"] == "parameter"}
    assert params[f"{inst}/linear2.weight"] == 4 * 120 * width
    assert params["linear3.weight"] == 4 * width * 10


def test_text_generation_finds_the_text_node_inside_a_block(tmp_path):
    """The tiny GPT with its data, token and position embeddings grouped into a block:
    training writes its per-epoch samples and `sample` writes text from its checkpoint."""
    doc = graphfile.load(tiny_gpt(tmp_path, epochs=1, sample_chars=12))
    front = group(doc, ["text", "tokens", "positions"], "Front", "front1")
    assert not any(n.kind == "TextDataset" for n in doc.nodes.values())
    graph = tmp_path / "front.loom.json"
    graphfile.save(doc, graph)
    result = run_cli("train", graph, "--out", tmp_path / "run", "--events", "-")
    assert result.returncode == 0, result.stderr
    samples = [e for e in events(result.stdout) if e["event"] == "sample"]
    assert len(samples) == 1 and len(samples[0]["text"]) == len(samples[0]["prompt"]) + 12
    sample = run_cli("sample", graph, "--checkpoint", tmp_path / "run" / "checkpoint.npz",
                     "--prompt", "ROMEO:", "--chars", "20")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout) == len("ROMEO:") + 21
    with np.load(tmp_path / "run" / "checkpoint.npz") as saved:
        assert f"param/{front}/tokens.weight" in saved.files
