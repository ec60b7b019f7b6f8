"""Loom as an ONNX backend, so ONNX's own conformance suite (`onnx.backend.test`) drives the
importer and the engine together: a run imports the model (`onnx_import.translate`), builds
the document as training would (`core.layers.build`, inference mode) and runs it on
`core.Executor`, parameters fed from the imported weights.

Loom compiles for fixed shapes, so a run imports the model for its inputs: each input is
fed at its full shape, and inputs that are shapes, axes, indices or a layer's weights (see
`onnx_rules.CONSTANT_INPUTS`), and integer inputs, are taken as the constants they are in
real models."""
from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from ..executor import Executor
from ..layers import build
from .onnx_import import translate
from .onnx_rules import CONSTANT_INPUTS
from .onnx_safety import np_dtype


class LoomBackendRep(BackendRep):
    def __init__(self, model):
        self.model = model
        known = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in known]
        self.static = {node.input[i] for node in model.graph.node
                       for i in CONSTANT_INPUTS.get(node.op_type, ()) if i < len(node.input)}

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = {name: np.asarray(inputs[name]) for name in self.input_names}
        else:
            feeds = {name: np.asarray(x) for name, x in zip(self.input_names, inputs)}
        constants = {n: v for n, v in feeds.items() if n in self.static or v.dtype.kind != "f"}
        imported = translate(self.model, feeds=feeds, constants=constants)
        built = build(imported.doc, training=False)
        values = dict(imported.weights)
        values.update({f"{node}.value": feeds[name] for name, node in imported.inputs.items()})
        outputs = [built.outputs[(w.node, w.port)] for w in imported.outputs.values()]
        with np.errstate(all="ignore"):  # NaN where the model's math gives NaN, as ONNX's reference
            results = Executor(outputs).run({p: values[p.name] for p in built.parameters})
        return tuple(_declared(r, o) for r, o in zip(results, self.model.graph.output))


def _declared(value, info):
    """In the output's declared element type (Loom computes in the inputs' float type)."""
    elem = info.type.tensor_type.elem_type
    return value.astype(np_dtype(elem, f"output {info.name!r}")) if elem else value


class LoomBackend(Backend):
    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)  # ONNX's own model checks
        return LoomBackendRep(model)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU
