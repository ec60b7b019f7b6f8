"""CUDA C for a `Program`: a complete, standalone source with one `extern "C"` kernel.

Elementwise programs: one thread per output element in a grid-stride loop. Reductions: one
block per output element (grid-stride over outputs), each thread summing a strided share of
the reduced elements, then a shared-memory tree. Shapes are baked in as constants, so the
index arithmetic divides by constants; size-1 axes are dropped and neighbouring axes that
every load (and the reduction) treats alike are merged first."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from .csrc import block_size, ctype, index_type, literal
from .csrc import math as math_name
from .ir import Const, Load, Op, loads, walk

ELEMENTWISE_BLOCK = 256


@dataclass(frozen=True)
class Dim:
    size: int
    reduced: bool
    full: tuple  # per distinct load view: does the load vary along this dim?


@dataclass(frozen=True)
class Kernel:
    """A generated kernel and how to launch it: grid = min(blocks, max_blocks) blocks."""
    name: str
    source: str
    block: int
    blocks: int


def layout(shape, views, reduced=()) -> list[Dim]:
    """The collapsed iteration space (see the module docstring)."""
    rank = len(shape)
    padded = [(1,) * (rank - len(v)) + tuple(v) for v in views]
    dims: list[Dim] = []
    for d, size in enumerate(shape):
        if size == 1:
            continue
        dim = Dim(size, d in reduced, tuple(p[d] != 1 for p in padded))
        if dims and (dims[-1].reduced, dims[-1].full) == (dim.reduced, dim.full):
            dims[-1] = Dim(dims[-1].size * size, dim.reduced, dim.full)
        else:
            dims.append(dim)
    return dims


def _strides(sizes):
    out, acc = [], 1
    for s in reversed(sizes):
        out.append(acc)
        acc *= s
    return out[::-1]


def _coords(dims, index, prefix, needed):
    """Lines computing the coordinates (of the dims in `needed`) from a linear index."""
    lines, strides = [], _strides([d.size for d in dims])
    for k, (dim, stride) in enumerate(zip(dims, strides)):
        if k not in needed:
            continue
        value = index if stride == 1 else f"({index} / {stride})"
        if k > 0:
            value = f"{value} % {dim.size}"
        lines.append(f"const IDX {prefix}{k} = {value};")
    return lines


def _needed(dims, strides_of):
    """Positions (within dims) some load's offset uses."""
    return {k for strides in strides_of for k in range(len(dims)) if strides[k]}


def _offset(dims, which, coord_names, load_strides):
    """Sum of coordinate * stride over the dims (selected by `which`) where the load varies."""
    terms = [coord_names[k] if load_strides[k] == 1 else f"{coord_names[k]} * {load_strides[k]}"
             for k, dim in enumerate(dims) if which(dim) and load_strides[k]]
    return " + ".join(terms) or "0"


def _load_strides(dims, v):
    """Element strides of load view v along each collapsed dim (its own contiguous layout);
    0 where it is broadcast."""
    strides, acc = [0] * len(dims), 1
    for k in reversed(range(len(dims))):
        if dims[k].full[v]:
            strides[k] = acc
            acc *= dims[k].size
    return strides


def _expressions(expr, offset_of):
    """SSA lines evaluating expr: loads first use the offset expression of their view."""
    def in_load(e):
        return f"in{e.slot}[{offset_of[e.view]}]"

    names, lines = {}, []
    for e in walk(expr):
        if isinstance(e, Const):
            names[e] = literal(e.value, e.dtype)
            continue
        names[e] = f"v{len(lines)}"
        value = in_load(e) if isinstance(e, Load) else _c_op(e, [names[a] for a in e.args])
        lines.append(f"const {ctype(e.dtype)} {names[e]} = {value};")
    return lines, names[expr]


C_OPS = {  # IR op -> C expression of its operands a, b in type t
    "add": "{a} + {b}", "sub": "{a} - {b}", "mul": "{a} * {b}", "div": "{a} / {b}",
    "pow": "{pow}({a}, {b})", "neg": "-{a}", "exp": "{exp}({a})", "log": "{log}({a})",
    "sqrt": "{sqrt}({a})", "tanh": "{tanh}({a})",
    "relu": "(({a} >= ({t})0 || {a} != {a}) ? {a} : ({t})0)",  # numpy's maximum(x, 0): NaN stays
    "gt0": "({t})({a} > 0)", "cast": "({t})({a})", "select": "({a} ? {b} : {c})",
    # numpy's logaddexp(0, a): log1p of the smaller exponential, never exp of a large one
    "softplus": "({a} > ({t})0 ? {a} + {log1p}({exp}(-{a})) : {log1p}({exp}({a})))",
}


def _c_op(e: Op, args):
    a, b, c = (list(args) + [None, None])[:3]
    libm = {name: math_name(name, e.dtype) for name in ("pow", "exp", "log", "log1p", "sqrt", "tanh")}
    return C_OPS[e.name].format(a=a, b=b, c=c, t=ctype(e.dtype), **libm)


