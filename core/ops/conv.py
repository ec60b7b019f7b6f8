"""Convolution and pooling on NCHW tensors. Convolution is im2col + one large GEMM: the
columns are laid out (C·KH·KW, N·OH·OW) so forward and both gradients are single matmuls."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import OpDef, make, not_differentiable, register, scratch


def conv2d(x, w, stride=1, padding=0, name=None):
    return make("conv2d", x, w, name=name, stride=int(stride), padding=int(padding))


def max_pool2d(x, kernel=2, stride=None, padding=0, name=None):
    return make("max_pool2d", x, name=name, **_pool_attrs(kernel, stride, padding))


def avg_pool2d(x, kernel=2, stride=None, padding=0, name=None):
    return make("avg_pool2d", x, name=name, **_pool_attrs(kernel, stride, padding))


def _pool_attrs(kernel, stride, padding):
    return {"kernel": int(kernel), "stride": int(stride or kernel), "padding": int(padding)}


def _out_size(size, k, s, p, what):
    out = (size + 2 * p - k) // s + 1
    if out <= 0:
        raise ShapeError(f"{what}: window {k} with padding {p} does not fit input size {size}")
    return out


# ---- im2col helpers (xp-generic: numpy or cupy) ------------------------------------------------
# Every scratch array comes from the op's workspace (planned in the arena), so a step at fixed
# shapes allocates nothing here either.

def _padded(x, p, buf, value=0.0):
    """x with a border of p `value`s, written into buf (x itself when p == 0)."""
    if p == 0:
        return x
    buf.fill(value)
    buf[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
    return buf


def _padded_shape(x_shape, p):
    n, c, h, w = x_shape
    return (n, c, h + 2 * p, w + 2 * p)


def _windows(xpad, k, s, oh, ow):
    """Yield (i, j, view) for each kernel offset: view[n, c, y, x] = xpad[n, c, y*s+i, x*s+j]."""
    for i in range(k):
        for j in range(k):
            yield i, j, xpad[:, :, i:i + s * oh:s, j:j + s * ow:s]


def _im2col(x, kh, kw, s, p, oh, ow, cols, xpad):
    """Columns of x as (N, C·KH·KW, OH·OW) into cols[:N]: per sample, the layout a batched
    GEMM with the (O, C·KH·KW) weight matrix turns straight into NCHW output."""
    n, c = x.shape[:2]
    blocks = cols[:n].reshape(n, c, kh, kw, oh, ow)
    xpad = _padded(x, p, None if xpad is None else xpad[:n])
    for i in range(kh):
        for j in range(kw):
            blocks[:, :, i, j] = xpad[:, :, i:i + s * oh:s, j:j + s * ow:s]
    return cols[:n]


def _col2im(cols, kh, kw, s, p, oh, ow, out, dxpad):
    """Scatter-add (N, C·KH·KW, OH·OW) columns back to images: into out, or via dxpad."""
    n, c, h, w = out.shape
    blocks = cols.reshape(n, c, kh, kw, oh, ow)
    target = dxpad[:n] if p else out
    target.fill(0)
    for i in range(kh):
        for j in range(kw):
            target[:, :, i:i + s * oh:s, j:j + s * ow:s] += blocks[:, :, i, j]
    if p:
        out[...] = target[:, :, p:p + h, p:p + w]


def _chunks(n, size):
    """Batch slices of `size` samples: im2col columns are KH·KW times the input, so they are
    built a chunk at a time and the workspace stays near the size of the output."""
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


CHUNK_BYTES = 1 << 20  # a chunk's columns may take at least this much, however small the output


def _conv_scratch(x_shape, w_shape, out_shape, attrs, dtype, extra=None):
    """cols (and xpad) for one chunk of samples, plus `extra` name -> per-sample shape."""
    n, c, h, w = x_shape
    o, _, kh, kw = w_shape
    pixels = out_shape[-2] * out_shape[-1]
    itemsize = np.dtype(dtype).itemsize
    budget = max(n * o * pixels * itemsize, CHUNK_BYTES)
    b = int(max(1, min(n, budget // (c * kh * kw * pixels * itemsize))))
    ws = {"cols": ((b, c * kh * kw, pixels), dtype)}
    if attrs["padding"]:
        ws["xpad"] = (_padded_shape((b, c, h, w), attrs["padding"]), dtype)
    for name, shape in (extra or {}).items():
        ws[name] = ((b, *shape), dtype)
    return ws


# ---- conv2d --------------------------------------------------------------------------------------

def _conv_shape(shapes, attrs):
    x, w = shapes
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"conv2d needs x (N,C,H,W) and w (O,C,KH,KW), got {tuple(x)}, {tuple(w)}")
    if x[1] != w[1]:
        raise ShapeError(f"conv2d: input has {x[1]} channels, weight expects {w[1]}")
    s, p = attrs["stride"], attrs["padding"]
    return (x[0], w[0], _out_size(x[2], w[2], s, p, "conv2d"), _out_size(x[3], w[3], s, p, "conv2d"))


def _conv_ws(shapes, attrs, out_shape, dtype):
    x, w = shapes
    return _conv_scratch(x, w, out_shape, attrs, dtype)


def _conv(xp, ins, attrs, out, ws=None):
    x, w = ins
    ws = ws or scratch(_conv_ws, xp, ins, attrs, out)
    n, o, oh, ow = out.shape
    w2d = w.reshape(o, -1)
    for part in _chunks(n, ws["cols"].shape[0]):
        cols = _im2col(x[part], w.shape[2], w.shape[3], attrs["stride"], attrs["padding"], oh, ow,
                       ws["cols"], ws.get("xpad"))
        xp.matmul(w2d, cols, out=out[part].reshape(len(cols), o, oh * ow))  # batched GEMM


def _conv_grad(n, g):
    x, w = n.inputs
    a = n.attrs
    return [make("conv2d_grad_input", g, w, x, **a), make("conv2d_grad_weight", g, x, w, **a)]


def _grad_input_ws(shapes, attrs, out_shape, dtype):
    gy, w, x = shapes
    return _conv_scratch(x, w, gy, attrs, dtype)


def _conv_grad_input(xp, ins, attrs, out, ws=None):
    gy, w, x = ins
    ws = ws or scratch(_grad_input_ws, xp, ins, attrs, out)
    o, c, kh, kw = w.shape
    n, _, oh, ow = gy.shape
    w2d_t = w.reshape(o, -1).T
    for part in _chunks(n, ws["cols"].shape[0]):
        g = gy[part].reshape(-1, o, oh * ow)
        dcols = xp.matmul(w2d_t, g, out=ws["cols"][:len(g)])
        _col2im(dcols, kh, kw, attrs["stride"], attrs["padding"], oh, ow, out[part], ws.get("xpad"))


def _grad_weight_ws(shapes, attrs, out_shape, dtype):
    gy, x, w = shapes
    o, c, kh, kw = w
    return {**_conv_scratch(x, w, gy, attrs, dtype, {"per_sample": (o, c * kh * kw)}),
            "chunk_sum": ((o, c * kh * kw), dtype)}


def _conv_grad_weight(xp, ins, attrs, out, ws=None):
    gy, x, w = ins
    ws = ws or scratch(_grad_weight_ws, xp, ins, attrs, out)
    o = w.shape[0]
    n, _, oh, ow = gy.shape
    dw = out.reshape(o, -1)
    for k, part in enumerate(_chunks(n, ws["cols"].shape[0])):
        cols = _im2col(x[part], w.shape[2], w.shape[3], attrs["stride"], attrs["padding"], oh, ow,
                       ws["cols"], ws.get("xpad"))
        per_sample = xp.matmul(gy[part].reshape(-1, o, oh * ow), cols.transpose(0, 2, 1),
                               out=ws["per_sample"][:len(cols)])
        if k == 0:
            xp.add.reduce(per_sample, axis=0, out=dw)
        else:
            xp.add(dw, xp.add.reduce(per_sample, axis=0, out=ws["chunk_sum"]), out=dw)


register(OpDef("conv2d", "opaque", _conv_shape, _conv, _conv_grad, workspace=_conv_ws,
               epilogue_head=True, doc="2-D convolution, NCHW, square stride and zero padding"))
register(OpDef("conv2d_grad_input", "opaque", lambda s, a: tuple(s[2]), _conv_grad_input,
               not_differentiable, shape_only=(2,), workspace=_grad_input_ws,
               doc="gradient of conv2d w.r.t. its input"))
register(OpDef("conv2d_grad_weight", "opaque", lambda s, a: tuple(s[2]), _conv_grad_weight,
               not_differentiable, shape_only=(2,), workspace=_grad_weight_ws,
               doc="gradient of conv2d w.r.t. its weight"))


# ---- pooling -------------------------------------------------------------------------------------

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


def _max_pool(xp, ins, attrs, out, ws=None):
    ws = ws if ws is not None else scratch(_pool_ws, xp, ins, attrs, out)
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    xpad = _padded(ins[0], p, ws.get("xpad"), value=-xp.inf)
    out.fill(-xp.inf)
    for _, _, win in _windows(xpad, k, s, out.shape[2], out.shape[3]):
        xp.maximum(out, win, out=out)


def _max_pool_grad_ws(shapes, attrs, out_shape, dtype):
    x, y, _ = shapes
    ws = {**_pad_ws(x, attrs, dtype), **_pad_ws(x, attrs, dtype, "dxpad")}
    ws.update(taken=(tuple(y), bool), hit=(tuple(y), bool), part=(tuple(y), dtype))
    return ws


def _max_pool_grad(xp, ins, attrs, out, ws=None):
    x, y, gy = ins
    ws = ws or scratch(_max_pool_grad_ws, xp, ins, attrs, out)
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    xpad = _padded(x, p, ws.get("xpad"), value=-xp.inf)
    dxpad = ws["dxpad"] if p else out
    taken, hit, part = ws["taken"], ws["hit"], ws["part"]
    dxpad.fill(0)
    taken.fill(False)  # ties: the first maximum in the window gets it
    for i, j, win in _windows(xpad, k, s, y.shape[2], y.shape[3]):
        xp.equal(win, y, out=hit)
        xp.greater(hit, taken, out=hit)  # hit and not yet taken
        xp.logical_or(taken, hit, out=taken)
        xp.multiply(gy, hit, out=part)
        dxpad[:, :, i:i + s * y.shape[2]:s, j:j + s * y.shape[3]:s] += part
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
               not_differentiable, workspace=_max_pool_grad_ws,
               doc="route each window's gradient to its (first) maximum"))
register(OpDef("avg_pool2d", "opaque", _pool_shape, _avg_pool,
               lambda n, g: [make("avg_pool2d_grad", g, n.inputs[0], **n.attrs)],
               workspace=_pool_ws, doc="mean over k×k windows"))
register(OpDef("avg_pool2d_grad", "opaque", lambda s, a: tuple(s[1]), _avg_pool_grad,
               _avg_pool_grad_grad, shape_only=(1,), workspace=_avg_pool_grad_ws,
               doc="spread each gradient over its window"))
