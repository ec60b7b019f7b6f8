"""Convolution and pooling layers (NCHW)."""
from __future__ import annotations

from .. import ops
from .base import AttrSpec
from .common import int_attr, numel, simple


def _conv(ctx, a, x):
    channels = ctx.shape_of(x)[1]
    k = a["kernel"]
    w = ctx.param("weight", (a["out_channels"], channels, k, k), init=a["init"])
    y = ops.conv2d(x, w, stride=a["stride"], padding=a["padding"])
    if a["bias"]:
        y = ops.add(y, ctx.param("bias", (a["out_channels"], 1, 1), init="zeros"))
    return y


def _conv_macs(ins, outs, a):
    c = ins["in"][1]
    return numel(outs["out"]) * c * a["kernel"] ** 2


simple("Conv2D", "Layers", _conv, "2-D convolution over (N, C, H, W)",
       (int_attr("out_channels", 8, help="number of filters"),
        int_attr("kernel", 3, hi=15, help="square kernel size"),
        int_attr("stride", 1, hi=8), int_attr("padding", 0, lo=0, hi=8),
        AttrSpec("bias", "bool", True),
        AttrSpec("init", "choice", "he", choices=("he", "xavier", "normal", "uniform"))),
       macs=_conv_macs)

POOL_ATTRS = (int_attr("kernel", 2, hi=8, help="square window"),
              int_attr("stride", 2, hi=8), int_attr("padding", 0, lo=0, hi=4))
simple("MaxPool2D", "Layers", lambda ctx, a, x: ops.max_pool2d(x, a["kernel"], a["stride"], a["padding"]),
       "maximum over windows", POOL_ATTRS)
simple("AvgPool2D", "Layers", lambda ctx, a, x: ops.avg_pool2d(x, a["kernel"], a["stride"], a["padding"]),
       "mean over windows", POOL_ATTRS)
