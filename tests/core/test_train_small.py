"""A two-layer network built with the API and trained with a plain SGD loop reaches 100%."""
import numpy as np
import pytest

import core
from core.data import load_dataset


def train(x_data, y_data, hidden=16, steps=1500, lr=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = core.placeholder("x", (None, x_data.shape[1]))
    y = core.placeholder("y", (None,), dtype="int64")
    w1 = core.parameter("w1", (x_data.shape[1], hidden), init="he")
    b1 = core.parameter("b1", (hidden,), init="zeros")
    w2 = core.parameter("w2", (hidden, 2), init="xavier")
    b2 = core.parameter("b2", (2,), init="zeros")
    params = [w1, b1, w2, b2]
    logits = core.relu(x @ w1 + b1) @ w2 + b2
    loss = core.softmax_cross_entropy(logits, y)
    ex = core.Executor([loss, core.accuracy(logits, y), *core.gradients(loss, params)])
    values = {p: core.init_value(p, rng).astype(np.float64) for p in params}
    for _ in range(steps):
        out = ex.run({x: x_data, y: y_data, **values})
        for p, g in zip(params, out[2:]):
            values[p] -= lr * g
    return out[1]


def test_xor_reaches_100_percent():
    xs = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
    assert train(xs, np.array([0, 1, 1, 0]), hidden=8, steps=500) == 1.0


def test_noisy_xor_reaches_100_percent():
    ds = load_dataset({"name": "xor", "n": 200, "noise": 0.05})
    assert train(ds.x.astype(np.float64), ds.y, steps=800) == 1.0


@pytest.mark.parametrize("seed", [0])
def test_two_spirals_reach_100_percent(seed):
    ds = load_dataset({"name": "spirals", "n": 200, "noise": 0.0, "seed": seed})
    acc = train(ds.x.astype(np.float64) * 3, ds.y, hidden=64, steps=4000, lr=0.3)
    assert acc == 1.0


def test_trainer_folds_batch_norm_statistics_into_running_averages(tmp_path, default_device):
    """The compiled step returns the batch statistics beside loss, accuracy and the
    optimizer updates; the trainer must pick them (not the updates) for the running averages."""
    from core import graphfile
    from core.train import Trainer
    from tests.cli.conftest import EXAMPLES
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    relu_in = doc.edge_into("relu1", "in")
    doc.remove_edge(relu_in)
    bn = doc.add_node("BatchNorm")
    doc.add_edge(relu_in.src, (bn, "in"))
    doc.add_edge((bn, "out"), ("relu1", "in"))
    doc.set_training({**doc.training, "epochs": 2})
    trainer = Trainer(doc, tmp_path, {"backend": default_device})
    host = trainer.backend.to_numpy
    stats = [n for n in trainer.params if "running" in n]
    before = {n: np.array(host(trainer.params[n])) for n in stats}  # a copy, also on numpy
    summary = trainer.run()
    after = {n: host(trainer.params[n]) for n in stats}
    assert summary["val_accuracy"] > 0.8 and len(stats) == 2
    assert all(not np.allclose(before[n], after[n]) for n in stats)
    mean = next(n for n in stats if "mean" in n)
    assert after[mean].shape == before[mean].shape and np.all(np.isfinite(after[mean]))
