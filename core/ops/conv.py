"""Convolution and pooling on NCHW tensors. Convolution is im2col + one GEMM per chunk of
samples: a chunk's columns are one (C·KH·KW, samples·OH·OW) matrix, so the (O, C·KH·KW) weight
matrix times it is the chunk's output, and both gradients are one GEMM per chunk too. The
planner picks the chunk (OpDef.chunked_workspace): by default enough samples for a long GEMM,
which BLAS runs on its threads; fewer where memory is tight. A chunk's float rounding follows
its GEMM's shape, so results agree across chunk sizes to rounding, and bit for bit at equal
chunks.

Two column orders, by image size (`per_sample_gemms`):
- small images: batch-innermost, column = (oy, ox, sample). The chunk is first transposed to
  (C, H, W, samples), so each kernel offset's window is rows of OW·samples contiguous values
  (one long copy per row, where sample-major windows are rows of only OW: on the bench CNN's
  14×14 layer the im2col copy took 2.4 ms sample-major, 0.2 + 0.5 ms this way) and col2im
  adds rows that long. The GEMM's result is then transposed to NCHW.
- large images: sample-major, column = (sample, oy, ox), one GEMM per sample straight into
  its NCHW output (no transposition; the rows are long already).

Pools are in ops/pool.py; they share this module's padding and window helpers."""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError
from . import conv_native, cpu, native
from .base import OpDef, make, register, scratch


