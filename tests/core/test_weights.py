"""A graph's weights file: initial parameter values (imported models), checked against the
graph, carried along when the graph is saved elsewhere."""
import numpy as np
import pytest

from core import graphfile
from core.layers import analyze
from core.train import Trainer
from core.weights import WeightsError, load_weights, save_weights



@pytest.fixture
def doc(tmp_path):
    from tests.cli.conftest import EXAMPLES
    d = graphfile.load(EXAMPLES / "digits_logreg.loom.json")
    d.set_training({**d.training, "epochs": 1})
    return d


def _linear(doc):
    return next(n.id for n in doc.nodes.values() if n.kind == "Linear")


def test_training_starts_from_the_weights_file(doc, tmp_path):
    lin = _linear(doc)
    w = np.full((64, 10), 0.25, np.float32)
    save_weights(tmp_path / "model.weights.npz", {f"{lin}.weight": w})
    doc.weights, doc.base_dir = "model.weights.npz", str(tmp_path)  # beside the graph
    graphfile.save(doc, tmp_path / "model.loom.json")
    loaded = graphfile.load(tmp_path / "model.loom.json")
    assert loaded.weights == "model.weights.npz" and not analyze(loaded).problems
    trainer = Trainer(loaded, tmp_path / "run")
    np.testing.assert_array_equal(trainer.backend.to_numpy(trainer.params[f"{lin}.weight"]), w)
    bias = trainer.backend.to_numpy(trainer.params[f"{lin}.bias"])
    assert bias.shape == (10,) and not bias.any()  # not in the file: its initializer (zeros)


def test_a_copy_saved_elsewhere_still_names_the_same_weights(doc, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_weights(tmp_path / "a" / "w.npz", {f"{_linear(doc)}.weight": np.zeros((64, 10), np.float32)})
    doc.weights, doc.base_dir = "w.npz", str(tmp_path / "a")
    graphfile.save(doc, tmp_path / "a" / "g.loom.json")
    graphfile.save(graphfile.load(tmp_path / "a" / "g.loom.json"), tmp_path / "b" / "g.loom.json")
    moved = graphfile.load(tmp_path / "b" / "g.loom.json")
    assert moved.weights == "../a/w.npz" and not analyze(moved).problems


def test_weights_that_do_not_fit_are_problems_naming_file_and_key(doc, tmp_path):
    lin = _linear(doc)
    save_weights(tmp_path / "w.npz", {f"{lin}.weight": np.zeros((3, 3), np.float32),
                                      "nobody.weight": np.zeros(2, np.float32)})
    doc.weights, doc.base_dir = "w.npz", str(tmp_path)
    lines = [str(p) for p in analyze(doc).problems]
    assert any(f"{lin}.weight: shape (3, 3)" in line and "(64, 10)" in line for line in lines)
    assert any("nobody.weight: no such parameter" in line for line in lines)
    with pytest.raises(WeightsError, match="w.npz"):
        Trainer(doc, tmp_path / "run")


def test_a_missing_or_corrupt_weights_file_is_one_clear_problem(doc, tmp_path):
    doc.weights, doc.base_dir = "gone.npz", str(tmp_path)
    assert any("gone.npz" in str(p) and "does not exist" in str(p) for p in analyze(doc).problems)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="bad.npz: unreadable"):
        load_weights(tmp_path / "bad.npz")
