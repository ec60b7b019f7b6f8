"""ONNX import: a ModelProto becomes a Loom document of layer-kind nodes and edges, plus the
initial values of its parameters (`import_model`), written beside the model as a graph file
and a weights file (`import_file`).

The walk follows the ONNX graph in order. Each tensor is either a `Const` (an initializer, a
Constant, or a subgraph folded with numpy: shape chains, constant weights) or a `Wire` into
the document. Each node is translated by its rule in `onnx_rules.TRANSLATE`; every Loom node
is built as soon as it is added (core.layers' Walker), so shapes are known exactly as Loom
will see them, and whatever Loom cannot run is refused with one line naming the op type, the
node and the reason, before anything is written."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import graphfile
from ..atomic import atomic_write
from ..document import GraphDocument
from ..errors import LoomError
from ..layers import LAYERS
from ..layers.builder import Walker
from ..layers.graph_checks import INTEGER_PORTS
from ..layout import layered_positions
from ..weights import save_weights
from .onnx_rules import FOLD, TRANSLATE
from .onnx_shapes import BATCH, Const, Refusal, Wire, show
from .onnx_safety import OnnxImportError, check_model, np_dtype, read_model, resolve_external, to_array

__all__ = ["OnnxImportError", "Imported", "import_model", "import_file", "translate"]

# the ports an integer value (ids from an int64 Input) may feed: lookups, and ops that only
# move entries; anything else would compute in integers where the model computes in floats

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")  # what core.document.ID_PATTERN does not allow
# what a malformed node's attributes or inputs make numpy or the rules raise
_DATA_ERRORS = (LoomError, ArithmeticError, LookupError, TypeError, ValueError)


@dataclass
class Imported:
    doc: GraphDocument
    weights: dict  # parameter name -> initial value
    inputs: dict  # ONNX graph input name -> node id
    outputs: dict  # ONNX graph output name -> Wire


def import_model(model_or_path, name=None, layout=None) -> tuple[GraphDocument, dict]:
    """(document, {parameter name: array}) for an ONNX ModelProto or .onnx file. `layout(doc)`
    gives node positions (default: the editor's layered layout, core/layout.py)."""
    imported = translate(model_or_path, name)
    for node_id, pos in (layout or layered_positions)(imported.doc).items():
        imported.doc.move_node(node_id, pos)
    return imported.doc, imported.weights


def import_file(onnx_path, out_path=None, layout=None) -> Path:
    """Writes OUT.loom.json (default: <stem>.loom.json beside the model; in a folder given as
    OUT) and <stem>.weights.npz beside it, each atomically; nothing if the import fails."""
    onnx_path = Path(onnx_path)
    stem = _strip(onnx_path.name, ".onnx")
    out = Path(out_path) if out_path else onnx_path.with_name(f"{stem}.loom.json")
    if out.is_dir():  # -o FOLDER: the default name, in that folder
        out = out / f"{stem}.loom.json"
    graph_stem = _strip(out.name, ".loom.json")
    doc, weights = import_model(onnx_path, name=graph_stem, layout=layout)
    weights_file = out.with_name(f"{graph_stem}.weights.npz")
    doc.base_dir, doc.weights = os.path.abspath(out.parent), weights_file.name
    text = graphfile.dumps(doc, out.parent)  # serialised first: a failure writes nothing
    save_weights(weights_file, weights)  # the graph names it: it goes first
    atomic_write(out, lambda f: f.write(text))
    return out


def _strip(name, suffix):
    return name[:-len(suffix)] if name.lower().endswith(suffix) and len(name) > len(suffix) \
        else Path(name).stem


def translate(model_or_path, name=None, feeds=None, constants=None) -> Imported:
    """The import itself. `feeds` (name -> array) switches to fixed shapes: each graph input
    becomes a Constant node of its array's full shape, fed at run time (what the conformance
    backend does); `constants` (name -> array) makes graph inputs known values."""
    if isinstance(model_or_path, (str, os.PathLike)):
        model, source = read_model(model_or_path), Path(model_or_path)
    else:
        model, source = model_or_path, None
        check_model(model, "the model")
        resolve_external(model, None, "the model")
    name = name or (source and _strip(source.name, ".onnx")) or model.graph.name or "imported"
    return Importer(model, name, feeds, constants).run()


def _opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise OnnxImportError("the model names no version of ONNX's standard op set")
    return max(versions)


class Importer:
    def __init__(self, model, name, feeds, constants):
        self.graph, self.opset = model.graph, _opset(model)
        self.fixed = feeds is not None
        self.feeds, self.constants = feeds or {}, constants or {}
        self.doc = GraphDocument(name)
        self.weights, self.values, self.inputs = {}, {}, {}
        self.joins = {}  # (axis, *parts) -> the Wire of their Concat (onnx_shapes)
        self.walker = Walker(self.doc, training=False, batch=BATCH, seed=0)
        self.declared_batch = None  # the batch size the model's inputs declare, if fixed
        self.consumed = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        self.users = {}  # tensor name -> the nodes that read it
        for n in self.graph.node:
            for name in dict.fromkeys(n.input):
                self.users.setdefault(name, []).append(n)
        self.ahead = {}  # tensor name -> its value, computed early by a rule that fused its node

    def run(self) -> Imported:
        for t in self.graph.initializer:
            value = to_array(t, f"initializer {t.name!r}")
            # weights train; a scalar is a constant of the model's arithmetic (a scale, an eps)
            self.values[t.name] = Const(value, t.name, trainable=value.dtype.kind == "f" and value.ndim > 0)
        for vi in self.graph.input:
            if vi.name not in self.values:
                self._graph_input(vi)
        for proto in self.graph.node:
            self._node(NodeContext(self, proto))
        outputs = {o.name: self._output(o.name) for o in self.graph.output}
        return Imported(self.doc, self.weights, self.inputs, self._name_outputs(outputs))

    # ---- graph inputs and outputs ------------------------------------------------------------
    def _graph_input(self, vi):
        where = f"graph input {vi.name!r}"
        if vi.name in self.constants:
            self.values[vi.name] = Const(np.asarray(self.constants[vi.name]), vi.name)
            return
        try:
            kind, attrs = self._input_kind(vi, where)
            wire = self.emit(kind, attrs, (), vi.name)
        except Refusal as exc:
            raise OnnxImportError(f"{where}: {exc}") from None
        self.values[vi.name], self.inputs[vi.name] = wire, wire.node

    def _input_kind(self, vi, where):
        if not vi.type.HasField("tensor_type"):
            raise Refusal(f"of type {vi.type.WhichOneof('value')}: Loom's inputs are tensors")
        if self.fixed:
            return "Constant", {"shape": list(np.shape(self.feeds[vi.name]))}
        tensor = vi.type.tensor_type
        dtype = np_dtype(tensor.elem_type, where)
        if dtype.kind not in "fiu":
            raise Refusal(f"{dtype.name} values: Loom's Input feeds floating point or "
                          f"integer ids")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if not tensor.HasField("shape") or not dims:
            raise Refusal("a scalar (or no shape): Loom's inputs have a batch axis first")
        if any(d is None or d <= 0 for d in dims[1:]):
            raise Refusal(f"shape {['?' if d is None else d for d in dims]}: every axis but "
                          f"the first (the batch) needs a fixed size")
        self.declared_batch = dims[0]
        # ids of any integer type are fed as int64, what Loom's lookups take
        return "Input", {"shape": dims[1:], **({} if dtype.kind == "f" else {"dtype": "int64"})}

    def _output(self, name):
        if name not in self.values:
            raise OnnxImportError(f"graph output {name!r} is not computed by any node")
        try:
            return self.wire(self.values[name])
        except Refusal as exc:
            raise OnnxImportError(f"graph output {name!r}: {exc}") from None

    def _name_outputs(self, outputs) -> dict:
        """The node of each graph output takes the output's name where that id is free:
        `infer` names outputs by node id (core.inference), so its keys are the model's."""
        named = set(self.inputs.values())  # an input keeps its name: it is fed by it
        for out_name, wire in outputs.items():
            new = _safe_id(out_name)
            if wire.port != "out" or wire.node in named or new in self.doc.nodes:
                continue
            old = wire.node
            self._rename(old, new)
            named.add(new)
            outputs = {k: Wire(new, w.port) if w.node == old else w for k, w in outputs.items()}
        return outputs

    def _rename(self, old, new):
        """The document node and its parameters' names ("<node id>.<parameter>")."""
        self.doc.rename_node(old, new)
        for key in [k for k in self.weights if k.startswith(f"{old}.")]:
            self.weights[new + key[len(old):]] = self.weights.pop(key)

    # ---- nodes -------------------------------------------------------------------------------
    def _node(self, cx):
        if cx.proto.output and cx.proto.output[0] in self.ahead:  # fused into an earlier node
            self.values[cx.proto.output[0]] = self.ahead.pop(cx.proto.output[0])
            return
        try:
            cx.inputs = [self._lookup(n) if n else None for n in cx.proto.input]
            results = self._results(cx)
            for i, name in enumerate(cx.proto.output):
                if i < len(results) and name:
                    self.values[name] = results[i]
                elif name in self.consumed:
                    raise Refusal(f"output {i} ({name!r}) is not supported: Loom computes "
                                  f"only the first {len(results)}")
        except Refusal as exc:
            raise OnnxImportError(cx.message(str(exc))) from None
        except _DATA_ERRORS as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            # Loom's shape messages show the import's batch size: as N, like `check` does
            raise OnnxImportError(cx.message(text if self.fixed else
                                             text.replace(str(BATCH), "N"))) from None

    def _results(self, cx):
        if cx.proto.domain not in ("", "ai.onnx"):
            raise Refusal(f"domain {cx.proto.domain!r} is not ONNX's standard op set")
        present = [v for v in cx.inputs if v is not None]
        if cx.op in FOLD and present and all(isinstance(v, Const) for v in present):
            batch = any(v.batch for v in present)
            values = FOLD[cx.op](cx, *[v and v.value for v in cx.inputs])
            return [Const(np.asarray(v), name, batch=batch) for v, name in zip(values, cx.proto.output)]
        rule = TRANSLATE.get(cx.op)
        if rule is None:
            raise Refusal(f"Loom has no {cx.op} op")
        return rule(cx)

    def _lookup(self, name):
        if name not in self.values:
            raise Refusal(f"input {name!r} is not computed by any node before this one")
        return self.values[name]

    # ---- the document ------------------------------------------------------------------------
    def emit(self, kind, attrs, inputs, hint) -> Wire:
        """A node of `kind` fed by `inputs` (in port order), built at once."""
        spec = LAYERS[kind]
        for a in spec.attrs:
            reason = a.check(attrs[a.name]) if a.name in attrs else None
            if reason:
                raise Refusal(f"Loom's {kind} takes {reason}")
        sources = [None if v is None else self.wire(v) for v in inputs]
        for port, src in zip(spec.inputs, sources):
            if src is not None and port.name not in INTEGER_PORTS.get(kind, ()) \
                    and self.dtype(src).kind != "f":
                raise Refusal(f"{src.node!r} holds {self.dtype(src).name} values (ids): Loom "
                              f"takes integers only as ids to look up (Embedding, gather) and "
                              f"has no cast to floating point")
        node_id = self._new_id(hint)
        self.doc.add_node(kind, attrs, node_id=node_id)
        for port, src in zip(spec.inputs, sources):
            if src is not None:
                self.doc.add_edge((src.node, src.port), (node_id, port.name))
        self.walker.build_node(self.doc.nodes[node_id])
        return Wire(node_id, spec.outputs[0].name)

    def wire(self, value) -> Wire:
        """A value as a node output: a constant becomes a Parameter (a weight) or a Constant."""
        if isinstance(value, Wire):
            return value
        if value.wire is None:
            v = value.value
            if value.batch:
                raise Refusal(f"{value.name!r} is computed from the batch size: Loom's graphs "
                              f"are built for any batch")
            if v.dtype.kind != "f":
                raise Refusal(f"{value.name!r} holds {v.dtype.name} values: Loom's tensors are "
                              f"floating point")
            kind = "Parameter" if value.trainable else "Constant"
            value.wire = self.emit(kind, {"shape": list(v.shape)}, (), value.name)
            self.weights[f"{value.wire.node}.value"] = v
        return value.wire

    def _new_id(self, hint) -> str:
        base = _safe_id(hint)
        node_id, i = base, 2
        while node_id in self.doc.nodes:
            node_id, i = f"{base}_{i}", i + 1
        return node_id

    def shape(self, value):
        if isinstance(value, Const):
            return value.value.shape
        node = self.walker.built.outputs[(value.node, value.port)]
        return self.walker.shape_of(node)

    def dtype(self, value):
        if isinstance(value, Const):
            return value.value.dtype
        node = self.walker.built.outputs[(value.node, value.port)]
        self.walker.shape_of(node)
        return np.dtype(self.walker.dtypes[node])


def _safe_id(name) -> str:
    """An ONNX name as a node id (core.document.ID_PATTERN)."""
    return _UNSAFE.sub("_", name).strip("_")[:64] or "node"


class NodeContext:
    """What a rule sees of one ONNX node."""

    def __init__(self, importer, proto):
        self.imp, self.proto, self.op = importer, proto, proto.op_type
        self.opset, self.fixed = importer.opset, importer.fixed
        self.declared_batch = importer.declared_batch
        self.name = proto.name or (proto.output[0] if proto.output else proto.op_type)
        self.attrs = {a.name: a for a in proto.attribute}
        self.inputs = []

    def message(self, reason) -> str:
        return f"{self.op} node {self.name!r}: {reason}"

    def wants(self, i) -> bool:
        """Whether output i is used (optional outputs are computed only then)."""
        outputs = self.proto.output
        return i < len(outputs) and bool(outputs[i]) and outputs[i] in self.imp.consumed

    def input(self, i):
        return self.inputs[i] if i < len(self.inputs) else None

    def sole_user(self, i=0):
        """The one node that reads output i, if that is its only use (not a graph output)."""
        name = self.proto.output[i] if i < len(self.proto.output) else ""
        users = self.imp.users.get(name, [])
        graph_output = any(o.name == name for o in self.imp.graph.output)
        return users[0] if len(users) == 1 and not graph_output else None

    def known(self, name):
        """The value of tensor `name` if it is already known (else None)."""
        return self.imp.values.get(name)

    def fuse(self, proto, value):
        """`proto`'s single output is `value`: a later node this rule computed as well."""
        self.imp.ahead[proto.output[0]] = value

    def attr(self, name, default=None):
        import onnx
        if name not in self.attrs:
            return default
        value = onnx.helper.get_attribute_value(self.attrs[name])
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, onnx.TensorProto):
            return to_array(value, f"attribute {name}")
        return list(value) if isinstance(value, (list, tuple)) else value

    def const(self, i, what) -> np.ndarray:
        value = self.input(i)
        if not isinstance(value, Const):
            raise Refusal(f"{what} (input {i}) must be a constant: Loom fixes it when the graph "
                          f"is built" if value is not None else f"{what} (input {i}) is missing")
        return value.value

    def shape(self, value):
        return self.imp.shape(value)

    def dtype(self, value):
        return self.imp.dtype(value)

    def is_batch(self, d) -> bool:
        """Whether a shape entry depends on the batch size (never with fixed shapes)."""
        return not self.fixed and d > 0 and d % BATCH == 0

    def emit(self, kind, attrs, *inputs) -> Wire:
        return self.imp.emit(kind, attrs, inputs, self.name)

    def layer(self, kind, attrs, *inputs, **params) -> Wire:
        """A layer whose parameters start from the model's tensors."""
        wire = self.emit(kind, attrs, *inputs)
        made = {p.name: tuple(p.attrs["shape"]) for p in self.imp.walker.contexts[wire.node][0].parameters}
        for name, value in params.items():
            key = f"{wire.node}.{name}"
            if made.get(key) != tuple(value.shape):
                raise Refusal(f"{kind} parameter {name} is {show(made.get(key, ()))}, the "
                              f"model's tensor {show(value.shape)}")
            self.imp.weights[key] = np.ascontiguousarray(value)
        return wire

    def scalar(self, value, like) -> Const:
        return Const(np.array(value, dtype=self.dtype(like)), f"{self.name}_scale")
