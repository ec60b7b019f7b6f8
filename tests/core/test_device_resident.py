"""Training state lives on the backend for the whole run: on the strict stand-in device (which
copies on `asarray` and refuses implicit host conversion) a run must update every parameter
and give bit-for-bit the numpy run's numbers; the host sees state only through `to_numpy`."""
import json

import numpy as np
import pytest

from core import checkpoint, graphfile
from core.train import Trainer
from tests import standin
from tests.cli.conftest import EXAMPLES


def small(name, epochs=2, **training):
    doc = graphfile.load(EXAMPLES / f"{name}.loom.json")
    doc.set_training({**doc.training, "epochs": epochs, **training})
    return doc


def train(doc, backend, out, on_event=None):
    trainer = Trainer(doc, out, {"backend": backend}, on_event=on_event)
    start = {k: np.array(trainer.backend.to_numpy(v)) for k, v in trainer.params.items()}
    events = []
    trainer.emit = events.append
    trainer.run()
    return trainer, start, events


@pytest.fixture
def stand_in_only(default_device):
    if default_device == "numpy":
        pytest.skip("compares the stand-in device against numpy: runs once, in the stand-in pass")


@pytest.mark.parametrize("name, training", [("digits_mlp", {"optimizer": "adam"}),
                                            ("digits_logreg", {"optimizer": "momentum"})])
def test_loss_curves_are_bit_identical_on_the_stand_in_device(tmp_path, stand_in_only, name, training):
    doc = small(name, **training)
    host, _, host_events = train(doc, "numpy", tmp_path / "numpy")
    dev, start, dev_events = train(doc, standin.NAME, tmp_path / "standin")
    curve = lambda evs: [(e["event"], e.get("loss"), e.get("val_loss"), e.get("val_accuracy"))  # noqa
                         for e in evs if e["event"] in ("step", "epoch")]
    assert curve(dev_events) == curve(host_events)
    changed = [k for k, v in dev.params.items() if not np.array_equal(dev.backend.to_numpy(v), start[k])]
    assert sorted(changed) == sorted(dev.params)  # every parameter was updated on the device
    for k, v in dev.params.items():
        np.testing.assert_array_equal(dev.backend.to_numpy(v), host.params[k])


def test_state_is_on_the_device_and_checkpoints_on_the_host(tmp_path, stand_in_only):
    doc = small("digits_mlp", epochs=1)
    trainer, _, _ = train(doc, standin.NAME, tmp_path)
    assert all(standin.is_device_array(v) for v in trainer.params.values())
    assert trainer.optimizer.state and all(standin.is_device_array(v)
                                           for v in trainer.optimizer.state.values())
    with pytest.raises(TypeError):
        np.asarray(next(iter(trainer.params.values())))  # no implicit device -> host copy
    params, opt_state, _, meta = checkpoint.load(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 1 and all(isinstance(v, np.ndarray) for v in params.values())
    # resume: arrays move to the device once, and training continues from them
    doc.set_training({**doc.training, "epochs": 2})
    resumed = Trainer(doc, tmp_path, {"backend": standin.NAME})
    resumed.resume()
    assert all(standin.is_device_array(v) for v in resumed.params.values())
    for k, v in params.items():
        np.testing.assert_array_equal(resumed.backend.to_numpy(resumed.params[k]), v)
    assert resumed.run()["epochs"] == 2


def test_a_host_array_mixed_into_a_device_computation_is_refused():
    x = standin.xp.asarray(np.ones(3))
    with pytest.raises(TypeError):
        np.add(x, np.ones(3))
    with pytest.raises(TypeError):
        standin.xp.multiply(np.ones(3), 2.0, out=x)
    copy = np.zeros(3)
    on_device = standin.xp.asarray(copy)
    on_device += 1  # asarray copied: the host array is untouched
    assert not copy.any() and json.dumps(standin.to_numpy(on_device).tolist()) == "[1.0, 1.0, 1.0]"
