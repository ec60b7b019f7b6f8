"""A graph's inference model: what `main.py infer` runs and `main.py export` writes.

It is `layers.build(doc, training=False)` cut down to what its outputs need, where the
outputs are:
  - with a loss node: what feeds the loss's first input (the logits of SoftmaxCrossEntropy,
    the prediction of MSELoss), named after that port ("logits", "pred"; "<loss id>.<port>"
    when there are several losses). Losses, metrics and labels are dropped.
  - without one: every computed output port nothing reads, named "<node id>" (or
    "<node id>.<port>" for a port other than "out").
Its inputs are the placeholders those outputs reach ("images" / "tokens" for dataset
graphs, the node id for `Input` nodes), their batch axis free. Output and input names are
the keys of infer's .npz files and the ONNX model's value names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import checkpoint as checkpoints
from . import layers
from .compiler.shapes import ShapeSpec, infer
from .errors import LoomError
from .graph import topological_order
from .layers.base import LAYERS
from .layers.builder import DISPLAY_BATCH
from .layers.flatten import flatten
from .settings import DEFAULTS
from .weights import initial_values

PROBE = DISPLAY_BATCH  # shapes are inferred at this batch: a multiple of it is batch-sized
SKIPPED_PORT_TYPES = ("loss", "metric", "label")


class InferenceError(LoomError):
    """No inference model: nothing to compute, names that clash, weights that do not fit."""


@dataclass
class InferenceGraph:
    built: object  # layers.Built, eval mode
    outputs: dict  # output name -> core Node
    inputs: dict = field(default_factory=dict)  # input name -> placeholder Node

    def input_shape(self, name) -> tuple:
        """The declared shape, the batch axis as None."""
        return tuple(self.inputs[name].attrs["shape"])

    def input_dtype(self, name) -> np.dtype:
        return np.dtype(self.inputs[name].attrs.get("dtype") or "float32")

    def batch_major(self) -> bool:
        """Every output's first axis is the batch: running the samples in slices and joining
        the results gives the same values as one run over all of them."""
        shapes, _ = probe_shapes(self.outputs.values())
        return all(shapes[n][:1] == (PROBE,) for n in self.outputs.values())


def probe_shapes(outputs):
    """(shapes, dtypes) of everything `outputs` depend on, with the batch axis at PROBE."""
    order = topological_order(list(outputs))
    specs = {n: ShapeSpec(_probe_shape(n.attrs["shape"]), n.attrs.get("dtype") or "float32")
             for n in order if n.opdef.fed}
    return infer(order, specs)


def inference_graph(doc) -> InferenceGraph:
    doc = flatten(doc)  # blocks: a loss or an unread output inside one is found by its path
    built = layers.build(doc, training=False)
    outputs = _loss_inputs(doc, built) if built.loss is not None else _unread_outputs(doc, built)
    if not outputs:
        raise InferenceError("the graph computes nothing to infer: it has no loss and no "
                             "unconnected output")
    order = topological_order(list(outputs.values()))
    inputs = {n.name: n for n in order if n.op == "placeholder"}
    clash = sorted(set(inputs) & set(outputs))
    if clash:  # both are keys of the same npz files and ONNX value names
        raise InferenceError(f"{clash[0]!r} names both an input and an output: rename the node")
    return InferenceGraph(built, outputs, inputs)


def _loss_inputs(doc, built) -> dict:
    """What feeds each loss node's first input port, named after that port."""
    losses = [n for n in doc.nodes.values()
              if any(p.type == "loss" for p in LAYERS[n.kind].outputs)]
    out = {}
    for spec in losses:
        port = LAYERS[spec.kind].inputs[0].name
        edge = doc.edge_into(spec.id, port)
        name = port if len(losses) == 1 else f"{spec.id}.{port}"
        out[name] = built.outputs[edge.src]
    return out


def _unread_outputs(doc, built) -> dict:
    read = {e.src for e in doc.edges}
    out = {}
    for spec in doc.nodes.values():
        for port in LAYERS[spec.kind].outputs:
            node = built.outputs.get((spec.id, port.name))
            if (spec.id, port.name) in read or node is None or port.type in SKIPPED_PORT_TYPES:
                continue
            if node.opdef.kind != "source":  # a bare Input or Parameter computes nothing
                out[spec.id if port.name == "out" else f"{spec.id}.{port.name}"] = node
    return out


def parameter_values(doc, built, checkpoint=None, weights=None) -> dict:
    """{parameter name: host array} for every parameter of `built`: a checkpoint's "param/"
    arrays when given (all of them, exactly), else the doc's weights file or initializers
    (seeded with the training seed, as training starts), with `weights` (an imported model's
    arrays) over those."""
    if checkpoint is not None:
        if not Path(checkpoint).exists():  # load() would speak of resuming
            raise InferenceError(f"{checkpoint}: no such checkpoint file")
        values, _, _, _ = checkpoints.load(checkpoint)
        _check_fits(built.parameters, values, str(checkpoint), exact=True)
        return {p.name: values[p.name].astype(p.attrs["dtype"]) for p in built.parameters}
    # the seed training starts from; the other settings are not checked here (not used)
    rng = np.random.default_rng({**DEFAULTS, **(doc.training or {})}["seed"])
    values = initial_values(doc, built.parameters, rng)
    if weights:
        _check_fits(built.parameters, weights, "the imported weights", exact=False)
        values.update({p.name: np.asarray(weights[p.name]).astype(p.attrs["dtype"])
                       for p in built.parameters if p.name in weights})
    return values


def _check_fits(parameters, values, source, exact):
    """Every key names a parameter of the graph, with its shape; `exact`: every parameter
    has a value (a checkpoint holds them all)."""
    shapes = {p.name: tuple(p.attrs["shape"]) for p in parameters}
    hint = " (is it a checkpoint of this graph?)" if exact else ""
    extra = sorted(set(values) - set(shapes))
    if extra:
        raise InferenceError(f"{source}: param/{extra[0]}: not a parameter of this graph{hint}")
    missing = sorted(set(shapes) - set(values)) if exact else []
    if missing:
        raise InferenceError(f"{source}: no value for parameter param/{missing[0]}{hint}")
    for key in (k for k in shapes if k in values):  # in graph order: the first one is named
        shape = tuple(np.shape(values[key]))
        if shape != shapes[key]:
            raise InferenceError(f"{source}: param/{key}: shape {shape}, the graph's parameter "
                                 f"is {shapes[key]}")


def _probe_shape(declared):
    return tuple(PROBE if d is None else d for d in declared)
