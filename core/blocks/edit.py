"""Grouping: a selection becomes a block definition and one instance of it; ungrouping puts
an instance's nodes back. Every function changes documents only through their methods, so
every change emits its events (the editor's views and undo commands rely on that).

Definitions live in the top-level document (`root`); a function given a block's body (the
editor showing the inside of a block) still finds and adds definitions there."""
from __future__ import annotations

import copy

import networkx as nx

from ..document import ID_PATTERN, GraphDocument
from ..errors import GraphError
from ..layers.block_layers import INTERFACE_KINDS, definitions, kind_of, port_name
from ..layers.flatten import promoted_values
from .model import BlockDef

GAP = 270.0  # how far left / right of the selection the interface nodes go (the layout's column)
ROW = 120.0  # between interface nodes of one side


def root(doc) -> GraphDocument:
    """The document holding the definitions `doc`'s instances name."""
    while doc.owner is not None:
        doc = doc.owner
    return doc


# ---- group ---------------------------------------------------------------------------------

def group(doc, node_ids, name=None, instance_id=None) -> str:
    """Replace the selected nodes by one instance of a new definition made of them, placed
    where the first of them was in the node order; returns the instance's id. Wires crossing
    the selection become the block's ports."""
    selected = _selection(doc, node_ids)
    top = root(doc)
    name = name or fresh_name(top.blocks, "Group")
    _check_new_block(doc, top, name, selected)
    _check_no_cycle(doc, selected)
    _check_instance_id(doc, instance_id, selected)
    crossing = Crossing(doc, selected)
    defn = make_definition(doc, name, selected, crossing)
    index = list(doc.nodes).index(selected[0])
    top.add_block(defn)
    for node_id in selected:
        doc.remove_node(node_id)
    instance = doc.add_node("Block", {"block": name}, defn.origin,
                            node_id=instance_id or instance_id_for(doc, name), index=index)
    for src, (port, _) in crossing.inputs.items():
        doc.add_edge(src, (instance, port))
    for e in crossing.leaving:
        doc.add_edge((instance, crossing.outputs[e.src][0]), e.dst)
    return instance


class Crossing:
    """The wires crossing a selection's border and the ports they become: one input per
    distinct outside value read inside (named after the first inner port it feeds), one
    output per distinct inner value read outside (named after the inner port)."""

    def __init__(self, doc, selected):
        chosen = set(selected)
        self.entering = [e for e in doc.edges if e.dst[0] in chosen and e.src[0] not in chosen]
        self.leaving = [e for e in doc.edges if e.src[0] in chosen and e.dst[0] not in chosen]
        self.inputs = _ports(doc, self.entering, lambda e: e.dst[1])
        self.outputs = _ports(doc, self.leaving, lambda e: e.src[1])


def _selection(doc, node_ids) -> list[str]:
    wanted = set(node_ids)
    if not wanted:
        raise GraphError("cannot group: nothing is selected")
    missing = sorted(wanted - set(doc.nodes))
    if missing:
        raise GraphError(f"cannot group: no node {missing[0]!r}")
    interface = [n for n in doc.nodes if n in wanted and doc.nodes[n].kind in INTERFACE_KINDS]
    if interface:
        raise GraphError(f"cannot group: node {interface[0]} is a port of the block it is in")
    return [n for n in doc.nodes if n in wanted]  # document order


def _check_new_block(doc, top, name, selected):
    if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
        raise GraphError(f"block name {name!r}: use letters, digits, _ and - only")
    inside = [n for n in selected if doc.nodes[n].kind == "Block"
              and uses(top.blocks, doc.nodes[n].attrs.get("block"), name)]
    if inside:
        raise GraphError(f"cannot group: node {inside[0]} is an instance of block {name!r}, "
                         f"which cannot contain itself")
    if name in top.blocks:
        raise GraphError(f"cannot group: a block named {name!r} already exists")


def _check_instance_id(doc, instance_id, selected):
    if instance_id is None:
        return
    if not isinstance(instance_id, str) or not ID_PATTERN.fullmatch(instance_id):
        raise GraphError(f"node name {instance_id!r}: use letters, digits, _ and - only")
    if instance_id in doc.nodes and instance_id not in selected:
        raise GraphError(f"cannot group: node id {instance_id!r} is taken")


