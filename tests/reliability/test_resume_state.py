"""Everything a step depends on is in the checkpoint: stopped anywhere (here mid-epoch) and
resumed, a run equals the uninterrupted one bit for bit, on numpy and on the stand-in device,
with dropout masks (their generator state) and every optimizer."""
import numpy as np
import pytest

from core import graphfile
from core.ops import cpu
from core.train import Trainer
from tests.cli.conftest import EXAMPLES


def _digits_mlp(dropout, optimizer):
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    doc.set_training({**doc.training, "epochs": 2, "batch_size": 64, "optimizer": optimizer})
    if dropout:  # between the first Linear and its ReLU
        edge = doc.edge_into("relu1", "in")
        doc.remove_edge(edge)
        node = doc.add_node("Dropout")
        doc.add_edge(edge.src, (node, "in"))
        doc.add_edge((node, "out"), ("relu1", "in"))
    return doc


def _host_params(trainer):
    return {k: trainer.backend.to_numpy(v) for k, v in trainer.params.items()}


@pytest.mark.parametrize("dropout, optimizer", [(True, "adam"), (False, "momentum"), (False, "sgd")])
def test_a_run_stopped_mid_epoch_resumes_exactly(tmp_path, device, dropout, optimizer):
    doc, backend = _digits_mlp(dropout, optimizer), {"backend": device}
    straight = Trainer(doc, tmp_path / "straight", backend)
    straight.run()

    def stop_at_step_30(event):
        if event["event"] == "step" and event["step"] == 30:  # epoch 2 of 23-step epochs
            first.request_stop()
    first = Trainer(doc, tmp_path / "run", backend, on_event=stop_at_step_30)
    assert first.run()["status"] == "stopped"
    resumed = Trainer(doc, tmp_path / "run", backend)
    resumed.resume()
    assert resumed.run_state.step == 30 and resumed.run()["steps"] == straight.run_state.step
    expected = _host_params(straight)
    for key, value in _host_params(resumed).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_a_cnn_resumes_exactly_while_its_step_chooses_its_threads(tmp_path, monkeypatch):
    """The bundled CNN on two cores, the thread count left to the step's clock (no
    LOOM_CPU_THREADS): the resumed process times its options at other steps than the
    uninterrupted run did, so only options with the same bits may be among them (a BLAS
    thread count was, and left the resumed run 2.7e-7 away)."""
    monkeypatch.delenv("LOOM_CPU_THREADS", raising=False)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    doc = graphfile.load(EXAMPLES / "mnist_cnn.loom.json")
    doc.set_training({**doc.training, "epochs": 1, "steps_per_epoch": 30})
    straight = Trainer(doc, tmp_path / "straight", {"backend": "numpy"})
    straight.run()
    assert len(straight.train_ex._last.thread_choice.options) > 1  # the clock chose

    def stop_at_step_12(event):
        if event["event"] == "step" and event["step"] == 12:  # after the choice settled
            first.request_stop()
    first = Trainer(doc, tmp_path / "run", {"backend": "numpy"}, on_event=stop_at_step_12)
    assert first.run()["status"] == "stopped"
    resumed = Trainer(doc, tmp_path / "run", {"backend": "numpy"})
    resumed.resume()
    resumed.run()
    expected = _host_params(straight)
    for key, value in _host_params(resumed).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