def _signature(program):
    ins = [f"const {ctype(d)}* in{k}" for k, d in enumerate(program.in_dtypes)]
    return ", ".join(ins + [f"{ctype(program.out_dtype)}* out"])


def _views(program):
    return list(dict.fromkeys(ld.view for ld in loads(program.expr)))


def _finish(body, program, block, blocks) -> Kernel:
    """Name the kernel after a hash of its text, so equal programs share one compilation."""
    digest = hashlib.sha1(body.encode()).hexdigest()[:16]
    kind = "reduce" if program.is_reduction else "ewise"
    name = f"loom_{kind}_{digest}"
    return Kernel(name, body.replace("KERNEL_NAME", name), block, blocks)


def elementwise_kernel(program) -> Kernel:
    views = _views(program)
    dims = layout(program.shape, views)
    n = math.prod(program.shape)
    offset_of, partial = {}, []
    for v, view in enumerate(views):
        if all(d.full[v] for d in dims):
            offset_of[view] = "i"
        elif not any(d.full[v] for d in dims):
            offset_of[view] = "0"
        else:
            partial.append(_load_strides(dims, v))
            offset_of[view] = _offset(dims, lambda d: True, [f"c{k}" for k in range(len(dims))],
                                      partial[-1])
    coords = _coords(dims, "i", "c", _needed(dims, partial))
    lines, result = _expressions(program.expr, offset_of)
    body = "\n".join([
        f"typedef {index_type(n)} IDX;",
        f'extern "C" __global__ void KERNEL_NAME({_signature(program)}) {{',
        f"    for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < {n};"
        f" i += (IDX)gridDim.x * blockDim.x) {{",
        *("        " + line for line in coords + lines),
        f"        out[i] = {result};",
        "    }",
        "}", ""])
    return _finish(body, program, ELEMENTWISE_BLOCK, -(-n // ELEMENTWISE_BLOCK))


def reduction_kernel(program) -> Kernel:
    views = _views(program)
    dims = layout(program.shape, views, program.reduce_axes)
    kept = [d for d in dims if not d.reduced]
    red = [d for d in dims if d.reduced]
    n_out, n_red = math.prod(d.size for d in kept), math.prod(d.size for d in red)
    block = block_size(n_red)
    acc = "double" if program.out_dtype == "float32" else ctype(program.out_dtype)
    kept_at = [k for k, d in enumerate(dims) if not d.reduced]  # positions within dims
    red_at = [k for k, d in enumerate(dims) if d.reduced]
    names = {k: f"o{kept_at.index(k)}" for k in kept_at} | {k: f"r{red_at.index(k)}" for k in red_at}
    outer, offset_of, strides_of = [], {}, [_load_strides(dims, v) for v in range(len(views))]
    for v, view in enumerate(views):
        base = _offset(dims, lambda d: not d.reduced, names, strides_of[v])
        part = _offset(dims, lambda d: d.reduced, names, strides_of[v])
        outer.append(f"const IDX base{v} = {base};")
        offset_of[view] = f"base{v} + {part}"
    used = _needed(dims, strides_of)
    kept_coords = _coords(kept, "o", "o", {kept_at.index(k) for k in used if k in kept_at})
    red_coords = _coords(red, "r", "r", {red_at.index(k) for k in used if k in red_at})
    lines, result = _expressions(program.expr, offset_of)
    scale = "" if program.scale is None else f" * {literal(program.scale, program.out_dtype)}"
    out_t = ctype(program.out_dtype)
    body = "\n".join([
        f"typedef {index_type(math.prod(program.shape))} IDX;",
        f'extern "C" __global__ void KERNEL_NAME({_signature(program)}) {{',
        f"    __shared__ {acc} buf[{block}];",
        f"    for (IDX o = blockIdx.x; o < {n_out}; o += gridDim.x) {{",
        *("        " + line for line in kept_coords + outer),
        f"        {acc} acc = 0;",
        f"        for (IDX r = threadIdx.x; r < {n_red}; r += {block}) {{",
        *("            " + line for line in red_coords + lines),
        f"            acc = acc + ({acc}){result};",
        "        }",
        "        buf[threadIdx.x] = acc;",
        "        __syncthreads();",
        f"        for (int s = {block // 2}; s > 0; s >>= 1) {{",
        "            if (threadIdx.x < s) buf[threadIdx.x] = buf[threadIdx.x] + buf[threadIdx.x + s];",
        "            __syncthreads();",
        "        }",
        f"        if (threadIdx.x == 0) out[o] = ({out_t})buf[0]{scale};",
        "        __syncthreads();  // buf is refilled for the next output",
        "    }",
        "}", ""])
    return _finish(body, program, block, n_out)


def kernel_for(program) -> Kernel:
    return reduction_kernel(program) if program.is_reduction else elementwise_kernel(program)
