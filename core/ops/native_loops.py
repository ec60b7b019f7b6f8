"""The compiled loops themselves (numba); imported by ops/native.py on first use, never with
`core`. Each line is one numpy call of the rule the loop replaces, in its order, so the
bits are numpy's (see native.py).

Written for LLVM's vectoriser, which these two rules decide:
- Top-level functions only: numba's disk cache finds a top-level function again in the
  next process, but not a closure (the loops once defined inside a function were compiled
  afresh by every process, and left a new cache file each time).
- Scalars are read out of their array before the loop, and a loop writing the very array it
  reads has its own version (`*_inplace`). Otherwise LLVM cannot prove that the output
  does not overlap the scalars or the input, checks at run time, and falls back to one
  element at a time: ReLU in place on 1.6M float32 took 0.61 ms against 0.19 apart, the
  GELU gradient on 393K 0.79 ms against 0.09."""
import numba
import numba.extending
from llvmlite import ir
import numpy as np

# error_model "numpy": a division by zero gives inf as numpy's does, with no test in the
# loop (the "python" model raises, and its branch keeps the loop from being vectorized)
jit = numba.njit(nogil=True, cache=True, error_model="numpy")
# inlined into its callers in numba's own IR: a block sum called as a function ran at half
# speed (the two rows' sums over 768 rows of 128: 38 µs against 20)
inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")


# ---- optimizer updates (core/ops/optim_ops.py); c: the rule's scalars in the arrays' dtype --

@jit
def sgd_update(p, g, c, decay):  # c: lr, weight decay
    lr, wd = c[0], c[1]
    for i in range(p.size):
        gi = g[i] + p[i] * wd if decay else g[i]
        p[i] = p[i] - gi * lr


@jit
def momentum_update(p, g, v, c, decay):  # c: lr, weight decay, momentum
    lr, wd, mu = c[0], c[1], c[2]
    for i in range(p.size):
        gi = g[i] + p[i] * wd if decay else g[i]
        vi = v[i] * mu
        vi = vi + gi
        v[i] = vi
        p[i] = p[i] - vi * lr


@jit
def nesterov_update(p, g, v, c, decay):  # c: lr, weight decay, momentum
    lr, wd, mu = c[0], c[1], c[2]
    for i in range(p.size):
        gi = g[i] + p[i] * wd if decay else g[i]
        vi = v[i] * mu
        vi = vi + gi
        v[i] = vi
        p[i] = p[i] - (gi + vi * mu) * lr


@jit
def adam_update(p, g, m, v, c, decay):  # c: step size, weight decay, β1, 1-β1, β2, 1-β2, ε
    step, wd, b1, one_b1, b2, one_b2, eps = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    for i in range(p.size):
        gi = g[i] + p[i] * wd if decay else g[i]
        mi = m[i] * b1
        mi = mi + gi * one_b1
        m[i] = mi
        vi = v[i] * b2
        vi = vi + (gi * one_b2) * gi
        v[i] = vi
        p[i] = p[i] - (mi * step) / (np.sqrt(vi) + eps)


# ---- ReLU (core/ops/elementwise.py) ---------------------------------------------------------
# max(x, 0): x where greater or NaN, else +0 (also for x = -0). The gradient g · (y > 0) is
# numpy's g times the mask cast to 1 or 0: g · 0 keeps g's sign (-0) and NaN stays NaN.

@jit
def relu(x, out, c):  # c: 0
    zero = c[0]
    for i in range(x.size):
        v = x[i]
        out[i] = v if (v > zero or v != v) else zero


@jit
def relu_inplace(x, c):
    """+ 0 keeps the value's bits (the -0 it would change never reaches it: max(-0, 0) is
    0 already) but stops LLVM from storing only the zeros through a masked store, which this
    CPU (AMD) runs microcoded: 0.86 ms on 1.6M float32 against 0.12 with the + 0."""
    zero = c[0]
    for i in range(x.size):
        v = x[i]
        x[i] = (v if (v > zero or v != v) else zero) + zero


