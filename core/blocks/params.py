"""Instances, ports and promoted attributes: drop another instance of a definition, rename
one of its ports (every instance's wires follow), and promote an attribute of inner nodes to
the block (one value on the instance sets all its targets, so one definition serves several
sizes). Changes go through document methods: events fire."""
from __future__ import annotations

import copy

from ..document import ID_PATTERN
from ..errors import GraphError
from ..layers.block_layers import INTERFACE_KINDS, definitions, kind_of, port_name
from .edit import instance_id_for, instances_of, root, uses


def add_instance(doc, name, pos=(0.0, 0.0)) -> str:
    """A new instance of definition `name` in doc (the top level or a block's body), its
    promoted attributes at their defaults; returns its id."""
    defn = definitions(doc).get(name)
    if defn is None:
        raise GraphError(f"no block named {name!r}")
    owner = owning_block(doc)
    if owner is not None and uses(root(doc).blocks, name, owner):
        raise GraphError(f"block {owner!r} cannot contain an instance of {name!r}: "
                         f"it would contain itself")
    attrs = {"block": name, **{p: copy.deepcopy(d["default"]) for p, d in defn.params.items()}}
    return doc.add_node("Block", attrs, pos, node_id=instance_id_for(doc, name))


def owning_block(doc) -> str | None:
    """The name of the definition whose body `doc` is (None: doc is not a body)."""
    if doc.owner is None:
        return None
    return next((n for n, d in root(doc).blocks.items() if d.body is doc), None)


def rename_port(doc, block, node_id, new) -> str:
    """Rename the port the interface node `node_id` of `block` makes; the wires of every
    instance to that port follow, in their places. Returns the old name."""
    top = root(doc)
    defn = top.blocks.get(block)
    node = defn.body.nodes.get(node_id) if defn else None
    if node is None or node.kind not in INTERFACE_KINDS:
        raise GraphError(f"block {block!r} has no port node {node_id!r}")
    if not isinstance(new, str) or not ID_PATTERN.fullmatch(new):
        raise GraphError(f"port name {new!r}: use letters, digits, _ and - only")
    old = port_name(node)
    if new != old and new in {port_name(n) for n in defn.body.nodes.values() if n.kind == node.kind}:
        raise GraphError(f"block {block!r} already has a port named {new!r}")
    end = 1 if node.kind == "BlockInput" else 0  # the wire's end at the instance
    for holder, instance in instances_of(top, block):
        for index, edge in enumerate(list(holder.edges)):
            ends = [edge.src, edge.dst]
            if ends[end] == (instance, old):
                ends[end] = (instance, new)
                holder.remove_edge(edge)
                holder.add_edge(*ends, index=index)
    defn.body.set_attr(node_id, "name", new)
    return old


def promote(doc, block, param, targets, default=None) -> dict:
    """Make `param` an attribute of every instance of `block`, setting the attributes
    `targets` ([[inner node id, attribute], ...]) inside it. `default`: what instances without
    a value of their own use; None takes the first target's current value (nothing changes).
    Promoting a name again replaces its targets and default. Returns the promoted entry."""
    top = root(doc)
    defn = top.blocks.get(block)
    if defn is None:
        raise GraphError(f"no block named {block!r}")
    if not isinstance(param, str) or not ID_PATTERN.fullmatch(param) or param == "block":
        raise GraphError(f"cannot promote as {param!r}: use letters, digits, _ and - "
                         f"(and not 'block')")
    targets = [[str(t[0]), str(t[1])] for t in targets]
    specs = [_target_spec(defn, param, t) for t in targets]
    if not specs:
        raise GraphError(f"cannot promote {param!r}: no attribute to set")
    if len({s.type for s in specs}) > 1:
        raise GraphError(f"cannot promote {param!r}: its targets take different types of value")
    if default is None:
        first = defn.body.nodes[targets[0][0]]
        default = copy.deepcopy(first.attrs.get(targets[0][1], specs[0].default))
    reason = specs[0].check(default)
    if reason:
        raise GraphError(f"cannot promote {param!r}: default {reason}")
    entry = {"default": default, "targets": targets}
    top.set_block_param(block, param, entry)
    return copy.deepcopy(entry)


def _target_spec(defn, param, target):
    node_id, attr = target
    node = defn.body.nodes.get(node_id)
    if node is None or node.kind in INTERFACE_KINDS:
        raise GraphError(f"cannot promote {param!r}: block {defn.name!r} has no node {node_id!r}")
    claimed = next((p for p, d in defn.params.items() if p != param and target in d["targets"]), None)
    if claimed:
        raise GraphError(f"cannot promote {param!r}: {node_id}.{attr} is already set by "
                         f"{claimed!r}")
    kind = kind_of(defn.body, node)
    spec = next((a for a in (kind.attrs if kind else ()) if a.name == attr), None)
    if spec is None or attr == "block":
        raise GraphError(f"cannot promote {param!r}: node {node_id} ({node.kind}) has no "
                         f"attribute {attr!r}")
    return spec


def unpromote(doc, block, param) -> dict:
    """Stop promoting `param`: instances lose their value of it, and its targets keep the
    default (so instances that used the default are unchanged). Returns the dropped entry."""
    top = root(doc)
    defn = top.blocks.get(block)
    if defn is None or param not in defn.params:
        raise GraphError(f"block {block!r} does not promote {param!r}")
    entry = copy.deepcopy(defn.params[param])
    for holder, node_id in instances_of(top, block):
        if param in holder.nodes[node_id].attrs:
            holder.unset_attr(node_id, param)
    for node_id, attr in entry["targets"]:
        if node_id in defn.body.nodes:
            defn.body.set_attr(node_id, attr, copy.deepcopy(entry["default"]))
    top.set_block_param(block, param, None)
    return entry
