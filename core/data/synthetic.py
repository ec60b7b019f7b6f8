"""Synthetic sets for teaching and tests: spirals, blobs, XOR. Seeded."""
from __future__ import annotations

import numpy as np

from .dataset import Dataset
from .registry import register


@register("spirals", "interleaved 2-D spirals", n=1000, classes=2, noise=0.1, seed=0)
def spirals(n=1000, classes=2, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    per = int(n) // int(classes)
    xs, ys = [], []
    for c in range(int(classes)):
        r = np.linspace(0.05, 1.0, per)
        t = np.linspace(0, 3.5, per) + c * 2 * np.pi / classes + rng.normal(0, noise, per)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(per, c))
    return Dataset(np.concatenate(xs).astype(np.float32), np.concatenate(ys), int(classes), "spirals")


@register("blobs", "Gaussian clusters", n=1000, classes=3, features=2, spread=0.5, seed=0)
def blobs(n=1000, classes=3, features=2, spread=0.5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-3, 3, (int(classes), int(features)))
    y = rng.integers(0, int(classes), int(n))
    x = centers[y] + rng.normal(0, spread, (int(n), int(features)))
    return Dataset(x.astype(np.float32), y.astype(np.int64), int(classes), "blobs")


@register("xor", "noisy XOR of two inputs", n=400, noise=0.1, seed=0)
def xor(n=400, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (int(n), 2))
    x = bits + rng.normal(0, noise, bits.shape)
    return Dataset(x.astype(np.float32), (bits[:, 0] ^ bits[:, 1]).astype(np.int64), 2, "xor")