@jit
def relu_grad(y, g, out, c):  # c: 0, 1
    zero, one = c[0], c[1]
    for i in range(out.size):
        out[i] = g[i] * (one if y[i] > zero else zero)


@jit
def relu_grad_into_y(y, g, c):
    zero, one = c[0], c[1]
    for i in range(y.size):
        y[i] = g[i] * (one if y[i] > zero else zero)


@jit
def relu_grad_into_g(y, g, c):
    zero, one = c[0], c[1]
    for i in range(g.size):
        g[i] = g[i] * (one if y[i] > zero else zero)


# ---- GELU, tanh form (core/ops/sequence.py) --------------------------------------------------

@jit
def gelu_minus_two_u(x, out, c):  # c: GELU_K0, GELU_K1 (sequence.py's _minus_two_u)
    k0, k1 = c[0], c[1]
    for i in range(x.size):
        v = x[i]
        out[i] = ((v * v) * k1 + k0) * v


@jit
def gelu_divide(x, e, c):  # e = exp(-2u) becomes x / (1 + e); c: 1
    one = c[0]
    for i in range(x.size):
        e[i] = x[i] / (e[i] + one)


@jit
def _gelu_tanh_slope(v, y, g, d0, d1, one, half, zero):
    """g · P (1 + x (1 - P) (D0 + D1 x²)), P = y / x (1/2 at x = 0): _gelu_grad's lines."""
    q = y / v
    share = half if v == zero else q
    slope = ((((v * v) * d1 + d0) * v) * (one - share)) + one
    return (share * slope) * g


@jit
def gelu_tanh_grad(x, y, g, out, c):  # c: GELU_D0, GELU_D1, 1, 1/2, 0
    d0, d1, one, half, zero = c[0], c[1], c[2], c[3], c[4]
    for i in range(x.size):
        out[i] = _gelu_tanh_slope(x[i], y[i], g[i], d0, d1, one, half, zero)


@jit
def gelu_tanh_grad_inplace(x, y, g, c):  # the result over y
    d0, d1, one, half, zero = c[0], c[1], c[2], c[3], c[4]
    for i in range(x.size):
        y[i] = _gelu_tanh_slope(x[i], y[i], g[i], d0, d1, one, half, zero)


# ---- bias + ReLU in one pass (core/ops/cpu_fusion.py) -----------------------------------------
# x seen as (A, C, B), b as (C,): out = max(x + b, 0), the sum rounded first as numpy's add
# rounds it, then numpy maximum's rule (NaN kept, -0 to +0).

@jit
def _bias_relu_value(v, zero):
    return v if (v > zero or v != v) else zero


@jit
def bias_relu(x, b, out, c):  # c: 0
    zero = c[0]
    if x.shape[2] == 1:  # (rows, features): the loop runs along the features
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                out[i, j, 0] = _bias_relu_value(x[i, j, 0] + b[j], zero)
        return
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            bj = b[j]
            for k in range(x.shape[2]):
                out[i, j, k] = _bias_relu_value(x[i, j, k] + bj, zero)


@jit
def bias_relu_inplace(x, b, c):
    """bias_relu written out again for out = x: bias_relu(x, b, x, c), even called from a
    compiled wrapper, fails LLVM's overlap check and runs element by element (0.86-0.92 ms
    on (64,32,784) float32 against 0.17 for this loop)."""
    zero = c[0]
    if x.shape[2] == 1:
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                x[i, j, 0] = _bias_relu_value(x[i, j, 0] + b[j], zero)
        return
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            bj = b[j]
            for k in range(x.shape[2]):
                x[i, j, k] = _bias_relu_value(x[i, j, k] + bj, zero)


