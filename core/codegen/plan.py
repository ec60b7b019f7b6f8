"""What a generated script holds, worked out once for every flavour: the inference model
(core/inference.py, the model `main.py infer` runs) traced back to the document's nodes, in
the document's topological order, each with its attributes, its inputs' shapes and its
parameters; the scopes they are written in (the model's, and one per block instance written
as a call: core/codegen/scopes.py), where each has a Python name and reads its inputs by
name; and the parameter values the script loads."""
from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field

from ..compiler.shapes import show_shape
from ..errors import LoomError
from ..inference import PROBE, inference_graph, parameter_values, probe_shapes
from ..layers.flatten import flatten
from ..layers.base import LAYERS
from ..layers.builder import doc_order
from .scopes import Scopes
from .script import literal


class CodegenError(LoomError):
    """The graph cannot be written as a script: names the node and the reason, in one line."""


# Names a node's Python name must not take: the generated code's own (module names, the
# arguments of build/forward), Python's, and nn.Module's attributes (`self.<name>` holds a layer).
CODE_NAMES = {"self", "core", "np", "torch", "nn", "F", "math", "os", "sys", "p", "name",
              "training", "stats", "attention", "argparse", "itertools", "lzma"}
MODULE_ATTRIBUTES = {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad"}
RESERVED = CODE_NAMES | MODULE_ATTRIBUTES | set(dir(builtins))


def python_name(raw: str, taken: set) -> str:
    """A fresh identifier for a node id or input name ("conv-1" -> "conv_1", "1x" -> "n1x")."""
    name = re.sub(r"\W", "_", raw)
    if not name or not (name[0].isalpha()):  # digits first, or a private-looking "_x"
        name = "n" + name
    while keyword.iskeyword(name) or name in RESERVED or name in taken:
        name += "_"
    taken.add(name)
    return name


def class_name(graph_name: str) -> str:
    """"mnist_cnn" -> "MnistCnn" (the torch module's class)."""
    words = re.findall(r"[A-Za-z0-9]+", graph_name)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    return name if name[:1].isalpha() and name not in RESERVED else f"Model{name}"


def function_name(block: str) -> str:
    """"ConvStage" -> "conv_stage" (a block's function in the loom flavour)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", block)
    name = re.sub(r"\W+", "_", words).strip("_").lower()
    return name if name[:1].isalpha() else f"block_{name}"


def unique_name(name: str, taken: set) -> str:
    """`name`, or `name_2`, `name_3`..., whichever is free (and no constant's or Python's
    name); taken from then on."""
    if name.isupper():  # "LR": the script's constants are in capitals
        name += "Block"
    base, i = name, 1
    while name in taken or name in RESERVED or keyword.iskeyword(name):
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


@dataclass
class Layer:
    """One document node as the emitters see it (blocks flattened: its id is its path)."""
    id: str
    kind: str
    name: str  # the Python name of its output (and of its torch attribute), in its scope
    attrs: dict  # every attribute, defaults filled in
    inputs: dict  # input port -> Python name of what feeds it, in its scope
    shapes: dict  # input port -> one sample's shape (the batch axis dropped)
    out_shape: tuple  # one sample's output shape
    params: dict  # short parameter name ("weight") -> full name ("stage1/conv.weight")
    out_port: str = "out"  # its output port

    @property
    def x(self) -> str:
        """The Python name of the first input (most kinds have one)."""
        return next(iter(self.inputs.values()))

    @property
    def shape(self) -> tuple:
        return next(iter(self.shapes.values()))


@dataclass
class Port:
    """A model input or output: its name in the .npz files and its Python name."""
    name: str
    var: str
    shape: tuple  # one sample's shape
    dtype: str

    def describe(self) -> str:
        return f"{self.show()} {self.dtype}"

    def show(self) -> str:
        return f"{self.name} {show_shape((None, *self.shape))}"


@dataclass
class ExportPlan:
    name: str  # the graph's name
    doc: object  # the graph, blocks flattened
    graph: object  # core.inference.InferenceGraph
    inputs: list  # [Port], in the order of build's / forward's arguments
    outputs: list  # [Port]
    layers: list  # [Layer], in the flattened document's topological order (unnamed)
    parameters: dict  # full name -> core parameter node, in layer order
    scopes: object = None  # core.codegen.scopes.Scopes: where each layer is written
    values: dict = field(default_factory=dict)  # full name -> host array (the weights file)

    @property
    def batch_major(self) -> bool:
        return self.graph.batch_major()


def signature(plan) -> str:
    """"images (N, 1, 28, 28) -> logits (N, 10)": the model's docstring."""
    return (f"{plan.name}: {', '.join(p.show() for p in plan.inputs)} -> "
            f"{', '.join(p.show() for p in plan.outputs)}.")


def returned(plan) -> str:
    """What build / forward return: {output name: its Python name}."""
    return "{" + ", ".join(f"{literal(o.name)}: {o.var}" for o in plan.outputs) + "}"


def plan_export(doc, checkpoint=None) -> ExportPlan:
    flat = flatten(doc)  # the values and shapes; `doc` says which blocks become calls
    graph = inference_graph(flat)
    sources = output_sources(flat, graph)
    needed = ancestors(flat, {src[0] for src in sources.values()})
    taken: set = set()
    inputs = {name: python_name(name, taken) for name in graph.inputs}
    by_node = {node: name for name, node in graph.inputs.items()}
    built = graph.built
    outs = {node_id: {} for node_id in needed}  # node id -> {(node id, port): core node}
    for key, node in built.outputs.items():
        outs.get(key[0], {})[key] = node
    shapes, dtypes = probe_shapes([n for found in outs.values() for n in found.values()])
    input_vars, layers = {}, {}  # input_vars: (node id, port) -> the model input's Python name
    for node_id in (n for n in doc_order(flat) if n in needed):
        if all(v.op == "placeholder" for v in outs[node_id].values()):  # Dataset, Input...
            input_vars.update({k: inputs[by_node[v]] for k, v in outs[node_id].items()
                               if v in by_node})
            continue
        if len(outs[node_id]) != 1:
            raise CodegenError(f"node {node_id} ({flat.nodes[node_id].kind}): a kind with several "
                               f"outputs is not written as code")
        layers[node_id] = _layer(flat, flat.nodes[node_id], built, shapes)
    scopes = Scopes(doc, flat, layers, input_vars, sources)
    params = {p.name: p for p in built.parameters if p.name.split(".", 1)[0] in needed}
    name = re.sub(r"[^\w .-]", "_", flat.name) or "model"  # it goes into docstrings
    ins = [_port(n, inputs[n], graph.inputs[n], shapes, dtypes) for n in graph.inputs]
    outs = [_port(n, var, graph.outputs[n], shapes, dtypes)
            for n, var in zip(sources, scopes.top.returns)]
    plan = ExportPlan(name, flat, graph, ins, outs, list(layers.values()), params, scopes)
    values = parameter_values(flat, built, checkpoint)
    plan.values = {name: values[name] for name in params}
    return plan


def _layer(doc, spec, built, shapes) -> Layer:
    """The node with every attribute, its inputs' shapes and its parameters; its Python name
    and inputs' names are given in its scope."""
    kind = LAYERS[spec.kind]
    edges = {p.name: doc.edge_into(spec.id, p.name) for p in kind.inputs}
    ins = {port: edge.src for port, edge in edges.items() if edge is not None}
    prefix = f"{spec.id}."
    out_port = kind.outputs[0].name
    return Layer(
        spec.id, spec.kind, "",
        {a.name: spec.attrs.get(a.name, a.default) for a in kind.attrs},
        {port: src[0] for port, src in ins.items()},  # named in its scope (scopes.py)
        {port: _sample(shapes[built.outputs[src]]) for port, src in ins.items()},
        _sample(shapes[built.outputs[(spec.id, out_port)]]),
        {p.name[len(prefix):]: p.name for p in built.parameters if p.name.startswith(prefix)},
        out_port)


def _port(name, var, node, shapes, dtypes) -> Port:
    return Port(name, var, _sample(shapes[node]), str(dtypes[node]))


def _sample(shape) -> tuple:
    """One sample's shape: the probe batch dropped."""
    return tuple(shape[1:]) if shape[:1] == (PROBE,) else tuple(shape)


# ---- the document behind the inference model --------------------------------------------------

def output_sources(doc, graph) -> dict:
    """Output name -> the document (node id, port) computing it, by the rules of
    core/inference.py (what feeds each loss, else each unread output), checked against the
    inference model so the two cannot drift apart."""
    losses = loss_nodes(doc)
    sources = _loss_sources(doc, losses) if losses else _unread_sources(doc, graph)
    built = graph.built
    if list(sources) != list(graph.outputs) or any(
            built.outputs.get(src) is not graph.outputs[name] for name, src in sources.items()):
        raise CodegenError("the inference model's outputs could not be traced back to the "
                           "graph's nodes (core/inference.py and core/codegen disagree)")
    return sources


def _loss_sources(doc, losses) -> dict:
    out = {}
    for spec in losses:
        port = LAYERS[spec.kind].inputs[0].name
        out[port if len(losses) == 1 else f"{spec.id}.{port}"] = doc.edge_into(spec.id, port).src
    return out


def _unread_sources(doc, graph) -> dict:
    wanted = {node: name for name, node in graph.outputs.items()}
    found = {wanted[node]: key for key, node in graph.built.outputs.items() if node in wanted
             and (key[0] if key[1] == "out" else f"{key[0]}.{key[1]}") == wanted[node]}
    return {name: found[name] for name in graph.outputs if name in found}


def ancestors(doc, roots) -> set:
    """The node ids `roots` depend on, themselves included."""
    seen, stack = set(), list(roots)
    while stack:
        node_id = stack.pop()
        if node_id not in seen:
            seen.add(node_id)
            stack.extend(e.src[0] for e in doc.edges_into(node_id))
    return seen


def loss_nodes(doc) -> list:
    return [n for n in doc.nodes.values() if any(p.type == "loss" for p in LAYERS[n.kind].outputs)]


def loss_node(doc):
    """The graph's only loss node, or None when it has none or several."""
    losses = loss_nodes(doc)
    return losses[0] if len(losses) == 1 else None
