"""Optimizer updates (core/ops/optim_ops.py) as one kernel each, in place on the parameter
and its state. The kernel reads the loss and the step size (`hyper[0]`) on the device and
leaves everything untouched when the loss is not finite, so a step never waits for the host
(and can be captured as a CUDA graph). Each update is the numpy rule's sequence of roundings:
the constants (momentum, betas, eps, weight decay) are python floats baked into the source as
the parameter's dtype, as numpy's weak scalars are."""
from __future__ import annotations

from string import Template

import numpy as np

from ..csrc import ctype, index_type, literal, prelude
from ..launch import blocks_for, index_scalar
from .common import all_float, fallback, kernel

UPDATE = Template("""$prelude
typedef $loss_t L;
typedef $hyper_t H;
extern "C" __global__ void loom_update(T* p, const T* g, const L* loss, const H* hyper$state,
                                       IDX n) {
  const double lv = (double)loss[0];
  if (!(lv - lv == 0.0)) return;  // inf - inf and NaN - NaN are NaN: a non-finite loss skips
  const T lr = (T)hyper[0];
  for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (IDX)gridDim.x * blockDim.x) {
    const T pi = p[i];
    T gi = g[i];
$decay
$rule
  }
}
""")

RULES = {
    "sgd_update": ((), """    p[i] = pi - gi * lr;"""),
    "momentum_update": (("v",), """    const T vi = v[i] * MU + gi;
    v[i] = vi;
    p[i] = pi - vi * lr;"""),
    "nesterov_update": (("v",), """    const T vi = v[i] * MU + gi;
    v[i] = vi;
    p[i] = pi - (gi + vi * MU) * lr;"""),
    "adam_update": (("m", "v"), """    const T mi = m[i] * B1 + gi * ONE_MINUS_B1;
    const T vi = v[i] * B2 + (gi * ONE_MINUS_B2) * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - (mi * lr) / (SQRT(vi) + EPS);"""),
}


def _constants(op_name, attrs, dtype):
    """#defines of the rule's hyper-parameters as exact literals of the parameter dtype."""
    values = {"MU": attrs.get("momentum", 0.0)}
    if op_name == "adam_update":
        b1, b2 = attrs["beta1"], attrs["beta2"]
        values.update(B1=b1, B2=b2, ONE_MINUS_B1=1 - b1, ONE_MINUS_B2=1 - b2, EPS=attrs["eps"])
    return "\n".join(f"#define {k} {literal(v, dtype)}" for k, v in values.items())


def update_source(op_name, dtype, loss_dtype, hyper_dtype, attrs, index):
    slots, rule = RULES[op_name]
    wd = attrs.get("weight_decay") or 0.0
    decay = f"    gi = gi + pi * {literal(wd, dtype)};  // L2: g + wd·p" if wd else ""
    state = "".join(f", T* {s}" for s in slots)
    source = UPDATE.substitute(prelude=prelude(dtype, index) + _constants(op_name, attrs, dtype),
                               loss_t=ctype(loss_dtype), hyper_t=ctype(hyper_dtype), state=state,
                               decay=decay, rule=rule)
    return "loom_update", source


def _attrs_key(op_name, attrs):
    names = ("momentum", "weight_decay", "beta1", "beta2", "eps")
    return tuple((k, float(attrs[k])) for k in names if k in attrs)


def _update_compute(op_name):
    def compute(xp, ins, attrs, out, ws=None):
        p, g, loss, hyper, *state = ins
        if not (all_float(p.dtype, p, g, *state) and loss.dtype.name in ("float32", "float64")
                and hyper.dtype.name in ("float32", "float64")):
            return fallback(op_name, xp, ins, attrs, out, ws)
        index = index_type(p.size)
        key = (op_name, p.dtype.char, loss.dtype.char, hyper.dtype.char,
               _attrs_key(op_name, attrs), index)
        fn = kernel(key, update_source, op_name, p.dtype, loss.dtype, hyper.dtype, attrs, index)
        fn(blocks_for(p.size), (256,), (p, g, loss, hyper, *state, index_scalar(index)(p.size)))
    return compute


KERNELS = {name: _update_compute(name) for name in RULES}

EXAMPLE_ATTRS = {"momentum": 0.9, "weight_decay": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def examples() -> dict:
    """Every rule in both dtypes; with weight decay in float32."""
    out = {}
    for dtype, decays in (("float32", (0.0, 1e-4)), ("float64", (0.0,))):
        for name in RULES:
            for wd in decays:
                attrs = dict(EXAMPLE_ATTRS, weight_decay=wd)
                source = update_source(name, dtype, np.float32, np.float32, attrs, "int")[1]
                out[f"{name}/{dtype}/wd={wd}"] = source
    return out
