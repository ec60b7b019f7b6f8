"""A checkpoint that is not what this run saved is refused with one clean line naming the file
and the key: bad metadata, unexpected keys, wrong dtypes or shapes, missing optimizer state,
another optimizer's state, and a zip bomb (refused from its headers, before inflating)."""
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import checkpoint
from core.checkpoint import CheckpointError
from core.cli import exitcodes

from .runs_helpers import one_line_error, tiny_graph, train

WEIGHT = "param/linear1.weight"  # digits_logreg's one weight matrix


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One epoch of digits_logreg, trained once for the whole module."""
    from core.cli.main import main
    folder = tmp_path_factory.mktemp("good")
    graph = tiny_graph(folder, epochs=1)
    assert main(["train", str(graph), "--out", str(folder / "run")]) == 0
    return graph, folder / "run"


@pytest.fixture
def run_copy(good_run, tmp_path):
    graph, run = good_run
    shutil.copytree(run, tmp_path / "run")
    return graph, tmp_path / "run"


def _rewrite(path, change):
    """Apply `change(arrays, meta)` to the checkpoint's arrays and write it back."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes())
    change(arrays, meta)
    if isinstance(arrays.get("meta"), bytes):  # the case replaced the raw bytes
        arrays["meta"] = np.frombuffer(arrays["meta"], np.uint8)
    elif "meta" in arrays:
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _set(key, value):
    return lambda arrays, meta: meta.__setitem__(key, value)


def _drop_opt(arrays, meta):
    for key in [k for k in arrays if k.startswith("opt/")]:
        del arrays[key]


BAD = {  # case -> (change, what the message must name)
    "meta not JSON": (lambda a, m: a.__setitem__("meta", b"{not json"), "meta: not valid JSON"),
    "meta a list": (lambda a, m: a.__setitem__("meta", b"[1, 2]"), "meta: a JSON object"),
    "meta without history": (lambda a, m: m.pop("history"), "meta.history is missing"),
    "epoch a string": (_set("epoch", "3"), "meta.epoch"),
    "negative step": (_set("step", -1), "meta.step"),
    "no meta": (lambda a, m: a.pop("meta"), "'meta'"),
    "unexpected key": (lambda a, m: a.__setitem__("extra", np.zeros(2)), "unexpected key 'extra'"),
    "unexpected parameter": (lambda a, m: a.__setitem__("param/ghost", np.zeros(2, np.float32)),
                             "param/ghost"),
    "integer weights": (lambda a, m: a.__setitem__(WEIGHT, a[WEIGHT].astype(np.int64)), WEIGHT),
    "float64 weights": (lambda a, m: a.__setitem__(WEIGHT, a[WEIGHT].astype(np.float64)), WEIGHT),
    "transposed weights": (lambda a, m: a.__setitem__(WEIGHT, np.ascontiguousarray(a[WEIGHT].T)), WEIGHT),
    "a pickled object": (lambda a, m: a.__setitem__(WEIGHT, np.array([{"x": 1}], dtype=object)),
                         "dtype object"),
    "optimizer state missing": (_drop_opt, "lacks optimizer state"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_checkpoint_is_one_line_naming_file_and_key(run_copy, capsys, case):
    graph, run = run_copy
    change, named = BAD[case]
    _rewrite(run / "checkpoint.npz", change)
    code, _, err = train(capsys, graph, "--out", run, "--resume", "--epochs", "2")
    assert code == exitcodes.BAD_INPUT and one_line_error(err), err
    assert str(run / "checkpoint.npz") in err and named in err


@pytest.mark.parametrize("setting, value", [("--optimizer", "sgd"), ("--optimizer", "momentum"),
                                            ("--seed", "4"), ("--batch-size", "32")])
def test_resuming_with_other_settings_is_refused_not_silently_reset(run_copy, capsys, setting, value):
    graph, run = run_copy
    code, _, err = train(capsys, graph, "--out", run, "--resume", setting, value)
    assert code == exitcodes.BAD_INPUT and one_line_error(err), err
    assert value in err and setting.lstrip("-").replace("-", "_") in err


def _zip_with(path, members):
    """A hand-made .npz: name -> (npy header dict, data bytes or a count of zero bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (header, data) in members.items():
            with zf.open(name, "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                chunk = bytes(1 << 20)
                for _ in range(data if isinstance(data, int) else 0):
                    f.write(chunk)  # zeros: a few hundred kB on disk, 1 MiB each inflated
                f.write(b"" if isinstance(data, int) else data)


def _meta_member(meta):
    raw = json.dumps(meta).encode()
    return {"descr": "|u1", "fortran_order": False, "shape": (len(raw),)}, raw


@pytest.fixture
def never_inflated(monkeypatch):
    """np.load may read the dataset, but never a checkpoint refused from its headers."""
    real = np.load

    def load(file, *args, **kw):
        if Path(str(getattr(file, "name", file))).name == "checkpoint.npz":
            raise AssertionError("np.load was reached: the checkpoint was inflated")
        return real(file, *args, **kw)
    monkeypatch.setattr(np, "load", load)


def test_a_zip_bomb_is_refused_from_its_headers(run_copy, capsys, never_inflated):
    graph, run = run_copy
    meta = {"epoch": 1, "step": 23, "optimizer_steps": 23, "history": [], "config": {}}
    header = {"descr": "<f4", "fortran_order": False, "shape": (100 << 18,)}  # 100 MiB of float32
    _zip_with(run / "checkpoint.npz", {"meta.npy": _meta_member(meta), f"{WEIGHT}.npy": (header, 100)})
    assert (run / "checkpoint.npz").stat().st_size < 2 << 20
    code, _, err = train(capsys, graph, "--out", run, "--resume", "--epochs", "2")
    assert code == exitcodes.BAD_INPUT and one_line_error(err), err
    assert "refused unread" in err and str(run / "checkpoint.npz") in err


def test_an_array_header_larger_than_its_member_is_refused(tmp_path, never_inflated):
    meta = {"epoch": 0, "step": 0, "optimizer_steps": 0, "history": [], "config": {}}
    header = {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)}  # 4 TB claimed
    path = tmp_path / "checkpoint.npz"
    _zip_with(path, {"meta.npy": _meta_member(meta), f"{WEIGHT}.npy": (header, b"\0" * 16)})
    with pytest.raises(CheckpointError, match=f"{WEIGHT}: header says shape"):
        checkpoint.load(path)


def test_a_checkpoint_that_is_not_a_zip_is_refused(tmp_path):
    (tmp_path / "c.npz").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        checkpoint.load(tmp_path / "c.npz")
