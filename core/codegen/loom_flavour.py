"""The `loom` flavour: the model written against Loom's Python API (core.placeholder,
core.parameter, core.matmul, ..., core.Executor). Each layer kind's emitter writes the same
primitive ops, in the same order, as the kind's build function in core/layers, so the
script's outputs are those of `main.py infer`; op nodes are written as core.ops calls."""
from __future__ import annotations

import ast
import io
import math
import re
import tokenize

from ..layers.op_layers import OP_NODES
from .plan import CodegenError, function_name, returned, signature, unique_name
from .scopes import Call
from .script import (RUNTIME_NAMES, Code, block_docstring, call, collection, emitting, join,
                     literal, mapping, options, wrap_line)
from .sharing import REQUIRED, Hooks, Sharing, replace_tokens

IMPORTS = ["import argparse", "import itertools", "import lzma", "import math", "import os",
           "import sys", "",
           "import numpy as np"]

PREAMBLE = '''sys.path.insert(0, LOOM_ROOT)
try:
    import core  # Loom's engine
except ImportError as exc:
    sys.exit(f"error: cannot import Loom's core from {LOOM_ROOT} ({exc}): "
             f"set LOOM_ROOT to the Loom checkout")'''


def _p(layer, short) -> Code:
    return Code(f"p[{literal(layer.params[short])}]")


def _x(layer) -> Code:
    return Code(layer.x)


def _call(layer, func, args, kwargs=None) -> list:
    """`name = func(...)` in the body of build (indented 4)."""
    return [f"{layer.name} = {call(func, args, kwargs, indent=4, lead=len(layer.name) + 3)}"]


def _assign(layer, expr) -> list:
    return [f"{layer.name} = {expr}"]


TRAINING = Code("training")


# ---- one emitter per layer kind: Layer -> the statements that compute it ------------------------

def _linear(l):
    w, bias = _p(l, "weight"), f" + {_p(l, 'bias')}" if l.attrs["bias"] else ""
    if len(l.shape) == 1:
        return _assign(l, f"core.matmul({l.x}, {w}){bias}")
    # a sequence (N, T, F): one matmul over all N*T positions, then back to (N, T, out)
    return [f"{l.name} = core.reshape({l.x}, (-1, {l.shape[-1]}))",
            f"{l.name} = core.matmul({l.name}, {w}){bias}",
            f"{l.name} = core.reshape({l.name}, {(-1, l.shape[0], l.attrs['out_features'])})"]


def _conv(l):
    a = l.attrs
    kw = options({"stride": a["stride"], "padding": a["padding"]}, {"stride": 1, "padding": 0})
    bias = f" + {_p(l, 'bias')}" if a["bias"] else ""
    lead = len(l.name) + 3 + len(bias)  # `name = ` before, the bias after
    return _assign(l, call("core.conv2d", [_x(l), _p(l, "weight")], kw, indent=4, lead=lead) + bias)


def _pool(op):
    def emit(l):
        kw = {"kernel": l.attrs["kernel"], "stride": l.attrs["stride"],
              **options({"padding": l.attrs["padding"]}, {"padding": 0})}
        return _call(l, f"core.{op}", [_x(l)], kw)
    return emit


def _unary(op):
    return lambda l: _call(l, f"core.{op}", [_x(l)])


def _batch_norm(l):
    names = [_p(l, n) for n in ("gamma", "beta", "running_mean", "running_var")]
    options = {"training": TRAINING, "eps": l.attrs["eps"]}
    return _call(l, "core.batch_norm", [_x(l), *names], options) + [
        "if training:  # its batch statistics (y.extras) update the running ones",
        f"    stats.append(({literal(l.id)}, {l.name}))"]


def _positional(l):
    length = l.shape[0]
    table = _p(l, "weight")
    if length != l.attrs["length"]:  # the table is sized by `length`: use its first rows
        table = f"core.slice({table}, (0,), ({length},))"
    return _assign(l, f"{l.x} + {table}")


