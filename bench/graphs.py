"""Graphs the benchmark adds to those of tests/core/graphs.py."""
import numpy as np

import core


def wide_cnn(batch, channels=(32, 64, 128), seed=0):
    """3×3 convolutions (padding 1) with 32-64-128 channels on 28×28, each followed by bias,
    ReLU and a 2×2 max-pool (28 -> 14 -> 7 -> 3), then one linear layer to 10 classes."""
    rng = np.random.default_rng(seed)
    x = core.placeholder("x", (None, 1, 28, 28))
    y = core.placeholder("y", (None,), dtype="int64")
    h, params, c_in, side = x, [], 1, 28
    for i, c in enumerate(channels):
        k = core.parameter(f"k{i}", (c, c_in, 3, 3), init="he")
        b = core.parameter(f"c{i}", (c, 1, 1), init="zeros")
        params += [k, b]
        h = core.max_pool2d(core.relu(core.conv2d(h, k, padding=1) + b))
        c_in, side = c, side // 2
    h = core.reshape(h, (-1, c_in * side * side))
    w = core.parameter("w", (c_in * side * side, 10), init="he")
    bias = core.parameter("b", (10,), init="zeros")
    params += [w, bias]
    h = h @ w + bias
    loss = core.softmax_cross_entropy(h, y)
    feed = {p: core.init_value(p, rng) for p in params}
    feed[x] = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    feed[y] = rng.integers(0, 10, batch)
    return loss, params, feed, h
