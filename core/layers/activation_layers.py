"""Activations and the loss / metric nodes."""
from __future__ import annotations

from .. import ops
from .base import AttrSpec, LayerKind, Port, register
from .common import simple

simple("ReLU", "Activations", lambda ctx, a, x: ops.relu(x), "max(x, 0)")
simple("Sigmoid", "Activations", lambda ctx, a, x: ops.sigmoid(x), "1 / (1 + e^-x)")
simple("Tanh", "Activations", lambda ctx, a, x: ops.tanh(x), "hyperbolic tangent")
simple("Softmax", "Activations", lambda ctx, a, x: ops.softmax(x, a["axis"]),
       "probabilities along an axis", (AttrSpec("axis", "int", -1, min=-4, max=4),))

LOGITS_LABELS = (Port("logits", "data"), Port("labels", "label"))

register(LayerKind(
    "SoftmaxCrossEntropy", "Losses", LOGITS_LABELS, (Port("loss", "loss"),), (),
    lambda ctx, a, ins: {"loss": ops.softmax_cross_entropy(ins["logits"], ins["labels"])},
    help="mean cross-entropy of softmax(logits) against integer labels"))
register(LayerKind(
    "MSELoss", "Losses", (Port("pred", "data"), Port("target", "data")), (Port("loss", "loss"),), (),
    lambda ctx, a, ins: {"loss": ops.mse(ins["pred"], ins["target"])},
    help="mean squared error"))
register(LayerKind(
    "Accuracy", "Losses", LOGITS_LABELS, (Port("accuracy", "metric"),), (),
    lambda ctx, a, ins: {"accuracy": ops.accuracy(ins["logits"], ins["labels"])},
    help="fraction of rows whose largest logit is the label"))