def _attention(l):
    a = l.attrs
    length, channels = l.shape
    kw = {"length": length, "channels": channels, "heads": a["heads"], "width": a["width"],
          "causal": a["causal"], "dropout": a["dropout"], "seed": a["seed"], "training": TRAINING}
    return _call(l, "attention", [_x(l), Code("p"), l.id], kw)


EMITTERS = {
    "Linear": _linear,
    "Conv2D": _conv,
    "MaxPool2D": _pool("max_pool2d"),
    "AvgPool2D": _pool("avg_pool2d"),
    "Flatten": lambda l: _call(l, "core.reshape", [_x(l), (-1, math.prod(l.shape))]),
    "Reshape": lambda l: _call(l, "core.reshape", [_x(l), (-1, *l.attrs["shape"])]),
    "ReLU": _unary("relu"),
    "Sigmoid": _unary("sigmoid"),
    "Tanh": _unary("tanh"),
    "Softmax": lambda l: _call(l, "core.softmax", [_x(l)], {"axis": l.attrs["axis"]}),
    "Dropout": lambda l: _call(l, "core.dropout", [_x(l), l.attrs["rate"]],
                               {"training": TRAINING, "seed": l.attrs["seed"]}),
    "BatchNorm": _batch_norm,
    "Add": lambda l: _assign(l, f"{l.inputs['a']} + {l.inputs['b']}"),
    "Concat": lambda l: _call(l, "core.concat", [Code(f"[{', '.join(l.inputs.values())}]")],
                              {"axis": l.attrs["axis"]}),
    "Embedding": lambda l: _call(l, "core.gather", [_p(l, "weight"), _x(l)]),
    "PositionalEmbedding": _positional,
    "LayerNorm": lambda l: _call(l, "core.layer_norm", [_x(l), _p(l, "gamma"), _p(l, "beta")],
                                 {"eps": l.attrs["eps"]}),
    "GELU": lambda l: _call(l, "core.gelu", [_x(l), l.attrs["approximate"]]),
    "MultiHeadAttention": _attention,
    "Parameter": lambda l: _assign(l, _p(l, "value")),
    "Constant": lambda l: _assign(l, _p(l, "value")),
}
HELPERS = {"MultiHeadAttention": "attention"}  # kind -> the helper function its code calls


# ---- op nodes: core.ops calls, inputs and attributes passed as core/layers/op_layers.py does ---

def _reduce(l, args):
    a = l.attrs
    return args, {"axis": tuple(a["axes"]) or a["axis"], "keepdims": a["keepdims"]}


def _transpose(l, args):
    return args, {"axes": tuple(l.attrs["axes"]) or None}


def _gather(l, args):
    a = l.attrs
    if len(args) == 1:  # fixed ids from the attributes
        shape = literal(tuple(a["indices_shape"]))
        ids = f"np.array({a['indices']}, dtype=np.int64).reshape({shape})"
        args = [args[0], Code(f"core.constant({ids})")]
    return args, {"axis": a["axis"]}


def _plain(l, args):
    return args, dict(l.attrs)


def _concat(l, args):
    return [Code(f"[{', '.join(args)}]")], {"axis": l.attrs["axis"]}


OP_ARGUMENTS = {"reduce_sum": _reduce, "reduce_mean": _reduce, "reduce_max": _reduce,
                "transpose": _transpose, "gather": _gather, "concat": _concat}


def _op_node(l):
    args, kw = OP_ARGUMENTS.get(l.kind, _plain)(l, [Code(v) for v in l.inputs.values()])
    return _call(l, f"core.ops.{l.kind}", args, kw)


def emitter(kind):
    if kind in EMITTERS:
        return EMITTERS[kind]
    if kind in OP_NODES:
        return _op_node
    return None


# ---- the script's model section -------------------------------------------------------------

