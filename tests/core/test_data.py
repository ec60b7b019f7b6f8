"""Datasets: bundled sets, file loaders on files the tests write, errors, seeded splits."""
import gzip
import struct

import numpy as np
import pytest

from core.data import DatasetError, dataset_names, load_dataset


def test_bundled_sets_have_expected_shapes():
    digits = load_dataset({"name": "digits"})
    assert digits.x.shape == (1797, 1, 8, 8) and digits.num_classes == 10
    mnist = load_dataset({"name": "mnist_subset"})
    assert mnist.x.shape == (5000, 1, 28, 28) and set(np.unique(mnist.y)) == set(range(10))
    assert 0.0 <= mnist.x.min() and mnist.x.max() <= 1.0


def _write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 255, (5, 28, 28))
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(5), gz)
    ds = load_dataset({"name": "mnist", "path": str(tmp_path)})
    assert ds.x.shape == (5, 1, 28, 28) and list(ds.y) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(ds.x[:, 0] * 255, images, atol=1e-3)


def test_idx_bad_magic_and_truncation(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03" + bytes(12))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(3), False)
    with pytest.raises(DatasetError, match="magic"):
        load_dataset({"name": "mnist", "path": str(tmp_path)})
    raw = struct.pack(">BBBBIII", 0, 0, 8, 3, 3, 28, 28) + bytes(100)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset({"name": "mnist", "path": str(tmp_path)})


def test_npz_and_csv(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3)), y=np.array([0, 1, 2, 1]))
    ds = load_dataset({"name": "npz", "path": str(tmp_path / "d.npz")})
    assert ds.x.shape == (4, 3) and ds.num_classes == 3
    (tmp_path / "d.csv").write_text("1,2,0\n3,4,1\n5,6,1\n")
    ds = load_dataset({"name": "csv", "path": str(tmp_path / "d.csv")})
    assert ds.x.shape == (3, 2) and list(ds.y) == [0, 1, 1]


@pytest.mark.parametrize("spec, words", [
    ({"name": "npz", "path": "/no/such/file.npz"}, "/no/such/file.npz"),
    ({"name": "imagenet"}, "known: "),
    ({"name": "mnist", "path": "/no/such/dir"}, "/no/such/dir"),
])
def test_errors_name_the_place(spec, words):
    with pytest.raises(DatasetError, match=words.replace(".", r"\.")):
        load_dataset(spec)


def test_npz_without_arrays_and_bad_csv(tmp_path):
    np.savez(tmp_path / "e.npz", images=np.ones(3))
    with pytest.raises(DatasetError, match="missing array"):
        load_dataset({"name": "npz", "path": str(tmp_path / "e.npz")})
    (tmp_path / "bad.csv").write_text("1,2,0\n3,x,1\n")
    with pytest.raises(DatasetError, match="bad.csv"):
        load_dataset({"name": "csv", "path": str(tmp_path / "bad.csv")})


def test_split_is_seeded_and_disjoint():
    ds = load_dataset({"name": "xor", "n": 100})
    ds.x = np.arange(100, dtype=np.float32)[:, None]
    a_train, a_val = ds.split(0.2, seed=1)
    b_train, b_val = ds.split(0.2, seed=1)
    assert np.array_equal(a_val.x, b_val.x) and len(a_val) == 20
    assert not set(a_train.x.ravel()) & set(a_val.x.ravel())
    first = [yb for _, yb in a_train.batches(16, seed=5)]
    again = [yb for _, yb in a_train.batches(16, seed=5)]
    assert all(np.array_equal(p, q) for p, q in zip(first, again))


@pytest.mark.parametrize("name", ["spirals", "blobs", "xor"])
def test_synthetic_sets(name):
    ds = load_dataset({"name": name})
    assert ds.x.ndim == 2 and len(np.unique(ds.y)) == ds.num_classes
    assert name in dataset_names()
