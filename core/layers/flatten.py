"""Blocks flattened away: the engine (build, analysis, plans, training) only ever sees plain
nodes. Each instance's inner nodes take its place in the node order under path ids
(`stage1/conv1`, nested: `outer/inner/leaf`), promoted values are written into their targets,
and wires are joined through the BlockInput / BlockOutput nodes.

Wires are first collected between *ends*: a real node's port, or a joint (an instance's input
or output port, which an outside wire and the inner interface node both meet); then each wire
into a real node is followed back through joints to the real node computing its value."""
from __future__ import annotations

import copy

from ..document import GraphDocument, NodeSpec
from ..errors import GraphError
from .block_layers import INTERFACE_KINDS, definitions, port_name

NODE, JOINT_IN, JOINT_OUT = "node", "in", "out"


class FlatDocument(GraphDocument):
    """A flattened document, which also says how it came about (for analysis and plans)."""

    def __init__(self, name):
        super().__init__(name)
        self.instances: list[str] = []  # instance paths, in document order (nested after outer)
        self.ports: dict = {}  # instance path -> ([input port names], [output port names])
        self.outputs_of: dict = {}  # (instance path, port) -> flat (node, port) computing it
        self.levels: list = []  # (document, path prefix) of the top level and every body expanded
        self.unfed: set = set()  # flat (node, port) reached through an instance port nothing feeds
        # instance path -> why it could not be expanded (then it is kept as a stub node) or
        # why its wires could not be joined
        self.broken: dict = {}


def has_blocks(doc) -> bool:
    return any(spec.kind == "Block" for spec in doc.nodes.values())


def flatten(doc, strict: bool = True) -> GraphDocument:
    """A plain document with no Block nodes. A document without instances is returned
    itself (this runs on every edit). strict: raise GraphError (one line naming the path) for
    an unknown definition, one containing itself, or a wire to a port an instance lacks;
    otherwise (analysis) leave such an instance as a stub node and record why in `broken`."""
    if not has_blocks(doc):
        return doc
    walk = _Flattener(definitions(doc), strict)
    walk.level(doc, "", None, {}, ())
    return walk.result(doc)


def block_of(flat_id: str) -> str | None:
    """The top-level instance a flat node id belongs to (None: a node outside blocks)."""
    head, sep, _ = flat_id.partition("/")
    return head if sep else None


