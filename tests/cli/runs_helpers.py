"""Helpers for the run-folder, I/O-failure and checkpoint tests: a tiny graph, `main.py train`
in this process (fast, and faults can be injected with monkeypatch), strict JSON lines."""
import json

import numpy as np

from core.cli.main import main

from .conftest import EXAMPLES


def tiny_graph(folder, name="digits.loom.json", epochs=2, **training):
    """digits_logreg with a short training section, saved as `folder/name`."""
    data = json.loads((EXAMPLES / "digits_logreg.loom.json").read_text())
    data["training"].update(epochs=epochs, batch_size=64, seed=3, **training)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def train(capsys, *args):
    """`main.py train ARGS` in-process -> (exit code, stdout, stderr)."""
    code = main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def strict_events(stdout):
    """Parse JSON lines refusing NaN/Infinity, as a strict JSON reader (or the editor) would."""
    def refuse(constant):
        raise ValueError(f"bare {constant} in the event stream")
    return [json.loads(line, parse_constant=refuse) for line in stdout.splitlines() if line.strip()]


def params(folder):
    with np.load(folder / "checkpoint.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k.startswith("param/")}


def same_params(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err
