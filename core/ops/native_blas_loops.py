"""Compiled loops that call numpy's own BLAS (cblas ?gemm64_ of the OpenBLAS numpy loaded,
by address): the GEMM workers' loop (ops/gemm_worker.py) and a convolution's chunk as one
call (ops/conv_native.py). Imported on first use, like ops/native_loops.py, whose rules they
follow (top-level functions, cached on disk) and whose spin-wait and col2im they use."""
import numba
import numba.extending
from llvmlite import ir
import numpy as np

from .gemm_worker import (A, A0, A1, B, B0, B1, C, C0, C1, FLOAT32, K, KIND, LDA, LDB, LDC, M, N, NO_TRANS,
                          OUTER0, OUTER1, ROW_MAJOR, TRANS, TRANS_A, TRANS_B)
from .native_loops import _acquire_load, _pause, col2im_batch_inner, jit

# The cblas function's address is an argument, not a global: numba caches a function that
# calls a ctypes function compiled in, never, and compiled afresh each process, LeNet's
# convolution kernels took 18 s.


@numba.extending.intrinsic
def _gemm(typingctx, address, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm64_(RowMajor, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
    ldc) of the OpenBLAS at `address` (ILP64: 64-bit integers; pointers as integers)."""
    args = [numba.types.unliteral(t) for t in (address, trans_a, trans_b, m, n, k, alpha, a, lda, b,
                                                ldb, beta, c, ldc)]

    def codegen(context, builder, signature, values):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = context.get_value_type(signature.args[6])
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, i64, i64, i64, i64,
                                               real, i64, i64])
        function = builder.inttoptr(values[0], fnty.as_pointer())
        as_i64 = lambda v: v if v.type == i64 else builder.sext(v, i64)  # noqa: E731
        ints = [as_i64(v) for v in values[1:6]] + [values[6]] + [as_i64(v) for v in values[7:11]] \
            + [values[11]] + [as_i64(v) for v in values[12:]]
        builder.call(function, [ir.Constant(i32, ROW_MAJOR), builder.trunc(ints[0], i32),
                                builder.trunc(ints[1], i32), *ints[2:]])
        return context.get_dummy_value()
    return numba.types.void(*args), codegen


@jit
def gemm_stack(d, addresses):  # d: gemm_worker's descriptor; addresses: sgemm, dgemm
    for i in range(d[OUTER0]):
        for j in range(d[OUTER1]):
            a = d[A] + i * d[A0] + j * d[A1]
            b = d[B] + i * d[B0] + j * d[B1]
            c = d[C] + i * d[C0] + j * d[C1]
            if d[KIND] == FLOAT32:
                _gemm(addresses[0], d[TRANS_A], d[TRANS_B], d[M], d[N], d[K], np.float32(1.0), a, d[LDA], b,
                      d[LDB], np.float32(0.0), c, d[LDC])
            else:
                _gemm(addresses[1], d[TRANS_A], d[TRANS_B], d[M], d[N], d[K], 1.0, a, d[LDA], b, d[LDB], 0.0,
                      c, d[LDC])


@jit
def serve(d, state, spins, addresses):
    """gemm_worker's loop: each part posted (state[0] counts them, state[1] the finished)
    until `spins` pauses pass without one."""
    idle = 0
    while idle < spins:
        if _acquire_load(state, 0) > state[1]:
            gemm_stack(d, addresses)
            state[1] += 1
            idle = 0
        else:
            _pause()
            idle += 1


# ---- a convolution's chunk as one call (ops/conv_native.py); zo: 0 and 1 in the dtype --------

@jit
def _pad_transpose(x, p, xt, zero):  # xt (C, H+2p, W+2p, m) <- x (m, C, H, W), border zero
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
def _columns(t, kh, kw, s, oh, ow, cols):  # cols (C, KH, KW, OH, OW, m) of xt's windows
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
def _from_nchw(gy, buf):  # (O, OH·OW·m) <- gy (m, O, OH, OW)
    m, o, oh, ow = gy.shape
    g = buf.reshape(-1)[:o * oh * ow * m].reshape(o, oh, ow, m)
    for n in range(m):
        for ch in range(o):
            for y in range(oh):
                for x in range(ow):
                    g[ch, y, x, n] = gy[n, ch, y, x]
    return g.reshape(o, oh * ow * m)

@jit
def conv_forward(x, w2d, kh, kw, s, p, xt, cols, ybuf, out, gemm, zo):
    m, o, oh, ow = out.shape
    k, n = w2d.shape[1], oh * ow * m
    a = _columns(_pad_transpose(x, p, xt, zo[0]), kh, kw, s, oh, ow, cols)
    y = ybuf.reshape(-1)[:o * n]
    _gemm(gemm, NO_TRANS, NO_TRANS, o, n, k, zo[1], w2d.ctypes.data, k, a.ctypes.data, n,
           zo[0], y.ctypes.data, n)
    y4 = y.reshape(o, oh, ow, m)
    for i in range(m):
        for ch in range(o):
            for r in range(oh):
                for q in range(ow):
                    out[i, ch, r, q] = y4[ch, r, q, i]

@jit
def conv_weight_gradient(gy, x, kh, kw, s, p, xt, cols, gbuf, target, gemm, zo):
    m, o, oh, ow = gy.shape
    k, n = target.shape[1], oh * ow * m
    a = _columns(_pad_transpose(x, p, xt, zo[0]), kh, kw, s, oh, ow, cols)
    g = _from_nchw(gy, gbuf)  # target = g @ colsᵀ: colsᵀ is the transposed (n, k) view
    _gemm(gemm, NO_TRANS, TRANS, o, k, n, zo[1], g.ctypes.data, n, a.ctypes.data, n,
           zo[0], target.ctypes.data, k)

@jit
def conv_input_gradient(gy, w, kh, kw, s, p, gbuf, cols, xt, out, gemm, zo):
    m, o, oh, ow = gy.shape
    c, h, wd = out.shape[1], out.shape[2], out.shape[3]
    k, n = c * kh * kw, oh * ow * m
    g = _from_nchw(gy, gbuf)  # dcols = w2dᵀ @ g: w2dᵀ is the transposed (k, o) view
    dcols = cols.reshape(-1)[:k * n]
    _gemm(gemm, TRANS, NO_TRANS, k, n, o, zo[1], w.ctypes.data, k, g.ctypes.data, n,
           zo[0], dcols.ctypes.data, n)
    dxt = xt.reshape(-1)[:c * h * wd * m].reshape(c, h, wd, m)
    col2im_batch_inner(dcols.reshape(c, kh, kw, oh, ow, m), s, p, dxt, zo[:1])
    for i in range(m):
        for ch in range(c):
            for y in range(h):
                for q in range(wd):
                    out[i, ch, y, q] = dxt[ch, y, q, i]
@jit
def _pad(x, p, xpad, zero):  # (m, C, H+2p, W+2p) <- x, border zero (x itself where p == 0)
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
def _sample_columns(t, kh, kw, s, oh, ow, cols):  # cols (C, KH, KW, m, OH, OW) of t's windows
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
def conv_sample_forward(x, w2d, kh, kw, s, p, xpad, cols, out, gemm, zo):  # a GEMM per sample
    m, o, oh, ow = out.shape
    k, px = w2d.shape[1], oh * ow
    a = _sample_columns(_pad(x, p, xpad, zo[0]), kh, kw, s, oh, ow, cols)
    for n in range(m):
        _gemm(gemm, NO_TRANS, NO_TRANS, o, px, k, zo[1], w2d.ctypes.data, k,
             a[:, n * px:].ctypes.data, m * px, zo[0], out[n].ctypes.data, px)

@jit
def conv_sample_weight_gradient(gy, x, kh, kw, s, p, xpad, cols, per_sample, target, gemm, zo):
    m, o, oh, ow = gy.shape
    k, px = target.shape[1], oh * ow
    a = _sample_columns(_pad(x, p, xpad, zo[0]), kh, kw, s, oh, ow, cols)
    sums = per_sample.reshape(-1)[:m * o * k].reshape(m, o, k)
    for n in range(m):  # gy_n @ cols_nᵀ, then their sum in sample order (numpy's add.reduce)
        _gemm(gemm, NO_TRANS, TRANS, o, k, px, zo[1], gy[n].ctypes.data, px,
             a[:, n * px:].ctypes.data, m * px, zo[0], sums[n].ctypes.data, k)
    target[...] = sums[0]
    for n in range(1, m):
        for r in range(o):
            for q in range(k):
                target[r, q] = target[r, q] + sums[n, r, q]
