"""The `torch` flavour: an nn.Module with one attribute per layer node (named after the node
id) and a forward pass in the document's topological order, plus a training loop with torch's
optimizer. A block definition is an nn.Module of its own (its promoted attributes are its
constructor's arguments), each instance a submodule named after it: the state_dict keys are
`stage1.conv.weight` where Loom's names are `stage1/conv.weight`. Loom's parameter layouts are
mapped to torch's when the weights are loaded."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .plan import CodegenError, class_name, returned, signature, unique_name
from .scopes import Call
from .script import (RUNTIME_NAMES, Code, block_docstring, call, collection, emitting, join,
                     literal, mapping, options, wrap_line)
from .sharing import REQUIRED, Hooks, Sharing

IMPORTS = ["import argparse", "import itertools", "import lzma", "import math", "import os",
           "import sys", "",
           "import numpy as np", "import torch", "from torch import nn",
           "from torch.nn import functional as F"]
PREAMBLE = ""


@dataclass
class TorchLayer:
    module: tuple | None  # (constructor, args, kwargs) of its attribute; None: inline in forward
    expr: str | None = None  # the forward expression (default: the attribute called on its input)
    weights: dict = field(default_factory=dict)  # Loom short name -> (torch name, transposed)
    helper: str | None = None  # a helper class the module needs

    def constructor(self, name) -> str:
        """`self.<name> = nn.Kind(...)` in __init__."""
        return f"self.{name} = {call(*self.module, indent=8, lead=len(name) + 8)}"


def _module(ctor, args=(), kwargs=None, weights=None, helper=None) -> TorchLayer:
    return TorchLayer((ctor, args, kwargs), weights=weights or {}, helper=helper)


def _inline(expr) -> TorchLayer:
    return TorchLayer(None, expr)


def _options(attrs, defaults) -> dict:
    """The attributes whose values differ from torch's defaults (the others go unsaid)."""
    return options({k: attrs[k] for k in defaults}, defaults)


# ---- one emitter per layer kind: Layer -> TorchLayer --------------------------------------------
# Loom keeps a Linear weight as (in, out), torch as (out, in): transposed. Everything else only
# changes shape (a conv bias (C, 1, 1) -> (C,)), which load_model does for every parameter.

LINEAR_WEIGHTS = {"weight": ("weight", True), "bias": ("bias", False)}
PLAIN_WEIGHTS = {"weight": ("weight", False), "bias": ("bias", False)}
NORM_WEIGHTS = {"gamma": ("weight", False), "beta": ("bias", False),
                "running_mean": ("running_mean", False), "running_var": ("running_var", False)}


def _linear(l):
    return _module("nn.Linear", [l.shape[-1], l.attrs["out_features"]],
                   _options(l.attrs, {"bias": True}), LINEAR_WEIGHTS)


def _conv(l):
    a = l.attrs
    kwargs = {"kernel_size": a["kernel"], **_options(a, {"stride": 1, "padding": 0, "bias": True})}
    return _module("nn.Conv2d", [l.shape[0], a["out_channels"]], kwargs, PLAIN_WEIGHTS)


def _pool(name):
    def emit(l):  # Loom's padding is at most half the window, as torch's (and counts as zeros)
        k, s = l.attrs["kernel"], l.attrs["stride"]
        return _module(f"nn.{name}", [k], {"stride": s, **_options(l.attrs, {"padding": 0})})
    return emit


def _batch_norm(l):
    kind = {1: "nn.BatchNorm1d", 2: "nn.BatchNorm1d", 3: "nn.BatchNorm2d", 4: "nn.BatchNorm3d"}
    if len(l.shape) not in kind:
        raise CodegenError(f"node {l.id} (BatchNorm): torch has no batch norm for "
                           f"{len(l.shape) + 1}-D input")
    return _module(kind[len(l.shape)], [l.shape[0]], _options(l.attrs, {"eps": 1e-5}),
                   NORM_WEIGHTS)


def _layer_norm(l):
    return _module("nn.LayerNorm", [l.shape[-1]], _options(l.attrs, {"eps": 1e-5}),
                   {"gamma": ("weight", False), "beta": ("bias", False)})


