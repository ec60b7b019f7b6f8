"""The saved-graph format (`*.loom.json`): load, validate, migrate, save atomically.

Structure is checked by a JSON Schema (the `jsonschema` library), meaning by our own checks
on top (duplicate ids, edges to missing nodes, in the graph and in every block definition). Everything wrong with a file raises one
error type, `GraphFileError`, naming the file, the JSON path or node id, and the problem.
Layer-level problems (unknown kinds, shapes, attribute ranges) are not load errors: the
editor must open such a file to fix it; `core.layers.analyze` reports them."""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import jsonschema

from .atomic import atomic_write
from .document import FORMAT, ID_PATTERN, VERSION, GraphDocument
from .errors import LoomError
from .layers import LAYERS  # the layer table says which attributes are file paths
from .limits import MAX_GRAPH_BYTES, MAX_INT_DIGITS, MAX_JSON_DEPTH, open_regular
from .settings import setting_reasons

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
        "val_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "backend": {"enum": ["numpy", "cupy", "auto"]},
        "checkpoint": {"type": "string", "pattern": "^(none|sqrt|cheap|budget=[0-9]+)$"},
        "steps_per_epoch": {"type": "integer", "minimum": 0},
        "warmup_steps": {"type": "integer", "minimum": 0},
        "min_lr_ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "beta2": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "sample_chars": {"type": "integer", "minimum": 0},
        "procs": {"type": "integer", "minimum": 1},
        "bucket_bytes": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_NAME = {"type": "string", "minLength": 1, "pattern": f"^{ID_PATTERN.pattern}$"}
_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_NODES = {"type": "array", "items": {
    "type": "object", "required": ["id", "kind"], "additionalProperties": False,
    "properties": {"id": _NAME, "kind": {"type": "string", "minLength": 1},
                   "attrs": {"type": "object"}, "pos": _PAIR}}}
_EDGES = {"type": "array", "items": {
    "type": "object", "required": ["src", "dst"], "additionalProperties": False,
    "properties": {"src": _PORT, "dst": _PORT}}}
# a block definition (core.blocks): its body's nodes and edges, the attributes it promotes to
# its instances ({"width": {"default": 64, "targets": [["linear1", "units"]]}}), and where
# its instance stood when it was grouped
_BLOCK = {
    "type": "object", "required": ["nodes", "edges"], "additionalProperties": False,
    "properties": {
        "nodes": _NODES, "edges": _EDGES, "origin": _PAIR,
        "params": {"type": "object", "propertyNames": _NAME, "additionalProperties": {
            "type": "object", "required": ["default", "targets"], "additionalProperties": False,
            "properties": {"default": {}, "targets": {"type": "array", "items": _PORT}}}}}}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "version", "nodes", "edges"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"type": "integer", "minimum": 1},
        "name": {"type": "string"},
        # initial parameter values: an .npz keyed by parameter name, beside the graph file
        "weights": {"type": "string", "minLength": 1},
        "nodes": _NODES,
        "edges": _EDGES,
        "training": TRAINING_SCHEMA,
        "blocks": {"type": "object", "propertyNames": _NAME, "additionalProperties": _BLOCK},
    },
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# version -> function upgrading a dict of that version to version + 1
MIGRATIONS: dict = {
    1: lambda data: {**data, "version": 2},  # 2 adds "blocks": a version-1 file has none
}


class GraphFileError(LoomError):
    """A graph file cannot be read: names the file, where in it, and what is wrong."""


class _Refused(Exception):
    """Raised by the JSON parser's hooks: what is wrong, without the file name yet."""


def loads(text: str, source: str = "<string>") -> GraphDocument:
    return from_dict(parse(text, source), source)


