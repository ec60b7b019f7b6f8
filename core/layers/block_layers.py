"""The kinds blocks (reusable groups of nodes) are made of. A block definition's body holds
ordinary nodes plus its interface: `BlockInput` and `BlockOutput` nodes, whose `name`s are the
ports an instance of the block shows. An instance is a node of kind `Block`; its real ports
come from its definition (`core.blocks.kind_of`). None of the three is ever built: the engine
flattens blocks away first (`core.blocks.flatten`), so reaching `build` means one was placed
where it cannot live."""
from __future__ import annotations

from dataclasses import replace

from ..errors import GraphError
from .base import LAYERS, PORT_TYPES, AttrSpec, LayerKind, Port, register

CATEGORY = "Block"


def _nowhere(what):
    def build(ctx, attrs, ins):
        raise GraphError(f"{what} only lives inside a block definition "
                         f"(group nodes to make one)")
    return build


def _interface_attrs(default_name):
    return (AttrSpec("name", "str", default_name,
                     help="the port's name on every instance of the block"),
            AttrSpec("type", "choice", "data", choices=PORT_TYPES,
                     help="what the port carries (the editor connects equal types only)"))


def _instance_build(ctx, attrs, ins):
    raise GraphError(f"block {attrs.get('block')!r} was not flattened before building")


register(LayerKind(
    "BlockInput", CATEGORY, (), (Port("out", "data"),), _interface_attrs("in"),
    _nowhere("BlockInput"), help="a port by which values enter the block"))
register(LayerKind(
    "BlockOutput", CATEGORY, (Port("in", "data"),), (), _interface_attrs("out"),
    _nowhere("BlockOutput"), help="a port by which the block's values leave it"))
register(LayerKind(
    "Block", CATEGORY, (), (), (AttrSpec("block", "str", "", help="the block definition's name"),),
    _instance_build, help="an instance of a block definition (its ports are the definition's)"))

INTERFACE_KINDS = ("BlockInput", "BlockOutput")


def port_name(spec) -> str:
    """The instance port an interface node makes. A value that is not text (a hand-edited
    file) still names one port, so flattening goes on; analysis reports the attribute."""
    value = spec.attrs.get("name", "in" if spec.kind == "BlockInput" else "out")
    return value if isinstance(value, str) else repr(value)


def port_type(spec) -> str:
    value = spec.attrs.get("type", "data")
    return value if value in PORT_TYPES else "data"


# ---- the kind of a node in a document that may hold blocks ---------------------------------

def definitions(doc) -> dict:
    """The block definitions instances in `doc` name: those of the document that owns it
    (a definition's body belongs to the graph holding the definition)."""
    while getattr(doc, "owner", None) is not None:
        doc = doc.owner
    return getattr(doc, "blocks", {})


def kind_of(doc, spec, _seen=()) -> LayerKind | None:
    """The LayerKind of a node: the table's for ordinary nodes (None for an unknown kind);
    for a block instance, one made from its definition (typed ports from its interface,
    `block` plus the promoted attributes); for BlockInput / BlockOutput, the port typed as
    their `type` says."""
    resolve = KIND_RESOLVERS.get(spec.kind)
    return resolve(doc, spec, _seen) if resolve else LAYERS.get(spec.kind)


def _interface_kind(doc, spec, _seen):
    kind = LAYERS[spec.kind]
    typed = port_type(spec)  # an unknown type is reported on the attribute: the port stays data
    retype = lambda ports: tuple(Port(p.name, typed, p.optional, p.help) for p in ports)  # noqa
    return replace(kind, inputs=retype(kind.inputs), outputs=retype(kind.outputs))


def _instance_kind(doc, spec, _seen):
    base = LAYERS["Block"]
    name = spec.attrs.get("block")
    defn = definitions(doc).get(name) if isinstance(name, str) else None
    if defn is None or name in _seen:  # unknown, or containing itself: no ports (analysis says)
        return base
    ports = lambda pairs: tuple(Port(n, t if t in PORT_TYPES else "data") for n, t in pairs)  # noqa
    attrs = base.attrs + tuple(_promoted_spec(defn, p, d, (*_seen, name))
                               for p, d in defn.params.items())
    return replace(base, inputs=ports(defn.inputs()), outputs=ports(defn.outputs()), attrs=attrs,
                    help=f"block {name}: {len(defn.body.nodes)} nodes inside")


def _promoted_spec(defn, param, data, seen) -> AttrSpec:
    """The first target's attribute spec, renamed and with the promoted default."""
    targets = data.get("targets") or []
    spec = None
    if targets and targets[0][0] in defn.body.nodes:
        inner = defn.body.nodes[targets[0][0]]
        kind = kind_of(defn.body, inner, seen)
        spec = next((a for a in (kind.attrs if kind else ()) if a.name == targets[0][1]), None)
    if spec is None:  # a target that is gone: the value still has to be of some type
        return AttrSpec(param, _type_of(data.get("default")), data.get("default"))
    return replace(spec, name=param, default=data.get("default", spec.default))


def _type_of(value) -> str:
    return {bool: "bool", int: "int", float: "float", list: "ints"}.get(type(value), "str")


KIND_RESOLVERS = {"Block": _instance_kind, "BlockInput": _interface_kind,
                  "BlockOutput": _interface_kind}
