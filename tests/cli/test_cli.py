"""End-to-end runs of the CLI in a subprocess, on the bundled examples."""
import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from .conftest import EXAMPLES, ROOT, cli_command, events, run_cli

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.loom.json"))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_check_accepts_every_example(path):
    result = run_cli("check", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_check_lists_problems_with_node_and_exit_1(tmp_path):
    data = json.loads((EXAMPLES / "digits_mlp.loom.json").read_text())
    loss = next(n for n in data["nodes"] if n["kind"] == "SoftmaxCrossEntropy")
    data["edges"] = [e for e in data["edges"] if e["dst"][0] != loss["id"] or e["dst"][1] != "logits"]
    bad = tmp_path / "bad.loom.json"
    bad.write_text(json.dumps(data))
    result = run_cli("check", bad)
    assert result.returncode == 1
    assert loss["id"] in result.stdout and "logits" in result.stdout


def test_malformed_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.loom.json"
    bad.write_text('{"format": "loom.graph", "version": 1, "nodes": [')
    result = run_cli("check", bad)
    assert result.returncode == 2
    assert "broken.loom.json" in result.stderr and "Traceback" not in result.stderr


def test_train_writes_metrics_checkpoint_and_summary(small_digits, tmp_path, device):
    out = tmp_path / "run"
    result = run_cli("train", small_digits, "--out", out, "--events", "-", device=device)
    assert result.returncode == 0, result.stderr
    evs = events(result.stdout)
    kinds = [e["event"] for e in evs]
    assert kinds.count("epoch") == 2 and kinds[-1] == "done"
    step = next(e for e in evs if e["event"] == "step")
    assert {"epoch", "step", "loss", "samples_per_s", "memory"} <= set(step)
    assert step["memory"]["planned_bytes"] > 0
    assert (out / "checkpoint.npz").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["val_accuracy"] > 0.5
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == kinds.count("step") + kinds.count("epoch")


def test_same_file_and_seed_give_the_same_loss_curve_on_every_device(small_digits, tmp_path):
    """Twice on numpy, once on the strict stand-in device: bit-identical loss curves."""
    curves = []
    for name, device in (("a", "numpy"), ("b", "numpy"), ("c", "standin")):
        result = run_cli("train", small_digits, "--out", tmp_path / name, "--events", "-",
                         "--epochs", "1", device=device)
        assert result.returncode == 0, result.stderr
        curves.append([e["loss"] for e in events(result.stdout) if e["event"] == "step"])
    assert curves[0] == curves[1] == curves[2]


def test_sigint_saves_checkpoint_and_resume_continues(small_digits, tmp_path, device):
    out = tmp_path / "run"
    proc = subprocess.Popen(cli_command("train", small_digits, "--out", out, "--events", "-",
                                        "--epochs", "40", device=device),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:  # wait until a whole epoch is done, then interrupt
        seen.append(json.loads(line))
        if seen[-1]["event"] == "epoch":
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err
    done = events(rest)[-1]
    assert done["event"] == "done" and done["status"] == "stopped"
    epochs_done = done["epochs"]
    assert 1 <= epochs_done < 40
    result = run_cli("train", small_digits, "--out", out, "--events", "-", "--epochs",
                     epochs_done + 1, "--resume", device=device)
    assert result.returncode == 0, result.stderr
    resumed = [e for e in events(result.stdout) if e["event"] == "epoch"]
    assert [e["epoch"] for e in resumed] == [epochs_done + 1]


def test_resume_matches_an_uninterrupted_run(small_digits, tmp_path, device):
    straight = run_cli("train", small_digits, "--out", tmp_path / "s", "--events", "-", device=device)
    run_cli("train", small_digits, "--out", tmp_path / "r", "--epochs", "1", device=device)
    resumed = run_cli("train", small_digits, "--out", tmp_path / "r", "--events", "-", "--resume",
                      device=device)
    last = lambda r: [e for e in events(r.stdout) if e["event"] == "epoch"][-1]  # noqa: E731
    assert last(straight)["loss"] == last(resumed)["loss"]  # bit for bit, not approximately
    for key, value in _params(tmp_path / "s").items():
        np.testing.assert_array_equal(_params(tmp_path / "r")[key], value)


def test_ctrl_c_mid_epoch_then_resume_is_exact(small_digits, tmp_path, device):
    """The checkpoint saved on Ctrl-C keeps the position inside the epoch: the resumed run
    neither repeats nor skips a batch (23 steps an epoch here; stopped inside epoch 2)."""
    straight = run_cli("train", small_digits, "--out", tmp_path / "s", device=device)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen(cli_command("train", small_digits, "--out", tmp_path / "r", "--events", "-",
                                        device=device),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps = (e for e in map(json.loads, proc.stdout) if e["event"] == "step" and e["step"] >= 30)
    next(steps)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    resumed = run_cli("train", small_digits, "--out", tmp_path / "r", "--resume", device=device)
    assert resumed.returncode == 0, resumed.stderr
    for key, value in _params(tmp_path / "s").items():
        np.testing.assert_array_equal(_params(tmp_path / "r")[key], value)
    records = events((tmp_path / "r" / "metrics.jsonl").read_text())
    assert [e["step"] for e in records if e["event"] == "step"] == list(range(1, 47))


def _params(run):
    with np.load(run / "checkpoint.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k.startswith("param/")}


def test_non_finite_loss_names_a_node_and_exits_3(small_digits, tmp_path, device):
    result = run_cli("train", small_digits, "--out", tmp_path / "nan", "--events", "-",
                     "--optimizer", "sgd", "--lr", "1e30", "--epochs", "1", device=device)
    assert result.returncode == 3, result.stderr
    error = [e for e in events(result.stdout) if e["event"] == "error"][0]
    assert "NaN" in error["message"] and "node" in error["message"]


def test_missing_dataset_is_a_clear_message(tmp_path):
    data = json.loads((EXAMPLES / "digits_mlp.loom.json").read_text())
    ds = next(n for n in data["nodes"] if n["kind"] == "Dataset")
    ds["attrs"].update(name="npz", path=str(tmp_path / "nowhere.npz"))
    path = tmp_path / "missing.loom.json"
    path.write_text(json.dumps(data))
    result = run_cli("train", path, "--out", tmp_path / "o")
    assert result.returncode in (1, 2)
    assert "nowhere.npz" in (result.stdout + result.stderr)
    assert "Traceback" not in result.stderr


def test_plan_prints_tables_and_json(tmp_path):
    text = run_cli("plan", EXAMPLES / "digits_mlp.loom.json", "--batch", "32")
    assert text.returncode == 0, text.stderr
    assert "planned arena" in text.stdout
    js = run_cli("plan", EXAMPLES / "digits_mlp.loom.json", "--batch", "32", "--json")
    report = json.loads(js.stdout)
    mem = report["memory"]
    assert mem["lower_bound_bytes"] <= mem["planned_bytes"] <= mem["naive_bytes"]
    assert mem["buffers"]


def test_no_display_prints_headless_commands():
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "QT_QPA_PLATFORM=offscreen" in result.stderr and "main.py train" in result.stderr


def test_checkpoint_holds_no_pickles(small_digits, tmp_path, device):
    run_cli("train", small_digits, "--out", tmp_path / "o", "--epochs", "1", device=device)
    with np.load(tmp_path / "o" / "checkpoint.npz", allow_pickle=False) as data:
        assert any(k.startswith("param/") for k in data.files)


@pytest.mark.skipif(__import__("core").backend.available("cupy"), reason="a usable GPU backend is here")
def test_unusable_gpu_backend_is_one_clear_line(tmp_path):
    result = run_cli("train", EXAMPLES / "digits_mlp.loom.json", "--backend", "cupy", "--out", tmp_path)
    assert result.returncode == 2
    assert "backend 'cupy' is not usable here" in result.stderr and "Traceback" not in result.stderr