# ---- max-pool gradient, 2×2 windows at stride 2 (core/ops/conv.py) ---------------------------
# numpy's rule, per window: the first position (row by row) equal to the maximum gets
# 0 + gy·1, every other 0 + gy·0 (so gy = ±inf or NaN leaves NaN there, as numpy's product
# with the 0/1 mask does), and a last row or column no window covers gets 0. The 0/1
# factors are computed, not branched on: which position holds a window's maximum is random,
# and a branch on it, mispredicted about once per window, made a branchy version of this
# loop 4× slower than numpy.

@jit
def max_pool_grad_2x2(x, y, g, out, c):  # (planes, H, W), (planes, OH, OW); c: 0, 1
    zero, one = c[0], c[1]
    oh, ow = y.shape[1], y.shape[2]
    for r in range(x.shape[0]):
        for oy in range(oh):
            x0, x1 = x[r, 2 * oy], x[r, 2 * oy + 1]
            d0, d1 = out[r, 2 * oy], out[r, 2 * oy + 1]
            for ox in range(ow):
                top = y[r, oy, ox]
                gv = g[r, oy, ox]
                a = one if x0[2 * ox] == top else zero
                b = one if x0[2 * ox + 1] == top else zero
                e = one if x1[2 * ox] == top else zero
                f = one if x1[2 * ox + 1] == top else zero
                not_a = one - a
                not_ab = not_a * (one - b)
                d0[2 * ox] = gv * a + zero
                d0[2 * ox + 1] = gv * (b * not_a) + zero
                d1[2 * ox] = gv * (e * not_ab) + zero
                d1[2 * ox + 1] = gv * (f * (not_ab * (one - e))) + zero
            for col in range(2 * ow, x.shape[2]):  # an odd width: the last column
                d0[col] = zero
                d1[col] = zero
        for row in range(2 * oh, x.shape[1]):  # an odd height: the last row
            for col in range(x.shape[2]):
                out[r, row, col] = zero


# ---- col2im, batch-innermost (core/ops/conv.py) ------------------------------------------------
# numpy's rule zeroes the padded image and adds the columns kernel offset by kernel offset,
# row by row of offsets; each element so gets 0 + its contributions in that order. Here each
# element of the image (without its border, which is dropped anyway) is summed in the same
# order in one pass, along the batch (innermost, contiguous).