def conv2d(x, w, stride=1, padding=0, name=None):
    return make("conv2d", x, w, name=name, stride=int(stride), padding=int(padding))


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
    _fill_border(buf, p, value)
    buf[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
    return buf


def _fill_border(buf, p, value):
    """The border p wide of (N, C, H+2p, W+2p) images (a view in any memory order) set to
    `value`: only the border, the inside is overwritten next."""
    h, w = buf.shape[2] - 2 * p, buf.shape[3] - 2 * p
    for border in (buf[:, :, :p], buf[:, :, p + h:], buf[:, :, p:p + h, :p], buf[:, :, p:p + h, p + w:]):
        border.fill(value)


def _padded_shape(x_shape, p):
    n, c, h, w = x_shape
    return (n, c, h + 2 * p, w + 2 * p)


def _windows(xpad, k, s, oh, ow):
    """Yield (i, j, view) for each kernel offset: view[n, c, y, x] = xpad[n, c, y*s+i, x*s+j]."""
    for i in range(k):
        for j in range(k):
            yield i, j, xpad[:, :, i:i + s * oh:s, j:j + s * ow:s]


def _matrix(buf, rows, cols):
    """The first rows×cols elements of a workspace buffer as one contiguous matrix (a chunk
    shorter than the buffer's still gets a matrix BLAS reads without a copy)."""
    return buf.reshape(-1)[:rows * cols].reshape(rows, cols)


def _im2col(x, kh, kw, s, p, oh, ow, cols, xpad):
    """Columns of the m samples x as one (C·KH·KW, m·OH·OW) matrix (in cols' first bytes): one
    GEMM with the (O, C·KH·KW) weight matrix convolves the whole chunk, sample-major columns."""
    m, c = x.shape[:2]
    blocks = _matrix(cols, c * kh * kw, m * oh * ow).reshape(c, kh, kw, m, oh, ow)
    xpad = _padded(x, p, None if xpad is None else xpad[:m])
    if isinstance(xpad, np.ndarray):  # one copy from a strided view of all kernel offsets
        sn, sc, sh, sw = xpad.strides
        cpu.copy(blocks, as_strided(xpad, blocks.shape, (sc, sh, sw, sn, sh * s, sw * s),
                                    writeable=False))
    else:
        for i in range(kh):
            for j in range(kw):
                blocks[:, i, j] = xpad[:, :, i:i + s * oh:s, j:j + s * ow:s].transpose(1, 0, 2, 3)
    return blocks.reshape(c * kh * kw, m * oh * ow)


def _col2im(cols, kh, kw, s, p, oh, ow, out, dxpad):
    """Scatter-add (C·KH·KW, m·OH·OW) columns back to the m images out (via dxpad if padded),
    kernel offset by kernel offset in a fixed order."""
    m, c, h, w = out.shape
    blocks = cols.reshape(c, kh, kw, m, oh, ow)
    target = dxpad[:m] if p else out

    def channels(lo, hi):  # each channel's image sums its own columns: split by channel
        part = target[:, lo:hi]
        part.fill(0)
        for i in range(kh):
            for j in range(kw):
                part[:, :, i:i + s * oh:s, j:j + s * ow:s] += blocks[lo:hi, i, j].transpose(1, 0, 2, 3)
        if p:
            out[:, lo:hi] = part[:, :, p:p + h, p:p + w]
    if isinstance(out, np.ndarray):
        cpu.for_each_run(channels, 0, c, out.nbytes)
    else:
        channels(0, c)


def _batch_inner(x, p, buf):
    """The m samples x (m, C, H, W) as one (C, H+2p, W+2p, m) array in buf, border zero."""
    m, c, h, w = x.shape
    xt = _matrix(buf, c, (h + 2 * p) * (w + 2 * p) * m).reshape(c, h + 2 * p, w + 2 * p, m)
    if p:
        _fill_border(xt.transpose(3, 0, 1, 2), p, 0)
    _copy(xt[:, p:p + h, p:p + w], x.transpose(1, 2, 3, 0))
    return xt


def _im2col_batch_inner(x, kh, kw, s, p, oh, ow, cols, xpad):
    """Columns of the m samples x as one (C·KH·KW, OH·OW·m) matrix, batch-innermost (see the
    module docstring), built from their transposition in xpad."""
    m, c = x.shape[:2]
    xt = _batch_inner(x, p, xpad)
    blocks = _matrix(cols, c * kh * kw, oh * ow * m).reshape(c, kh, kw, oh, ow, m)
    if isinstance(xt, np.ndarray):  # one copy from a strided view of all kernel offsets
        sc, sh, sw, sn = xt.strides
        cpu.copy(blocks, as_strided(xt, blocks.shape, (sc, sh, sw, sh * s, sw * s, sn),
                                    writeable=False))
    else:
        for i in range(kh):
            for j in range(kw):
                blocks[:, i, j] = xt[:, i:i + s * oh:s, j:j + s * ow:s]
    return blocks.reshape(c * kh * kw, oh * ow * m)


def _col2im_batch_inner(xp, cols, kh, kw, s, p, oh, ow, out, xpad):
    """Sum (C·KH·KW, OH·OW·m) batch-innermost columns back into the m images out, kernel
    offset by kernel offset in a fixed order, in their transposition in xpad."""
    m, c, h, w = out.shape
    blocks = cols.reshape(c, kh, kw, oh, ow, m)
    if xp is np and native.usable(blocks, out):
        _col2im_native(blocks, s, p, out, _matrix(xpad, c, h * w * m).reshape(c, h, w, m))
        return
    dxt = _matrix(xpad, c, (h + 2 * p) * (w + 2 * p) * m).reshape(c, h + 2 * p, w + 2 * p, m)

    def channels(lo, hi):  # each channel's image sums its own columns: split by channel
        part = dxt[lo:hi]
        part.fill(0)
        for i in range(kh):
            for j in range(kw):
                part[:, i:i + s * oh:s, j:j + s * ow:s] += blocks[lo:hi, i, j]
    if isinstance(out, np.ndarray):
        cpu.for_each_run(channels, 0, c, out.nbytes)
    else:
        channels(0, c)
    _copy(out, dxt[:, p:p + h, p:p + w].transpose(3, 0, 1, 2))


def _col2im_native(blocks, s, p, out, dxt):
    """_col2im_batch_inner as one compiled pass per run of channels (ops/native_loops.py:
    the same sums in the same order), then the transposition to NCHW."""
    loop, zero = native.kernel("col2im_batch_inner"), native.ZERO_ONE[out.dtype][:1]
    cpu.for_each_run(lambda lo, hi: loop(blocks[lo:hi], s, p, dxt[lo:hi], zero), 0, dxt.shape[0], out.nbytes)
    _copy(out, dxt.transpose(3, 0, 1, 2))


def _copy(dst, src):
    """dst[...] = src: split over the CPU threads on numpy."""
    if isinstance(dst, np.ndarray):
        cpu.copy(dst, src)
    else:
        dst[...] = src


def _to_nchw(y, out):
    """A GEMM's batch-innermost (O, OH·OW·m) result into the m NCHW samples out."""
    m, o, oh, ow = out.shape
    _copy(out, y.reshape(o, oh, ow, m).transpose(3, 0, 1, 2))


def _from_nchw(gy, buf):
    """The m NCHW samples gy as one batch-innermost (O, OH·OW·m) matrix in buf (a GEMM
    operand against batch-innermost columns)."""
    m, o, oh, ow = gy.shape
    g = _matrix(buf, o, oh * ow * m)
    _copy(g.reshape(o, oh, ow, m), gy.transpose(1, 2, 3, 0))
    return g


PER_SAMPLE_PIXELS = 512  # a sample with this many output pixels is a long enough GEMM alone


def per_sample_gemms(pixels) -> bool:
    """One GEMM per sample (no transposition of results) where images are large enough."""
    return pixels >= PER_SAMPLE_PIXELS


def _chunk_kernels(xp, gemm_dims, *arrays):
    """conv_native's compiled chunk kernels (a chunk as one call without the GIL, numpy's
    bits: (module, gemm address, scalars)) where they take these arrays, else None. A GEMM with a side of 1 stays numpy's
    (numpy calls gemv or its own loop for it, not gemm)."""
    if xp is not np or min(gemm_dims) < 2:
        return None
    return conv_native.kernels(*arrays)


def _padding(ws):
    """The padded copy's buffer where the chunk has one (a padded convolution), for the
    kernels' checks."""
    return (ws["xpad"],) if "xpad" in ws else ()


def _samples(cols, pixels):
    """A chunk's columns as a stack of per-sample (C·KH·KW, OH·OW) blocks: a strided view
    that a batched matmul hands to BLAS in place."""
    return cols.reshape(cols.shape[0], -1, pixels).transpose(1, 0, 2)


def _each_chunk(xp, n, ws, run, total=None):
    """run(lo, hi, slot) over the batch in chunks (the columns of a chunk are KH·KW times its
    input, so they are built a chunk at a time and the workspace stays small); `slot` is
    the part of the workspace the chunk uses. With several slots (`_slots`), the batch is cut
    into as many runs of samples, each run chunk by chunk in a slot of its own, all at once
    on numpy's CPU threads (one after another elsewhere, or while the threads work for
    another caller: the same arithmetic either way). One handoff per op, however many
    chunks: waking a thread costs about 100 µs on a small VM, three waves of chunks per
    convolution made LeNet's step 10.8 ms against 6.1 in one.

    total: the op sums its chunks' results (the weight gradient); run(lo, hi, slot, target)
    writes a chunk's into target. Each run of samples sums its chunks in batch order, into
    `total` for the first run and its slot's `total` for the others, which are then added
    to `total` in order."""
    size, count = _chunk_of(ws), _slot_count(ws)
    slots = [ws] if count == 1 else [_slot(ws, k, size) for k in range(count)]
    sums = [total] + [slot.get("total") for slot in slots[1:]]

    def chunks_of(k, lo, hi):
        slot, target = slots[k], sums[k]
        for start in range(lo, hi, size):
            end = min(start + size, hi)
            if total is None:
                run(start, end, slot)
            elif start == lo:
                run(start, end, slot, target)
            else:
                run(start, end, slot, slot["chunk_sum"])
                xp.add(target, slot["chunk_sum"], out=target)
    runs = [partial(chunks_of, k, lo, hi) for k, (lo, hi) in enumerate(cpu.split(0, n, count))]
    with cpu.one_blas_thread(count > 1):
        if count > 1 and xp is np:
            cpu.together([partial(cpu.on_one_thread, part) for part in runs])
        else:
            for part in runs:
                part()
    if total is not None:
        for part_sum in sums[1:len(runs)]:
            xp.add(total, part_sum, out=total)


# The workspace arrays that hold a chunk of samples (first axis: slots × chunk); the others
# are whole in every slot, except the weight gradient's sums, one per slot.
PER_SAMPLE = ("cols", "xt", "xpad", "y", "gy", "per_sample")


def _slot(ws, k, size):
    """Slot k of a workspace with several: its samples k·size.. of each per-sample array;
    from the second slot on, its own sum and chunk sum (the weight gradient's)."""
    slot = {name: (a[k * size:(k + 1) * size] if name in PER_SAMPLE else a) for name, a in ws.items()}
    if k and "slot_sums" in ws:
        slot["total"], slot["chunk_sum"] = ws["slot_sums"][k - 1]
    return slot


def _slot_count(ws) -> int:
    return ws["slots"].shape[0] if "slots" in ws else 1


def _slots(n, macs, attrs) -> int:
    """Chunks a convolution makes room for at once: one per CPU thread the planner offers
    (attrs["threads"]: a host BLAS backend's) where its `macs` multiply-adds over the whole
    batch split (cpu.split_gemm), each chunk's GEMM on one BLAS thread. Measured, chunks of
    32 samples on two threads against the whole batch of 64 with BLAS on both cores: the wide
    bench CNN's 32->64 convolution on 14×14 took 5.3-5.5 ms against 6.5-8.7, its input
    gradient 6.6-7.0 against 8.8-11.7; LeNet's 6->16 on 14×14 (15M multiply-adds) 751
    against 988 µs whole on one thread, its weight gradient 801 against 1054. The plan's
    choice (the workspace carries it), so a resumed run makes the same."""
    return max(1, min(n, cpu.split_gemm(macs, int(attrs.get("threads", 1)))))


# A chunk's GEMM gets at least this many columns where the batch has them: step time fell
# with every doubling of the chunk up to the whole batch of 64 on the bench CNNs' 14×14 and
# 7×7 layers (e.g. 16 samples, 3136 columns: 10.6 ms; 64 samples: 8.7 ms).
GEMM_COLUMNS = 16384


def _default_chunk(n, pixels) -> int:
    """Samples per chunk unless the planner says otherwise: enough columns for an efficient
    GEMM (BLAS threads pay off on long matrices, per-sample GEMMs of a small image do not)."""
    return max(1, min(n, -(-GEMM_COLUMNS // pixels)))


def _chunk_of(ws, name="cols"):
    return ws[name].shape[0] // _slot_count(ws)


# ---- conv2d --------------------------------------------------------------------------------------

def _conv_shape(shapes, attrs):
    x, w = shapes
    if len(x) != 4 or len(w) != 4:
        raise ShapeError(f"conv2d needs x (N,C,H,W) and w (O,C,KH,KW), got {tuple(x)}, {tuple(w)}")
    if x[1] != w[1]:
        raise ShapeError(f"conv2d: input has {x[1]} channels, weight expects {w[1]}")
    s, p = attrs["stride"], attrs["padding"]
    return (x[0], w[0], _out_size(x[2], w[2], s, p, "conv2d"), _out_size(x[3], w[3], s, p, "conv2d"))


def _columns_ws(x_shape, w_shape, out_shape, attrs, dtype, extra=None, fixed=None,
                batch_inner=False):
    """The workspace of a convolution of x by w, chunked: cols plus `extra`, each (slots ×
    chunk, *per-sample shape), the chunk being attrs["chunk"] where the planner chose it (see
    OpDef.chunked_workspace), else _default_chunk, at most the batch's share of a slot; plus
    `fixed` name -> shape, and with several slots (`_slots`, from the convolution's
    multiply-adds) their count (the length of `slots`).
    Batch-innermost columns come from the chunk's padded transposition `xt`, sample-major
    ones from its padded copy `xpad` (where padded). The GPU's kernels pad as they read and
    leave `xt` unused."""
    n, c, h, w = x_shape
    o, _, kh, kw = w_shape
    pixels = out_shape[-2] * out_shape[-1]
    per_sample = {"cols": (c * kh * kw * pixels,), **(extra or {})}
    slots = _slots(n, o * c * kh * kw * pixels * n, attrs)
    if batch_inner or attrs["padding"]:
        per_sample["xt" if batch_inner else "xpad"] = _padded_shape((1, c, h, w), attrs["padding"])[1:]
    b = int(max(1, min(-(-n // slots), attrs.get("chunk") or _default_chunk(n, pixels))))
    ws = {name: ((slots * b, *shape), dtype) for name, shape in per_sample.items()}
    ws.update({name: (shape, dtype) for name, shape in (fixed or {}).items()})
    if slots > 1:
        ws["slots"] = ((slots,), np.int8)  # never read: its length is the plan's slot count
        if "chunk_sum" in ws:  # each further slot's sum and chunk sum (`_slot`)
            ws["slot_sums"] = ((slots - 1, 2, *fixed["chunk_sum"]), dtype)
    return ws


def _conv_ws(shapes, attrs, out_shape, dtype):
    x, w = shapes
    pixels = out_shape[-2] * out_shape[-1]
    if per_sample_gemms(pixels):
        return _columns_ws(x, w, out_shape, attrs, dtype)
    return _columns_ws(x, w, out_shape, attrs, dtype, {"y": (w[0] * pixels,)}, batch_inner=True)


def _conv(xp, ins, attrs, out, ws=None):
    x, w = ins
    ws = ws or scratch(_conv_ws, xp, ins, attrs, out)
    _convolve(xp, x, w.reshape(w.shape[0], -1), w.shape[2:], attrs["stride"], attrs["padding"], out, ws)


def _convolve(xp, x, w2d, kernel, s, p, out, ws):
    """out = x convolved by the (O, C·KH·KW) matrix w2d: per chunk, im2col and one GEMM."""
    n, o, oh, ow = out.shape

    def run(lo, hi, ws):
        if "xt" in ws:  # small images: one GEMM for the chunk, then its columns to NCHW
            fast = _chunk_kernels(xp, (o, w2d.shape[1], oh * ow), x, w2d, out, ws["cols"], ws["xt"], ws["y"])
            if fast is not None:
                loops, gemm, zo = fast
                loops.conv_forward(x[lo:hi], w2d, *kernel, s, p, ws["xt"], ws["cols"], ws["y"], out[lo:hi], gemm, zo)
                return
            cols = _im2col_batch_inner(x[lo:hi], *kernel, s, p, oh, ow, ws["cols"], ws["xt"])
            _to_nchw(xp.matmul(w2d, cols, out=_matrix(ws["y"], o, cols.shape[1])), out[lo:hi])
            return
        # large images: a GEMM per sample (in one call), each straight into its NCHW output
        fast = _chunk_kernels(xp, (o, w2d.shape[1], oh * ow), x, w2d, out, ws["cols"], *_padding(ws))
        if fast is not None:
            loops, gemm, zo = fast
            loops.conv_sample_forward(x[lo:hi], w2d, *kernel, s, p, ws.get("xpad", ws["cols"]), ws["cols"],
                                      out[lo:hi], gemm, zo)
            return
        cols = _im2col(x[lo:hi], *kernel, s, p, oh, ow, ws["cols"], ws.get("xpad"))
        xp.matmul(w2d, _samples(cols, oh * ow), out=out[lo:hi].reshape(hi - lo, o, oh * ow))
    _each_chunk(xp, n, ws, run)


def _conv_grad(n, g):
    x, w = n.inputs
    a = n.attrs
    return [make("conv2d_grad_input", g, w, x, **a), make("conv2d_grad_weight", g, x, w, **a)]


# ---- gradient with respect to the input ----------------------------------------------------------
# With stride 1 (and padding below the kernel) it is itself a convolution: of gy, padded by
# K-1-p, with the kernel flipped and its channel axes swapped. That is an im2col copy and one
# GEMM per chunk, where the general rule (GEMM, then a scatter-add of columns per kernel offset)
# reads and writes the input gradient KH·KW times.

def grad_input_as_convolution(gy_shape, w_shape, x_shape, attrs) -> bool:
    """Stride 1, square kernel, padding below it, large images (where col2im would add
    sample-major rows of only OW) and columns at most twice the general rule's (those of gy
    over the input's pixels against those of x over the output's). Measured (batch 64, the
    two ways alternated in one process): 3×3 from 16 to 32 channels on 28×28, 17.2 ms against
    20.0 by col2im; on 14×14 and 7×7, where col2im adds batch-innermost rows, col2im won
    (32→64 on 14×14: 11.2 against 11.9 ms; 64→128 on 7×7: 7.6 against 8.3)."""
    o, c, kh, kw = w_shape
    fits = attrs["stride"] == 1 and kh == kw and attrs["padding"] <= kh - 1
    return (fits and per_sample_gemms(gy_shape[2] * gy_shape[3])
            and o * x_shape[2] * x_shape[3] <= 2 * c * gy_shape[2] * gy_shape[3])


def _grad_input_ws(shapes, attrs, out_shape, dtype):
    gy, w, x = shapes
    o, c, kh, kw = w
    if grad_input_as_convolution(gy, w, x, attrs):
        flipped = {**attrs, "padding": kh - 1 - attrs["padding"]}
        return _columns_ws(gy, (c, o, kh, kw), x, flipped, dtype, {"y": (c * x[2] * x[3],)},
                           {"w_flipped": (c, o * kh * kw)}, batch_inner=True)
    # gy: its batch-innermost transposition (small images; the GPU transposes into it at any size)
    return _columns_ws(x, w, gy, attrs, dtype, {"gy": (o * gy[2] * gy[3],)},
                       batch_inner=not per_sample_gemms(gy[2] * gy[3]))


def _conv_grad_input(xp, ins, attrs, out, ws=None):
    gy, w, x = ins
    ws = ws or scratch(_grad_input_ws, xp, ins, attrs, out)
    o, c, kh, kw = w.shape
    if grad_input_as_convolution(gy.shape, w.shape, x.shape, attrs):
        flipped = ws["w_flipped"]
        flipped.reshape(c, o, kh, kw)[...] = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        _convolve(xp, gy, flipped, (kh, kw), 1, kh - 1 - attrs["padding"], out, ws)
        return
    n, _, oh, ow = gy.shape
    w2d_t, s, p = w.reshape(o, -1).T, attrs["stride"], attrs["padding"]

    def run(lo, hi, ws):
        m = hi - lo
        dcols = _matrix(ws["cols"], w2d_t.shape[0], m * oh * ow)
        if "xt" in ws:  # small images: one GEMM over the chunk
            fast = _chunk_kernels(xp, (o, c * kh * kw, oh * ow), gy, w, out, ws["cols"], ws["xt"], ws["gy"])
            if fast is not None:
                loops, gemm, zo = fast
                loops.conv_input_gradient(gy[lo:hi], w, kh, kw, s, p, ws["gy"], ws["cols"], ws["xt"], out[lo:hi],
                                          gemm, zo)
                return
            xp.matmul(w2d_t, _from_nchw(gy[lo:hi], ws["gy"]), out=dcols)
            _col2im_batch_inner(xp, dcols, kh, kw, s, p, oh, ow, out[lo:hi], ws["xt"])
            return
        # large images: a GEMM per sample (in one call) into its block of columns
        xp.matmul(w2d_t, gy[lo:hi].reshape(m, o, oh * ow), out=_samples(dcols, oh * ow))
        _col2im(dcols, kh, kw, s, p, oh, ow, out[lo:hi], ws.get("xpad"))
    _each_chunk(xp, n, ws, run)


# ---- gradient with respect to the weight ---------------------------------------------------------

def _grad_weight_ws(shapes, attrs, out_shape, dtype):
    gy, x, w = shapes
    o, c, kh, kw = w
    pixels = gy[2] * gy[3]
    fixed = {"chunk_sum": (o, c * kh * kw)}
    if per_sample_gemms(pixels):
        return _columns_ws(x, w, gy, attrs, dtype, {"per_sample": (o * c * kh * kw,)}, fixed)
    return _columns_ws(x, w, gy, attrs, dtype, {"gy": (o * pixels,)}, fixed, batch_inner=True)


def _conv_grad_weight(xp, ins, attrs, out, ws=None):
    """dw = Σ of gy (O, m·OH·OW) @ columns.T over chunks (or samples, for large images), in order."""
    gy, x, w = ins
    ws = ws or scratch(_grad_weight_ws, xp, ins, attrs, out)
    o, _, kh, kw = w.shape
    n, _, oh, ow = gy.shape
    dw, s, p = out.reshape(o, -1), attrs["stride"], attrs["padding"]

    def run(lo, hi, ws, target):
        if "xt" in ws:  # small images: one GEMM over the chunk
            fast = _chunk_kernels(xp, (o, dw.shape[1], oh * ow), gy, x, target, ws["cols"], ws["xt"], ws["gy"])
            if fast is not None:
                loops, gemm, zo = fast
                loops.conv_weight_gradient(gy[lo:hi], x[lo:hi], kh, kw, s, p, ws["xt"], ws["cols"], ws["gy"],
                                           target, gemm, zo)
                return
            cols = _im2col_batch_inner(x[lo:hi], kh, kw, s, p, oh, ow, ws["cols"], ws["xt"])
            xp.matmul(_from_nchw(gy[lo:hi], ws["gy"]), cols.T, out=target)
        else:  # large images: a GEMM per sample (in one call), then their sum in order
            fast = _chunk_kernels(xp, (o, dw.shape[1], oh * ow), gy, x, target, ws["cols"], ws["per_sample"],
                                  *_padding(ws))
            if fast is not None:
                loops, gemm, zo = fast
                loops.conv_sample_weight_gradient(gy[lo:hi], x[lo:hi], kh, kw, s, p, ws.get("xpad", ws["cols"]),
                                                  ws["cols"], ws["per_sample"], target, gemm, zo)
                return
            cols = _im2col(x[lo:hi], kh, kw, s, p, oh, ow, ws["cols"], ws.get("xpad"))
            per_sample = _matrix(ws["per_sample"], hi - lo, dw.size).reshape(hi - lo, *dw.shape)
            xp.matmul(gy[lo:hi].reshape(hi - lo, o, oh * ow), _samples(cols, oh * ow).transpose(0, 2, 1),
                      out=per_sample)
            xp.add.reduce(per_sample, axis=0, out=target)

    _each_chunk(xp, n, ws, run, total=dw)


register(OpDef("conv2d", "opaque", _conv_shape, _conv, _conv_grad, workspace=_conv_ws,
               chunked_workspace=True, epilogue_head=True,
               doc="2-D convolution, NCHW, square stride and zero padding"))
register(OpDef("conv2d_grad_input", "opaque", lambda s, a: tuple(s[2]), _conv_grad_input,
               # linear in gy and w: <G, dx(gy, w)> = <conv2d(G, w), gy>
               lambda n, g: [make("conv2d", g, n.inputs[1], **n.attrs),
                             make("conv2d_grad_weight", n.inputs[0], g, n.inputs[1], **n.attrs),
                             None], shape_only=(2,), workspace=_grad_input_ws,
               chunked_workspace=True,
               doc="gradient of conv2d w.r.t. its input"))
register(OpDef("conv2d_grad_weight", "opaque", lambda s, a: tuple(s[2]), _conv_grad_weight,
               # linear in gy and x: <G, dw(gy, x)> = <conv2d(x, G), gy>
               lambda n, g: [make("conv2d", n.inputs[1], g, **n.attrs),
                             make("conv2d_grad_input", n.inputs[0], g, n.inputs[1], **n.attrs),
                             None], shape_only=(2,), workspace=_grad_weight_ws,
               chunked_workspace=True,
               doc="gradient of conv2d w.r.t. its weight"))
