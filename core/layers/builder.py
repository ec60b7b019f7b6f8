"""Turning a GraphDocument into core nodes (`build`) and checking it (`analyze`).

Both flatten blocks away first (core/layers/flatten.py), then walk the document in
topological order (networkx) and build each node from its inputs; shapes are inferred
incrementally so layers like Linear can size their parameters, and so the editor sees every
output shape, parameter count and multiply-add count without running anything."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import networkx as nx

from ..compiler.shapes import ShapeSpec, infer
from ..errors import GraphError, LoomError
from .base import LAYERS, BuildContext
from .flatten import flatten

DISPLAY_BATCH = 9973  # a prime no layer uses as a size: shapes show it back as N


@dataclass
class Problem:
    node_id: str | None
    port: str | None
    message: str

    def __str__(self):
        where = []
        if self.node_id is not None:
            where.append(f"node {self.node_id}")
        if self.port is not None:
            where.append(f"port {self.port}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass
class NodeInfo:
    out_shapes: dict  # port -> shape, batch shown as None
    params: int
    macs: int  # per sample


@dataclass
class Analysis:
    nodes: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    def problems_of(self, node_id):
        """The node's problems; for a block instance, also those of the nodes inside it
        (their ids are paths under the instance's: `stage1/conv1`)."""
        inside = f"{node_id}/"
        return [p for p in self.problems if p.node_id is not None
                and (p.node_id == node_id or p.node_id.startswith(inside))]


@dataclass
class Built:
    outputs: dict = field(default_factory=dict)  # (node id, port) -> core Node
    # output port of the training-data kind (LayerKind.feeds: "images" / "labels") -> placeholder
    feeds: dict = field(default_factory=dict)
    dataset: dict | None = None  # the training-data node's attrs
    data_kind: object = None  # ... and its LayerKind (which loads the dataset)
    loss: object = None
    logits: object = None
    metrics: dict = field(default_factory=dict)
    parameters: list = field(default_factory=list)
    state: list = field(default_factory=list)
    node_of: dict = field(default_factory=dict)  # core node name -> (flat) document node id
    macs: dict = field(default_factory=dict)  # (flat) document node id -> multiply-adds per sample

    def feed_of(self, port_type: str):
        """The training-data placeholder of a port type: "data" (inputs) or "label"."""
        port = next(p.name for p in self.data_kind.outputs if p.type == port_type)
        return self.feeds[port]

    def load_dataset(self):
        return self.data_kind.load(self.dataset)

    def data_signature(self):
        return self.data_kind.signature(self.dataset)


class _Declared(dict):
    """Shape specs of sources from their declared shapes, the batch axis set to `batch`."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def __contains__(self, node):
        return node.attrs.get("shape") is not None

    def __missing__(self, node):
        shape = tuple(self.batch if d is None else d for d in node.attrs["shape"])
        spec = self[node] = ShapeSpec(shape, node.attrs.get("dtype") or "float32")
        return spec


def compatible(src_type: str, dst_type: str) -> bool:
    return src_type == dst_type


def doc_order(doc):
    """Node ids in dependency order, ties broken by document order; raises GraphError naming
    the nodes of a cycle. Parameters initialise in build order from one RNG: a grouped graph,
    flattened, must build in the same order as the same graph drawn flat."""
    index = {node_id: i for i, node_id in enumerate(doc.nodes)}
    g = nx.DiGraph()
    g.add_nodes_from(doc.nodes)
    g.add_edges_from((e.src[0], e.dst[0]) for e in doc.edges if e.src[0] in doc.nodes and e.dst[0] in doc.nodes)
    try:
        return list(nx.lexicographical_topological_sort(g, key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = [u for u, _ in nx.find_cycle(g)]
        raise GraphError(f"cycle through nodes {' -> '.join(cycle + cycle[:1])}") from None


class Walker:
    """Shared by build and analyze: builds node by node, recording what each made."""

    def __init__(self, doc, training, batch, seed, distributed=False):
        self.doc, self.training, self.seed, self.distributed = doc, training, seed, distributed
        self.specs = _Declared(batch)
        self.shapes, self.dtypes = {}, {}
        self.built = Built()
        self.failed: set = set()
        self.attributed: set = set()  # core nodes already credited to a document node
        self.contexts: dict = {}  # document node id -> (BuildContext, outputs) once built

    def shape_of(self, node):
        if node not in self.shapes:
            infer(unvisited([node], self.shapes), self.specs, self.shapes, self.dtypes)
        return self.shapes[node]

    def inputs_of(self, spec):
        ins = {}
        for port in LAYERS[spec.kind].inputs:
            edge = self.doc.edge_into(spec.id, port.name)
            if edge is not None and edge.src in self.built.outputs:
                ins[port.name] = self.built.outputs[edge.src]
        return ins

    def build_node(self, spec):
        kind = LAYERS[spec.kind]
        attrs = {a.name: spec.attrs.get(a.name, a.default) for a in kind.attrs}
        base = getattr(self.doc, "base_dir", None)
        attrs.update({a.name: resolve_path(attrs[a.name], base) for a in kind.attrs if a.path})
        ctx = BuildContext(spec.id, self.shape_of, self.training, self.seed, self.distributed)
        outs = kind.build(ctx, attrs, self.inputs_of(spec))
        for port, node in outs.items():
            self.shape_of(node)  # raises ShapeError here, attributed to this node
            self.built.outputs[(spec.id, port)] = node
        self._record(spec, kind, attrs, ctx, outs)
        self.contexts[spec.id] = (ctx, outs)
        self.built.macs[spec.id] = self._macs(spec, kind, attrs, outs)
        return ctx, outs, attrs

    def _macs(self, spec, kind, attrs, outs) -> int:
        """Multiply-adds per sample, from shapes alone."""
        if kind.macs is None:
            return 0
        ins = {p: self.shapes[n] for p, n in self.inputs_of(spec).items()}
        full = kind.macs(ins, {p: self.shapes[n] for p, n in outs.items()}, attrs)
        return int(full // self.specs.batch)

    def _record(self, spec, kind, attrs, ctx, outs):
        b = self.built
        b.parameters.extend(ctx.parameters)
        b.state.extend(ctx.state)
        for node in unvisited(list(outs.values()), self.attributed):
            self.attributed.add(node)
            b.node_of.setdefault(node.name, spec.id)
        if kind.feeds:
            b.feeds = dict(outs)
            b.dataset, b.data_kind = dict(attrs), kind
        for port in kind.outputs:
            if port.type == "loss" and b.loss is None:
                b.loss = outs[port.name]
                b.logits = b.loss.inputs[0] if b.loss.inputs else None
            elif port.type == "metric":
                b.metrics[spec.id] = outs[port.name]


def unvisited(roots, known) -> list:
    """The nodes `roots` depend on that are not in `known`, inputs first. The walk stops at
    known nodes: building a document node by node stays linear in its size (a full
    topological order per node made a 4,000-node chain quadratic)."""
    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif node not in known and node not in seen:
                seen.add(node)
                stack.append((node, True))
                stack.extend([(i, False) for i in reversed(node.inputs) if i not in known])
    return order


def resolve_path(value, base):
    """A file attribute as the loader should open it: relative to the graph file's folder
    (`base`), or as given when absolute, empty or when the document has no folder."""
    if not isinstance(value, str) or not value or base is None:
        return value
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.join(base, value)


def build(doc, training=True, batch=None, seed=0, distributed=False) -> Built:
    """Core nodes for the whole document, blocks flattened (node ids inside them are paths).
    Raises LoomError naming the first bad node. distributed: a data-parallel training step
    (batch norm synchronises its statistics)."""
    flat = flatten(doc)
    walker = Walker(flat, training, batch or DISPLAY_BATCH, seed, distributed)
    for node_id in doc_order(flat):
        spec = flat.nodes[node_id]
        if spec.kind not in LAYERS:
            raise GraphError(f"node {node_id}: unknown kind {spec.kind!r}")
        try:
            walker.build_node(spec)
        except (LoomError, KeyError) as exc:
            raise GraphError(f"node {node_id} ({spec.kind}): {_message(exc)}") from None
    if flat is not doc:
        alias_instance_outputs(flat, walker.built.outputs)
    return walker.built


def alias_instance_outputs(flat, outputs):
    """An instance's output port names the value of the inner node computing it, so callers
    holding the unflattened document (inference reads what feeds the loss) find it."""
    for key, src in getattr(flat, "outputs_of", {}).items():
        if src in outputs:
            outputs[key] = outputs[src]


def _message(exc):
    if isinstance(exc, KeyError):
        return f"input {exc.args[0]!r} is not connected"
    return str(exc)