@jit
def col2im_batch_inner(blocks, s, p, dxt, c):  # blocks (C,KH,KW,OH,OW,m), dxt (C,H,W,m); c: 0
    zero = c[0]
    kh, kw, oh, ow = blocks.shape[1], blocks.shape[2], blocks.shape[3], blocks.shape[4]
    m = blocks.shape[5]
    for ch in range(dxt.shape[0]):
        for y in range(dxt.shape[1]):
            for x in range(dxt.shape[2]):
                row = dxt[ch, y, x]
                for k in range(m):
                    row[k] = zero
                for i in range(kh):
                    t = y + p - i
                    if t < 0 or t % s != 0 or t // s >= oh:
                        continue
                    for j in range(kw):
                        u = x + p - j
                        if u < 0 or u % s != 0 or u // s >= ow:
                            continue
                        src = blocks[ch, i, j, t // s, u // s]
                        for k in range(m):
                            row[k] = row[k] + src[k]


# ---- max pool, 2×2 windows at stride 2 (core/ops/conv.py) -------------------------------------
# numpy's rule: the first position, then numpy's maximum with each next position in turn,
# which keeps NaN and on a tie (+0 against -0 too) takes the newer value.

@jit
def max_pool_2x2(x, out):  # (planes, H, W) -> (planes, OH, OW)
    oh, ow = out.shape[1], out.shape[2]
    for r in range(x.shape[0]):
        for oy in range(oh):
            x0, x1 = x[r, 2 * oy], x[r, 2 * oy + 1]
            row = out[r, oy]
            for ox in range(ow):
                m = x0[2 * ox]
                for v in (x0[2 * ox + 1], x1[2 * ox], x1[2 * ox + 1]):
                    m = m if (m > v or m != m) else v
                row[ox] = m


# ---- transposition of two neighbouring axes (core/ops/shape_ops.py) --------------------------

@jit
def swap_axes(x, out):  # x (A, B, C, D) -> out (A, C, B, D): rows of D copied whole
    for a in range(x.shape[0]):
        for b in range(x.shape[1]):
            for c in range(x.shape[2]):
                src, dst = x[a, b, c], out[a, c, b]
                for d in range(x.shape[3]):
                    dst[d] = src[d]


# ---- layer norm over the last axis (core/ops/norm_ops.py) ----------------------------------
# Row sums in numpy's own order: add.reduce along a contiguous row is a pairwise sum, eight
# running sums over blocks of at most 128, combined in a fixed tree, and the halves of a
# longer row summed apart (numpy's pairwise_sum), all after a starting 0. LLVM does not turn
# the eight sums into one vector, so each add waits for the last one of its sum: the loops
# sum two rows at once, whose adds interleave (768 rows of 128: 37 µs one at a time, 21 two
# at a time; numpy's einsum 12-16).

@inline
def _block_sums(a, b, lo, n):  # one block of at most 128 of rows a and b
    if n < 8:
        sa, sb = a[lo], b[lo]
        for i in range(lo + 1, lo + n):
            sa += a[i]
            sb += b[i]
        return sa, sb
    a0, a1, a2, a3, a4, a5, a6, a7 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3], a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    b0, b1, b2, b3, b4, b5, b6, b7 = b[lo], b[lo + 1], b[lo + 2], b[lo + 3], b[lo + 4], b[lo + 5], b[lo + 6], b[lo + 7]
    stop = lo + n - n % 8
    for i in range(lo + 8, stop, 8):
        a0 += a[i]
        a1 += a[i + 1]
        a2 += a[i + 2]
        a3 += a[i + 3]
        a4 += a[i + 4]
        a5 += a[i + 5]
        a6 += a[i + 6]
        a7 += a[i + 7]
        b0 += b[i]
        b1 += b[i + 1]
        b2 += b[i + 2]
        b3 += b[i + 3]
        b4 += b[i + 4]
        b5 += b[i + 5]
        b6 += b[i + 6]
        b7 += b[i + 7]
    sa = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    sb = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7))
    for i in range(stop, lo + n):
        sa += a[i]
        sb += b[i]
    return sa, sb


@inline
def _pairwise_sums(a, b, tree, partial, zero):
    """Σ a and Σ b in numpy's order, after its starting 0. tree (native.pairwise_tree): the
    blocks' (start, length) and (-1, 0) for "add the last two sums", in postfix order;
    partial (len(tree), 2): room for the sums."""
    if tree.shape[0] == 1:
        sa, sb = _block_sums(a, b, tree[0, 0], tree[0, 1])
        return zero + sa, zero + sb
    top = 0
    for k in range(tree.shape[0]):
        if tree[k, 0] >= 0:
            partial[top, 0], partial[top, 1] = _block_sums(a, b, tree[k, 0], tree[k, 1])
            top += 1
        else:
            partial[top - 2, 0] = partial[top - 2, 0] + partial[top - 1, 0]
            partial[top - 2, 1] = partial[top - 2, 1] + partial[top - 1, 1]
            top -= 1
    return zero + partial[0, 0], zero + partial[0, 1]


@inline
def _centre(x, mean, d, sq):  # d = x - mean, sq = d · d
    for i in range(x.size):
        v = x[i] - mean
        d[i] = v
        sq[i] = v * v


@inline
def _normalize_rows(x, r, s, d, sq, c, tree, partial):
    """For rows r and s of x (s may be r again): d[k] = the row - its mean, sq[k] = d[k]
    squared; returns the two rstd (norm_ops.py's _normalized)."""
    width, inv_width, eps, one, zero = c[0], c[1], c[2], c[3], c[4]
    sum_r, sum_s = _pairwise_sums(x[r], x[s], tree, partial, zero)
    mean_r, mean_s = sum_r / width, sum_s / width
    _centre(x[r], mean_r, d[0], sq[0])
    _centre(x[s], mean_s, d[1], sq[1])
    var_r, var_s = _pairwise_sums(sq[0], sq[1], tree, partial, zero)
    return one / np.sqrt(var_r * inv_width + eps), one / np.sqrt(var_s * inv_width + eps)


