"""`analyze`: every problem in a document (node id + port + message) and, for every node
that could be built, its output shapes, parameter count and multiply-adds per sample.

A document with blocks is analysed flattened (core/layers/flatten.py): nodes inside an
instance are reported under their path (`stage1/conv1`), and each instance gets the sums of
what is inside it (core/layers/analyze_blocks.py)."""
from __future__ import annotations

from ..errors import GraphError, LoomError, ShapeError
from .analyze_blocks import block_problems, fold_instances, levels
from .base import LAYERS
from .block_layers import INTERFACE_KINDS, kind_of
from .builder import DISPLAY_BATCH, Analysis, NodeInfo, Problem, Walker, compatible, doc_order
from .common import numel
from .flatten import flatten
from .graph_checks import CHECKS


def analyze(doc) -> Analysis:
    result = Analysis()
    flat = flatten(doc, strict=False)
    broken = getattr(flat, "broken", {})
    result.problems.extend(block_problems(flat))
    for level, prefix in levels(flat):
        result.problems.extend(level_problems(level, prefix, broken))
    if not any(p.type == "loss" for n in flat.nodes.values() if n.kind in LAYERS
               for p in LAYERS[n.kind].outputs):
        result.problems.append(Problem(None, None, "the graph has no loss node "
                                       "(add SoftmaxCrossEntropy or MSELoss)"))
    try:
        order = doc_order(flat)
    except GraphError as exc:
        result.problems.append(Problem(None, None, str(exc)))
        return result
    walker = Walker(flat, training=False, batch=DISPLAY_BATCH, seed=0)
    walker.failed.update(broken)  # already reported; what reads them is skipped silently
    for node_id in order:
        _analyze_node(walker, flat.nodes[node_id], result)
    for check in CHECKS:
        result.problems.extend(check(flat, walker))
    fold_instances(flat, result)
    return result


def _analyze_node(walker, spec, result):
    if spec.id in walker.failed:
        return
    kind = LAYERS.get(spec.kind)
    if kind is None:
        result.problems.append(Problem(spec.id, None, f"unknown kind {spec.kind!r}"))
        walker.failed.add(spec.id)
        return
    problems = attr_problems(spec, kind) + input_problems(walker.doc, spec, kind)
    result.problems.extend(problems)
    if problems or _upstream_failed(walker, spec) or _fed_by_nothing(walker.doc, spec, kind):
        walker.failed.add(spec.id)
        return
    try:
        ctx, outs, attrs = walker.build_node(spec)
    except LoomError as exc:
        result.problems.append(Problem(spec.id, None, _shape_message(exc)))
        walker.failed.add(spec.id)
        return
    result.nodes[spec.id] = _info(walker, spec, kind, ctx, outs, attrs)


def _fed_by_nothing(doc, spec, kind):
    """An input wired to a block instance's port that nothing feeds (reported there)."""
    unfed = getattr(doc, "unfed", ())
    return bool(unfed) and any((spec.id, p.name) in unfed for p in kind.inputs)


def attr_problems(spec, kind, node_id=None):
    """`node_id`: the id problems name (a path, for a node inside a block)."""
    node_id = node_id or spec.id
    out = []
    known = {a.name for a in kind.attrs}
    for name in spec.attrs:
        if name not in known:
            out.append(Problem(node_id, None, f"unknown attribute {name!r} for {kind.name}"))
    for a in kind.attrs:
        reason = a.check(spec.attrs.get(a.name, a.default))
        if reason:
            out.append(Problem(node_id, None, f"attribute {reason}"))
    return out


def input_problems(doc, spec, kind, node_id=None):
    """Unconnected required inputs. A flattened document knows which inputs were wired to an
    instance port nothing feeds: that port is reported on the instance instead."""
    node_id = node_id or spec.id
    unfed = getattr(doc, "unfed", ())
    return [Problem(node_id, p.name, "required input is not connected")
            for p in kind.inputs
            if not p.optional and doc.edge_into(spec.id, p.name) is None
            and (spec.id, p.name) not in unfed]


def _upstream_failed(walker, spec):
    """An input whose value was not computed: its node failed, or has no such output port
    (both reported already). Nodes are walked in dependency order: every source was tried."""
    return any(e.src not in walker.built.outputs for e in walker.doc.edges_into(spec.id))


def level_problems(doc, prefix, broken) -> list:
    """What the flat walk cannot see of one level: its wires, and the nodes flattening
    removes (instances; interface nodes inside a body)."""
    out = edge_problems(doc, prefix, broken)
    for spec in doc.nodes.values():
        path = prefix + spec.id
        removed = spec.kind == "Block" or (prefix and spec.kind in INTERFACE_KINDS)
        if removed and path not in broken:
            kind = kind_of(doc, spec)
            out += attr_problems(spec, kind, path) + input_problems(doc, spec, kind, path)
    return out


def edge_problems(doc, prefix="", broken=()):
    """Wires of one level (the top, or a block body expanded under `prefix`), their ports
    looked up as the level shows them (an instance's are its definition's interface)."""
    out, seen = [], set()
    for e in doc.edges:
        src, dst = doc.nodes.get(e.src[0]), doc.nodes.get(e.dst[0])
        if src is None or dst is None or f"{prefix}{src.id}" in broken \
                or f"{prefix}{dst.id}" in broken:
            continue
        src_kind, dst_kind = kind_of(doc, src), kind_of(doc, dst)
        if src_kind is None or dst_kind is None:
            continue
        src_id, dst_id = prefix + src.id, prefix + dst.id
        src_port = _port(src_kind.outputs, e.src[1])
        dst_port = _port(dst_kind.inputs, e.dst[1])
        if src_port is None:
            out.append(Problem(src_id, e.src[1], f"{src.kind} has no output port {e.src[1]!r}"))
        if dst_port is None:
            out.append(Problem(dst_id, e.dst[1], f"{dst.kind} has no input port {e.dst[1]!r}"))
        if src_port and dst_port and not compatible(src_port.type, dst_port.type):
            out.append(Problem(dst_id, e.dst[1], f"cannot connect a {src_port.type} output "
                               f"({src_id}.{e.src[1]}) to a {dst_port.type} input"))
        if e.dst in seen:
            out.append(Problem(dst_id, e.dst[1], "more than one edge into this input"))
        seen.add(e.dst)
    return out


def _port(ports, name):
    return next((p for p in ports if p.name == name), None)


def _shape_message(exc):
    text = str(exc).replace(str(DISPLAY_BATCH), "N")
    if not isinstance(exc, ShapeError) or "shape" in text or "mismatch" in text:
        return text  # e.g. a dataset that cannot be read says so itself
    return f"shape mismatch: {text}"


def _info(walker, spec, kind, ctx, outs, attrs):
    out_shapes = {port: _display(walker.shapes[node]) for port, node in outs.items()}
    params = sum(numel(p.attrs["shape"]) for p in ctx.parameters if p.attrs.get("trainable", True))
    return NodeInfo(out_shapes, params, walker.built.macs[spec.id])


def _display(shape):
    return tuple(None if d == DISPLAY_BATCH else d for d in shape)
