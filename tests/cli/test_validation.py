"""`check`, `plan` and `train` agree on what is wrong with a graph, and refuse bad input in
one line with the documented exit code, before anything is allocated (issue 17, items 3-6).
Run in-process through `core.cli.main.main`: the same code path as `main.py`, and fast."""
import json
import os
from pathlib import Path

import pytest

from core.cli.main import main

from .conftest import EXAMPLES

BASE = json.loads((EXAMPLES / "digits_mlp.loom.json").read_text())


def _node(data, node_id):
    return next(n for n in data["nodes"] if n["id"] == node_id)


def _csv(folder, classes=10, bad=None):
    rows = [["0.5"] * 64 + [str(i % classes)] for i in range(40)]
    if bad:
        rows[3][5] = bad
    (folder / "d.csv").write_text("\n".join(",".join(r) for r in rows))
    return "d.csv"  # relative: resolved against the graph file's folder


def _write(tmp_path, edit):
    data = json.loads(json.dumps(BASE))
    data["training"]["epochs"] = 1
    edit(data, tmp_path)
    path = tmp_path / "g.loom.json"
    path.write_text(json.dumps(data))
    return path


def _dataset(attrs):
    return lambda d, tmp: _node(d, "data").update(attrs=attrs(tmp))


DISAGREED = {  # check said ok, then training crashed: now both refuse with the same line
    "out_features 5": (lambda d, tmp: _node(d, "linear2")["attrs"].update(out_features=5),
                       "node loss, port logits: 5 logits from node linear2 for the 10 classes"),
    "labels beyond the classes": (_dataset(lambda tmp: {"name": "csv", "path": _csv(tmp, 12)}),
                                  "for the 12 classes of dataset 'csv'"),
    "inf in the data": (_dataset(lambda tmp: {"name": "csv", "path": _csv(tmp, bad="inf")}),
                        "node data: d.csv: sample 4 holds a value that is not a finite"),
    "two datasets": (lambda d, tmp: d["nodes"].append({"id": "more", "kind": "Dataset"}),
                     "node more: a second Dataset node"),
    "no validation sample": (lambda d, tmp: d["training"].update(val_fraction=0.0001),
                             "val_fraction: 0.0001 of the 1797 samples"),
}


@pytest.mark.parametrize("name", sorted(DISAGREED))
def test_check_plan_and_train_refuse_alike(name, tmp_path, capsys):
    edit, line = DISAGREED[name]
    graph = _write(tmp_path, edit)
    outputs = {}
    for command in (["check"], ["plan"], ["train", "--out", str(tmp_path / "run")]):
        code = main([command[0], str(graph), *command[1:]])
        captured = capsys.readouterr()
        outputs[command[0]] = captured.out + captured.err
        assert code == 1, (command, outputs[command[0]])
        assert line in outputs[command[0]], (command, outputs[command[0]])
    assert not (tmp_path / "run").exists()  # refused before training set anything up


OVERRIDES = [(["--epochs", "0"], "epochs: 0 must be at least 1"),
             (["--batch-size", "0"], "batch_size: 0 must be at least 1"),
             (["--batch-size", "-5"], "batch_size: -5 must be at least 1"),
             (["--seed", "-1"], "seed: -1 must be at least 0"),
             (["--lr", "-1"], "lr: -1.0 must be above 0"),
             (["--lr", "nan"], "lr: expected a finite number"),
             (["--checkpoint", "budget=much"], "checkpoint: 'budget=much' is not")]


@pytest.mark.parametrize("args, words", OVERRIDES)
def test_command_line_overrides_are_validated(args, words, tmp_path, capsys):
    graph = _write(tmp_path, lambda d, tmp: None)
    code = main(["train", str(graph), "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: training setting {words}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


MALFORMED = {
    "duplicate key": lambda text: text.replace('"epochs": 1', '"epochs": 1, "epochs": 2'),
    "NaN": lambda text: text.replace('"lr": 0.005', '"lr": NaN'),
    "5,000 digits": lambda text: text.replace('"epochs": 1', '"epochs": ' + "7" * 5000),
    "2,000 levels": lambda text: '{"format": ' + "[" * 2000 + "]" * 2000 + "}",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
@pytest.mark.parametrize("command", ["check", "plan", "train"])
def test_malformed_files_are_one_line_naming_the_file(name, command, tmp_path, capsys):
    graph = _write(tmp_path, lambda d, tmp: None)
    graph.write_text(MALFORMED[name](graph.read_text()))
    code = main([command, str(graph), *(["--out", str(tmp_path / "run")] if command == "train" else [])])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {graph}: ") and err.count("\n") == 1, err


def test_plan_checks_attributes_and_ports(tmp_path, capsys):
    graph = _write(tmp_path, lambda d, tmp: d.update(edges=[e for e in d["edges"]
                                                            if e["dst"] != ["relu1", "in"]]))
    assert main(["plan", str(graph)]) == 1
    assert "node relu1, port in: required input is not connected" in capsys.readouterr().err
    graph = _write(tmp_path, lambda d, tmp: _node(d, "linear1")["attrs"].update(out_features=64.0))
    assert main(["plan", str(graph)]) == 1
    assert "node linear1: attribute out_features: expected an integer" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plan", "train"])
def test_max_memory_refuses_with_the_numbers(command, tmp_path, capsys):
    graph = _write(tmp_path, lambda d, tmp: None)
    extra = ["--out", str(tmp_path / "run")] if command == "train" else []
    assert main([command, str(graph), "--max-memory", "64K", *extra]) == 2
    err = capsys.readouterr().err
    assert "training step at batch" in err and "(parameters 18.8 KiB, optimizer state 37.6 KiB" in err
    assert "more than --max-memory (64.0 KiB)" in err and not (tmp_path / "run").exists()


def _specials(tmp_path):
    paths = {"a directory": str(tmp_path)}
    if os.path.exists("/dev/zero"):
        paths["a device"] = "/dev/zero"
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        paths["a pipe"] = str(tmp_path / "pipe")
    return paths


def test_dataset_paths_that_are_not_regular_files_are_refused(tmp_path, capsys):
    for what, path in _specials(tmp_path).items():
        graph = _write(tmp_path, _dataset(lambda tmp: {"name": "csv", "path": path}))
        assert main(["check", str(graph)]) == 1
        assert f"{path}: not a regular file ({what})" in capsys.readouterr().out


def test_relative_dataset_paths_follow_the_graph_file(tmp_path, capsys, monkeypatch):
    graph = _write(tmp_path, _dataset(lambda tmp: {"name": "csv", "path": _csv(tmp)}))
    monkeypatch.chdir(Path(__file__).parent)  # anywhere but the graph's folder
    assert main(["check", str(graph)]) == 0, capsys.readouterr()