@inline
def _row_pairs(x):  # rows (r, r + 1), and (last, last) for an odd count
    rows = x.shape[0]
    return [(r, min(r + 1, rows - 1)) for r in range(0, rows, 2)]


@jit
def layer_norm(x, gamma, beta, out, c, tree):  # x, out (rows, width); c: width, 1/width, eps, 1, 0
    n = x.shape[1]
    d, sq, partial = np.empty((2, n), x.dtype), np.empty((2, n), x.dtype), np.empty((tree.shape[0], 2), x.dtype)
    for r, s in _row_pairs(x):
        rstd_r, rstd_s = _normalize_rows(x, r, s, d, sq, c, tree, partial)
        for i in range(n):
            out[r, i] = ((d[0, i] * rstd_r) * gamma[i]) + beta[i]
        for i in range(n):
            out[s, i] = ((d[1, i] * rstd_s) * gamma[i]) + beta[i]


@inline
def _gradient_row(g, r, xhat, h, hx, k, rstd, gamma):
    """xhat[k] = d · rstd, h[k] = g[r] · gamma, hx[k] = h · xhat (over xhat's d)."""
    for i in range(g.shape[1]):
        xh = xhat[k, i] * rstd
        xhat[k, i] = xh
        hi = g[r, i] * gamma[i]
        h[k, i] = hi
        hx[k, i] = hi * xh


@jit
def layer_norm_grad(g, x, gamma, out, c, tree):  # c: width, 1/width, eps, 1, 0
    n = x.shape[1]
    width, inv_width, zero = c[0], c[1], c[4]
    xhat, h, hx = np.empty((2, n), x.dtype), np.empty((2, n), x.dtype), np.empty((2, n), x.dtype)
    partial = np.empty((tree.shape[0], 2), x.dtype)
    for r, s in _row_pairs(x):
        rstd_r, rstd_s = _normalize_rows(x, r, s, xhat, hx, c, tree, partial)
        _gradient_row(g, r, xhat, h, hx, 0, rstd_r, gamma)
        _gradient_row(g, s, xhat, h, hx, 1, rstd_s, gamma)
        proj_r, proj_s = _pairwise_sums(hx[0], hx[1], tree, partial, zero)
        sum_r, sum_s = _pairwise_sums(h[0], h[1], tree, partial, zero)
        proj_r, proj_s, mean_r, mean_s = proj_r * inv_width, proj_s * inv_width, sum_r / width, sum_s / width
        for i in range(n):
            out[r, i] = ((h[0, i] - mean_r) - xhat[0, i] * proj_r) * rstd_r
        for i in range(n):
            out[s, i] = ((h[1, i] - mean_s) - xhat[1, i] * proj_s) * rstd_s


@jit
def layer_norm_gamma_grad(g, x, out, c, tree):  # Σ over rows of g · xhat, row after row
    n = x.shape[1]
    d, sq, partial = np.empty((2, n), x.dtype), np.empty((2, n), x.dtype), np.empty((tree.shape[0], 2), x.dtype)
    for i in range(n):
        out[i] = c[4]
    for r, s in _row_pairs(x):
        rstd_r, rstd_s = _normalize_rows(x, r, s, d, sq, c, tree, partial)
        for i in range(n):
            out[i] = out[i] + g[r, i] * (d[0, i] * rstd_r)
        if s != r:
            for i in range(n):
                out[i] = out[i] + g[s, i] * (d[1, i] * rstd_s)


# ---- softmax over the last axis (core/ops/nn.py) ----------------------------------------------

@inline
def _larger(m, v):
    """A NaN is passed over: it makes its row's sum NaN, so the whole row comes out NaN as
    numpy's does, whichever largest value the shift took."""
    return v if v > m else m


