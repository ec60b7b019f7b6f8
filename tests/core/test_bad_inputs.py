"""Bad input refused with one clean error naming the place (issue 17, items 5 and 6): strict
JSON, attribute and training-setting values, and dataset files that are not regular files,
too large, non-finite or given relative to the graph file."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core import graphfile, limits
from core.data import DatasetError, load_dataset
from core.errors import LoomError
from core.graphfile import GraphFileError
from core.layers import LAYERS, build
from core.settings import training_config, validate_training

from .test_graphfile import ALL_PATHS, JUNK, TEXT as MUTATED  # the paths are that file's

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "examples" / "digits_mlp.loom.json"
TEXT = EXAMPLE.read_text()


def _with_training(text, value):
    return text.replace('"lr": 0.005', f'"lr": {value}')


# ---- the file's JSON ---------------------------------------------------------------------------

MALFORMED = {
    "NaN": (_with_training(TEXT, "NaN"), "NaN is not a number JSON allows"),
    "Infinity": (_with_training(TEXT, "-Infinity"), "-Infinity is not a number"),
    "overflowing float": (_with_training(TEXT, "1e400"), "1e400 is too large"),
    "5,000-digit integer": (_with_training(TEXT, "9" * 5000), "5000 digits is too large"),
    "duplicate key": (TEXT.replace('"lr": 0.005', '"lr": 0.005, "lr": 1'), "'lr' appears twice"),
    "2,000 levels": ('{"a": ' * 2000 + "1" + "}" * 2000, "nested more than 64 levels"),
    "70 levels in attrs": (TEXT.replace('"out_features": 64', '"out_features": ' + "[" * 70 + "]" * 70),
                           r"at \$\.nodes\[2\]\.attrs\.out_features.*nested more than"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_json_is_one_error_naming_the_file(name):
    text, words = MALFORMED[name]
    with pytest.raises(GraphFileError, match=f"^bad.loom.json: .*{words}"):
        graphfile.loads(text, "bad.loom.json")


def test_a_graph_file_must_be_a_regular_file(tmp_path):
    with pytest.raises(GraphFileError, match="not a regular file"):
        graphfile.load(tmp_path)
    if hasattr(os, "mkfifo"):  # a FIFO would block a plain open() forever
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(GraphFileError, match="a pipe"):
            graphfile.load(tmp_path / "pipe")


# ---- attributes and training settings ------------------------------------------------------------

ATTRS = [("Linear", "out_features", 64.0, "expected an integer"),
         ("Linear", "out_features", 1e308, "expected an integer"),
         ("Linear", "out_features", 10 ** 30, "too large"),
         ("Dropout", "rate", float("nan"), "finite"),
         ("BatchNorm", "eps", float("inf"), "finite"),
         ("power", "p", float("-inf"), "finite"),
         ("Input", "shape", [10 ** 30], "too large")]


@pytest.mark.parametrize("kind, attr, value, words", ATTRS)
def test_attribute_values_are_checked(kind, attr, value, words):
    spec = next(a for a in LAYERS[kind].attrs if a.name == attr)
    assert words in (spec.check(value) or "")


SETTINGS = [("epochs", 0, "at least 1"), ("epochs", 2.0, "expected an integer"),
            ("batch_size", 0, "at least 1"), ("batch_size", -5, "at least 1"),
            ("batch_size", 1e308, "expected an integer"), ("seed", -1, "at least 0"),
            ("lr", -1, "above 0"), ("lr", float("nan"), "finite"),
            ("momentum", float("inf"), "finite"), ("val_fraction", 0, "above 0"),
            ("val_fraction", 1.0, "below 1"), ("optimizer", "adamw", "not one of"),
            ("checkpoint", "budget=lots", "budget=BYTES"), ("epoch", 3, "unknown setting")]


@pytest.mark.parametrize("name, value, words", SETTINGS)
def test_training_settings_are_checked_wherever_they_come_from(name, value, words):
    with pytest.raises(LoomError, match=f"training setting {name}: .*{words}"):
        validate_training({name: value})
    doc = graphfile.loads(TEXT, "ok.loom.json")
    with pytest.raises(LoomError, match=f"training setting {name}"):
        training_config(doc, {name: value})  # a command-line override is checked the same way


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(ALL_PATHS[1:]), JUNK)
def test_the_fast_structure_check_never_passes_what_the_schema_refuses(path, junk):
    data = json.loads(MUTATED)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    if graphfile._plainly_valid(data):
        assert graphfile._VALIDATOR.is_valid(data)


def test_file_settings_are_checked_on_load():
    data = json.loads(TEXT)
    data["training"]["epochs"] = 3.0  # JSON Schema calls 3.0 an integer; Loom does not
    with pytest.raises(GraphFileError, match=r"\$\.training\.epochs: expected an integer"):
        graphfile.from_dict(data, "f.loom.json")


# ---- dataset files -----------------------------------------------------------------------------------

def _special_files(tmp_path):
    files = {"a directory": tmp_path}
    if os.path.exists("/dev/zero"):
        files["a device"] = Path("/dev/zero")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.csv")
        files["a pipe"] = tmp_path / "fifo.csv"
    return files


@pytest.mark.parametrize("loader", ["csv", "npz"])
def test_only_regular_dataset_files_are_opened(tmp_path, loader):
    for what, path in _special_files(tmp_path).items():
        with pytest.raises(DatasetError, match=f"{path}.*not a regular file \\({what}\\)"):
            load_dataset({"name": loader, "path": str(path)})


def test_dataset_size_is_capped(tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text("1,2,0\n3,4,1\n")
    np.savez_compressed(tmp_path / "z.npz", x=np.zeros((400, 10)), y=np.zeros(400))  # inflates
    monkeypatch.setattr("core.data.registry.MAX_DATASET_BYTES", 8)
    with pytest.raises(DatasetError, match="d.csv.*more than"):
        load_dataset({"name": "csv", "path": str(tmp_path / "d.csv")})
    monkeypatch.setattr("core.data.files.MAX_DATASET_BYTES", 4096)
    monkeypatch.setattr("core.data.registry.MAX_DATASET_BYTES", 4096)
    assert (tmp_path / "z.npz").stat().st_size < 4096
    with pytest.raises(DatasetError, match="z.npz.*once decompressed"):
        load_dataset({"name": "npz", "path": str(tmp_path / "z.npz")})


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e39"])  # 1e39 overflows float32
def test_non_finite_data_is_refused(tmp_path, value):
    (tmp_path / "d.csv").write_text(f"1,2,0\n3,{value},1\n")
    with pytest.raises(DatasetError, match="d.csv"):
        load_dataset({"name": "csv", "path": str(tmp_path / "d.csv")})
    np.savez(tmp_path / "d.npz", x=np.array([[1.0, float(value)]]), y=np.array([0]))
    with pytest.raises(DatasetError, match="not a finite"):
        load_dataset({"name": "npz", "path": str(tmp_path / "d.npz")})


def _csv_graph(folder, path):
    data = json.loads(TEXT)
    ds = next(n for n in data["nodes"] if n["kind"] == "Dataset")
    ds["attrs"] = {"name": "csv", "path": path}
    (folder / "g.loom.json").write_text(json.dumps(data))
    return folder / "g.loom.json"


def test_dataset_paths_are_relative_to_the_graph_file(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    rows = "\n".join(",".join(["0.5"] * 64 + [str(i % 10)]) for i in range(20))
    (tmp_path / "data" / "d.csv").write_text(rows)
    graph = _csv_graph(tmp_path, "data/d.csv")
    monkeypatch.chdir(tmp_path / "data")  # not where the graph is
    built = build(graphfile.load(graph))
    assert built.dataset["path"] == os.path.join(str(tmp_path), "data/d.csv")
    elsewhere = tmp_path / "copies"
    elsewhere.mkdir()
    graphfile.save(graphfile.load(graph), elsewhere / "g.loom.json")  # a copy saved elsewhere
    copy = json.loads((elsewhere / "g.loom.json").read_text())
    assert next(n for n in copy["nodes"] if n["kind"] == "Dataset")["attrs"]["path"] == "../data/d.csv"
    assert build(graphfile.load(elsewhere / "g.loom.json")).dataset["path"] == \
        os.path.join(str(elsewhere), "../data/d.csv")


def test_parse_bytes_for_max_memory():
    assert [limits.parse_bytes(t) for t in ("123", "4K", "2G", "1GiB", "3mb")] == \
        [123, 4096, 2 << 30, 1 << 30, 3 << 20]
    for bad in ("-1", "1.5G", "lots", "9" * 30):
        with pytest.raises(ValueError):
            limits.parse_bytes(bad)
