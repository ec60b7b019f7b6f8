"""Optimizer updates applied inside the compiled step: the same numbers as the textbook
formulas, ordered after every reader of the parameter, skipped on a non-finite loss, and
freeing each weight gradient early."""
import math

import numpy as np
import pytest

import core
from core.optim import make_optimizer as host_optimizer

from .graphs import mlp


def device():
    """The backend this run of the suite uses (numpy, or the strict stand-in device)."""
    return core.backend.get(core.backend.default_name())


def make_optimizer(config):
    """State on the device, as the trainer keeps it."""
    return host_optimizer(config, device())


def reference(name, p, grads, lr, wd=0.0, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """The textbook update rules in float64, one gradient per step."""
    p, v, m, s = p.astype(np.float64), 0.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = g + wd * p
        if name == "sgd":
            p = p - lr * g
        elif name in ("momentum", "nesterov"):
            v = mu * v + g
            p = p - lr * (v if name == "momentum" else g + mu * v)
        else:
            m, s = b1 * m + (1 - b1) * g, b2 * s + (1 - b2) * g * g
            p = p - lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(s) + eps)
    return p


def quadratic(target):
    """loss = sum((w - target)^2) / 2: the gradient is w - target, easy to replay by hand."""
    w = core.parameter("w", target.shape, init="zeros")
    diff = w - core.constant(target)
    return w, core.reduce_sum(diff * diff) * 0.5


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_fused_updates_follow_the_textbook_rules(name, wd):
    rng = np.random.default_rng(0)
    target = rng.standard_normal((4, 3))
    w, loss = quadratic(target)
    opt = make_optimizer({"optimizer": name, "weight_decay": wd})
    (update,) = opt.updates([w], core.gradients(loss, [w]), loss)
    ex = core.Executor([loss, update])
    host = rng.standard_normal((4, 3))  # float64 parameter: compare tightly
    value, start, grads = device().asarray(host), host.copy(), []
    for _ in range(5):
        grads.append(device().to_numpy(value) - target)
        opt.begin_step(0.1)
        ex.run({w: value, **opt.feed({"w": value})})
    np.testing.assert_allclose(device().to_numpy(value), reference(name, start, grads, 0.1, wd), rtol=1e-6, atol=1e-6)


def test_update_runs_after_every_reader_of_its_parameter():
    """W is read twice forward and once more by the backward pass; whatever the schedule,
    the update must see the gradient of the old W and no op may read the new one."""
    rng = np.random.default_rng(1)
    x = core.placeholder("x", (None, 5))
    w = core.parameter("w", (5, 5))
    loss = core.reduce_sum(core.tanh((x @ w) @ w))
    xv, wv = rng.standard_normal((3, 5)), rng.standard_normal((5, 5))
    expected_loss, grad = core.Executor([loss, *core.gradients(loss, [w])]).run({x: xv, w: wv})
    for options in ({}, {"schedule": "memory"}, {"schedule": "topo"}, {"checkpoint": "sqrt"},
                    {"checkpoint": "cheap"}):
        opt = make_optimizer({"optimizer": "sgd"})
        ex = core.Executor([loss, *opt.updates([w], core.gradients(loss, [w]), loss)], **options)
        value = device().asarray(wv.copy())  # updated in place: keep wv for the next options
        opt.begin_step(0.5)
        got_loss = ex.run({x: xv, w: value, **opt.feed({"w": value})})[0]
        np.testing.assert_allclose(got_loss, expected_loss, err_msg=str(options))
        np.testing.assert_allclose(device().to_numpy(value), wv - 0.5 * grad, rtol=1e-12, err_msg=str(options))


def test_non_finite_loss_leaves_parameters_and_state_untouched():
    w, loss = quadratic(np.zeros((2, 2)))
    blown = loss * core.constant(np.inf)
    opt = make_optimizer({"optimizer": "adam"})
    ex = core.Executor([blown, *opt.updates([w], core.gradients(blown, [w]), blown)])
    value = device().asarray(np.ones((2, 2)))
    opt.begin_step(0.1)
    feed = opt.feed({"w": value})
    ex.run({w: value, **feed})
    np.testing.assert_array_equal(device().to_numpy(value), np.ones((2, 2)))
    assert all(not device().to_numpy(s).any() for s in opt.state.values())


def test_weight_gradients_die_at_their_update():
    """Without updates every weight gradient is a result, live at the end; with them, each
    is freed by its update, and the arena of the whole step shrinks."""
    loss, params, feed, _ = mlp([256] * 5 + [10], 16)  # weights dominate: gradients matter
    grads_only = core.Executor([loss, *core.gradients(loss, params)])
    grads_only.run(feed, to_numpy=False)
    opt = make_optimizer({"optimizer": "sgd"})
    fused = core.Executor([loss, *opt.updates(params, core.gradients(loss, params), loss)])
    opt.begin_step(0.0)
    fused.run({**feed, **opt.feed({p.name: feed[p] for p in params})}, to_numpy=False)
    before, after = grads_only.memory_report(), fused.memory_report()
    assert before["result_bytes"] > 0.8 * before["planned_bytes"]
    assert after["result_bytes"] < 1024
    assert after["planned_bytes"] < 0.5 * before["planned_bytes"]
