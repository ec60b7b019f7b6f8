"""Loaders for files: the bundled .npz sets, any .npz with x/y, CSV, and MNIST IDX folders."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .dataset import Dataset, DatasetError
from .registry import BUNDLED, existing, register


def _images(x, scale):
    """uint8 images (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    return (x.astype(np.float32) / scale)[:, None, :, :]


def _from_arrays(x, y, name):
    y = np.asarray(y)
    if y.ndim != 1 or not np.all(np.equal(np.mod(y, 1), 0)):
        raise DatasetError(f"{name}: labels must be a 1-D array of integer class ids")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DatasetError(f"{name}: negative class id {y.min()}")
    return Dataset(np.asarray(x, dtype=np.float32), y, int(y.max()) + 1, name)


@register("digits", "8×8 handwritten digits (UCI, 1,797 images, bundled)")
def digits():
    with np.load(BUNDLED / "digits.npz") as d:
        return Dataset(_images(d["x"], 16.0), d["y"].astype(np.int64), 10, "digits")


@register("mnist_subset", "5,000 MNIST images, 28×28 (bundled)")
def mnist_subset():
    with np.load(BUNDLED / "mnist_subset.npz") as d:
        return Dataset(_images(d["x"], 255.0), d["y"].astype(np.int64), 10, "mnist_subset")


@register("npz", "any .npz file with arrays x and y", path="")
def npz(path):
    p = existing(path, "npz dataset")
    try:
        with np.load(p, allow_pickle=False) as d:
            missing = {"x", "y"} - set(d.files)
            if missing:
                raise DatasetError(f"{p}: missing array(s) {', '.join(sorted(missing))} "
                                   f"(found {', '.join(d.files) or 'none'})")
            x, y = d["x"], d["y"]
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{p}: not a readable .npz file ({exc})") from None
    if x.ndim == 3:  # bare images: add the channel axis
        x = x[:, None]
    return _from_arrays(x, y, p.name)


@register("csv", "a CSV of numbers; one column is the label", path="", label_column=-1)
def csv(path, label_column=-1):
    p = existing(path, "csv dataset")
    try:
        table = np.genfromtxt(p, delimiter=",", dtype=np.float64, invalid_raise=True)
    except ValueError as exc:
        raise DatasetError(f"{p}: malformed CSV ({exc})") from None
    table = np.atleast_2d(table)
    if np.isnan(table).any():
        row, col = map(int, np.argwhere(np.isnan(table))[0])
        raise DatasetError(f"{p}: row {row + 1}, column {col + 1} is not a number")
    col = int(label_column) % table.shape[1]
    return _from_arrays(np.delete(table, col, axis=1), table[:, col], p.name)


# ---- MNIST / Fashion-MNIST IDX ------------------------------------------------------------------

IDX_FILES = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}


@register("mnist", "MNIST or Fashion-MNIST IDX files in a folder", path="")
def mnist_idx(path):
    folder = existing(path, "mnist dataset")
    x = read_idx(_idx_file(folder, IDX_FILES["images"]), ndim=3)
    y = read_idx(_idx_file(folder, IDX_FILES["labels"]), ndim=1)
    if len(x) != len(y):
        raise DatasetError(f"{folder}: {len(x)} images but {len(y)} labels")
    return Dataset(_images(x, 255.0), y.astype(np.int64), 10, folder.name)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).exists():
            return folder / name
    raise DatasetError(f"{folder}: no {stem} (or {stem}.gz) file")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                           f"(bad magic number)")
    header = 4 + 4 * ndim
    dims = np.frombuffer(raw[4:header], dtype=">u4").astype(int)
    if len(raw) != header + int(np.prod(dims)):
        raise DatasetError(f"{path}: truncated: header says {tuple(dims)} but the file has "
                           f"{len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
