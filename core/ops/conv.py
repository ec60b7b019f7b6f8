"""Convolution and pooling on NCHW tensors. Convolution is im2col + one large GEMM: the
columns are laid out (C·KH·KW, N·OH·OW) so forward and both gradients are single matmuls."""
from __future__ import annotations

from ..errors import ShapeError
from .base import OpDef, not_differentiable, register
from .elementwise import make


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

def _pad(xp, x, p, value=0.0):
    if p == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=value)


def _windows(xpad, k, s, oh, ow):
    """Yield (i, j, view) for each kernel offset: view[n, c, y, x] = xpad[n, c, y*s+i, x*s+j]."""
    for i in range(k):
        for j in range(k):
            yield i, j, xpad[:, :, i:i + s * oh:s, j:j + s * ow:s]


def _im2col(xp, x, kh, kw, s, p, oh, ow):
    n, c = x.shape[:2]
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    xpad = _pad(xp, x, p)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xpad[:, :, i:i + s * oh:s, j:j + s * ow:s].transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow)


def _col2im(xp, cols, x_shape, kh, kw, s, p, oh, ow, out):
    n, c, h, w = x_shape
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    dxpad = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=out.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i:i + s * oh:s, j:j + s * ow:s] += cols[:, i, j].transpose(1, 0, 2, 3)
    out[...] = dxpad[:, :, p:p + h, p:p + w]


def _gy_matrix(gy):
    """(N, O, OH, OW) -> (O, N·OH·OW), matching the column layout."""
    o = gy.shape[1]
    return gy.transpose(1, 0, 2, 3).reshape(o, -1)


# ---- conv2d --------------------------------------------------------------------------------------

def _conv_shape(shapes, attrs):
    x, w = shapes
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"conv2d needs x (N,C,H,W) and w (O,C,KH,KW), got {tuple(x)}, {tuple(w)}")
    if x[1] != w[1]:
        raise ShapeError(f"conv2d: input has {x[1]} channels, weight expects {w[1]}")
    s, p = attrs["stride"], attrs["padding"]
    return (x[0], w[0], _out_size(x[2], w[2], s, p, "conv2d"), _out_size(x[3], w[3], s, p, "conv2d"))


def _conv(xp, ins, attrs, out):
    x, w = ins
    n, o, oh, ow = out.shape
    cols = _im2col(xp, x, w.shape[2], w.shape[3], attrs["stride"], attrs["padding"], oh, ow)
    y = w.reshape(o, -1) @ cols  # (O, N·OH·OW): one GEMM
    out[...] = y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


def _conv_grad(n, g):
    x, w = n.inputs
    a = n.attrs
    return [make("conv2d_grad_input", g, w, x, **a), make("conv2d_grad_weight", g, x, w, **a)]


def _conv_grad_input(xp, ins, attrs, out):
    gy, w, x = ins
    o, c, kh, kw = w.shape
    _, _, oh, ow = gy.shape
    dcols = w.reshape(o, -1).T @ _gy_matrix(gy)
    _col2im(xp, dcols, x.shape, kh, kw, attrs["stride"], attrs["padding"], oh, ow, out)


def _conv_grad_weight(xp, ins, attrs, out):
    gy, x, w = ins
    _, _, oh, ow = gy.shape
    cols = _im2col(xp, x, w.shape[2], w.shape[3], attrs["stride"], attrs["padding"], oh, ow)
    xp.matmul(_gy_matrix(gy), cols.T, out=out.reshape(w.shape[0], -1))


register(OpDef("conv2d", "opaque", _conv_shape, _conv, _conv_grad,
               doc="2-D convolution, NCHW, square stride and zero padding"))
register(OpDef("conv2d_grad_input", "opaque", lambda s, a: tuple(s[2]), _conv_grad_input,
               not_differentiable, shape_only=(2,), doc="gradient of conv2d w.r.t. its input"))
register(OpDef("conv2d_grad_weight", "opaque", lambda s, a: tuple(s[2]), _conv_grad_weight,
               not_differentiable, shape_only=(2,), doc="gradient of conv2d w.r.t. its weight"))


# ---- pooling -------------------------------------------------------------------------------------

def _pool_shape(shapes, attrs):
    x = shapes[0]
    if len(x) != 4:
        raise ShapeError(f"pooling needs (N,C,H,W), got {tuple(x)}")
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    if p * 2 > k:
        raise ShapeError(f"pooling padding {p} is more than half the window {k}")
    return (x[0], x[1], _out_size(x[2], k, s, p, "pool"), _out_size(x[3], k, s, p, "pool"))


def _max_pool(xp, ins, attrs, out):
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    xpad = _pad(xp, ins[0], p, value=-xp.inf)
    out.fill(-xp.inf)
    for _, _, win in _windows(xpad, k, s, out.shape[2], out.shape[3]):
        xp.maximum(out, win, out=out)


def _max_pool_grad(xp, ins, attrs, out):
    x, y, gy = ins
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    xpad = _pad(xp, x, p, value=-xp.inf)
    dxpad = xp.zeros(xpad.shape, dtype=out.dtype)
    taken = xp.zeros(y.shape, dtype=bool)  # ties: the first maximum in the window gets it
    for i, j, win in _windows(xpad, k, s, y.shape[2], y.shape[3]):
        hit = (win == y) & ~taken
        taken |= hit
        dxpad[:, :, i:i + s * y.shape[2]:s, j:j + s * y.shape[3]:s] += gy * hit
    out[...] = dxpad[:, :, p:p + x.shape[2], p:p + x.shape[3]]


def _avg_pool(xp, ins, attrs, out):
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    out.fill(0)
    for _, _, win in _windows(_pad(xp, ins[0], p), k, s, out.shape[2], out.shape[3]):
        out += win
    out *= 1.0 / (k * k)  # padding counts as zeros, like count_include_pad=True


def _avg_pool_grad(xp, ins, attrs, out):
    gy, x = ins
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    n, c, h, w = x.shape
    dxpad = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=out.dtype)
    share = gy * (1.0 / (k * k))
    for i, j, _ in _windows(dxpad, k, s, gy.shape[2], gy.shape[3]):
        dxpad[:, :, i:i + s * gy.shape[2]:s, j:j + s * gy.shape[3]:s] += share
    out[...] = dxpad[:, :, p:p + h, p:p + w]


def _avg_pool_grad_grad(n, g):
    return [make("avg_pool2d", g, **n.attrs), None]


register(OpDef("max_pool2d", "opaque", _pool_shape, _max_pool,
               lambda n, g: [make("max_pool2d_grad", n.inputs[0], n, g, **n.attrs)],
               doc="maximum over k×k windows"))
register(OpDef("max_pool2d_grad", "opaque", lambda s, a: tuple(s[0]), _max_pool_grad,
               not_differentiable, doc="route each window's gradient to its (first) maximum"))
register(OpDef("avg_pool2d", "opaque", _pool_shape, _avg_pool,
               lambda n, g: [make("avg_pool2d_grad", g, n.inputs[0], **n.attrs)],
               doc="mean over k×k windows"))
register(OpDef("avg_pool2d_grad", "opaque", lambda s, a: tuple(s[1]), _avg_pool_grad,
               _avg_pool_grad_grad, shape_only=(1,), doc="spread each gradient over its window"))
