"""Graphs built with the core API for compiler tests and the benchmark."""
import numpy as np

import core


def mlp(sizes, batch, seed=0, dropout=0.0, loss="ce"):
    """ReLU MLP with softmax cross-entropy ("ce") or a regression MSE loss ("mse")."""
    rng = np.random.default_rng(seed)
    x = core.placeholder("x", (None, sizes[0]))
    if loss == "mse":
        y = core.placeholder("t", (None, sizes[-1]))
    else:
        y = core.placeholder("y", (None,), dtype="int64")
    h, params = x, []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w, bias = core.parameter(f"w{i}", (a, b), init="he"), core.parameter(f"b{i}", (b,), init="zeros")
        params += [w, bias]
        h = h @ w + bias
        if i < len(sizes) - 2:
            h = core.relu(h)
            if dropout:
                h = core.dropout(h, dropout, seed=i)
    objective = core.mse(h, y) if loss == "mse" else core.softmax_cross_entropy(h, y)
    feed = {p: core.init_value(p, rng) for p in params}
    feed[x] = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    feed[y] = (rng.standard_normal((batch, sizes[-1])).astype(np.float32) if loss == "mse"
               else rng.integers(0, sizes[-1], batch))
    return objective, params, feed, h


def cnn(batch, seed=0):
    rng = np.random.default_rng(seed)
    x = core.placeholder("x", (None, 1, 28, 28))
    y = core.placeholder("y", (None,), dtype="int64")
    k1, k2 = core.parameter("k1", (6, 1, 5, 5), init="he"), core.parameter("k2", (16, 6, 5, 5), init="he")
    c1, c2 = core.parameter("c1", (6, 1, 1), init="zeros"), core.parameter("c2", (16, 1, 1), init="zeros")
    h = core.max_pool2d(core.relu(core.conv2d(x, k1, padding=2) + c1))
    h = core.max_pool2d(core.relu(core.conv2d(h, k2) + c2))
    h = core.reshape(h, (-1, 400))
    params = [k1, c1, k2, c2]
    for i, (a, b) in enumerate(((400, 120), (120, 84), (84, 10))):
        w, bias = core.parameter(f"w{i}", (a, b), init="he"), core.parameter(f"b{i}", (b,), init="zeros")
        params += [w, bias]
        h = h @ w + bias
        if b != 10:
            h = core.relu(h)
    loss = core.softmax_cross_entropy(h, y)
    feed = {p: core.init_value(p, rng) for p in params}
    feed[x] = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    feed[y] = rng.integers(0, 10, batch)
    return loss, params, feed, h


def branchy(batch=32, width=256, branches=4, depth=3, seed=0):
    """Inception-like: each block fans out into wide branches that are summed back, the
    kind of graph where the order of evaluation decides the peak."""
    rng = np.random.default_rng(seed)
    x = core.placeholder("x", (None, width))
    h, params = x, []
    for blk in range(depth):
        outs = []
        for b in range(branches):
            w = core.parameter(f"w{blk}_{b}", (width, width * 4), init="he")
            v = core.parameter(f"v{blk}_{b}", (width * 4, width), init="he")
            params += [w, v]
            outs.append(core.relu(h @ w) @ v)
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        h = core.tanh(total)
    loss = core.reduce_mean(h * h)
    feed = {p: core.init_value(p, rng) for p in params}
    feed[x] = rng.standard_normal((batch, width)).astype(np.float32)
    return loss, params, feed, h


def chain(layers, width=64, batch=32, seed=0):
    """A deep MLP chain for checkpointing."""
    rng = np.random.default_rng(seed)
    x = core.placeholder("x", (None, width))
    h, params = x, []
    for i in range(layers):
        w = core.parameter(f"w{i}", (width, width), init="xavier")
        params.append(w)
        h = core.tanh(h @ w)
    loss = core.reduce_mean(h * h)
    feed = {p: core.init_value(p, rng) for p in params}
    feed[x] = rng.standard_normal((batch, width)).astype(np.float32)
    return loss, params, feed, h