def model_code(plan) -> str:
    helpers = []
    for layer in plan.layers:  # a kind without an emitter is refused before anything is written
        if emitter(layer.kind) is None:
            raise CodegenError(f"node {layer.id} ({layer.kind}): the loom flavour has no "
                               f"emitter for this kind")
        if layer.kind in HELPERS and HELPERS[layer.kind] not in helpers:
            helpers.append(HELPERS[layer.kind])
    taken = {*MODULE_NAMES, *RUNTIME_NAMES, *plan.scopes.names()}
    sharing = Sharing(plan, HOOKS, lambda block: unique_name(function_name(block), taken))
    top = plan.scopes.top
    with emitting(wrap=False):  # lines are wrapped once indented
        steps = [_step(step, sharing.of) for step in top.steps]
    body = _indented([*steps, [f"return {returned(plan)}"]])
    args = ", ".join(i.var for i in plan.inputs)
    build = (f"def build(p, {args}, training=False, stats=None):\n"
             f'    """{signature(plan)}\n\n'
             f"    p: the parameter nodes by name. training: a training step's graph (dropout on,\n"
             f"    batch norm over the batch: (node id, its output) added to `stats`)."
             f'"""\n{body}\n')
    functions = [_block_function(shared, plan.scopes) for shared in sharing.shared]
    return join(*(HELPER_CODE[h] for h in helpers), *functions, build)


# the script's own top-level names (a block's function takes another)
MODULE_NAMES = {"build", "parameters", "Model", "load_model", "run", "save_weights", "metrics",
                "Optimizer", "Trainer", *HELPERS.values()}


def _step(step, functions) -> list:
    if isinstance(step, Call):
        return _call_block(step, functions[step.path], functions[step.path].values[step.path])
    return _layer(step)


def _layer(layer) -> list:
    return ["\n".join(emitter(layer.kind)(layer))]


def _call_block(step, callee, values) -> list:
    """An instance: its definition's function, given the instance's path (its parameters'
    names start with it), its inputs and its arguments."""
    args = [Code("p"), step.path, *map(Code, step.inputs)]
    passed = {word: Code(word) for word in _training_args(callee)}
    return [f"{', '.join(step.outputs)} = {call(callee.name, args, {**values, **passed})}"]


def _training_args(shared) -> list:
    """Which of build's `training` and `stats` the block's code reads (dropout, batch norm)."""
    return [word for word in ("training", "stats") if any(
        re.search(rf"\b{word}\b", part) for parts in shared.parts for part in parts)]


def _indented(steps, indent=4) -> str:
    return "\n".join(wrap_line(" " * indent + line, 0)
                     for parts in steps for part in parts for line in part.splitlines())


def _block_function(shared, scopes) -> str:
    """One block definition as a function building its nodes; what differs between its
    instances (the promoted attributes that reach the code) are its keyword arguments."""
    body = scopes.bodies[shared.members[0]]
    params = [name if default is REQUIRED else f"{name}={literal(default)}"
              for name, default in shared.params]
    trains = [{"training": "training=False", "stats": "stats=None"}[word]
              for word in _training_args(shared)]
    args = ", ".join(["p", "name", *body.args, *params, *trains])
    head = wrap_line(f"def {shared.name}({args}):", 0)
    returns = ", ".join(body.returns) or "None"
    doc = "\n".join(block_docstring(shared, scopes.ports(shared.block)))
    return (f"{head}\n{doc}\n\n"
            f"    p: the parameter nodes by name; name: the instance's path, which its parameters'\n"
            f'    names start with."""\n'
            f"{_indented([*shared.parts, [f'return {returns}']])}\n")


def _relative(text, path) -> str:
    """Names inside the instance ("stage1/conv.weight") written relative to the function's
    `name` argument (f"{name}/conv.weight"), so every instance's code reads the same."""
    edits = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and tok.string[0] in "'\"":
            value = ast.literal_eval(tok.string)
            if isinstance(value, str) and value.startswith(path + "/"):
                edits.append((tok, 'f"{name}/' + value[len(path) + 1:] + '"'))
    return replace_tokens(text, edits)


HOOKS = Hooks(layer=_layer, call=_call_block, localise=_relative, slot_parts=(0,),
              positional={"core.gelu": ("x", "approximate"), "core.dropout": ("x", "rate"),
                          "core.reshape": ("x", "shape")},
              reserved={"p", "name", "training", "stats"})


