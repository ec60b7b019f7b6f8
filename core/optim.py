"""Optimizers and learning-rate schedules. Each optimizer keeps its state as named arrays so
a checkpoint can store and restore it exactly (no pickles)."""
from __future__ import annotations

import math

import numpy as np

from . import backend as backends
from .graph import Node, placeholder
from .ops.optim_ops import SLOTS
from .registry import add_unique

OPTIMIZERS: dict[str, type] = {}
SCHEDULES: dict[str, callable] = {}


def _optimizer(name):
    def deco(cls):
        add_unique(OPTIMIZERS, name, cls, "optimizer")
        cls.name = name
        return cls
    return deco


class Optimizer:
    """Builds the update ops of the compiled training step and keeps their state arrays.

    `updates(params, grads, loss)` returns one update node per parameter (see
    core/ops/optim_ops.py); the state arrays ("<param>/<slot>", each the parameter's size)
    and the per-step step size (`hyper`) are fed by the trainer and updated in place."""
    op: str  # the update op in core/ops/optim_ops.py, which also names its state slots

    def __init__(self, momentum=0.9, weight_decay=0.0, backend=None, **_):
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.backend = backend or backends.get("numpy")  # where the state arrays live
        self.state: dict[str, object] = {}  # "<param>/<slot>" -> backend array
        self.steps = 0
        self.hyper_node = _state(placeholder("optimizer.hyper", (1,), "float32"))
        # one array, rewritten each step (no rebinding, and a captured step replays it)
        self.hyper = self.backend.asarray(np.zeros(1, np.float32))
        self.state_nodes: dict[str, Node] = {}

    @property
    def slots(self) -> tuple:
        """State arrays kept per parameter, each the parameter's size."""
        return SLOTS[self.op]

    def attrs(self) -> dict:
        return {"weight_decay": self.weight_decay, "momentum": self.momentum}

    def updates(self, params, grads, loss) -> list[Node]:
        nodes = []
        for p, g in zip(params, grads):
            state = [self._state_node(p, slot) for slot in self.slots]
            nodes.append(Node(self.op, [p, g, loss, self.hyper_node, *state], self.attrs(),
                              f"{p.name}.update"))
        return nodes

    def _state_node(self, param, slot):
        key = f"{param.name}/{slot}"
        if key not in self.state_nodes:
            self.state_nodes[key] = _state(placeholder(key, param.attrs["shape"], param.attrs.get("dtype")))
        return self.state_nodes[key]

    def feed(self, params: dict) -> dict:
        """Feeds for the next step (call once per step): state arrays and the step size."""
        for key, node in self.state_nodes.items():
            if key not in self.state:
                self.state[key] = self.backend.xp.zeros_like(params[key.rsplit("/", 1)[0]])
        return {self.hyper_node: self.hyper, **{n: self.state[k] for k, n in self.state_nodes.items()}}

    def begin_step(self, lr):
        self.steps += 1
        self.hyper[0] = self.step_size(lr)

    def step_size(self, lr) -> float:
        return lr


def _state(node):
    """Mark a placeholder as optimizer state: reported apart from the data fed each step."""
    node.attrs["state"] = True
    return node


@_optimizer("sgd")
class SGD(Optimizer):
    op = "sgd_update"


@_optimizer("momentum")
class Momentum(Optimizer):
    op = "momentum_update"


@_optimizer("nesterov")
class Nesterov(Optimizer):
    op = "nesterov_update"


@_optimizer("adam")
class Adam(Optimizer):
    op = "adam_update"

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(**kw)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def attrs(self):
        return {**super().attrs(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def step_size(self, lr):
        t = self.steps  # bias correction folded into the step size, as in the Adam paper
        return lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)


def make_optimizer(config: dict, backend=None) -> Optimizer:
    """The configured optimizer, keeping its state on `backend` (numpy when not given)."""
    name = config.get("optimizer", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](momentum=config.get("momentum", 0.9),
                            weight_decay=config.get("weight_decay", 0.0), backend=backend,
                            beta2=config.get("beta2", 0.999))


# ---- schedules: (base lr, epoch, total epochs, config) -> lr ------------------------------------
# `epoch` is fractional (2.5 = halfway through the third epoch), so smooth schedules move every
# step, as language models expect; the step schedule still changes at whole epochs.

def _schedule(fn):
    SCHEDULES[fn.__name__] = fn
    return fn


@_schedule
def constant(lr, epoch, epochs, config):
    return lr


@_schedule
def step(lr, epoch, epochs, config):
    return lr * config.get("gamma", 0.1) ** (epoch // max(1, config.get("step_size", 10)))


@_schedule
def cosine(lr, epoch, epochs, config):
    """Half a cosine from lr down to lr * min_lr_ratio over the run."""
    floor = lr * float(config.get("min_lr_ratio", 0.0))
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * min(1.0, epoch / max(1, epochs))))


def learning_rate(config: dict, epoch: float, step: int = 0) -> float:
    """The learning rate for optimizer step `step` (counting from 0), taken `epoch` epochs into
    the run: the schedule's value, ramped up linearly over the first `warmup_steps` steps."""
    fn = SCHEDULES[config.get("schedule", "constant")]
    lr = fn(float(config.get("lr", 0.01)), epoch, int(config.get("epochs", 1)), config)
    warmup = int(config.get("warmup_steps", 0) or 0)
    return lr * min(1.0, (step + 1) / warmup) if warmup else lr
