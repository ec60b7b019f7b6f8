"""The saved-graph format (`*.loom.json`): load, validate, migrate, save atomically.

Structure is checked by a JSON Schema (the `jsonschema` library), meaning by our own checks
on top (duplicate ids, edges to missing nodes). Everything wrong with a file raises one
error type, `GraphFileError`, naming the file, the JSON path or node id, and the problem.
Layer-level problems (unknown kinds, shapes, attribute ranges) are not load errors: the
editor must open such a file to fix it; `core.layers.analyze` reports them."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from .atomic import atomic_write
from .document import FORMAT, VERSION, GraphDocument
from .errors import LoomError

_PORT = {"type": "array", "prefixItems": [{"type": "string", "minLength": 1},
                                          {"type": "string", "minLength": 1}],
         "minItems": 2, "maxItems": 2}
TRAINING_SCHEMA = {
    "type": "object",
    "properties": {
        "optimizer": {"enum": ["sgd", "momentum", "nesterov", "adam"]},
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "momentum": {"type": "number", "minimum": 0, "maximum": 1},
        "weight_decay": {"type": "number", "minimum": 0},
        "batch_size": {"type": "integer", "minimum": 1},
        "epochs": {"type": "integer", "minimum": 1},
        "schedule": {"enum": ["constant", "step", "cosine"]},
        "step_size": {"type": "integer", "minimum": 1},
        "gamma": {"type": "number", "exclusiveMinimum": 0},
        "seed": {"type": "integer", "minimum": 0},
        "val_fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "backend": {"enum": ["numpy", "cupy", "auto"]},
        "checkpoint": {"type": "string", "pattern": "^(none|sqrt|cheap|budget=[0-9]+)$"},
    },
    "additionalProperties": False,
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "version", "nodes", "edges"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"type": "integer", "minimum": 1},
        "name": {"type": "string"},
        "nodes": {"type": "array", "items": {
            "type": "object", "required": ["id", "kind"], "additionalProperties": False,
            "properties": {"id": {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9_\-]+$"},
                           "kind": {"type": "string", "minLength": 1},
                           "attrs": {"type": "object"},
                           "pos": {"type": "array", "items": {"type": "number"},
                                   "minItems": 2, "maxItems": 2}}}},
        "edges": {"type": "array", "items": {
            "type": "object", "required": ["src", "dst"], "additionalProperties": False,
            "properties": {"src": _PORT, "dst": _PORT}}},
        "training": TRAINING_SCHEMA,
    },
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# version -> function upgrading a dict of that version to version + 1
MIGRATIONS: dict = {}


class GraphFileError(LoomError):
    """A graph file cannot be read: names the file, where in it, and what is wrong."""


def loads(text: str, source: str = "<string>") -> GraphDocument:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphFileError(f"{source}: not valid JSON at line {exc.lineno}, "
                             f"column {exc.colno}: {exc.msg}") from None
    return from_dict(data, source)


def load(path) -> GraphDocument:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GraphFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphFileError(f"{path}: cannot read ({exc})") from None
    doc = loads(text, str(path))
    return doc


def from_dict(data, source="<dict>") -> GraphDocument:
    data = _migrate(data, source)
    error = next(iter(sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.path))), None)
    if error is not None:
        raise GraphFileError(f"{source}: at {_json_path(error.path)}: {error.message}")
    _semantic_checks(data, source)
    return GraphDocument.from_dict(data)


def _migrate(data, source):
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GraphFileError(f"{source}: not a Loom graph file (expected \"format\": \"{FORMAT}\")")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise GraphFileError(f"{source}: at $.version: expected an integer version")
    if version > VERSION:
        raise GraphFileError(f"{source}: written by a newer Loom (format version {version}); "
                             f"this Loom reads up to version {VERSION}")
    while version < VERSION:
        if version not in MIGRATIONS:
            raise GraphFileError(f"{source}: no migration from format version {version}")
        data = MIGRATIONS[version](data)
        version = data["version"]
    return data


def _json_path(path) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _semantic_checks(data, source):
    ids = set()
    for i, node in enumerate(data["nodes"]):
        if node["id"] in ids:
            raise GraphFileError(f"{source}: at $.nodes[{i}]: duplicate node id {node['id']!r}")
        ids.add(node["id"])
    for i, edge in enumerate(data["edges"]):
        for end in ("src", "dst"):
            if edge[end][0] not in ids:
                raise GraphFileError(f"{source}: at $.edges[{i}].{end}: "
                                     f"no node with id {edge[end][0]!r}")


def dumps(doc: GraphDocument) -> str:
    return json.dumps(doc.to_dict(), indent=2) + "\n"


def save(doc: GraphDocument, path):
    """Write to a temporary file beside `path`, fsync, then rename over it: a crash or a
    failed serialisation never leaves a half-written graph file."""
    text = dumps(doc)  # serialise first: a failure here touches nothing on disk
    atomic_write(path, lambda f: f.write(text))