ATTENTION = '''\
def attention(x, p, name, length, channels, heads, width, causal, dropout, seed, training):
    """Multi-head self-attention over x (N, T, C), as Loom's MultiHeadAttention builds it."""
    size = width // heads

    def project(part, v, n_in):  # all N*T positions through one (n_in, n_out) matrix, + bias
        y = core.matmul(core.reshape(v, (-1, n_in)), p[f"{name}.{part}_weight"])
        return y + p[f"{name}.{part}_bias"]

    def split_heads(flat):  # (N*T, H*D) -> (N, H, T, D)
        return core.transpose(core.reshape(flat, (-1, length, heads, size)), (0, 2, 1, 3))

    q, k, v = (split_heads(project(part, x, channels)) for part in "qkv")
    q = core.mul(q, 1.0 / math.sqrt(size))  # scaling q costs T*D per head, the scores T*T
    scores = core.matmul(q, k, trans_B=True)  # (N, H, T, T)
    if causal:
        scores = core.where(core.causal_mask(length), scores, float("-inf"))
    weights = core.dropout(core.softmax(scores, axis=-1), dropout, training=training, seed=seed)
    mixed = core.transpose(core.matmul(weights, v), (0, 2, 1, 3))  # (N, T, H, D)
    out = project("out", core.reshape(mixed, (-1, length, width)), width)
    return core.reshape(out, (-1, length, channels))
'''
HELPER_CODE = {"attention": ATTENTION}


def weights_code(plan) -> str:
    shapes = {name: tuple(p.attrs["shape"]) for name, p in plan.parameters.items()}
    fixed = [name for name, p in plan.parameters.items() if not p.attrs.get("trainable", True)]
    return join(mapping("PARAMETERS", shapes, "Loom's names (the weights file's keys) -> shapes")
                + "\n" + collection("FIXED", fixed, "not trained: running statistics, constants"),
                WEIGHTS)


WEIGHTS = '''

def parameters():
    """The parameter nodes, by name."""
    return {name: core.parameter(name, shape, trainable=name not in FIXED)
            for name, shape in PARAMETERS.items()}


class Model:
    """The inference graph, compiled (once per batch shape), and the parameter values."""

    def __init__(self, weights, path):
        for name, shape in PARAMETERS.items():
            if name not in weights or weights[name].shape != shape:
                fail(f"{path}: {name}: expected an array of shape {shape}")
        self.values = {name: weights[name].astype(np.float32) for name in PARAMETERS}
        self.nodes = parameters()
        self.inputs = {name: core.placeholder(name, (None, *shape), dtype)
                       for name, (shape, dtype) in INPUTS.items()}
        self.outputs = build(self.nodes, *self.inputs.values())
        self.executor = core.Executor(list(self.outputs.values()), backend="numpy")

    def feed(self, arrays):
        """Parameter values and input arrays, by node."""
        feed = {self.nodes[name]: value for name, value in self.values.items()}
        feed.update({self.inputs[name]: value for name, value in arrays.items()})
        return feed


def load_model(path):
    return Model(read_npz(path), path)


def run(model, arrays):
    """{output name: array} for one batch of {input name: array}."""
    return dict(zip(model.outputs, model.executor.run(model.feed(arrays))))


def save_weights(model, path):
    save_npz(path, model.values)
'''


# ---- training -----------------------------------------------------------------------------------

LOSS_CODE = {
    "SoftmaxCrossEntropy": '''def metrics(prediction, target):
    """The graph's loss (SoftmaxCrossEntropy) and the accuracy, as graph nodes."""
    return {"loss": core.softmax_cross_entropy(prediction, target),
            "accuracy": core.accuracy(prediction, target)}
''',
    "MSELoss": '''def metrics(prediction, target):
    """The graph's loss (MSELoss), as a graph node."""
    return {"loss": core.mse(prediction, target)}
'''}