def _check_no_cycle(doc, selected):
    """One node outside that both reads from and feeds the selection would, once the
    selection is one node, read its own output."""
    g = nx.DiGraph()
    g.add_nodes_from(doc.nodes)
    g.add_edges_from((e.src[0], e.dst[0]) for e in doc.edges)
    chosen = set(selected)
    below = set().union(*(nx.descendants(g, n) for n in selected)) - chosen
    above = set().union(*(nx.ancestors(g, n) for n in selected)) - chosen
    both = [n for n in doc.nodes if n in below and n in above]
    if both:
        raise GraphError(f"cannot group: node {both[0]} both reads from and feeds the selection "
                         f"(the block would feed itself); select it too, or fewer nodes")


def make_definition(doc, name, selected, crossing) -> BlockDef:
    """A definition holding copies of the selected nodes (same ids, attributes and places)
    and the crossing's ports as BlockInput / BlockOutput nodes beside them."""
    box = _box([doc.nodes[n].pos for n in selected])
    body = GraphDocument(name)
    taken = set(selected)
    in_ids = _add_interface(body, "BlockInput", crossing.inputs, box[0] - GAP, box, taken)
    for node_id in selected:
        spec = doc.nodes[node_id]
        body.add_node(spec.kind, copy.deepcopy(spec.attrs), spec.pos, node_id=node_id)
    out_ids = _add_interface(body, "BlockOutput", crossing.outputs, box[2] + GAP, box, taken)
    _body_edges(doc, body, set(selected), in_ids, out_ids)
    return BlockDef(name, body, {}, _centre(box))


def _ports(doc, edges, name_of) -> dict:
    """{source (node, port): (port name, type)} in wire order, names made distinct."""
    ports, names = {}, set()
    for e in edges:
        if e.src in ports:
            continue
        kind = kind_of(doc, doc.nodes[e.src[0]])
        port = next((p for p in (kind.outputs if kind else ()) if p.name == e.src[1]), None)
        ports[e.src] = (fresh(name_of(e), names), port.type if port else "data")
    return ports


def _add_interface(body, kind, ports, x, box, taken) -> dict:
    """Interface nodes in a column at `x`, centred on the selection; {source: node id}."""
    ids = {}
    middle = (box[1] + box[3]) / 2
    prefix = "in" if kind == "BlockInput" else "out"
    for i, (src, (name, port_type)) in enumerate(ports.items()):
        y = middle + (i - (len(ports) - 1) / 2) * ROW
        readable = name if name.startswith(prefix) else f"{prefix}_{name}"  # in, in_2, in_x
        ids[src] = body.add_node(kind, {"name": name, "type": port_type}, (x, y),
                                 node_id=fresh(readable, taken))
    return ids


def _body_edges(doc, body, chosen, in_ids, out_ids):
    """The selection's wires, in document order, with the crossing ones cut at the ports."""
    for e in doc.edges:
        inside = (e.src[0] in chosen, e.dst[0] in chosen)
        if inside == (True, True):
            body.add_edge(e.src, e.dst)
        elif inside == (False, True):
            body.add_edge((in_ids[e.src], "out"), e.dst)
        elif inside == (True, False) and body.edge_into(out_ids[e.src], "in") is None:
            body.add_edge(e.src, (out_ids[e.src], "in"))


# ---- ungroup -------------------------------------------------------------------------------

def ungroup(doc, instance_id) -> list[str]:
    """Put an instance's inner nodes back in its place (ids kept where free), wired as the
    instance was, promoted values written into their targets, moved as far as the instance
    moved since grouping; the definition goes when nothing uses it any more. Returns the
    ids of the nodes put back, in order."""
    spec = doc.nodes.get(instance_id)
    if spec is None or spec.kind != "Block":
        raise GraphError(f"cannot ungroup: {instance_id!r} is not a block instance")
    top = root(doc)
    defn = definitions(doc).get(spec.attrs.get("block"))
    if defn is None:
        raise GraphError(f"cannot ungroup node {instance_id}: unknown block "
                         f"{spec.attrs.get('block')!r}")
    feeds = {e.dst[1]: e.src for e in reversed(doc.edges_into(instance_id))}  # first wins
    reads = [e for e in doc.edges if e.src[0] == instance_id]
    index = list(doc.nodes).index(instance_id)
    doc.remove_node(instance_id)
    ids = _put_back(doc, defn, spec, index)
    _rewire(doc, defn, ids, feeds, reads)
    if not instances_of(top, defn.name):
        top.remove_block(defn.name)
    return list(ids.values())


