"""Loaders for files: the bundled .npz sets, any .npz with x/y, CSV, and MNIST IDX folders."""
from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

from ..limits import MAX_DATASET_BYTES, show_bytes
from .dataset import Dataset, DatasetError
from .registry import BUNDLED, existing, open_file, register


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
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
        x = np.asarray(x, dtype=np.float32)
    _finite(x, name)
    return Dataset(x, y, int(y.max()) + 1, name)


def _finite(x, name):
    """NaN or ±inf in the inputs (or values beyond float32) would only show up as a NaN loss."""
    bad = ~np.isfinite(x)
    if bad.any():
        sample = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{name}: sample {sample + 1} holds a value that is not a finite "
                           f"float32 number (NaN or infinity)")


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
    p = Path(path)
    with open_file(path, "npz dataset") as f:
        try:
            _refuse_zip_bomb(f, p)
            with np.load(f, allow_pickle=False) as d:
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
    p = Path(path)
    with open_file(path, "csv dataset") as f:
        try:
            text = io.TextIOWrapper(f, encoding="utf-8")
            table = np.genfromtxt(text, delimiter=",", dtype=np.float64, invalid_raise=True)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{p}: malformed CSV ({exc})") from None
    table = np.atleast_2d(table)
    if np.isnan(table).any():
        row, col = map(int, np.argwhere(np.isnan(table))[0])
        raise DatasetError(f"{p}: row {row + 1}, column {col + 1} is not a number")
    col = int(label_column) % table.shape[1]
    return _from_arrays(np.delete(table, col, axis=1), table[:, col], p.name)


def _refuse_zip_bomb(f, path):
    """An .npz is a zip: its arrays' sizes are in the zip directory, read before inflating."""
    with zipfile.ZipFile(f) as z:
        size = sum(info.file_size for info in z.infolist())
    f.seek(0)
    if size > MAX_DATASET_BYTES:
        raise DatasetError(f"{path}: its arrays take {show_bytes(size)} once decompressed, more "
                           f"than the {show_bytes(MAX_DATASET_BYTES)} a dataset may have")


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
    with open_file(path, "mnist dataset") as f:
        try:  # a .gz is read up to the cap and one byte more: a gzip bomb stops there
            stream = gzip.GzipFile(fileobj=f) if path.suffix == ".gz" else f
            raw = stream.read(MAX_DATASET_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable ({exc})") from None
    if len(raw) > MAX_DATASET_BYTES:
        raise DatasetError(f"{path}: more than {show_bytes(MAX_DATASET_BYTES)} once decompressed")
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                           f"(bad magic number)")
    header = 4 + 4 * ndim
    dims = np.frombuffer(raw[4:header], dtype=">u4").astype(int)
    if len(raw) != header + int(np.prod(dims)):
        raise DatasetError(f"{path}: truncated: header says {tuple(dims)} but the file has "
                           f"{len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
