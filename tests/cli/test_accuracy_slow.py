"""The full accuracy runs of the bundled examples (minutes): `pytest -m slow tests/cli`."""
import json

import pytest

from .conftest import EXAMPLES, run_cli

TARGETS = {"digits_logreg": 0.93, "digits_mlp": 0.96, "mnist_mlp": 0.92, "mnist_cnn": 0.95}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_example_reaches_its_accuracy(name, tmp_path):
    result = run_cli("train", EXAMPLES / f"{name}.loom.json", "--out", tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["val_accuracy"] >= TARGETS[name]
