"""Optimizer updates as ops, so the training step applies them inside the compiled schedule:
each weight gradient is consumed by its update as soon as it exists and its buffer is free
for the rest of the backward pass (otherwise every gradient is live when the step ends).

An update overwrites its parameter and state inputs in place (`mutates`): the compiler
orders it after every other reader of those arrays. Inputs: (param, grad, loss, hyper,
*state); `hyper[0]` is the step size for this step (fed by the trainer, so schedules and
Adam's bias correction need no recompilation). A non-finite loss skips the update, so a
step that blew up leaves the parameters as they were for the error report."""
from __future__ import annotations

import math

import numpy as np

from . import native
from .base import OpDef, gradient_not_implemented, register, scratch

SLOTS = {"sgd_update": (), "momentum_update": ("velocity",), "nesterov_update": ("velocity",),
         "adam_update": ("m", "v")}


CHUNK = 1 << 14  # elements per pass: the update is elementwise, so it runs chunk by chunk


def _workspace_for(name):
    """Chunk-sized scratch arrays (what numpy would allocate as parameter-sized temporaries):
    "tmp2" always, "tmp" where the rule needs a second one (weight decay's g + wd·p, Adam)."""
    def workspace(shapes, attrs, out_shape, dtype):
        n = min(CHUNK, int(math.prod(shapes[0])) or 1)
        ws = {"tmp2": ((n,), dtype)}
        if attrs.get("weight_decay") or name == "adam_update":
            ws["tmp"] = ((n,), dtype)
        return ws
    return workspace


def _chunked(name, rule, workspace):
    """Apply `rule(xp, (p, g, *state), attrs, step, tmp, tmp2)` to matching flat chunks of the
    parameter, gradient and state arrays (all contiguous: parameters and state are whole
    arrays, gradients arena buffers); skip the whole update on a non-finite loss. Host
    arrays take the rule's compiled loop instead (ops/native.py: the same bits)."""
    def compute(xp, ins, attrs, out, ws=None):
        p, g, loss, hyper, *state = ins
        if not math.isfinite(float(loss)):
            return
        step = hyper[0]
        if native.usable(p, g, *state):
            scalars = np.array(CONSTANTS[name](attrs, step), dtype=p.dtype)
            native.kernel(name)(*(a.reshape(-1) for a in (p, g, *state)), scalars,
                                bool(attrs.get("weight_decay")))
            return
        if not all(a.flags.c_contiguous for a in (p, g, *state)):  # flat views impossible
            return rule(xp, [p, g, *state], attrs, step, xp.empty_like(p), xp.empty_like(p))
        ws = ws or scratch(workspace, xp, ins, attrs, out)
        arrays = [a.reshape(-1) for a in (p, g, *state)]
        for start in range(0, arrays[0].size, CHUNK):
            part = [a[start:start + CHUNK] for a in arrays]
            n = len(part[0])
            rule(xp, part, attrs, step, ws.get("tmp", ws["tmp2"])[:n], ws["tmp2"][:n])
    return compute


def _effective_grad(xp, p, g, attrs, tmp):
    """g + weight_decay * p (L2 regularisation folded into the gradient)."""
    wd = attrs.get("weight_decay", 0.0)
    if not wd:
        return g
    xp.multiply(p, wd, out=tmp)
    return xp.add(g, tmp, out=tmp)


def _sgd(xp, arrays, attrs, lr, tmp, tmp2):
    p, g = arrays
    g = _effective_grad(xp, p, g, attrs, tmp)
    p -= xp.multiply(g, lr, out=tmp2)  # p -= lr * g


def _momentum(xp, arrays, attrs, lr, tmp, tmp2):
    p, g, v = arrays
    g = _effective_grad(xp, p, g, attrs, tmp)
    v *= attrs["momentum"]
    v += g
    p -= xp.multiply(v, lr, out=tmp2)  # p -= lr * v


def _nesterov(xp, arrays, attrs, lr, tmp, tmp2):
    p, g, v = arrays
    g = _effective_grad(xp, p, g, attrs, tmp)
    v *= attrs["momentum"]
    v += g
    look = xp.multiply(v, attrs["momentum"], out=tmp2)
    xp.add(g, look, out=look)
    p -= xp.multiply(look, lr, out=look)  # p -= lr * (g + momentum * v)


def _adam(xp, arrays, attrs, step_size, tmp, tmp2):
    p, g, m, v = arrays
    g = _effective_grad(xp, p, g, attrs, tmp)
    b1, b2 = attrs["beta1"], attrs["beta2"]
    m *= b1
    m += xp.multiply(g, 1 - b1, out=tmp2)
    v *= b2
    square = xp.multiply(g, 1 - b2, out=tmp2)
    v += xp.multiply(square, g, out=square)
    denom = xp.sqrt(v, out=tmp2)
    denom += attrs["eps"]
    step = xp.multiply(m, step_size, out=tmp)  # step_size = lr·√(1-β2ᵗ)/(1-β1ᵗ)
    p -= xp.divide(step, denom, out=step)


# Each rule's scalars for its compiled loop, in the order native.py reads them (a Python
# float each, cast to the parameter's dtype as numpy casts it).
CONSTANTS = {
    "sgd_update": lambda a, step: (step, a.get("weight_decay", 0.0)),
    "momentum_update": lambda a, step: (step, a.get("weight_decay", 0.0), a["momentum"]),
    "nesterov_update": lambda a, step: (step, a.get("weight_decay", 0.0), a["momentum"]),
    "adam_update": lambda a, step: (step, a.get("weight_decay", 0.0), a["beta1"], 1 - a["beta1"],
                                    a["beta2"], 1 - a["beta2"], a["eps"]),
}


def _shape(shapes, attrs):
    return ()


def _register(name, rule, doc):
    n_state = len(SLOTS[name])
    workspace = _workspace_for(name)
    register(OpDef(name, "opaque", _shape, _chunked(name, rule, workspace),
                   gradient_not_implemented("an optimizer step is not differentiated"),
                   dtype=lambda d, a: d[0], workspace=workspace,  # the parameter's dtype
                   mutates=(0, *range(4, 4 + n_state)), doc=doc))


_register("sgd_update", _sgd, "p -= lr · (g + wd·p), in place")
_register("momentum_update", _momentum, "v = μv + g; p -= lr · v, in place")
_register("nesterov_update", _nesterov, "v = μv + g; p -= lr · (g + μv), in place")
_register("adam_update", _adam, "Adam moments and step, in place (lr bias-corrected by the caller)")