def _put_back(doc, defn, spec, index) -> dict:
    """{inner id: id in doc} of the inner nodes added at `index` on."""
    values = promoted_values(defn, spec.attrs)
    inner = [n for n in defn.body.nodes.values() if n.kind not in INTERFACE_KINDS]
    origin = defn.origin
    if origin is None:  # not made by group (a library block): centre the nodes on the instance
        origin = _centre(_box([n.pos for n in inner])) if inner else spec.pos
    shift = (spec.pos[0] - origin[0], spec.pos[1] - origin[1])
    ids = {}
    for i, node in enumerate(inner):
        attrs = {**copy.deepcopy(node.attrs), **values.get(node.id, {})}
        pos = (node.pos[0] + shift[0], node.pos[1] + shift[1])
        node_id = node.id if node.id not in doc.nodes else doc.new_id(node.kind)
        ids[node.id] = doc.add_node(node.kind, attrs, pos, node_id=node_id, index=index + i)
    return ids


def _rewire(doc, defn, ids, feeds, reads):
    """The body's wires in doc, joined through the interface to the instance's wires."""
    body = defn.body
    for e in body.edges:
        for src in _sources(body.nodes[e.src[0]], e.src[1], ids, feeds):
            for dst in _targets(body.nodes[e.dst[0]], e.dst[1], ids, reads):
                if not any(x.src == src for x in doc.edges_into(dst[0]) if x.dst == dst):
                    doc.add_edge(src, dst)


def _sources(spec, port, ids, feeds) -> list:
    """Where the value on an inner wire comes from in doc (none: an unfed instance port)."""
    if spec.kind == "BlockInput":
        src = feeds.get(port_name(spec))
        return [tuple(src)] if src else []
    return [(ids[spec.id], port)]


def _targets(spec, port, ids, reads) -> list:
    """Where an inner wire goes in doc: through a BlockOutput, to every reader outside."""
    if spec.kind == "BlockOutput":
        name = port_name(spec)
        return [r.dst for r in reads if r.src[1] == name]
    return [(ids[spec.id], port)]


def instances_of(top, name) -> list[tuple]:
    """(document, node id) of every instance of definition `name`, at the top and in bodies."""
    docs = (top, *(d.body for d in top.blocks.values()))
    return [(doc, n.id) for doc in docs for n in doc.nodes.values()
            if n.kind == "Block" and n.attrs.get("block") == name]


def _centre(box) -> tuple:
    return (round((box[0] + box[2]) / 2, 1), round((box[1] + box[3]) / 2, 1))


def _box(positions) -> tuple:
    xs, ys = [p[0] for p in positions], [p[1] for p in positions]
    return min(xs), min(ys), max(xs), max(ys)


def fresh(name, taken) -> str:
    """`name`, or `name_2`, `name_3`... whichever is free; added to `taken`."""
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    taken.add(candidate)
    return candidate


def fresh_name(blocks, base) -> str:
    """"Group1", "Group2"...: the first free one."""
    i = 1
    while f"{base}{i}" in blocks:
        i += 1
    return f"{base}{i}"


def instance_id_for(doc, name) -> str:
    """A fresh node id from the block's name: "Stage" -> stage1 (a name ending in a digit
    gets a "_": group1_1, not group11)."""
    base = name.lower() + ("_" if name[-1:].isdigit() else "")
    i = 1
    while f"{base}{i}" in doc.nodes:
        i += 1
    return f"{base}{i}"


def uses(blocks, name, target, seen=()) -> bool:
    """Whether definition `name` is `target` or holds an instance of it, at any depth."""
    if name == target:
        return True
    defn = blocks.get(name)
    if defn is None or name in seen:
        return False
    return any(uses(blocks, n.attrs.get("block"), target, (*seen, name))
               for n in defn.body.nodes.values() if n.kind == "Block")