def parse(text: str, source: str = "<string>"):
    """Strict JSON: no NaN or Infinity (nor numbers that overflow to it), no key twice in an
    object, no integer too long to be a size, no nesting beyond MAX_JSON_DEPTH."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite_float, parse_int=_short_int)
    except json.JSONDecodeError as exc:
        raise GraphFileError(f"{source}: not valid JSON at line {exc.lineno}, "
                             f"column {exc.colno}: {exc.msg}") from None
    except _Refused as exc:
        raise GraphFileError(f"{source}: {exc}") from None
    except RecursionError:  # the parser recursed once per level
        raise GraphFileError(f"{source}: {_too_deep()}") from None
    path = _too_deep_at(data)
    if path is not None:
        raise GraphFileError(f"{source}: at {_json_path(path)}: {_too_deep()}")
    return data


def _unique_keys(pairs):
    data = dict(pairs)
    if len(data) != len(pairs):  # json keeps the last silently: a second value is a mistake
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise _Refused(f"the key {twice!r} appears twice in one object")
    return data


def _no_constant(name):
    raise _Refused(f"{name} is not a number JSON allows")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is too large")
    return value


def _short_int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _too_deep() -> str:
    return f"nested more than {MAX_JSON_DEPTH} levels deep"


def _too_deep_at(data):
    """The JSON path of the first container nested deeper than MAX_JSON_DEPTH, else None
    (an explicit stack: the check itself must not recurse)."""
    stack = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return path
        items = value.items() if isinstance(value, dict) else \
            enumerate(value) if isinstance(value, list) else ()  # only the root can be a scalar
        for k, v in items:
            if type(v) is dict or type(v) is list:  # noqa: E721 - only JSON's own types occur
                stack.append((v, (*path, k)))
    return None


def load(path) -> GraphDocument:
    """Read a graph file; dataset paths in it are relative to its folder (`base_dir`)."""
    path = Path(path)
    try:
        with open_regular(path, MAX_GRAPH_BYTES) as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise GraphFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GraphFileError(f"{path}: cannot read ({exc})") from None
    doc = loads(text, str(path))
    doc.base_dir = os.path.abspath(path.parent)
    return doc


def from_dict(data, source="<dict>") -> GraphDocument:
    data = _migrate(data, source)
    if not _plainly_valid(data):  # the schema's walk costs ~0.1 ms a node: only when needed
        error = next(iter(sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.path))), None)
        if error is not None:
            raise GraphFileError(f"{source}: at {_json_path(error.path)}: {error.message}")
    _semantic_checks(data, source)
    return GraphDocument.from_dict(data)


# ---- the schema's rules for nodes and edges, as plain loops ------------------------------------
# A shortcut, never a second opinion: when these say "valid" the schema would too (tested on
# mutated files); when they do not, the schema finds the error and words the message.

_NODE_KEYS = frozenset(SCHEMA["properties"]["nodes"]["items"]["properties"])
_ID = re.compile(SCHEMA["properties"]["nodes"]["items"]["properties"]["id"]["pattern"])


def _plainly_valid(data) -> bool:
    nodes, edges = data.get("nodes"), data.get("edges")
    if type(nodes) is not list or type(edges) is not list:  # noqa: E721
        return False
    rest = {k: v for k, v in data.items() if k not in ("nodes", "edges")}
    return (all(map(_plain_node, nodes)) and all(map(_plain_edge, edges))
            and _VALIDATOR.is_valid({**rest, "nodes": [], "edges": []}))


def _plain_node(node) -> bool:
    return (type(node) is dict and "id" in node and "kind" in node  # noqa: E721
            and node.keys() <= _NODE_KEYS and _text(node["id"]) and _ID.search(node["id"])
            and _text(node["kind"]) and type(node.get("attrs", {})) is dict
            and ("pos" not in node or _pair(node["pos"], _number)))


def _plain_edge(edge) -> bool:
    return (type(edge) is dict and edge.keys() == {"src", "dst"}  # noqa: E721
            and _pair(edge["src"], _text) and _pair(edge["dst"], _text))


def _text(v) -> bool:
    return type(v) is str and v != ""  # noqa: E721


def _number(v) -> bool:
    return type(v) is int or type(v) is float  # noqa: E721 - bool is not a number here


def _pair(v, test) -> bool:
    return type(v) is list and len(v) == 2 and test(v[0]) and test(v[1])  # noqa: E721


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
    refused = setting_reasons(data.get("training", {}))  # what the schema cannot say (64.0)
    if refused:
        raise GraphFileError(f"{source}: at $.training.{refused[0][0]}: {refused[0][1]}")
    _check_wiring(data, source, "$")
    for name, block in data.get("blocks", {}).items():
        ids = _check_wiring(block, source, f"$.blocks.{name}")
        for param, spec in block.get("params", {}).items():
            for i, (node_id, _) in enumerate(spec["targets"]):
                if node_id not in ids:
                    raise GraphFileError(f"{source}: at $.blocks.{name}.params.{param}.targets[{i}]: "
                                         f"no node with id {node_id!r}")


def _check_wiring(data, source, where) -> set:
    """Node ids unique and every edge between existing nodes, in a graph or a block body;
    returns the ids."""
    ids = set()
    for i, node in enumerate(data["nodes"]):
        if node["id"] in ids:
            raise GraphFileError(f"{source}: at {where}.nodes[{i}]: duplicate node id {node['id']!r}")
        ids.add(node["id"])
    for i, edge in enumerate(data["edges"]):
        for end in ("src", "dst"):
            if edge[end][0] not in ids:
                raise GraphFileError(f"{source}: at {where}.edges[{i}].{end}: "
                                     f"no node with id {edge[end][0]!r}")
    return ids


def dumps(doc: GraphDocument, folder=None) -> str:
    """The file's text; with `folder`, relative dataset paths are rewritten to be relative
    to it (a copy saved elsewhere still names the same files)."""
    data = doc.to_dict()
    if folder is not None and doc.base_dir is not None:
        _rebase_paths(data, doc.base_dir, os.path.abspath(folder))
    try:  # NaN or infinity would make a file no JSON reader (Loom included) accepts
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise GraphFileError(f"{doc.name}: cannot be saved: {exc}") from None


def save(doc: GraphDocument, path):
    """Write to a temporary file beside `path`, fsync, then rename over it: a crash or a
    failed serialisation never leaves a half-written graph file."""
    text = dumps(doc, Path(path).parent)  # serialise first: a failure here touches nothing on disk
    atomic_write(path, lambda f: f.write(text))


def _rebase_paths(data, base, folder):
    if os.path.normcase(base) == os.path.normcase(folder):
        return
    weights = data.get("weights")
    if weights and not os.path.isabs(os.path.expanduser(weights)):
        data["weights"] = _relative(os.path.join(base, weights), folder)
    bodies = [b["nodes"] for b in data.get("blocks", {}).values()]
    for node in (n for nodes in (data["nodes"], *bodies) for n in nodes):
        kind = LAYERS.get(node["kind"])
        for spec in (a for a in (kind.attrs if kind else ()) if a.path):
            value = node["attrs"].get(spec.name)
            if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
                node["attrs"][spec.name] = _relative(os.path.join(base, value), folder)


def _relative(path, folder):
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows): only an absolute path reaches it
        return os.path.abspath(path)