# optimizer -> its update, as Loom's update ops (core/ops/optim_ops.py) apply it
OPTIMIZER_CODE = {
    "sgd": ("plain SGD: p -= lr * (g + WEIGHT_DECAY * p)", '''
            p -= lr * (g + WEIGHT_DECAY * p)'''),
    "momentum": ("SGD with momentum: v = MOMENTUM * v + g; p -= lr * v", '''
            v = self.state.setdefault(name, np.zeros_like(p))
            v *= MOMENTUM
            v += g + WEIGHT_DECAY * p
            p -= lr * v'''),
    "nesterov": ("Nesterov momentum: v = MOMENTUM * v + g; p -= lr * (g + MOMENTUM * v)", '''
            g = g + WEIGHT_DECAY * p
            v = self.state.setdefault(name, np.zeros_like(p))
            v *= MOMENTUM
            v += g
            p -= lr * (g + MOMENTUM * v)'''),
    "adam": ("Adam, its bias correction folded into the step size", '''
            g = g + WEIGHT_DECAY * p
            m, v = self.state.setdefault(name, (np.zeros_like(p), np.zeros_like(p)))
            m *= 0.9
            m += 0.1 * g
            v *= BETA2
            v += (1 - BETA2) * g * g
            p -= step_size * m / (np.sqrt(v) + 1e-8)'''),
}


ADAM_STEP = ("        t = self.steps  # the bias correction, folded into the step size\n"
             "        step_size = lr * math.sqrt(1 - BETA2 ** t) / (1 - 0.9 ** t)\n")


def optimizer_code(name) -> str:
    doc, body = OPTIMIZER_CODE[name]
    size = ADAM_STEP if name == "adam" else ""
    return (f'class Optimizer:\n    """{doc}, as Loom applies it."""\n\n'
            f"    def __init__(self):\n        self.state, self.steps = {{}}, 0\n\n"
            f"    def update(self, params, grads, lr):\n        self.steps += 1\n{size}"
            f"        for name, g in grads.items():\n            p = params[name]{body}\n")


TRAINER = '''
class Trainer:
    """Loom's training step: the loss and its gradients from one compiled graph, then the
    optimizer's update on the parameter arrays, and batch norm's running statistics."""

    def __init__(self, model):
        self.model = model
        self.target = core.placeholder("target", (None, *TARGET_SHAPE), TARGET_DTYPE)
        stats = []
        outputs = build(model.nodes, *model.inputs.values(), training=True, stats=stats)
        loss = metrics(outputs[PREDICTION], self.target)["loss"]
        self.trained = [name for name, node in model.nodes.items() if name not in FIXED]
        grads = core.gradients(loss, [model.nodes[name] for name in self.trained])
        self.stats = [(f"{name}.running_mean", f"{name}.running_var") for name, _ in stats]
        batch_stats = [node.extras[key] for _, node in stats for key in ("mean", "var")]
        self.step_executor = core.Executor([loss, *grads, *batch_stats], backend="numpy")
        evaluated = metrics(model.outputs[PREDICTION], self.target)
        self.metric_names = list(evaluated)
        self.eval_executor = core.Executor(list(evaluated.values()), backend="numpy")
        self.optimizer = Optimizer()

    def step(self, inputs, target, lr):
        loss, *rest = self.step_executor.run({**self.model.feed(inputs), self.target: target})
        if math.isfinite(loss):  # as in Loom, a step that blew up changes nothing
            grads = dict(zip(self.trained, rest))
            self.optimizer.update(self.model.values, grads, lr)
            self.update_statistics(rest[len(self.trained):])
        return float(loss)

    def update_statistics(self, batch, momentum=0.1):
        values = self.model.values
        for (mean, var), *batch_values in zip(self.stats, batch[0::2], batch[1::2]):
            for name, value in zip((mean, var), batch_values):
                values[name] *= 1 - momentum
                values[name] += momentum * value.reshape(values[name].shape)

    def evaluate(self, inputs, target):
        values = self.eval_executor.run({**self.model.feed(inputs), self.target: target})
        return {name: float(value) for name, value in zip(self.metric_names, values)}
'''


def trainer_code(plan, training) -> str:
    return join(LOSS_CODE[training.loss], optimizer_code(training.config["optimizer"]), TRAINER)


def trainer_constants(training) -> list:
    _, shape, dtype = training.target
    return [("TARGET_SHAPE", shape, "one sample of what the loss compares the prediction with"),
            ("TARGET_DTYPE", dtype, "")]