class _Flattener:
    def __init__(self, defs, strict):
        self.defs, self.strict = defs, strict
        self.flat_nodes: list[NodeSpec] = []
        self.wires: list[tuple] = []  # (src end, dst end); an end is (NODE|JOINT_*, path, port)
        self.ports: dict = {}  # instance path -> (its input names, its output names)
        self.defined: dict = {}  # instance path -> its definition's name
        self.instances: list[str] = []
        self.levels: list = []
        self.broken: dict = {}

    # ---- expansion ---------------------------------------------------------------------------
    def level(self, doc, prefix, enclosing, overrides, stack):
        """Nodes and wires of one document: the top level, or a body under `enclosing`."""
        self.levels.append((doc, prefix))
        for spec in doc.nodes.values():
            path = prefix + spec.id
            attrs = copy.deepcopy({**spec.attrs, **overrides.get(spec.id, {})})
            if spec.kind == "Block":
                self.instance(spec, path, attrs, stack)
            elif enclosing is None or spec.kind not in INTERFACE_KINDS:
                self.flat_nodes.append(NodeSpec(path, spec.kind, attrs, tuple(spec.pos)))
        for edge in doc.edges:
            self.wires.append((self.end(doc, edge.src, prefix, enclosing, JOINT_OUT),
                               self.end(doc, edge.dst, prefix, enclosing, JOINT_IN)))

    def instance(self, spec, path, attrs, stack):
        name = attrs.get("block")
        defn = self.defs.get(name) if isinstance(name, str) else None
        if defn is None:
            return self.fail(spec, path, attrs, f"unknown block {name!r}")
        if name in stack:
            chain = " -> ".join((*stack, name))
            return self.fail(spec, path, attrs, f"block {name!r} contains itself ({chain})")
        self.instances.append(path)
        self.ports[path] = ([n for n, _ in defn.inputs()], [n for n, _ in defn.outputs()])
        self.defined[path] = name
        self.level(defn.body, path + "/", path, promoted_values(defn, attrs), (*stack, name))

    def fail(self, spec, path, attrs, problem):
        if self.strict:
            raise GraphError(f"node {path}: {problem}")
        self.broken[path] = problem
        self.flat_nodes.append(NodeSpec(path, spec.kind, attrs, tuple(spec.pos)))

    def end(self, doc, end, prefix, enclosing, joint):
        """The end of a wire: an instance's port is a joint (`joint` says which side of the
        instance a wire meets); an interface node is a joint of the enclosing instance."""
        node_id, port = end
        spec = doc.nodes[node_id]
        path = prefix + node_id
        if spec.kind == "Block" and path not in self.broken:
            return (joint, path, port)
        if enclosing is not None and spec.kind in INTERFACE_KINDS:
            side = JOINT_IN if spec.kind == "BlockInput" else JOINT_OUT
            return (side, enclosing, port_name(spec))
        return (NODE, path, port)

    # ---- joining wires -----------------------------------------------------------------------
    def result(self, doc) -> FlatDocument:
        flat = FlatDocument(doc.name)
        flat.training = copy.deepcopy(doc.training)
        flat.base_dir, flat.weights = doc.base_dir, doc.weights
        flat.instances, flat.levels, flat.broken = self.instances, self.levels, self.broken
        flat.ports = self.ports
        for spec in self.flat_nodes:
            flat.add_node(spec.kind, spec.attrs, spec.pos, node_id=spec.id)
        into = {}
        for src, dst in self.wires:
            self.check_joint(src)
            self.check_joint(dst)
            into.setdefault(dst, []).append(src)
        for src, dst in self.wires:
            if dst[0] == NODE:
                self.connect(flat, self.source(src, into), dst)
        for path in self.instances:
            for port in self.ports[path][1]:
                found = self.source((JOINT_OUT, path, port), into)
                if found is not None:
                    flat.outputs_of[(path, port)] = found[1:]
        return flat

    def connect(self, flat, src, dst):
        if src is None:  # an instance input nothing feeds: analysis names the instance's port
            flat.unfed.add(dst[1:])
            return
        if not any(e.src == src[1:] and e.dst[1] == dst[2] for e in flat.edges_into(dst[1])):
            flat.add_edge(src[1:], dst[1:])  # two ports joined to one wire: once is enough

    def check_joint(self, end):
        kind, path, port = end
        if kind == NODE or port in self.ports[path][1 if kind == JOINT_OUT else 0]:
            return
        if self.strict:
            side = "output" if kind == JOINT_OUT else "input"
            raise GraphError(f"node {path}: block {self.defined[path]!r} has no {side} port {port!r}")

    def source(self, end, into):
        """The real (NODE, node, port) whose value reaches `end`, or None when nothing does."""
        seen = set()
        while end[0] != NODE:
            if end in seen:  # an instance's output wired into its input, passed straight through
                return self.loop(end[1])
            seen.add(end)
            feeding = into.get(end)
            if not feeding:
                return None
            end = feeding[0]
        return end

    def loop(self, path):
        problem = "its ports feed each other in a cycle"
        if self.strict:
            raise GraphError(f"node {path}: {problem}")
        self.broken[path] = problem
        return None


def promoted_values(defn, attrs) -> dict:
    """{inner node id: {attribute: value}} the instance's promoted parameters set."""
    out: dict = {}
    for param, data in defn.params.items():
        value = attrs.get(param, data.get("default"))
        for node_id, attr in data.get("targets", ()):
            out.setdefault(node_id, {})[attr] = copy.deepcopy(value)
    return out
