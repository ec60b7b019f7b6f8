"""Whole-graph checks that `analyze` runs after building node by node: what would make
training fail although every node is fine on its own. `check` lists them and `train`
refuses them before anything is allocated, with the same lines. Each check is a function
(document, walker) -> [Problem], listed in CHECKS."""
from __future__ import annotations

import numpy as np

from ..compiler.shapes import nbytes
from ..errors import LoomError
from ..limits import memory_limit, oversized
from ..settings import DEFAULTS, training_problems
from ..weights import weight_problems
from .base import LAYERS
from .builder import DISPLAY_BATCH, Problem
from .data_layers import dataset_label


def training_settings(doc, walker) -> list:
    return [Problem(None, None, line) for line in training_problems(doc.training or {})]


def one_dataset(doc, walker) -> list:
    """The trainer feeds batches of one dataset: a second Dataset node would go unfed."""
    feeding = [n.id for n in doc.nodes.values() if n.kind in LAYERS and LAYERS[n.kind].feeds]
    return [Problem(extra, None, f"a second {doc.nodes[extra].kind} node: a graph trains on one "
                    f"({feeding[0]})") for extra in feeding[1:]]


def _signature(walker):
    """The dataset's signature, or None when there is none or it failed (already reported)."""
    if walker.built.dataset is None:
        return None
    try:
        return walker.built.data_signature()
    except LoomError:
        return None


def classes_fit(doc, walker) -> list:
    """A loss reading the dataset's labels needs exactly a logit per class: labels index
    them, and a logit no label names only dilutes the softmax."""
    sig = _signature(walker)
    if sig is None:
        return []
    out = []
    for spec in doc.nodes.values():
        for port, src in _loss_logits(doc, walker, spec):
            shape = walker.shapes[walker.built.outputs[src]]
            width = shape[-1] if shape else 1
            if width != sig.classes:  # fewer: labels index past them; more: never matched
                out.append(Problem(spec.id, port, f"{width} logits from node {src[0]} for the "
                                   f"{sig.classes} classes of dataset "
                                   f"{dataset_label(walker.built.dataset)!r}: node {src[0]} must "
                                   f"output {sig.classes}"))
    return out


def _loss_logits(doc, walker, spec):
    """(data port, source) of each built input of a loss node that reads labels."""
    kind = LAYERS.get(spec.kind)
    if kind is None or spec.id not in walker.contexts:
        return []
    reads_labels = any(p.type == "label" for p in kind.inputs)
    if not reads_labels or not any(p.type == "loss" for p in kind.outputs):
        return []
    edges = [(p.name, doc.edge_into(spec.id, p.name)) for p in kind.inputs if p.type == "data"]
    return [(port, e.src) for port, e in edges if e is not None and e.src in walker.built.outputs]


def ids_fit(doc, walker) -> list:
    """An Embedding reading the dataset's ids needs a row for each of them: an id past the
    table would fail in the middle of a step."""
    sig = _signature(walker)
    data = walker.built.feeds
    if sig is None:
        return []
    out = []
    for spec in doc.nodes.values():
        edge = doc.edge_into(spec.id, "ids") if spec.kind == "Embedding" else None
        if edge is None or walker.built.outputs.get(edge.src) not in data.values():
            continue
        vocab = spec.attrs.get("vocab", LAYERS["Embedding"].attrs[0].default)
        if vocab < sig.classes:
            out.append(Problem(spec.id, "ids", f"vocab {vocab} is smaller than the "
                               f"{sig.classes} characters of text "
                               f"{dataset_label(walker.built.dataset)!r}: set vocab to {sig.classes}"))
    return out


# The input ports that take integer values (ids) as they are; anywhere else an integer value
# would silently compute in integer or float64 arithmetic.
INTEGER_PORTS = {"Embedding": ("ids",), "gather": ("table", "ids"), "where": ("cond",),
                 "Reshape": ("in",), "Flatten": ("in",), "reshape": ("x",), "transpose": ("x",),
                 "slice": ("x",)}


def integers_fit(doc, walker) -> list:
    """Integer values (token ids, an int64 Input) go only where ids are looked up or moved,
    or into label ports."""
    out = []
    for edge in doc.edges:
        node = walker.built.outputs.get(edge.src)
        kind = LAYERS.get(doc.nodes[edge.dst[0]].kind) if edge.dst[0] in doc.nodes else None
        if node is None or kind is None or node not in walker.dtypes:
            continue
        port = next((p for p in kind.inputs if p.name == edge.dst[1]), None)
        integer = np.dtype(walker.dtypes[node]).kind in "iub"
        if port is None or not integer or port.type == "label" \
                or port.name in INTEGER_PORTS.get(kind.name, ()):
            continue
        out.append(Problem(edge.dst[0], port.name, f"integer values from node {edge.src[0]} "
                           f"({np.dtype(walker.dtypes[node]).name}): {kind.name} computes with "
                           f"floats; ids go into an Embedding (or gather, where, reshapes)"))
    return out


def split_fits(doc, walker) -> list:
    """val_fraction must leave at least one sample on each side of the split."""
    sig = _signature(walker)
    fraction = (doc.training or {}).get("val_fraction", DEFAULTS["val_fraction"])
    if sig is None or isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        return []  # a bad value is training_settings' to report
    held_out = int(round(sig.samples * fraction))
    if 0 < held_out < sig.samples:
        return []
    side = "no validation sample" if held_out == 0 else "no training sample"
    return [Problem(None, None, f"training setting val_fraction: {fraction} of the {sig.samples} "
                    f"samples of dataset {dataset_label(walker.built.dataset)!r} leaves {side}")]


def memory_fits(doc, walker) -> list:
    """Sizes are refused from shapes, before anything is allocated: one node's parameters,
    one sample of one node's output (all of it, if it has no batch axis), and all parameters
    together."""
    out, total, limit = [], 0, memory_limit()[0]
    if limit is None:
        return []
    for node_id, (ctx, outs) in walker.contexts.items():
        params = sum(nbytes(p.attrs["shape"], p.attrs.get("dtype") or "float32")
                     for p in ctx.parameters)
        total += params
        if params > limit:  # compared here first: the message is only made when needed
            out.append(_too_big(node_id, f"the parameters of node {node_id}", params))
        for port, node in outs.items():
            shape = walker.shapes[node]
            batched = shape[:1] == (DISPLAY_BATCH,)
            size = nbytes(shape[1:] if batched else shape, walker.dtypes[node])
            if size > limit:
                what = "one sample of output" if batched else "output"
                out.append(_too_big(node_id, f"{what} {port} of node {node_id}", size))
    if not out and total > limit:
        out.append(_too_big(None, "the parameters of all nodes", total))
    return out


def _too_big(node_id, what, size):
    return Problem(node_id, None, oversized(what, {"": size}))


def weights_fit(doc, walker) -> list:
    """The weights file (imported models) loads and each array fits a parameter."""
    return [Problem(None, None, line) for line in weight_problems(doc, walker.built.parameters)]


CHECKS = (training_settings, one_dataset, classes_fit, ids_fit, integers_fit, split_fits,
          memory_fits, weights_fit)