def _attention(l):
    a = l.attrs
    weights = {f"{part}_{kind}": (f"{part}.{kind}", kind == "weight")
               for part in ("q", "k", "v", "out") for kind in ("weight", "bias")}
    kwargs = {"causal": a["causal"], **_options(a, {"dropout": 0.0})}
    return _module("SelfAttention", [l.shape[-1], a["width"], a["heads"]], kwargs, weights,
                   "SelfAttention")


EMITTERS = {
    "Linear": _linear,
    "Conv2D": _conv,
    "MaxPool2D": _pool("MaxPool2d"),
    "AvgPool2D": _pool("AvgPool2d"),
    "Flatten": lambda l: _module("nn.Flatten"),
    "Reshape": lambda l: _inline(f"{l.x}.reshape(-1, {', '.join(map(str, l.attrs['shape']))})"),
    "ReLU": lambda l: _module("nn.ReLU"),
    "Sigmoid": lambda l: _module("nn.Sigmoid"),
    "Tanh": lambda l: _module("nn.Tanh"),
    "Softmax": lambda l: _module("nn.Softmax", [], {"dim": l.attrs["axis"]}),
    "Dropout": lambda l: _module("nn.Dropout", [l.attrs["rate"]]),
    "BatchNorm": _batch_norm,
    "Add": lambda l: _inline(f"{l.inputs['a']} + {l.inputs['b']}"),
    "Concat": lambda l: _inline(f"torch.cat([{', '.join(l.inputs.values())}], "
                                f"dim={l.attrs['axis']})"),
    "Embedding": lambda l: _module("nn.Embedding", [l.attrs["vocab"], l.attrs["width"]],
                                   weights={"weight": ("weight", False)}),
    "PositionalEmbedding": lambda l: _module(
        "PositionalEmbedding", [l.attrs["length"], l.shape[-1]],
        weights={"weight": ("weight", False)}, helper="PositionalEmbedding"),
    "LayerNorm": _layer_norm,
    "GELU": lambda l: _module("nn.GELU", [], options(  # Loom's erf is torch's "none"
        {"approximate": "tanh" if l.attrs["approximate"] == "tanh" else "none"},
        {"approximate": "none"})),
    "MultiHeadAttention": _attention,
}

HELPERS = {
    "PositionalEmbedding": '''class PositionalEmbedding(nn.Module):
    """Adds a learned vector per position (Loom's PositionalEmbedding): (N, T, C) -> (N, T, C)."""

    def __init__(self, length, width):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(length, width))

    def forward(self, x):
        return x + self.weight[: x.shape[1]]
''',
    "SelfAttention": '''class SelfAttention(nn.Module):
    """Multi-head self-attention (Loom's MultiHeadAttention): (N, T, C) -> (N, T, C)."""

    def __init__(self, channels, width, heads, causal=True, dropout=0.0):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v = (nn.Linear(channels, width) for _ in range(3))
        self.out = nn.Linear(width, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        n, t, _ = x.shape
        q, k, v = (self.split(f(x), n, t) for f in (self.q, self.k, self.v))
        scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (N, H, T, T)
        if self.causal:  # position t attends to positions 0..t
            allowed = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
        weights = self.dropout(scores.softmax(dim=-1))
        return self.out((weights @ v).transpose(1, 2).reshape(n, t, -1))

    def split(self, y, n, t):
        """(N, T, width) -> (N, H, T, D): a slice of the width per head."""
        return y.reshape(n, t, self.heads, -1).transpose(1, 2)
''',
}


# ---- the script's model section -------------------------------------------------------------

def _emit_all(plan) -> list:
    out = []
    for layer in plan.layers:
        emit = EMITTERS.get(layer.kind)
        if emit is None:
            raise CodegenError(f"node {layer.id} ({layer.kind}): the torch flavour has no emitter "
                               f"for this kind (export with --flavour loom)")
        out.append((layer, emit(layer)))
    return out


