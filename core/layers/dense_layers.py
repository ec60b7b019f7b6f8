"""Fully connected and structural layers."""
from __future__ import annotations

from .. import ops
from ..compiler.shapes import show_shape
from ..errors import ShapeError
from .base import AttrSpec, LayerKind, Port, register
from .common import OUT, int_attr, numel, simple

INITS = ("xavier", "he", "normal", "uniform", "zeros", "ones")


def _linear(ctx, a, x):
    """(N, F) -> (N, out); a sequence (N, T, F) -> (N, T, out) as one GEMM over all N*T
    positions."""
    shape = ctx.shape_of(x)
    if len(shape) not in (2, 3):
        raise ShapeError(f"Linear expects (N, features) or (N, T, features), got "
                         f"{show_shape((None, *shape[1:]))}: add a Flatten first")
    w = ctx.param("weight", (shape[-1], a["out_features"]), init=a["init"])
    y = ops.matmul(x if len(shape) == 2 else ops.reshape(x, (-1, shape[-1])), w)
    if a["bias"]:
        y = ops.add(y, ctx.param("bias", (a["out_features"],), init="zeros"))
    return y if len(shape) == 2 else ops.reshape(y, (-1, shape[1], a["out_features"]))


simple("Linear", "Layers", _linear, "y = x W + b",
       (int_attr("out_features", 64, help="output features"),
        AttrSpec("bias", "bool", True, help="add a learned bias"),
        AttrSpec("init", "choice", "xavier", choices=INITS, help="weight initializer")),
       macs=lambda i, o, a: numel(i["in"]) * a["out_features"])

simple("Flatten", "Layers", lambda ctx, a, x: ops.reshape(x, (-1, numel(ctx.shape_of(x)[1:]))),
       "(N, ...) -> (N, features)")
simple("Reshape", "Layers", lambda ctx, a, x: ops.reshape(x, (-1, *a["shape"])),
       "reshape each sample (the batch axis is kept)",
       (AttrSpec("shape", "ints", [1, 28, 28], min=1, help="new per-sample shape"),))


def _dropout(ctx, a, x):
    return ops.dropout(x, a["rate"], training=ctx.training, seed=a["seed"])


simple("Dropout", "Layers", _dropout, "zero a random fraction while training",
       (AttrSpec("rate", "float", 0.5, min=0.0, max=0.95, help="fraction of units dropped"),
        int_attr("seed", 0, lo=0, help="seed of the dropout masks")))


def _batch_norm(ctx, a, x):
    channels = ctx.shape_of(x)[1]
    extra = (1,) * (len(ctx.shape_of(x)) - 2)  # (C, 1, 1) for images, (C,) for features
    shape = (channels, *extra)
    gamma = ctx.param("gamma", shape, init="ones")
    beta = ctx.param("beta", shape, init="zeros")
    mean = ctx.param("running_mean", shape, init="zeros", trainable=False)
    var = ctx.param("running_var", shape, init="ones", trainable=False)
    y = ops.batch_norm(x, gamma, beta, mean, var, training=ctx.training, eps=a["eps"],
                       sync=ctx.distributed)
    if ctx.training:
        ctx.state.append({"mean": y.extras["mean"], "var": y.extras["var"],
                          "running_mean": mean, "running_var": var})
    return y


simple("BatchNorm", "Layers", _batch_norm, "normalise each channel over the batch",
       (AttrSpec("eps", "float", 1e-5, min=1e-12, max=1.0, help="added to the variance"),))

simple("Add", "Layers", lambda ctx, a, x, y: ops.add(x, y), "elementwise a + b",
       inputs=(Port("a"), Port("b")))


def _concat(ctx, a, *xs):
    return ops.concat(list(xs), axis=a["axis"])


register(LayerKind(
    "Concat", "Layers", (Port("a"), Port("b"), Port("c", optional=True)), OUT,
    (AttrSpec("axis", "int", 1, min=-4, max=4, help="axis to join along (1 = channels)"),),
    lambda ctx, a, ins: {"out": _concat(ctx, a, *[ins[p] for p in ("a", "b", "c") if p in ins])},
    help="join inputs along an axis"))
