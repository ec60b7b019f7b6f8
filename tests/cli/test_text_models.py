"""Text models from the command line: a short run of a tiny character GPT writes a sample
after each epoch, and `sample` writes new text from its checkpoint."""
import json
import re

import pytest

from .conftest import EXAMPLES, events, run_cli
from .flat_examples import flat_data


def tiny_gpt(tmp_path, flat=False, **training):
    """The bundled baby GPT shrunk (one transformer block, width 32, context 16) with a short
    training section: the same nodes and wiring, a few seconds to train. flat: drawn without
    blocks, under the example's old node ids (ln1a, attn1, mlp1_in...)."""
    data = _one_flat_block() if flat else _one_block_instance()
    for n in data["nodes"] + data.get("blocks", {}).get("TransformerBlock", {}).get("nodes", []):
        _shrink(n)
    data["training"].update({"epochs": 2, "steps_per_epoch": 15, "batch_size": 8,
                             "warmup_steps": 5, "sample_chars": 40, "lr": 3e-3, **training})
    path = tmp_path / "tiny_gpt.loom.json"
    path.write_text(json.dumps(data))
    return path


def _one_block_instance() -> dict:
    """The example with only the first instance of its TransformerBlock (2 heads, MLP 64)."""
    data = json.loads((EXAMPLES / "shakespeare_char_gpt.loom.json").read_text())
    gone = {"block2", "block3", "block4"}
    _drop(data, gone)
    data["edges"].append({"src": ["block1", "out"], "dst": ["ln_final", "in"]})
    next(n for n in data["nodes"] if n["id"] == "block1")["attrs"].update(heads=2, mlp_width=64)
    return data


def _one_flat_block() -> dict:
    data = flat_data("shakespeare_char_gpt")
    _drop(data, {n["id"] for n in data["nodes"] if re.fullmatch(r"\D+[234]\D*", n["id"])})
    data["edges"].append({"src": ["res1b", "out"], "dst": ["ln_final", "in"]})
    return data


def _drop(data, gone):
    data["nodes"] = [n for n in data["nodes"] if n["id"] not in gone]
    data["edges"] = [e for e in data["edges"]
                     if e["src"][0] not in gone and e["dst"][0] not in gone]


def _shrink(node):
    attrs = node["attrs"]
    if node["kind"] == "TextDataset":
        attrs["context"] = 16
    elif node["kind"] == "PositionalEmbedding":
        attrs["length"] = 16
    elif node["kind"] == "Embedding":
        attrs["width"] = 32
    elif node["kind"] == "MultiHeadAttention":
        attrs.update(width=32, heads=2)
    elif node["id"] in ("mlp1_in", "mlp_in"):
        attrs["out_features"] = 64
    elif node["id"] in ("mlp1_out", "mlp_out"):
        attrs["out_features"] = 32


@pytest.fixture
def trained(tmp_path):
    graph = tiny_gpt(tmp_path)
    out = tmp_path / "run"
    result = run_cli("train", graph, "--out", out, "--events", "-")
    assert result.returncode == 0, result.stderr
    return graph, out, events(result.stdout)


def test_training_a_text_model_reports_samples_and_learns(trained):
    graph, out, evs = trained
    steps = [e for e in evs if e["event"] == "step"]
    assert len(steps) == 30  # steps_per_epoch, not a pass over the million characters
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.5  # from log(66) = 4.19 down
    samples = [e for e in evs if e["event"] == "sample"]
    assert [s["epoch"] for s in samples] == [1, 2]
    for s in samples:
        assert s["text"].startswith(s["prompt"]) and len(s["text"]) == len(s["prompt"]) + 40
    lrs = [e["lr"] for e in steps]  # 5 warm-up steps, then a cosine down to a tenth
    assert lrs[0] == pytest.approx(3e-3 / 5) and lrs[4] == max(lrs) > 4 * lrs[0]
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] > 3e-4


def test_sample_writes_new_text_from_a_checkpoint(trained):
    graph, out, _ = trained
    ckpt = out / "checkpoint.npz"
    first = run_cli("sample", graph, "--checkpoint", ckpt, "--prompt", "ROMEO:", "--chars", "60")
    assert first.returncode == 0, first.stderr
    text = first.stdout[:-1]  # print ends it with one newline
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 60
    again = run_cli("sample", graph, "--checkpoint", ckpt, "--prompt", "ROMEO:", "--chars", "60")
    other = run_cli("sample", graph, "--checkpoint", ckpt, "--prompt", "ROMEO:", "--chars", "60",
                    "--seed", "7")
    assert again.stdout == first.stdout and other.stdout != first.stdout  # seeded draws
    cold = run_cli("sample", graph, "--checkpoint", ckpt, "--prompt", "ROMEO:", "--chars", "60",
                   "--temperature", "0.01")
    assert cold.returncode == 0 and cold.stdout.startswith("ROMEO:")


def test_sample_refuses_what_it_cannot_use(trained, tmp_path):
    graph, out, _ = trained
    ckpt = out / "checkpoint.npz"
    bad_char = run_cli("sample", graph, "--checkpoint", ckpt, "--prompt", "Ω", "--chars", "5")
    assert bad_char.returncode == 2 and "Ω" in bad_char.stderr and "Traceback" not in bad_char.stderr
    image_model = run_cli("sample", EXAMPLES / "digits_mlp.loom.json", "--checkpoint", ckpt,
                          "--chars", "5")
    assert image_model.returncode == 2 and "TextDataset" in image_model.stderr
    (tmp_path / "other").mkdir()
    wider = tiny_gpt(tmp_path / "other")
    data = json.loads(wider.read_text())
    next(n for n in data["nodes"] if n["id"] == "block1")["attrs"]["mlp_width"] = 96
    wider.write_text(json.dumps(data))
    mismatch = run_cli("sample", wider, "--checkpoint", ckpt, "--chars", "5")
    assert mismatch.returncode == 2 and "block1/mlp_in.weight" in mismatch.stderr
    data["edges"] = [e for e in data["edges"] if e["dst"] != ["lm_head", "in"]]
    wider.write_text(json.dumps(data))
    broken = run_cli("sample", wider, "--checkpoint", ckpt, "--chars", "5")
    assert broken.returncode == 1 and "lm_head" in broken.stderr
    missing = run_cli("sample", graph, "--checkpoint", tmp_path / "none.npz", "--chars", "5")
    assert missing.returncode == 2 and "none.npz" in missing.stderr
