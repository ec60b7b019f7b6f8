"""Hand-written numpy training steps: the reference Loom is measured against."""
import numpy as np


def mlp_step(params, x, y, input_grad=False):
    """Forward + backward of relu MLP with softmax cross-entropy; returns loss and grads
    (and the gradient at the input, for a network this MLP is the head of)."""
    acts, pre = [x], []
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        z = h @ w
        z += b
        pre.append(z)
        h = np.maximum(z, 0) if i < n_layers - 1 else z
        acts.append(h)
    logits = acts[-1]
    shifted = logits - logits.max(1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(1, keepdims=True)
    batch = len(y)
    loss = -np.log(p[np.arange(batch), y]).mean()
    g = p
    g[np.arange(batch), y] -= 1
    g /= batch
    grads = [None] * len(params)
    for i in reversed(range(n_layers)):
        grads[2 * i] = acts[i].T @ g
        grads[2 * i + 1] = g.sum(0)
        if i:
            g = g @ params[2 * i].T
            g *= pre[i - 1] > 0
    if input_grad:
        return loss, grads, g @ params[0].T
    return loss, grads


def mse_mlp_step(params, x, t):
    """The tiny regression MLP (relu hidden layers, MSE loss)."""
    acts, pre, h = [x], [], x
    n_layers = len(params) // 2
    for i in range(n_layers):
        z = h @ params[2 * i] + params[2 * i + 1]
        pre.append(z)
        h = np.maximum(z, 0) if i < n_layers - 1 else z
        acts.append(h)
    diff = acts[-1] - t
    loss = (diff * diff).mean()
    g = 2 * diff / diff.size
    grads = [None] * len(params)
    for i in reversed(range(n_layers)):
        grads[2 * i] = acts[i].T @ g
        grads[2 * i + 1] = g.sum(0)
        if i:
            g = (g @ params[2 * i].T) * (pre[i - 1] > 0)
    return loss, grads


def _im2col(x, k, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    n, c, h, w = x.shape
    oh, ow = h - k + 1, w - k + 1
    s = x.strides
    cols = np.lib.stride_tricks.as_strided(x, (n, c, k, k, oh, ow), (s[0], s[1], s[2], s[3], s[2], s[3]))
    return cols.transpose(1, 2, 3, 0, 4, 5).reshape(c * k * k, n * oh * ow), (n, oh, ow), x.shape


def _conv(x, w, pad):
    cols, (n, oh, ow), _ = _im2col(x, w.shape[2], pad)
    y = w.reshape(w.shape[0], -1) @ cols
    return y.reshape(w.shape[0], n, oh, ow).transpose(1, 0, 2, 3), cols


def _conv_back(g, x, w, cols, pad):
    o, c, k, _ = w.shape
    g2 = g.transpose(1, 0, 2, 3).reshape(o, -1)
    gw = (g2 @ cols.T).reshape(w.shape)
    dcols = (w.reshape(o, -1).T @ g2).reshape(c, k, k, x.shape[0], g.shape[2], g.shape[3])
    dx = np.zeros((x.shape[0], c, x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), x.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + g.shape[2], j:j + g.shape[3]] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return (dx[:, :, pad:-pad, pad:-pad] if pad else dx), gw


def _pool(x):
    """2×2 max-pool (an odd last row or column is dropped, as floor-mode pooling does)."""
    n, c, h, w = x.shape
    r = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    y = r.max(axis=(3, 5))
    mask = r == y[:, :, :, None, :, None]
    return y, (mask, (h, w))


def _pool_back(g, saved):
    mask, (h, w) = saved
    dx = (mask * g[:, :, :, None, :, None]).reshape(mask.shape[0], mask.shape[1], mask.shape[2] * 2, -1)
    if dx.shape[2:] != (h, w):
        dx = np.pad(dx, ((0, 0), (0, 0), (0, h - dx.shape[2]), (0, w - dx.shape[3])))
    return dx


def cnn_step(params, x, y):
    k1, c1, k2, c2, *dense = params
    z1, cols1 = _conv(x, k1, 2)
    z1 += c1
    a1 = np.maximum(z1, 0)
    p1, m1 = _pool(a1)
    z2, cols2 = _conv(p1, k2, 0)
    z2 += c2
    a2 = np.maximum(z2, 0)
    p2, m2 = _pool(a2)
    flat = p2.reshape(len(x), -1)
    loss, dgrads, g = mlp_step(dense, flat, y, input_grad=True)
    g = _pool_back(g.reshape(p2.shape), m2) * (z2 > 0)
    dp1, gk2 = _conv_back(g, p1, k2, cols2, 0)
    gc2 = g.sum((0, 2, 3)).reshape(c2.shape)
    g = _pool_back(dp1, m1) * (z1 > 0)
    _, gk1 = _conv_back(g, x, k1, cols1, 2)
    return loss, [gk1, g.sum((0, 2, 3)).reshape(c1.shape), gk2, gc2, *dgrads]


def conv_stack_step(params, x, y, pads):
    """Layers of conv (padding `pads[i]`) + bias + ReLU + 2×2 max-pool, then the MLP head
    (mlp_step) on the flattened features: the wide CNN's step."""
    convs, dense = params[:2 * len(pads)], params[2 * len(pads):]
    h, saved = x, []
    for i, pad in enumerate(pads):
        z, cols = _conv(h, convs[2 * i], pad)
        z += convs[2 * i + 1]
        pooled, mask = _pool(np.maximum(z, 0))
        saved.append((h, z, cols, mask))
        h = pooled
    loss, dgrads, g = mlp_step(dense, h.reshape(len(x), -1), y, input_grad=True)
    g, grads = g.reshape(h.shape), []
    for i in reversed(range(len(pads))):
        h_in, z, cols, mask = saved[i]
        g = _pool_back(g, mask) * (z > 0)
        gc = g.sum((0, 2, 3)).reshape(convs[2 * i + 1].shape)
        g, gk = _conv_back(g, h_in, convs[2 * i], cols, pads[i])
        grads = [gk, gc] + grads
    return loss, grads + dgrads
