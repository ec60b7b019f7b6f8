"""`analyze`: every problem in a document (node id + port + message) and, for every node
that could be built, its output shapes, parameter count and multiply-adds per sample."""
from __future__ import annotations

from ..errors import GraphError, LoomError, ShapeError
from .base import LAYERS
from .builder import DISPLAY_BATCH, Analysis, NodeInfo, Problem, Walker, compatible, doc_order
from .common import numel
from .graph_checks import CHECKS


def analyze(doc) -> Analysis:
    result = Analysis()
    result.problems.extend(_edge_problems(doc))
    if not any(p.type == "loss" for n in doc.nodes.values() if n.kind in LAYERS
               for p in LAYERS[n.kind].outputs):
        result.problems.append(Problem(None, None, "the graph has no loss node "
                                       "(add SoftmaxCrossEntropy or MSELoss)"))
    try:
        order = doc_order(doc)
    except GraphError as exc:
        result.problems.append(Problem(None, None, str(exc)))
        return result
    walker = Walker(doc, training=False, batch=DISPLAY_BATCH, seed=0)
    for node_id in order:
        _analyze_node(walker, doc.nodes[node_id], result)
    for check in CHECKS:
        result.problems.extend(check(doc, walker))
    return result


def _analyze_node(walker, spec, result):
    kind = LAYERS.get(spec.kind)
    if kind is None:
        result.problems.append(Problem(spec.id, None, f"unknown kind {spec.kind!r}"))
        walker.failed.add(spec.id)
        return
    problems = _attr_problems(spec, kind) + _input_problems(walker, spec, kind)
    result.problems.extend(problems)
    if problems or _upstream_failed(walker, spec):
        walker.failed.add(spec.id)
        return
    try:
        ctx, outs, attrs = walker.build_node(spec)
    except LoomError as exc:
        result.problems.append(Problem(spec.id, None, _shape_message(exc)))
        walker.failed.add(spec.id)
        return
    result.nodes[spec.id] = _info(walker, spec, kind, ctx, outs, attrs)


def _attr_problems(spec, kind):
    out = []
    known = {a.name for a in kind.attrs}
    for name in spec.attrs:
        if name not in known:
            out.append(Problem(spec.id, None, f"unknown attribute {name!r} for {kind.name}"))
    for a in kind.attrs:
        reason = a.check(spec.attrs.get(a.name, a.default))
        if reason:
            out.append(Problem(spec.id, None, f"attribute {reason}"))
    return out


def _input_problems(walker, spec, kind):
    return [Problem(spec.id, p.name, "required input is not connected")
            for p in kind.inputs
            if not p.optional and walker.doc.edge_into(spec.id, p.name) is None]


def _upstream_failed(walker, spec):
    return any(e.src[0] in walker.failed for e in walker.doc.edges_into(spec.id))


def _edge_problems(doc):
    out, seen = [], set()
    for e in doc.edges:
        src, dst = doc.nodes.get(e.src[0]), doc.nodes.get(e.dst[0])
        if src is None or dst is None or src.kind not in LAYERS or dst.kind not in LAYERS:
            continue
        src_port = _port(LAYERS[src.kind].outputs, e.src[1])
        dst_port = _port(LAYERS[dst.kind].inputs, e.dst[1])
        if src_port is None:
            out.append(Problem(src.id, e.src[1], f"{src.kind} has no output port {e.src[1]!r}"))
        if dst_port is None:
            out.append(Problem(dst.id, e.dst[1], f"{dst.kind} has no input port {e.dst[1]!r}"))
        if src_port and dst_port and not compatible(src_port.type, dst_port.type):
            out.append(Problem(dst.id, e.dst[1], f"cannot connect a {src_port.type} output "
                               f"({src.id}.{e.src[1]}) to a {dst_port.type} input"))
        if e.dst in seen:
            out.append(Problem(dst.id, e.dst[1], "more than one edge into this input"))
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
    macs = 0
    if kind.macs is not None:
        ins = {p: walker.shapes[n] for p, n in walker.inputs_of(spec).items()}
        full = kind.macs(ins, {p: walker.shapes[n] for p, n in outs.items()}, attrs)
        macs = full // DISPLAY_BATCH
    return NodeInfo(out_shapes, params, int(macs))


def _display(shape):
    return tuple(None if d == DISPLAY_BATCH else d for d in shape)
