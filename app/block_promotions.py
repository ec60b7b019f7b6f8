"""Grouping and ungrouping inside a block whose attributes are promoted. core's group and
ungroup work on one document and know nothing of the parameters of the block that document
is the body of: grouping a promoted Conv2D into a nested block would leave the outer
parameter setting a node that is no longer there (every instance silently falls back to the
body's value), and ungrouping would leave it setting an instance that is gone. These keep the
chain: the nested block promotes the moved attributes under the same names, and the outer
parameter sets the nested instance's (and back again on ungroup)."""
from __future__ import annotations

from core.blocks import group, promote, ungroup, unpromote
from core.layers.block_layers import INTERFACE_KINDS


def group_in(root, doc, block, ids) -> str:
    """group(doc, ids); `block`: the definition doc is the body of (None: the top level)."""
    instance = group(doc, ids)
    if block is None:
        return instance
    outer = root.blocks[block]
    inner = doc.nodes[instance].attrs["block"]
    for param, entry in list(outer.params.items()):
        moved = [t for t in entry["targets"] if t[0] in ids]
        if moved:
            promote(root, inner, param, moved, entry["default"])
            rest = [t for t in entry["targets"] if t[0] not in ids]
            promote(root, block, param, [*rest, [instance, param]], entry["default"])
    return instance


def ungroup_in(root, doc, block, instance) -> list[str]:
    """ungroup(doc, instance), the outer parameters that set the instance's now setting the
    nodes put back."""
    inner = root.blocks.get(doc.nodes[instance].attrs.get("block")) if block is not None else None
    if inner is None:
        return ungroup(doc, instance)
    inner_params = {p: list(d["targets"]) for p, d in inner.params.items()}
    inner_ids = [n.id for n in inner.body.nodes.values() if n.kind not in INTERFACE_KINDS]
    new_ids = ungroup(doc, instance)
    renamed = dict(zip(inner_ids, new_ids))
    for param, entry in list(root.blocks[block].params.items()):
        via = [t[1] for t in entry["targets"] if t[0] == instance]
        if not via:
            continue
        rest = [t for t in entry["targets"] if t[0] != instance]
        rest += [[renamed[n], attr] for q in via for n, attr in inner_params.get(q, ()) if n in renamed]
        if rest:
            promote(root, block, param, rest, entry["default"])
        else:
            unpromote(root, block, param)
    return new_ids
