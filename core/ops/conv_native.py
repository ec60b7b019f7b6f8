"""One chunk of a small-image convolution (batch-innermost columns, conv.py) as one compiled
call: the copies, numpy's own cblas GEMM (gemm_worker._cblas) and col2im, without the GIL.

Why: a convolution's runs of the batch go to two threads at once (conv.py _each_chunk), and
each run was about ten numpy calls. Between calls each thread takes the GIL back, and with two
threads at it, each wait is a sleep and a wake (about 100 µs on a small VM): LeNet's 6->16
convolution on 14×14 took 1309 µs in two runs of 32 at once against 1251 whole on one thread.
As one compiled call per run: 604 µs (788 whole), the same bits (the copies are copies, the
GEMM is the cblas call numpy's matmul makes for these contiguous operands, col2im is
native_loops.col2im_batch_inner).

Compiled per process on first use, like gemm_worker's loop (ctypes functions are not
cacheable by numba)."""
from __future__ import annotations

import threading

import numpy as np

from . import gemm_worker, native

ROW_MAJOR, NO_TRANS, TRANS = gemm_worker.ROW_MAJOR, gemm_worker.NO_TRANS, gemm_worker.TRANS


def _compile(gemm, one, zero):
    """The three chunk kernels for one dtype: `gemm` its cblas function, one and zero its
    scalars."""
    import numba
    from .native_loops import col2im_batch_inner
    jit = numba.njit(nogil=True)

    @jit
    def pad_transpose(x, p, xt):  # xt (C, H+2p, W+2p, m) <- x (m, C, H, W), border zero
        m, c, h, w = x.shape
        t = xt.reshape(-1)[:c * (h + 2 * p) * (w + 2 * p) * m].reshape(c, h + 2 * p, w + 2 * p, m)
        if p:
            t[:, :p] = zero
            t[:, p + h:] = zero
            t[:, p:p + h, :p] = zero
            t[:, p:p + h, p + w:] = zero
        for ch in range(c):
            for y in range(h):
                for i in range(w):
                    for n in range(m):
                        t[ch, y + p, i + p, n] = x[n, ch, y, i]
        return t

    @jit
    def columns(t, kh, kw, s, oh, ow, cols):  # cols (C, KH, KW, OH, OW, m) of xt's windows
        c, m = t.shape[0], t.shape[3]
        v = cols.reshape(-1)[:c * kh * kw * oh * ow * m].reshape(c, kh, kw, oh, ow, m)
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    for y in range(oh):
                        for x in range(ow):
                            for n in range(m):
                                v[ch, i, j, y, x, n] = t[ch, y * s + i, x * s + j, n]
        return v.reshape(c * kh * kw, oh * ow * m)

    @jit
    def from_nchw(gy, buf):  # (O, OH·OW·m) <- gy (m, O, OH, OW)
        m, o, oh, ow = gy.shape
        g = buf.reshape(-1)[:o * oh * ow * m].reshape(o, oh, ow, m)
        for n in range(m):
            for ch in range(o):
                for y in range(oh):
                    for x in range(ow):
                        g[ch, y, x, n] = gy[n, ch, y, x]
        return g.reshape(o, oh * ow * m)

    @jit
    def forward(x, w2d, kh, kw, s, p, xt, cols, ybuf, out):
        m, o, oh, ow = out.shape
        k, n = w2d.shape[1], oh * ow * m
        a = columns(pad_transpose(x, p, xt), kh, kw, s, oh, ow, cols)
        y = ybuf.reshape(-1)[:o * n]
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, o, n, k, one, w2d.ctypes.data, k, a.ctypes.data, n,
             zero, y.ctypes.data, n)
        y4 = y.reshape(o, oh, ow, m)
        for i in range(m):
            for ch in range(o):
                for r in range(oh):
                    for q in range(ow):
                        out[i, ch, r, q] = y4[ch, r, q, i]

    @jit
    def weight_gradient(gy, x, kh, kw, s, p, xt, cols, gbuf, target):
        m, o, oh, ow = gy.shape
        k, n = target.shape[1], oh * ow * m
        a = columns(pad_transpose(x, p, xt), kh, kw, s, oh, ow, cols)
        g = from_nchw(gy, gbuf)  # target = g @ colsᵀ: colsᵀ is the transposed (n, k) view
        gemm(ROW_MAJOR, NO_TRANS, TRANS, o, k, n, one, g.ctypes.data, n, a.ctypes.data, n,
             zero, target.ctypes.data, k)

    @jit
    def input_gradient(gy, w, kh, kw, s, p, gbuf, cols, xt, out):
        m, o, oh, ow = gy.shape
        c, h, wd = out.shape[1], out.shape[2], out.shape[3]
        k, n = c * kh * kw, oh * ow * m
        g = from_nchw(gy, gbuf)  # dcols = w2dᵀ @ g: w2dᵀ is the transposed (k, o) view
        dcols = cols.reshape(-1)[:k * n]
        gemm(ROW_MAJOR, TRANS, NO_TRANS, k, n, o, one, w.ctypes.data, k, g.ctypes.data, n,
             zero, dcols.ctypes.data, n)
        dxt = xt.reshape(-1)[:c * h * wd * m].reshape(c, h, wd, m)
        col2im_batch_inner(dcols.reshape(c, kh, kw, oh, ow, m), s, p, dxt, np.zeros(1, out.dtype))
        for i in range(m):
            for ch in range(c):
                for y in range(h):
                    for q in range(wd):
                        out[i, ch, y, q] = dxt[ch, y, q, i]
    @jit
    def pad(x, p, xpad):  # (m, C, H+2p, W+2p) <- x, border zero (x itself where p == 0)
        if p == 0:
            return x
        m, c, h, w = x.shape
        t = xpad.reshape(-1)[:m * c * (h + 2 * p) * (w + 2 * p)].reshape(m, c, h + 2 * p, w + 2 * p)
        t[:, :, :p] = zero
        t[:, :, p + h:] = zero
        t[:, :, p:p + h, :p] = zero
        t[:, :, p:p + h, p + w:] = zero
        t[:, :, p:p + h, p:p + w] = x
        return t

    @jit
    def sample_columns(t, kh, kw, s, oh, ow, cols):  # cols (C, KH, KW, m, OH, OW) of t's windows
        m, c = t.shape[0], t.shape[1]
        v = cols.reshape(-1)[:c * kh * kw * m * oh * ow].reshape(c, kh, kw, m, oh, ow)
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    for n in range(m):
                        for y in range(oh):
                            if s == 1:  # a contiguous run LLVM copies by vectors
                                src = t[n, ch, y + i, j:j + ow]
                                dst = v[ch, i, j, n, y]
                                for x in range(ow):
                                    dst[x] = src[x]
                            else:
                                for x in range(ow):
                                    v[ch, i, j, n, y, x] = t[n, ch, y * s + i, x * s + j]
        return v.reshape(c * kh * kw, m * oh * ow)

    @jit
    def sample_forward(x, w2d, kh, kw, s, p, xpad, cols, out):  # a GEMM per sample
        m, o, oh, ow = out.shape
        k, px = w2d.shape[1], oh * ow
        a = sample_columns(pad(x, p, xpad), kh, kw, s, oh, ow, cols)
        for n in range(m):
            gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, o, px, k, one, w2d.ctypes.data, k,
                 a[:, n * px:].ctypes.data, m * px, zero, out[n].ctypes.data, px)

    @jit
    def sample_weight_gradient(gy, x, kh, kw, s, p, xpad, cols, per_sample, target):
        m, o, oh, ow = gy.shape
        k, px = target.shape[1], oh * ow
        a = sample_columns(pad(x, p, xpad), kh, kw, s, oh, ow, cols)
        sums = per_sample.reshape(-1)[:m * o * k].reshape(m, o, k)
        for n in range(m):  # gy_n @ cols_nᵀ, then their sum in sample order (numpy's add.reduce)
            gemm(ROW_MAJOR, NO_TRANS, TRANS, o, k, px, one, gy[n].ctypes.data, px,
                 a[:, n * px:].ctypes.data, m * px, zero, sums[n].ctypes.data, k)
        target[...] = sums[0]
        for n in range(1, m):
            for r in range(o):
                for q in range(k):
                    target[r, q] = target[r, q] + sums[n, r, q]
    return {"forward": forward, "weight_gradient": weight_gradient, "input_gradient": input_gradient,
            "sample_forward": sample_forward, "sample_weight_gradient": sample_weight_gradient}


_kernels: dict | None = None
_lock = threading.Lock()


def kernels(*arrays):
    """The chunk kernels for these arrays' dtype, or None where they cannot run: numba or
    numpy's OpenBLAS missing, arrays not C-contiguous numpy arrays of one float dtype."""
    global _kernels
    if not native.usable(*arrays) or gemm_worker.pool() is None:
        return None
    with _lock:
        if _kernels is None:
            _kernels = {np.dtype(np.float32): _compile(gemm_worker._cblas("s"), np.float32(1), np.float32(0)),
                        np.dtype(np.float64): _compile(gemm_worker._cblas("d"), 1.0, 0.0)}
    return _kernels[arrays[0].dtype]
