"""The graph file: round trips, one error type for every malformed file, versions, atomic saves."""
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core import graphfile
from core.graphfile import GraphFileError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "resources" / "examples").glob("*.loom.json"))
TEXT = EXAMPLES[0].read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_round_trip_is_identical(path, tmp_path):
    doc = graphfile.load(path)
    graphfile.save(doc, tmp_path / "a.loom.json")
    again = graphfile.load(tmp_path / "a.loom.json")
    assert again.to_dict() == doc.to_dict()
    graphfile.save(again, tmp_path / "b.loom.json")
    assert (tmp_path / "a.loom.json").read_text() == (tmp_path / "b.loom.json").read_text()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.integers(0, len(TEXT.rstrip()) - 1))  # every strict prefix is broken
def test_truncated_files_raise_only_graphfileerror(cut):
    with pytest.raises(GraphFileError, match="demo.loom.json"):
        graphfile.loads(TEXT[:cut], source="demo.loom.json")


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = list(_paths(json.loads(TEXT)))
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                 st.text(max_size=5), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(ALL_PATHS[1:]), JUNK)
def test_type_substitutions_raise_only_graphfileerror(path, junk):
    data = json.loads(TEXT)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    try:
        doc = graphfile.from_dict(data, "sub.loom.json")
    except GraphFileError as exc:
        assert "sub.loom.json" in str(exc)
    else:  # still a well-formed file (e.g. a number swapped for another): it must round-trip
        assert graphfile.from_dict(doc.to_dict()).to_dict() == doc.to_dict()


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=200))
def test_random_bytes_raise_only_graphfileerror(blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("b") / "blob.loom.json"
    path.write_bytes(blob)
    with pytest.raises(GraphFileError, match="blob.loom.json"):
        graphfile.load(path)


def test_newer_version_is_refused_clearly():
    data = json.loads(TEXT)
    data["version"] = 3
    with pytest.raises(GraphFileError, match="newer Loom.*version 3.*up to version 2"):
        graphfile.from_dict(data, "new.loom.json")


def test_migration_hook_upgrades_old_versions(monkeypatch):
    data = json.loads(TEXT)
    data["version"] = 0
    data["title"] = data.pop("name")

    def v0_to_v1(d):
        d = dict(d, version=1)
        d["name"] = d.pop("title")
        return d
    monkeypatch.setitem(graphfile.MIGRATIONS, 0, v0_to_v1)
    assert graphfile.from_dict(data).name == json.loads(TEXT)["name"]


def test_errors_name_the_json_path_and_node():
    data = json.loads(TEXT)
    data["nodes"][1]["pos"] = "left"
    with pytest.raises(GraphFileError, match=r"\$\.nodes\[1\]\.pos"):
        graphfile.from_dict(data, "x")
    data = json.loads(TEXT)
    data["nodes"][2]["id"] = data["nodes"][1]["id"]
    with pytest.raises(GraphFileError, match="duplicate node id"):
        graphfile.from_dict(data, "x")
    data = json.loads(TEXT)
    data["edges"][0]["dst"][0] = "ghost"
    with pytest.raises(GraphFileError, match=r"\$\.edges\[0\]\.dst.*'ghost'"):
        graphfile.from_dict(data, "x")
    with pytest.raises(GraphFileError, match="line 1, column"):
        graphfile.loads("{nope", "x")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "g.loom.json"
    doc = graphfile.load(EXAMPLES[0])
    graphfile.save(doc, path)
    before = path.read_text()
    doc.set_attr(next(iter(doc.nodes)), "path", "changed")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr("core.atomic.os.fsync", boom)
    with pytest.raises(OSError):
        graphfile.save(doc, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.loom.json"]
