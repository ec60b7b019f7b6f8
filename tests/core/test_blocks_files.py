"""Blocks on disk: the graph file's version 2 (every bundled example loads and saves back as
it is, version-1 files load unchanged, a file with blocks round-trips exactly, malformed
blocks are one clear error with its JSON path) and the user's block library (save, list,
import with nested definitions)."""
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core import graphfile
from core.block_library import (BlockFileError, import_block, library_dir, list_blocks,
                                load_block, save_block)
from core.blocks import BlockDef, group, promote
from core.document import VERSION
from core.graphfile import GraphFileError
from core.layers import analyze
from tests.cli.conftest import EXAMPLES
from tests.cli.flat_examples import flat_data, flat_doc

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.loom.json"))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_bundled_example_loads_and_saves_back_as_it_is(path):
    raw = json.loads(path.read_text())
    doc = graphfile.load(path)
    assert raw["version"] == (2 if "blocks" in raw else 1)  # only blocks need the new version
    assert doc.to_dict() == {**raw, "version": VERSION} and VERSION == 2
    assert list(doc.blocks) == list(raw.get("blocks", {})) and analyze(doc).problems == []


@pytest.mark.parametrize("name", sorted(p.name[:-len(".loom.json")] for p in EXAMPLE_FILES))
def test_version_one_files_load_unchanged(name, tmp_path):
    """Every example as a version-1 file (the grouped ones as they were drawn flat, before
    blocks): it loads with no blocks, and reads the same as version 2."""
    raw = flat_data(name)
    assert raw["version"] == 1 and "blocks" not in raw
    path = tmp_path / f"{name}.loom.json"
    path.write_text(json.dumps(raw, indent=2))
    doc = graphfile.load(path)
    assert doc.blocks == {}
    assert doc.to_dict() == {**raw, "version": VERSION}
    as_two = graphfile.from_dict({**raw, "version": 2})
    assert as_two.to_dict() == doc.to_dict()


def _grouped():
    doc = flat_doc("mnist_cnn")
    group(doc, ["conv2d1", "relu1", "maxpool2d1"], "Stage")
    group(doc, ["linear1", "relu3"], "Dense")
    promote(doc, "Dense", "width", [["linear1", "out_features"]])
    return doc


def test_a_file_with_blocks_round_trips_exactly(tmp_path):
    doc = _grouped()
    graphfile.save(doc, tmp_path / "a.loom.json")
    text = (tmp_path / "a.loom.json").read_text()
    data = json.loads(text)
    assert data["version"] == 2 and list(data["blocks"]) == ["Stage", "Dense"]
    assert data["blocks"]["Dense"]["params"] == {"width": {"default": 120, "targets": [["linear1", "out_features"]]}}
    again = graphfile.load(tmp_path / "a.loom.json")
    assert again.to_dict() == doc.to_dict()
    graphfile.save(again, tmp_path / "b.loom.json")
    assert (tmp_path / "b.loom.json").read_text() == text
    assert analyze(again).problems == [] and again.blocks["Stage"].origin == doc.blocks["Stage"].origin


def test_a_newer_version_is_still_refused():
    data = _grouped().to_dict()
    data["version"] = VERSION + 1
    with pytest.raises(GraphFileError, match=f"newer Loom.*version {VERSION + 1}.*up to version {VERSION}"):
        graphfile.from_dict(data, "new.loom.json")


def _break(mutate):
    data = _grouped().to_dict()
    mutate(data)
    return data


