"""Max and average pooling on NCHW tensors, and their gradients. Each window offset is a
strided view of the (padded) input (conv.py's helpers); the batch splits over the CPU threads
where large (`cpu.for_each_run`). The usual CNN pool, 2×2 windows at stride 2 unpadded, runs
as compiled loops on host arrays (ops/native_loops.py, numpy's bits)."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import cpu, native
from .base import OpDef, make, register, scratch
from .conv import _out_size, _padded, _padded_shape, _windows


def max_pool2d(x, kernel=2, stride=None, padding=0, name=None):
    return make("max_pool2d", x, name=name, **_pool_attrs(kernel, stride, padding))


def avg_pool2d(x, kernel=2, stride=None, padding=0, name=None):
    return make("avg_pool2d", x, name=name, **_pool_attrs(kernel, stride, padding))


def _pool_attrs(kernel, stride, padding):
    return {"kernel": int(kernel), "stride": int(stride or kernel), "padding": int(padding)}


# ---- shapes and workspaces -------------------------------------------------------------------------------------

def _pool_shape(shapes, attrs):
    x = shapes[0]
    if len(x) != 4:
        raise ShapeError(f"pooling needs (N,C,H,W), got {tuple(x)}")
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    if p * 2 > k:
        raise ShapeError(f"pooling padding {p} is more than half the window {k}")
    return (x[0], x[1], _out_size(x[2], k, s, p, "pool"), _out_size(x[3], k, s, p, "pool"))


def _pad_ws(x_shape, attrs, dtype, name="xpad"):
    p = attrs["padding"]
    return {name: (_padded_shape(x_shape, p), dtype)} if p else {}


def _pool_ws(shapes, attrs, out_shape, dtype):
    return _pad_ws(shapes[0], attrs, dtype)


def _by_samples(xp, n, run, nbytes):
    """run(lo, hi) over the batch: split over threads on numpy (samples are independent)."""
    if xp is np:
        cpu.for_each_run(run, 0, n, nbytes)
    else:
        run(0, n)


def _max_pool(xp, ins, attrs, out, ws=None):
    if xp is np and _native_pool(ins[0], attrs, out):
        return
    ws = ws if ws is not None else scratch(_pool_ws, xp, ins, attrs, out)
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]

    def run(lo, hi):
        xpad = _padded(ins[0][lo:hi], p, ws["xpad"][lo:hi] if p else None, value=-xp.inf)
        part = out[lo:hi]
        windows = _windows(xpad, k, s, out.shape[2], out.shape[3])
        part[...] = next(windows)[2]  # = maximum(-inf, first window), NaN and -0 included
        for _, _, win in windows:
            xp.maximum(part, win, out=part)
    _by_samples(xp, out.shape[0], run, ins[0].nbytes)


def _native_pool(x, attrs, out) -> bool:
    """2×2 windows at stride 2, unpadded, on host arrays: one compiled pass per run of
    samples (numpy's bits, ties and NaN included), split over the threads. (64,32,28,28):
    1.14 ms by numpy's four passes, 0.44 on one thread. Returns whether it ran."""
    if (attrs["kernel"], attrs["stride"], attrs["padding"]) != (2, 2, 0) or not native.usable(x, out):
        return False
    n, c, h, w = x.shape
    oh, ow = out.shape[2:]
    loop = native.kernel("max_pool_2x2")
    _by_samples(np, n, lambda lo, hi: loop(x[lo:hi].reshape(-1, h, w), out[lo:hi].reshape(-1, oh, ow)),
                x.nbytes)
    return True


def _max_pool_grad_ws(shapes, attrs, out_shape, dtype):
    x, y, _ = shapes
    ws = {**_pad_ws(x, attrs, dtype), **_pad_ws(x, attrs, dtype, "dxpad")}
    ws.update(taken=(tuple(y), bool), hit=(tuple(y), bool), part=(tuple(y), dtype))
    return ws


def _max_pool_grad(xp, ins, attrs, out, ws=None):
    if xp is np and _native_pool_grad(ins, attrs, out):
        return
    ws = ws or scratch(_max_pool_grad_ws, xp, ins, attrs, out)
    _by_samples(xp, out.shape[0], lambda lo, hi: _max_pool_grad_rows(
        xp, [i[lo:hi] for i in ins], attrs, out[lo:hi],
        {name: buf[lo:hi] for name, buf in ws.items()}), out.nbytes)


def _native_pool_grad(ins, attrs, out) -> bool:
    """2×2 windows at stride 2, unpadded (the usual CNN pool), on host arrays: one compiled
    pass per run of samples (ops/native_loops.py, numpy's bits), split over the threads
    (the loop holds no lock). Measured against the numpy rule on 2 threads: (64,32,28,28)
    1.64 -> 0.90 ms, (64,64,14,14) 1.62 -> 0.45, (64,6,28,28) 0.56 -> 0.25. Returns
    whether it ran."""
    x, y, gy = ins
    if (attrs["kernel"], attrs["stride"], attrs["padding"]) != (2, 2, 0) or not native.usable(x, y, gy, out):
        return False
    n, c, h, w = x.shape
    oh, ow = y.shape[2:]
    planes = lambda a, rows, cols: a.reshape(n, c, rows, cols)  # noqa: E731
    loop, constants = native.kernel("max_pool_grad_2x2"), native.ZERO_ONE[out.dtype]

    def run(lo, hi):
        loop(*(planes(a, *size)[lo:hi].reshape(-1, *size) for a, size in
               ((x, (h, w)), (y, (oh, ow)), (gy, (oh, ow)), (out, (h, w)))), constants)
    _by_samples(np, n, run, out.nbytes)
    return True


def _max_pool_grad_rows(xp, ins, attrs, out, ws):
    x, y, gy = ins
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    oh, ow = y.shape[2], y.shape[3]
    xpad = _padded(x, p, ws.get("xpad"), value=-xp.inf)
    dxpad = ws["dxpad"] if p else out
    taken, part = ws["taken"], ws["part"]
    # windows that tile the image without overlap: each position gets one value, written
    # straight in (0 + gy·hit, as the general loop computes it, once the loop adds 0 below)
    tiled = k == s and dxpad.shape[2] == k * oh and dxpad.shape[3] == k * ow
    if not tiled:
        dxpad.fill(0)
    for i, j, win in _windows(xpad, k, s, oh, ow):
        target = dxpad[:, :, i:i + s * oh:s, j:j + s * ow:s]
        if i == j == 0:  # ties: the first maximum in the window gets it
            hit = xp.equal(win, y, out=taken)
        else:
            hit = xp.equal(win, y, out=ws["hit"])
            xp.greater(hit, taken, out=hit)  # hit and not yet taken
            if (i, j) != (k - 1, k - 1):
                xp.logical_or(taken, hit, out=taken)
        if tiled:
            xp.multiply(gy, hit, out=target)
        else:
            target += xp.multiply(gy, hit, out=part)
    if tiled:
        xp.add(dxpad, 0.0, out=dxpad)  # 0 + v: -0 becomes 0, as in the general loop
    if p:
        out[...] = dxpad[:, :, p:p + x.shape[2], p:p + x.shape[3]]


def _avg_pool(xp, ins, attrs, out, ws=None):
    ws = ws if ws is not None else scratch(_pool_ws, xp, ins, attrs, out)
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    out.fill(0)
    for _, _, win in _windows(_padded(ins[0], p, ws.get("xpad")), k, s, out.shape[2], out.shape[3]):
        out += win
    out *= 1.0 / (k * k)  # padding counts as zeros, like count_include_pad=True


def _avg_pool_grad_ws(shapes, attrs, out_shape, dtype):
    gy, x = shapes
    return {**_pad_ws(x, attrs, dtype, "dxpad"), "share": (tuple(gy), dtype)}


def _avg_pool_grad(xp, ins, attrs, out, ws=None):
    gy, x = ins
    ws = ws or scratch(_avg_pool_grad_ws, xp, ins, attrs, out)
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    n, c, h, w = x.shape
    dxpad = ws["dxpad"] if p else out
    dxpad.fill(0)
    share = xp.multiply(gy, 1.0 / (k * k), out=ws["share"])
    for i, j, _ in _windows(dxpad, k, s, gy.shape[2], gy.shape[3]):
        dxpad[:, :, i:i + s * gy.shape[2]:s, j:j + s * gy.shape[3]:s] += share
    if p:
        out[...] = dxpad[:, :, p:p + h, p:p + w]


def _avg_pool_grad_grad(n, g):
    return [make("avg_pool2d", g, **n.attrs), None]


register(OpDef("max_pool2d", "opaque", _pool_shape, _max_pool,
               lambda n, g: [make("max_pool2d_grad", n.inputs[0], n, g, **n.attrs)],
               workspace=_pool_ws, doc="maximum over k×k windows"))
register(OpDef("max_pool2d_grad", "opaque", lambda s, a: tuple(s[0]), _max_pool_grad,
               # linear in gy (x, y only pick the positions): its transpose gathers there
               lambda n, g: [None, None,
                             make("max_pool2d_grad_transpose", *n.inputs[:2], g, **n.attrs)],
               workspace=_max_pool_grad_ws,
               doc="route each window's gradient to its (first) maximum"))
register(OpDef("avg_pool2d", "opaque", _pool_shape, _avg_pool,
               lambda n, g: [make("avg_pool2d_grad", g, n.inputs[0], **n.attrs)],
               workspace=_pool_ws, doc="mean over k×k windows"))
register(OpDef("avg_pool2d_grad", "opaque", lambda s, a: tuple(s[1]), _avg_pool_grad,
               _avg_pool_grad_grad, shape_only=(1,), workspace=_avg_pool_grad_ws,
               doc="spread each gradient over its window"))
