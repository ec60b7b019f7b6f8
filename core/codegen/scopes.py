"""Where each part of a script's model goes: the model's own scope (`forward` / `build`) and
one scope per block instance written as a call (a torch submodule, a Loom function).

An instance is written as a call when everything inside it is model: every node it holds is
a layer the outputs need (no dataset, loss or metric inside) and no output of the model is a
value inside it other than through its output ports. Any other instance is written out where
it stands, its nodes named by path (`front1_tokens`), as if it were drawn flat.

A scope is walked over its document (the top level, or a definition's body) in dependency
order; its steps are Layers (the flat plan's, renamed and rewired locally) and Calls, with
Python names local to it, so every instance of a definition reads the same."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..layers.block_layers import INTERFACE_KINDS, definitions, port_name
from ..layers.builder import doc_order


@dataclass
class Call:
    """A block instance called where it stands."""
    path: str  # its flat path ("stage1", "outer1/inner1"): its parameters' names start so
    block: str  # its definition's name
    name: str  # its Python name in the calling scope (the torch attribute, the variable stem)
    inputs: list  # Python names of what feeds its input ports, in the definition's order
    outputs: list  # Python names given to its outputs, in the definition's order


@dataclass
class Body:
    """The steps of one scope: the model's (path "") or one called instance's."""
    path: str
    block: str | None  # the definition (None: the model)
    args: list  # Python names of its inputs
    steps: list = field(default_factory=list)  # Layer | Call, in order
    returns: list = field(default_factory=list)  # Python names of its outputs

    def names(self) -> set:
        """Every Python name the scope uses."""
        found = set(self.args)
        for step in self.steps:
            found |= {step.name, *getattr(step, "outputs", ())}
        return found


@dataclass
class _Level:
    """One document being walked: the top level, or a definition's body at an instance."""
    doc: object
    prefix: str  # the flat path of its nodes ("", "stage1/")
    local: str  # the same relative to the scope (a written-out instance's "front1/")
    ports: dict  # a body's input port name -> the Python name of its value


@dataclass
class _Scope:
    body: Body
    taken: set  # Python names in use
    owner: str  # the torch attribute path of the scope ("", "stage1.")
    vars: dict  # (flat path, port) -> the Python name of that value here


class Scopes:
    """The model's body and every called instance's, and each layer's torch attribute path
    (`stage1.conv`: the state_dict keys)."""

    def __init__(self, doc, flat, layers, input_vars, sources):
        """layers: flat id -> Layer of every node the model computes; input_vars: (flat id,
        port) of each model input -> its Python name; sources: output name -> (flat id, port)."""
        self.defs = definitions(doc)
        self.flat, self.layers, self.sources = flat, layers, sources
        self.bodies: dict[str, Body] = {}  # instance path -> its body, for every Call
        self.attribute: dict[str, str] = {}  # flat layer id -> attribute path
        self.top = Body("", None, list(input_vars.values()))
        top = _Scope(self.top, set(input_vars.values()), "", dict(input_vars))
        self._walk(_Level(doc, "", "", {}), top)
        self.top.returns = [top.vars[src] for src in sources.values()]

    def ports(self, block) -> str:
        """"in -> out": a definition's ports, for a docstring."""
        defn = self.defs[block]
        return " -> ".join(", ".join(p for p, _ in side) or "()"
                           for side in (defn.inputs(), defn.outputs()))

    def names(self) -> set:
        """Every Python name any scope uses (a block's class or function takes none)."""
        return set().union(*(body.names() for body in (self.top, *self.bodies.values())))

    def calls(self) -> list[Call]:
        """Every Call, at every depth."""
        return [s for body in (self.top, *self.bodies.values()) for s in body.steps
                if isinstance(s, Call)]

    # ---- walking ------------------------------------------------------------------------------
    def _walk(self, level, scope):
        for node_id in doc_order(level.doc):
            spec = level.doc.nodes[node_id]
            if spec.kind == "Block":
                self._instance(level, spec, scope)
            elif spec.kind not in INTERFACE_KINDS and level.prefix + node_id in self.layers:
                self._layer(level, spec, scope)

    def _layer(self, level, spec, scope):
        path = level.prefix + spec.id
        layer = self.layers[path]
        name = _fresh(level.local + spec.id, scope.taken)
        edges = {port: level.doc.edge_into(spec.id, port) for port in layer.inputs}
        ins = {port: self._source(level, e.src, scope) for port, e in edges.items() if e}
        scope.body.steps.append(replace(layer, name=name, inputs=ins))
        scope.vars[(path, layer.out_port)] = name
        self.attribute[path] = scope.owner + name

    def _instance(self, level, spec, scope):
        path = level.prefix + spec.id
        defn = self.defs[spec.attrs["block"]]
        edges = [level.doc.edge_into(spec.id, port) for port, _ in defn.inputs()]
        fed = {port: self._source(level, e.src, scope) if e else None
               for (port, _), e in zip(defn.inputs(), edges)}
        if self._callable(path):
            outputs = self._call(level, spec, defn, list(fed.values()), scope)
        else:  # written out in this scope, its nodes named by their path
            inner = _Level(defn.body, path + "/", level.local + spec.id + "/", fed)
            self._walk(inner, scope)
            outputs = self._returns(inner, scope)
        for (port, _), var in zip(defn.outputs(), outputs):
            scope.vars[(path, port)] = var
            computed = self.flat.outputs_of.get((path, port))  # the model's outputs name it so
            if computed is not None:
                scope.vars.setdefault(computed, var)

    def _call(self, level, spec, defn, fed, scope) -> list:
        path = level.prefix + spec.id
        name = _fresh(level.local + spec.id, scope.taken)
        outs = [p for p, _ in defn.outputs()]
        out_vars = [name] if len(outs) == 1 else [_fresh(f"{name}_{p}", scope.taken) for p in outs]
        scope.body.steps.append(Call(path, defn.name, name, fed, out_vars))
        taken = {"self"}
        args = [_fresh(port, taken) for port, _ in defn.inputs()]
        inner = _Scope(Body(path, defn.name, args), taken, scope.owner + name + ".", {})
        level = _Level(defn.body, path + "/", "", dict(zip([p for p, _ in defn.inputs()], args)))
        self._walk(level, inner)
        inner.body.returns = self._returns(level, inner)
        self.bodies[path] = inner.body
        return out_vars

    def _returns(self, level, scope) -> list:
        """The Python names of what a body's output ports carry, in port order."""
        outs = [n for n in level.doc.nodes.values() if n.kind == "BlockOutput"]
        edges = [level.doc.edge_into(n.id, "in") for n in outs]
        return [self._source(level, e.src, scope) if e else "None" for e in edges]

    def _source(self, level, end, scope):
        """The Python name of the value at wire end `end` of the level's document."""
        node_id, port = end
        spec = level.doc.nodes[node_id]
        if spec.kind == "BlockInput":
            return level.ports.get(port_name(spec))
        return scope.vars.get((level.prefix + node_id, port))

    def _callable(self, path) -> bool:
        inside = [n for n in self.flat.nodes if n.startswith(path + "/")]
        if any(n not in self.layers for n in inside):
            return False
        exposed = {src for (p, _), src in self.flat.outputs_of.items() if p == path}
        return all(src in exposed for src in self.sources.values()
                   if src[0].startswith(path + "/"))


def _fresh(raw, taken) -> str:
    from .plan import python_name  # plan builds the scopes
    return python_name(raw, taken)