@jit
def softmax_shift(x, out):  # rows: out = x - the row's largest
    n = x.shape[1]
    quads = n - n % 4
    for r in range(x.shape[0]):
        m0 = m1 = m2 = m3 = x[r, 0]
        for i in range(0, quads, 4):  # four running maxima: the order does not change a max
            m0 = _larger(m0, x[r, i])
            m1 = _larger(m1, x[r, i + 1])
            m2 = _larger(m2, x[r, i + 2])
            m3 = _larger(m3, x[r, i + 3])
        for i in range(quads, n):
            m0 = _larger(m0, x[r, i])
        m = _larger(_larger(m0, m1), _larger(m2, m3))
        for i in range(n):
            out[r, i] = x[r, i] - m


@jit
def softmax_divide(e, c, tree):  # rows of e = exp(x - max) divided by their sums; c: 0
    partial = np.empty((tree.shape[0], 2), e.dtype)
    for r, s in _row_pairs(e):
        sum_r, sum_s = _pairwise_sums(e[r], e[s], tree, partial, c[0])
        for i in range(e.shape[1]):
            e[r, i] = e[r, i] / sum_r
        if s != r:
            for i in range(e.shape[1]):
                e[s, i] = e[s, i] / sum_s


@jit
def softmax_grad(y, g, out, c, tree):  # rows: out = y (g - Σ g y); out may be g; c: 0
    n = y.shape[1]
    gy = np.empty((2, n), y.dtype)
    partial = np.empty((tree.shape[0], 2), y.dtype)
    for r, s in _row_pairs(y):
        for i in range(n):
            gy[0, i] = g[r, i] * y[r, i]
            gy[1, i] = g[s, i] * y[s, i]
        dot_r, dot_s = _pairwise_sums(gy[0], gy[1], tree, partial, c[0])
        for i in range(n):
            out[r, i] = (g[r, i] - dot_r) * y[r, i]
        if s != r:
            for i in range(n):
                out[s, i] = (g[s, i] - dot_s) * y[s, i]


# ---- where with a mask over the trailing axes and a scalar (core/ops/sequence.py) -------------
# attention's causal mask: where(mask (T, T), scores, -inf) and its gradient where(mask, g, 0)

@jit
def where_scalar(cond, a, b, out):  # out[r, i] = a[r, i] if cond[i] else b[0]; rows of cond's size
    fill = b[0]
    for r in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[r, i] = a[r, i] if cond[i] else fill


@jit
def where_scalar_inplace(cond, b, out):
    """a is out. Each row is selected into a scratch row, then copied back: a select stored
    over its own input becomes a masked store (microcoded on this AMD CPU), and the copy
    does not (120-190 µs → 70-80 on attention's scores)."""
    fill = b[0]
    row = np.empty(out.shape[1], out.dtype)
    for r in range(out.shape[0]):
        for i in range(out.shape[1]):
            row[i] = out[r, i] if cond[i] else fill
        for i in range(out.shape[1]):
            out[r, i] = row[i]


# ---- waiting for another thread without sleeping (core/ops/cpu.py's crew) --------------------

@numba.extending.intrinsic
def _acquire_load(typingctx, counters, k):
    """counters[k], read from memory every time (an atomic load: LLVM may not keep it in a
    register across the loop that waits for another thread to change it)."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(array.data, [args[1]]), "acquire", 8)
    return counters.dtype(counters, k), codegen


@numba.extending.intrinsic
def _pause(typingctx):
    """x86's spin-wait hint (numba's JIT takes no inline assembly; LLVM's intrinsic it takes)."""
    def codegen(context, builder, signature, args):
        pause = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
        builder.call(pause, [])
        return context.get_dummy_value()
    return numba.types.void(), codegen


@jit
def wait_at_least(counters, k, value, spins):  # counters: int64; True once counters[k] >= value
    for _ in range(spins):
        if _acquire_load(counters, k) >= value:
            return True
        _pause()
    return _acquire_load(counters, k) >= value
