"""Convolution and pooling on NCHW tensors. Convolution is im2col + one GEMM per sample: the
columns are laid out (N, C·KH·KW, OH·OW), so the (O, C·KH·KW) weight matrix times a sample's
columns is that sample's NCHW output, and both gradients are per-sample GEMMs too.

On numpy the samples of a chunk are split over CPU threads (`cpu.for_each_run`): each
sample's result comes from the same calls on any number of threads, bit for bit."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError
from . import cpu
from .base import OpDef, make, register, scratch


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
    h, w = x.shape[2], x.shape[3]
    for border in (buf[:, :, :p], buf[:, :, p + h:], buf[:, :, p:p + h, :p], buf[:, :, p:p + h, p + w:]):
        border.fill(value)  # only the border: the inside is overwritten next
    buf[:, :, p:p + h, p:p + w] = x
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
    if isinstance(xpad, np.ndarray):  # one copy from a strided view of all kernel offsets
        sn, sc, sh, sw = xpad.strides
        np.copyto(blocks, as_strided(xpad, blocks.shape, (sn, sc, sh, sw, sh * s, sw * s),
                                     writeable=False))
        return cols[:n]
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


def _each_chunk(xp, n, size, run, done=None, sample_bytes=0):
    """Batches of `size` samples (im2col columns are KH·KW times the input, so they are built
    a chunk at a time and the workspace stays small): run(lo, hi, row) computes samples lo..hi
    with the workspace rows from `row` on. On numpy a chunk's samples are split over threads
    (cpu.for_each_run; `sample_bytes` of columns each). done(lo, hi) follows each chunk, on
    the calling thread."""
    for a in range(0, n, size):
        b = min(a + size, n)
        if xp is np:
            cpu.for_each_run(lambda lo, hi: run(lo, hi, lo - a), a, b, (b - a) * sample_bytes)
        else:
            run(a, b, 0)
        if done is not None:
            done(a, b)


def _rows(buf, row):
    return None if buf is None else buf[row:]


CHUNK_BYTES = 1 << 20  # by default a chunk's columns may take this much, however small the output


def _default_chunk(x_shape, w_shape, out_shape, dtype) -> int:
    """Samples whose columns take about as much as the output (at least CHUNK_BYTES)."""
    n, c, _, _ = x_shape
    o, _, kh, kw = w_shape
    pixels, itemsize = out_shape[-2] * out_shape[-1], np.dtype(dtype).itemsize
    return max(1, max(n * o * pixels * itemsize, CHUNK_BYTES) // (c * kh * kw * pixels * itemsize))


def _conv_scratch(x_shape, w_shape, out_shape, attrs, dtype, extra=None):
    """cols (and xpad) for one chunk of samples, plus `extra` name -> per-sample shape. The
    chunk is attrs["chunk"] samples where the planner chose it (see OpDef.chunked_workspace),
    else as many as make the columns about the size of the output (at least CHUNK_BYTES)."""
    n, c, h, w = x_shape
    o, _, kh, kw = w_shape
    pixels = out_shape[-2] * out_shape[-1]
    b = int(max(1, min(n, attrs.get("chunk") or _default_chunk(x_shape, w_shape, out_shape, dtype))))
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
    w2d, (kh, kw), s, p = w.reshape(o, -1), w.shape[2:], attrs["stride"], attrs["padding"]

    def run(lo, hi, row):
        cols = _im2col(x[lo:hi], kh, kw, s, p, oh, ow, ws["cols"][row:], _rows(ws.get("xpad"), row))
        xp.matmul(w2d, cols, out=out[lo:hi].reshape(hi - lo, o, oh * ow))  # a GEMM per sample
    _each_chunk(xp, n, ws["cols"].shape[0], run, sample_bytes=ws["cols"][0].nbytes)


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
    w2d_t, s, p = w.reshape(o, -1).T, attrs["stride"], attrs["padding"]

    def run(lo, hi, row):
        dcols = xp.matmul(w2d_t, gy[lo:hi].reshape(hi - lo, o, oh * ow), out=ws["cols"][row:row + hi - lo])
        _col2im(dcols, kh, kw, s, p, oh, ow, out[lo:hi], _rows(ws.get("xpad"), row))
    _each_chunk(xp, n, ws["cols"].shape[0], run, sample_bytes=ws["cols"][0].nbytes)


def _grad_weight_ws(shapes, attrs, out_shape, dtype):
    gy, x, w = shapes
    o, c, kh, kw = w
    return {**_conv_scratch(x, w, gy, attrs, dtype, {"per_sample": (o, c * kh * kw)}),
            "chunk_sum": ((o, c * kh * kw), dtype)}


def _conv_grad_weight(xp, ins, attrs, out, ws=None):
    gy, x, w = ins
    ws = ws or scratch(_grad_weight_ws, xp, ins, attrs, out)
    o, _, kh, kw = w.shape
    n, _, oh, ow = gy.shape
    dw, s, p = out.reshape(o, -1), attrs["stride"], attrs["padding"]

    def run(lo, hi, row):
        cols = _im2col(x[lo:hi], kh, kw, s, p, oh, ow, ws["cols"][row:], _rows(ws.get("xpad"), row))
        xp.matmul(gy[lo:hi].reshape(hi - lo, o, oh * ow), cols.transpose(0, 2, 1),
                  out=ws["per_sample"][row:row + hi - lo])

    group = _default_chunk(x.shape, w.shape, gy.shape, out.dtype)

    def add_up(lo, hi):
        """Samples lo..hi (rows of per_sample) into dw: in order within groups of `group`
        samples, then group by group. The sums do not depend on the chunk: they are the ones
        chunks of `group` samples make, as every earlier version computed them."""
        a = lo
        while a < hi:
            start = a // group * group
            end = min(start + group, hi)
            target, part = (dw if start == 0 else ws["chunk_sum"]), ws["per_sample"][a - lo:end - lo]
            if a == start:
                xp.add.reduce(part, axis=0, out=target)
            else:  # the group began in the chunk before: one sample at a time, in order
                for row in part:
                    xp.add(target, row, out=target)
            if start > 0 and end == min(start + group, n):
                xp.add(dw, target, out=dw)
            a = end
    _each_chunk(xp, n, ws["cols"].shape[0], run, add_up, sample_bytes=ws["cols"][0].nbytes)


register(OpDef("conv2d", "opaque", _conv_shape, _conv, _conv_grad, workspace=_conv_ws,
               chunked_workspace=True, epilogue_head=True,
               doc="2-D convolution, NCHW, square stride and zero padding"))
register(OpDef("conv2d_grad_input", "opaque", lambda s, a: tuple(s[2]), _conv_grad_input,
               # linear in gy and w: <G, dx(gy, w)> = <conv2d(G, w), gy>
               lambda n, g: [make("conv2d", g, n.inputs[1], **n.attrs),
                             make("conv2d_grad_weight", n.inputs[0], g, n.inputs[1], **n.attrs),
                             None], shape_only=(2,), workspace=_grad_input_ws,
               chunked_workspace=True, doc="gradient of conv2d w.r.t. its input"))
register(OpDef("conv2d_grad_weight", "opaque", lambda s, a: tuple(s[2]), _conv_grad_weight,
               # linear in gy and x: <G, dw(gy, x)> = <conv2d(x, G), gy>
               lambda n, g: [make("conv2d", n.inputs[1], g, **n.attrs),
                             make("conv2d_grad_input", n.inputs[0], g, n.inputs[1], **n.attrs),
                             None], shape_only=(2,), workspace=_grad_weight_ws,
               chunked_workspace=True, doc="gradient of conv2d w.r.t. its weight"))


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


def _by_samples(xp, n, run, nbytes):
    """run(lo, hi) over the batch: split over threads on numpy (samples are independent)."""
    if xp is np:
        cpu.for_each_run(run, 0, n, nbytes)
    else:
        run(0, n)


def _max_pool(xp, ins, attrs, out, ws=None):
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


def _max_pool_grad_ws(shapes, attrs, out_shape, dtype):
    x, y, _ = shapes
    ws = {**_pad_ws(x, attrs, dtype), **_pad_ws(x, attrs, dtype, "dxpad")}
    ws.update(taken=(tuple(y), bool), hit=(tuple(y), bool), part=(tuple(y), dtype))
    return ws


def _max_pool_grad(xp, ins, attrs, out, ws=None):
    ws = ws or scratch(_max_pool_grad_ws, xp, ins, attrs, out)
    _by_samples(xp, out.shape[0], lambda lo, hi: _max_pool_grad_rows(
        xp, [i[lo:hi] for i in ins], attrs, out[lo:hi],
        {name: buf[lo:hi] for name, buf in ws.items()}), out.nbytes)


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
