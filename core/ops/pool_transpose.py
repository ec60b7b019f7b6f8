"""The adjoint of max-pooling's gradient, so gradients of gradients flow through max_pool2d:
`max_pool2d_grad` scatters each window's gradient to the window's (first) maximum; this op
gathers from that same position. The two are each other's transposes (linear in g)."""
from __future__ import annotations

from .base import OpDef, make, register, scratch


def _padded(x, p, buf, value):
    if p == 0:
        return x
    buf.fill(value)
    buf[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
    return buf


def _select_ws(shapes, attrs, out_shape, dtype):
    (n, c, h, w), p = shapes[0], attrs["padding"]
    padded = {"xpad": ((n, c, h + 2 * p, w + 2 * p), dtype),
              "gpad": ((n, c, h + 2 * p, w + 2 * p), dtype)} if p else {}
    return {**padded, "taken": (tuple(out_shape), bool), "hit": (tuple(out_shape), bool),
            "part": (tuple(out_shape), dtype)}


def _select(xp, ins, attrs, out, ws=None):
    """out[window] = g at the window's first maximum of x (the tie rule max_pool2d_grad uses)."""
    x, y, g = ins
    ws = ws or scratch(_select_ws, xp, ins, attrs, out)
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    xpad = _padded(x, p, ws.get("xpad"), -xp.inf)
    gpad = _padded(g, p, ws.get("gpad"), 0)
    taken, hit, part = ws["taken"], ws["hit"], ws["part"]
    oh, ow = y.shape[2], y.shape[3]
    out.fill(0)
    taken.fill(False)
    for i in range(k):
        for j in range(k):
            window = (slice(None), slice(None), slice(i, i + s * oh, s), slice(j, j + s * ow, s))
            xp.equal(xpad[window], y, out=hit)
            xp.greater(hit, taken, out=hit)  # a maximum not yet taken by an earlier offset
            xp.logical_or(taken, hit, out=taken)
            xp.multiply(gpad[window], hit, out=part)
            out += part


def _select_grad(n, g):
    x, y, _ = n.inputs
    return [None, None, make("max_pool2d_grad", x, y, g, **n.attrs)]


register(OpDef("max_pool2d_grad_transpose", "opaque", lambda s, a: tuple(s[1]), _select,
               _select_grad, workspace=_select_ws,
               doc="gather g at each max-pool window's maximum (the transpose of max_pool2d_grad)"))
