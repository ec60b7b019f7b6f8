"""The in-memory dataset: float32 inputs, int64 labels, seeded splits and batches."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LoomError


class DatasetError(LoomError):
    """A dataset is missing or malformed; the message names it and the path."""


@dataclass
class Dataset:
    x: np.ndarray  # (N, C, H, W) images or (N, D) features, float32
    y: np.ndarray  # (N,) int64 class ids
    num_classes: int
    name: str = "dataset"

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise DatasetError(f"{self.name}: {len(self.x)} inputs but {len(self.y)} labels")
        if len(self.x) == 0:
            raise DatasetError(f"{self.name}: no samples")

    def __len__(self):
        return len(self.y)

    @property
    def sample_shape(self):
        return tuple(self.x.shape[1:])

    def subset(self, index) -> "Dataset":
        return Dataset(self.x[index], self.y[index], self.num_classes, self.name)

    def split(self, val_fraction: float, seed: int = 0):
        """(train, validation): a seeded shuffle, then the last `val_fraction` held out."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = int(round(len(self) * float(val_fraction)))
        return self.subset(order[n_val:]), self.subset(order[:n_val])

    def batches(self, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last=False):
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            index = order[start:start + batch_size]
            yield self.x[index], self.y[index]

    def normalise(self, stats=None):
        """Standardise with (mean, std) — the training set's, passed to the validation set."""
        mean, std = stats if stats is not None else (float(self.x.mean()), float(self.x.std()) or 1.0)
        self.x = ((self.x - mean) / std).astype(np.float32)
        return mean, std
