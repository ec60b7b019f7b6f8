"""The user's block library: definitions saved once and dropped into any graph (the editor's
"Blocks" palette). One file per block, `<name>.loom-block.json`, in a per-user folder
($LOOM_BLOCKS_DIR, else ~/.local/share/loom/blocks):

    {"format": "loom.block", "version": 1, "name": "Stage", "block": {...a graph file's
     "blocks" entry...}, "uses": {"Inner": {...}, ...}}

`uses` holds the definitions the block's body has instances of (nested blocks), so a file is
whole on its own. Files are data, checked as strictly as graph files (core.graphfile)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from . import graphfile
from .atomic import atomic_write
from .blocks import BlockDef, definitions, root
from .document import FORMAT as GRAPH_FORMAT, VERSION as GRAPH_VERSION, GraphDocument
from .errors import LoomError
from .limits import MAX_GRAPH_BYTES, open_regular

FORMAT = "loom.block"
VERSION = 1
SUFFIX = ".loom-block.json"


class BlockFileError(LoomError):
    """A library file cannot be read: names the file, where in it, and what is wrong."""


def library_dir() -> Path:
    return Path(os.environ.get("LOOM_BLOCKS_DIR") or "~/.local/share/loom/blocks").expanduser()


def save_block(defn: BlockDef, folder=None) -> Path:
    """Write the definition (with the definitions it uses) atomically; returns the file."""
    folder = Path(folder) if folder is not None else library_dir()
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, "name": defn.name, "block": defn.to_dict()}
    used = [d for d in dependencies(defn) if d is not defn]
    if used:
        data["uses"] = {d.name: d.to_dict() for d in used}
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:  # NaN in an attribute: no reader would take the file back
        raise BlockFileError(f"block {defn.name}: cannot be saved: {exc}") from None
    path = folder / f"{defn.name}{SUFFIX}"
    atomic_write(path, lambda f: f.write(text))
    return path


def list_blocks(folder=None) -> tuple[list[BlockDef], list[tuple[Path, str]]]:
    """The library's definitions by file name, and (file, message) for each file that could
    not be read (skipped: one bad file does not hide the others)."""
    folder = Path(folder) if folder is not None else library_dir()
    found, unreadable = [], []
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else ():
        try:
            found.append(load_block(path))
        except (LoomError, OSError) as exc:
            unreadable.append((path, str(exc)))
    return found, unreadable


def load_block(path) -> BlockDef:
    """One library file's definition; its body resolves the nested ones it carries."""
    path = Path(path)
    try:
        with open_regular(path, MAX_GRAPH_BYTES) as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BlockFileError(f"{path}: cannot read ({exc})") from None
    try:
        data = graphfile.parse(text, str(path))
    except graphfile.GraphFileError as exc:
        raise BlockFileError(str(exc)) from None
    name = _check_header(data, path)
    holder = _as_graph(data, name, path)
    return holder.blocks[name]


def _check_header(data, path) -> str:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BlockFileError(f"{path}: not a Loom block file (expected \"format\": \"{FORMAT}\")")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
        raise BlockFileError(f"{path}: block file version {version!r}: this Loom reads "
                             f"version {VERSION}")
    extra = sorted(set(data) - {"format", "version", "name", "block", "uses"})
    if extra:
        raise BlockFileError(f"{path}: at $.{extra[0]}: unexpected key")
    name, uses = data.get("name"), data.get("uses", {})
    if not isinstance(data.get("block"), dict) or not isinstance(uses, dict):
        raise BlockFileError(f"{path}: at $.block: expected a block definition (an object)")
    if isinstance(name, str) and name in uses:
        raise BlockFileError(f"{path}: at $.uses.{name}: the block itself cannot be in uses")
    return name


def _as_graph(data, name, path) -> GraphDocument:
    """The definitions, checked by the graph file's own rules (a graph holding only them)."""
    graph = {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "name": "library",
             "nodes": [], "edges": [], "blocks": {**data.get("uses", {}), name: data["block"]}}
    if not isinstance(name, str):
        raise BlockFileError(f"{path}: at $.name: expected the block's name")
    try:
        return graphfile.from_dict(graph, str(path))
    except graphfile.GraphFileError as exc:  # say where in *this* file's layout
        message = re.sub(rf"\$\.blocks\.{re.escape(name)}(?=[.\[:]|$)", "$.block", str(exc))
        raise BlockFileError(message.replace("$.blocks.", "$.uses.")
                             .replace("at $.blocks:", "at $.name:")) from None


def dependencies(defn: BlockDef) -> list[BlockDef]:
    """`defn` and every definition its body uses, at any depth, used ones first."""
    known = definitions(defn.body)
    order, seen = [], set()

    def visit(d):
        if d.name in seen:
            return
        seen.add(d.name)
        for node in d.body.nodes.values():
            inner = known.get(node.attrs.get("block")) if node.kind == "Block" else None
            if inner is not None:
                visit(inner)
        order.append(d)
    visit(defn)
    return order


def import_block(doc, defn: BlockDef) -> str:
    """Copy a definition (and those it uses) into doc's graph; returns the name it has
    there. A definition already there with the same name and content is reused; one with the
    same name and other content keeps its name, and the copy is called "Name-2" (or -3...)."""
    top = root(doc)
    renamed: dict = {}
    for d in dependencies(defn):
        renamed[d.name] = _import_one(top, d, renamed)
    return renamed[defn.name]


def _import_one(top, defn, renamed) -> str:
    copy = BlockDef.from_dict(defn.name, defn.to_dict())
    for node in copy.body.nodes.values():  # not in a document yet: no events to send
        if node.kind == "Block" and node.attrs.get("block") in renamed:
            node.attrs["block"] = renamed[node.attrs["block"]]
    name, i = defn.name, 1
    while name in top.blocks:
        if top.blocks[name].content() == copy.content():
            return name
        i += 1
        name = f"{defn.name}-{i}"
    copy.name = copy.body.name = name
    top.add_block(copy)
    return name