MALFORMED = {
    "duplicate id": (lambda d: d["blocks"]["Stage"]["nodes"].append(copy.deepcopy(d["blocks"]["Stage"]["nodes"][1])),
                     r"at \$\.blocks\.Stage\.nodes\[5\]: duplicate node id 'conv2d1'"),
    "edge to nowhere": (lambda d: d["blocks"]["Stage"]["edges"][0]["dst"].__setitem__(0, "ghost"),
                        r"at \$\.blocks\.Stage\.edges\[0\]\.dst: no node with id 'ghost'"),
    "bad block name": (lambda d: d["blocks"].__setitem__("two words", d["blocks"]["Stage"]),
                       r"at \$\.blocks: 'two words' does not match"),
    "not an object": (lambda d: d["blocks"].__setitem__("Stage", []), r"at \$\.blocks\.Stage: \[\] is not"),
    "no nodes": (lambda d: d["blocks"]["Stage"].pop("nodes"), r"at \$\.blocks\.Stage: 'nodes' is a required"),
    "target gone": (lambda d: d["blocks"]["Dense"]["params"]["width"]["targets"][0].__setitem__(0, "ghost"),
                    r"at \$\.blocks\.Dense\.params\.width\.targets\[0\]: no node with id 'ghost'"),
    "no default": (lambda d: d["blocks"]["Dense"]["params"]["width"].pop("default"),
                   r"at \$\.blocks\.Dense\.params\.width: 'default' is a required"),
    "bad origin": (lambda d: d["blocks"]["Dense"].__setitem__("origin", [1]),
                   r"at \$\.blocks\.Dense\.origin: \[1\] is too short"),
    "unknown key": (lambda d: d["blocks"]["Dense"].__setitem__("extra", 1), r"at \$\.blocks\.Dense: .*'extra' was unexpected"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_blocks_are_one_clear_error(case):
    mutate, message = MALFORMED[case]
    with pytest.raises(GraphFileError, match=f"^bad.loom.json: {message}"):
        graphfile.from_dict(_break(mutate), "bad.loom.json")


def _paths(value, prefix=()):
    yield prefix
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


BLOCK_PATHS = [p for p in _paths(_grouped().to_dict()) if p[:1] == ("blocks",)]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                 st.text(max_size=5), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(BLOCK_PATHS[1:]), JUNK)
def test_junk_anywhere_in_blocks_is_a_file_error_or_a_graph_analysis_can_read(path, junk):
    data = _grouped().to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    try:
        doc = graphfile.from_dict(data, "junk.loom.json")
    except GraphFileError as exc:
        assert str(exc).startswith("junk.loom.json: ")
    else:  # still well-formed: it round-trips, and analysis reports rather than raises
        assert graphfile.from_dict(doc.to_dict()).to_dict() == doc.to_dict()
        analyze(doc)


# ---- the library -----------------------------------------------------------------------------

@pytest.fixture
def library(tmp_path, monkeypatch):
    folder = tmp_path / "blocks"
    monkeypatch.setenv("LOOM_BLOCKS_DIR", str(folder))
    return folder


def test_the_library_is_per_user_and_saves_atomically(library):
    assert library_dir() == library
    doc = _grouped()
    path = save_block(doc.blocks["Stage"])
    assert path == library / "Stage.loom-block.json" and [p.name for p in library.iterdir()] == [path.name]
    data = json.loads(path.read_text())
    assert (data["format"], data["version"], data["name"]) == ("loom.block", 1, "Stage")
    assert data["block"] == doc.blocks["Stage"].to_dict() and "uses" not in data


def test_list_and_import_into_another_graph(library):
    save_block(_grouped().blocks["Dense"])
    (library / "broken.loom-block.json").write_text("{nope")
    (library / "notes.txt").write_text("not a block")
    found, unreadable = list_blocks()
    assert [d.name for d in found] == ["Dense"]
    assert [(p.name, "line 1" in m) for p, m in unreadable] == [("broken.loom-block.json", True)]
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    assert import_block(doc, found[0]) == "Dense"
    assert doc.blocks["Dense"].content() == found[0].content()
    assert import_block(doc, found[0]) == "Dense" and list(doc.blocks) == ["Dense"]  # reused
    other = load_block(library / "Dense.loom-block.json")
    other.body.set_attr("relu3", "name", "x")  # other content, same name
    assert import_block(doc, other) == "Dense-2" and list(doc.blocks) == ["Dense", "Dense-2"]


def test_nested_definitions_travel_with_the_block(library):
    doc = graphfile.load(EXAMPLES / "digits_mlp.loom.json")
    act = group(doc, ["relu1"], "Act")
    group(doc, ["linear1", act], "Dense")
    path = save_block(doc.blocks["Dense"])
    assert list(json.loads(path.read_text())["uses"]) == ["Act"]
    (defn,), _ = list_blocks()
    target = graphfile.load(EXAMPLES / "mnist_mlp.loom.json")
    # a different block already called Act
    target.add_block(BlockDef("Act", graphfile.load(EXAMPLES / "digits_logreg.loom.json")))
    assert import_block(target, defn) == "Dense"
    assert list(target.blocks) == ["Act", "Act-2", "Dense"]
    inner = [n for n in target.blocks["Dense"].body.nodes.values() if n.kind == "Block"]
    assert [n.attrs["block"] for n in inner] == ["Act-2"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="loom.graph"), "not a Loom block file"),
    (lambda d: d.update(version=2), "block file version 2"),
    (lambda d: d["block"]["nodes"][1].update(id="in"), r"at \$\.block\.nodes\[1\]: duplicate node id 'in'"),
    (lambda d: d.update(extra=1), r"at \$\.extra: unexpected key"),
])
def test_a_bad_library_file_is_reported_not_raised(library, mutate, message):
    path = save_block(_grouped().blocks["Stage"])
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    found, unreadable = list_blocks()
    assert found == [] and len(unreadable) == 1
    assert str(path) in unreadable[0][1]
    with pytest.raises(BlockFileError, match=message):
        load_block(path)
