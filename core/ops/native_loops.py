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
import numpy as np

# error_model "numpy": a division by zero gives inf as numpy's does, with no test in the
# loop (the "python" model raises, and its branch keeps the loop from being vectorized)
jit = numba.njit(nogil=True, cache=True, error_model="numpy")


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
