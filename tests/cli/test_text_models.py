"""Text models from the command line: a short run of a tiny character GPT writes a sample
after each epoch, and `sample` writes new text from its checkpoint."""
import json

import pytest

from .conftest import EXAMPLES, events, run_cli


def tiny_gpt(tmp_path, **training):
    """The bundled baby GPT shrunk (one block, width 32, context 16) with a short training
    section: the same nodes and wiring, a few seconds to train."""
    data = json.loads((EXAMPLES / "shakespeare_char_gpt.loom.json").read_text())
    blocks = {n["id"] for n in data["nodes"] if n["id"][-2:-1].isdigit() and n["id"][-2] != "1"
              or any(n["id"].startswith(p) for p in ("ln2", "ln3", "ln4", "attn2", "attn3", "attn4",
                                                    "res2", "res3", "res4", "gelu2", "gelu3", "gelu4",
                                                    "mlp2", "mlp3", "mlp4"))}
    data["nodes"] = [n for n in data["nodes"] if n["id"] not in blocks]
    data["edges"] = [e for e in data["edges"] if e["src"][0] not in blocks and e["dst"][0] not in blocks]
    data["edges"].append({"src": ["res1b", "out"], "dst": ["ln_final", "in"]})
    for n in data["nodes"]:
        attrs = n["attrs"]
        if n["kind"] == "TextDataset":
            attrs["context"] = 16
        elif n["kind"] == "PositionalEmbedding":
            attrs["length"] = 16
        elif n["kind"] == "Embedding":
            attrs["width"] = 32
        elif n["kind"] == "MultiHeadAttention":
            attrs.update(width=32, heads=2)
        elif n["id"] == "mlp1_in":
            attrs["out_features"] = 64
        elif n["id"] == "mlp1_out":
            attrs["out_features"] = 32
    data["training"].update({"epochs": 2, "steps_per_epoch": 15, "batch_size": 8,
                             "warmup_steps": 5, "sample_chars": 40, "lr": 3e-3, **training})
    path = tmp_path / "tiny_gpt.loom.json"
    path.write_text(json.dumps(data))
    return path


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
    next(n for n in data["nodes"] if n["id"] == "mlp1_in")["attrs"]["out_features"] = 96
    wider.write_text(json.dumps(data))
    mismatch = run_cli("sample", wider, "--checkpoint", ckpt, "--chars", "5")
    assert mismatch.returncode == 2 and "mlp1_in.weight" in mismatch.stderr
    data["edges"] = [e for e in data["edges"] if e["dst"] != ["lm_head", "in"]]
    wider.write_text(json.dumps(data))
    broken = run_cli("sample", wider, "--checkpoint", ckpt, "--chars", "5")
    assert broken.returncode == 1 and "lm_head" in broken.stderr
    missing = run_cli("sample", graph, "--checkpoint", tmp_path / "none.npz", "--chars", "5")
    assert missing.returncode == 2 and "none.npz" in missing.stderr