def model_code(plan) -> str:
    emitted = _emit_all(plan)  # a kind without an emitter is refused before anything is written
    model = class_name(plan.name)
    taken = {model, *HELPERS, *RUNTIME_NAMES, "Trainer", *plan.scopes.names()}
    sharing = Sharing(plan, HOOKS, lambda block: unique_name(class_name(block), taken))
    helpers = [HELPERS[h] for h in dict.fromkeys(t.helper for _, t in emitted if t.helper)]
    blocks = [_block_class(shared, plan.scopes) for shared in sharing.shared]
    top = plan.scopes.top
    with emitting(wrap=False):  # lines are wrapped once indented
        steps = [_step(step, sharing.of) for step in top.steps]
    init, forward = _sections(steps)
    code = "\n".join([
        f"class {model}(nn.Module):", f'    """{signature(plan)}"""', "",
        "    def __init__(self):", "        super().__init__()", *init, "",
        f"    def forward(self, {', '.join(top.args)}):", *forward,
        f"        return {returned(plan)}"])
    return join(*helpers, *blocks, code)


def _step(step, classes) -> list:
    if isinstance(step, Call):
        return _call(step, classes[step.path], classes[step.path].values[step.path])
    return _layer(step)


def _layer(layer) -> list:
    """[its constructor line or "", its forward line]."""
    t = EMITTERS[layer.kind](layer)
    return [t.constructor(layer.name) if t.module else "",
            f"{layer.name} = {t.expr or f'self.{layer.name}({layer.x})'}"]


def _call(step, callee, values) -> list:
    """A block instance: its submodule, made with its arguments, and called on its inputs."""
    return [f"self.{step.name} = {call(callee.name, [], values)}",
            f"{', '.join(step.outputs)} = self.{step.name}({', '.join(step.inputs)})"]


def _sections(steps) -> tuple[list, list]:
    """The __init__ and forward lines, indented and wrapped."""
    indent = lambda text: [wrap_line(f"        {line}", 0) for line in text.splitlines()]  # noqa
    init = [line for parts in steps if parts[0] for line in indent(parts[0])]
    return init, [line for parts in steps for line in indent(parts[1])]


def _block_class(shared, scopes) -> str:
    """One block definition as an nn.Module: its promoted attributes (and whatever else
    differs between its instances) are the constructor's arguments."""
    body = scopes.bodies[shared.members[0]]
    init, forward = _sections(shared.parts)
    args = "".join(f", {name}" if default is REQUIRED else f", {name}={literal(default)}"
                   for name, default in shared.params)
    attributes = replace(shared, members=[m.replace("/", ".") for m in shared.members])
    doc = block_docstring(attributes, scopes.ports(shared.block))
    return "\n".join([
        f"class {shared.name}(nn.Module):", *doc[:-1], doc[-1] + '"""', "",
        wrap_line(f"    def __init__(self{args}):", 0), "        super().__init__()", *init, "",
        f"    def forward({', '.join(['self', *body.args])}):", *forward,
        f"        return {', '.join(body.returns) or 'None'}"])


HOOKS = Hooks(
    layer=_layer, call=_call, localise=lambda text, path: text, slot_parts=(0,),
    positional={"nn.Linear": ("in_features", "out_features"),
                "nn.Conv2d": ("in_channels", "out_channels"),
                "nn.MaxPool2d": ("kernel_size",), "nn.AvgPool2d": ("kernel_size",),
                "nn.Dropout": ("p",), "nn.LayerNorm": ("normalized_shape",),
                **{f"nn.BatchNorm{d}d": ("num_features",) for d in (1, 2, 3)},
                "nn.Embedding": ("num_embeddings", "embedding_dim"),
                "SelfAttention": ("channels", "width", "heads"),
                "PositionalEmbedding": ("length", "width")},
    reserved={"self"})


def weights_code(plan) -> str:
    table, transposed = {}, []
    for layer, torch_layer in _emit_all(plan):
        for short, (attr, flip) in torch_layer.weights.items():
            if short in layer.params:
                full = layer.params[short]
                key = f"{plan.scopes.attribute[layer.id]}.{attr}"  # stage1/conv -> stage1.conv
                table[full] = (key, tuple(plan.parameters[full].attrs["shape"]))
                transposed += [full] if flip else []
    return join("\n".join([
        "# Loom's parameter name (the weights file's key) -> (state_dict key here, Loom's shape).",
        "# Loom keeps a Linear weight as (in, out), torch as (out, in): the names in TRANSPOSED",
        "# are transposed; every other array only changes shape (a conv bias (C, 1, 1) -> (C,)).",
        mapping("PARAMETERS", table), collection("TRANSPOSED", transposed)]),
        WEIGHTS.replace("$Model", class_name(plan.name)))


WEIGHTS = '''

def load_model(path):
    """The model with the weights of `path` (Loom's names and layouts), in eval mode."""
    model, stored = $Model(), read_npz(path)
    state = model.state_dict()
    for loom_name, (key, shape) in PARAMETERS.items():
        if loom_name not in stored or stored[loom_name].shape != shape:
            fail(f"{path}: {loom_name}: expected an array of shape {shape}")
        value = stored[loom_name].T if loom_name in TRANSPOSED else stored[loom_name]
        state[key] = torch.from_numpy(np.ascontiguousarray(value)).reshape(state[key].shape)
    model.load_state_dict(state)
    return model.eval()


def run(model, arrays):
    """{output name: array} for one batch of {input name: array}."""
    model.eval()
    with torch.no_grad():
        outputs = model(*(torch.from_numpy(arrays[name]) for name in INPUTS))
    return {name: value.numpy() for name, value in outputs.items()}


def save_weights(model, path):
    """The weights under Loom's names and in its layouts (what load_model reads)."""
    state = model.state_dict()
    arrays = {}
    for loom_name, (key, shape) in PARAMETERS.items():
        value = state[key].detach().numpy()
        arrays[loom_name] = (value.T if loom_name in TRANSPOSED else value).reshape(shape)
    save_npz(path, arrays)
'''


# ---- training -----------------------------------------------------------------------------------

LOSS_CODE = {
    "SoftmaxCrossEntropy": '''def metrics(prediction, target):
    """The graph's loss (SoftmaxCrossEntropy, over every position of a sequence) and accuracy."""
    classes = prediction.shape[-1]
    return {"loss": F.cross_entropy(prediction.reshape(-1, classes), target.reshape(-1)),
            "accuracy": (prediction.argmax(dim=-1) == target).float().mean()}
''',
    "MSELoss": '''def metrics(prediction, target):
    """The graph's loss (MSELoss)."""
    return {"loss": F.mse_loss(prediction, target)}
'''}

# optimizer -> torch's with the same rule (weight decay as L2 on the gradient, as in Loom)
OPTIMIZERS = {
    "sgd": ("torch.optim.SGD", {}),
    "momentum": ("torch.optim.SGD", {"momentum": Code("MOMENTUM")}),
    "nesterov": ("torch.optim.SGD", {"momentum": Code("MOMENTUM"), "nesterov": True}),
    "adam": ("torch.optim.Adam", {"betas": Code("(0.9, BETA2)")}),
}


def _optimizer(name) -> str:
    ctor, extra = OPTIMIZERS[name]
    kwargs = {"lr": Code("LR"), **extra, "weight_decay": Code("WEIGHT_DECAY")}
    return call(ctor, [Code("parameters")], kwargs, indent=8, lead=len("self.optimizer = "))

TRAINER = '''
class Trainer:
    """torch's autograd and optimizer; the data, batches and learning rates as Loom has them."""

    def __init__(self, model):
        torch.manual_seed(SEED)  # dropout masks
        self.model = model
        parameters = model.parameters()
        self.optimizer = $optimizer

    def step(self, inputs, target, lr):
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.batch_metrics(inputs, target)["loss"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def evaluate(self, inputs, target):
        self.model.eval()
        with torch.no_grad():
            return {k: v.item() for k, v in self.batch_metrics(inputs, target).items()}

    def batch_metrics(self, inputs, target):
        outputs = self.model(*(torch.from_numpy(inputs[name]) for name in INPUTS))
        return metrics(outputs[PREDICTION], torch.from_numpy(target))
'''


def trainer_code(plan, training) -> str:
    trainer = TRAINER.replace("$optimizer", _optimizer(training.config["optimizer"]))
    return join(LOSS_CODE[training.loss], trainer)


def trainer_constants(training) -> list:
    return []
