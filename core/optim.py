"""Optimizers and learning-rate schedules. Each optimizer keeps its state as named arrays so
a checkpoint can store and restore it exactly (no pickles)."""
from __future__ import annotations

import math

import numpy as np

OPTIMIZERS: dict[str, type] = {}
SCHEDULES: dict[str, callable] = {}


def _optimizer(name):
    def deco(cls):
        if name in OPTIMIZERS:
            raise ValueError(f"optimizer {name!r} is registered twice")
        OPTIMIZERS[name] = cls
        cls.name = name
        return cls
    return deco


class Optimizer:
    """`step(params, grads, lr)` updates the arrays in `params` (name -> array) in place."""
    slots: tuple = ()  # state arrays kept per parameter, each the parameter's size

    def __init__(self, momentum=0.9, weight_decay=0.0, **_):
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.state: dict[str, np.ndarray] = {}  # "<param>/<slot>" -> array
        self.steps = 0

    def slot(self, param, name, like):
        key = f"{param}/{name}"
        if key not in self.state:
            self.state[key] = np.zeros_like(like)
        return self.state[key]

    def step(self, params, grads, lr):
        self.steps += 1
        for name, g in grads.items():
            if self.weight_decay:
                g = g + self.weight_decay * params[name]
            self.update(name, params[name], g, lr)

    def update(self, name, p, g, lr):
        raise NotImplementedError


@_optimizer("sgd")
class SGD(Optimizer):
    def update(self, name, p, g, lr):
        p -= lr * g


@_optimizer("momentum")
class Momentum(Optimizer):
    slots = ("velocity",)

    def update(self, name, p, g, lr):
        v = self.slot(name, "velocity", p)
        v *= self.momentum
        v += g
        p -= lr * v


@_optimizer("nesterov")
class Nesterov(Optimizer):
    slots = ("velocity",)

    def update(self, name, p, g, lr):
        v = self.slot(name, "velocity", p)
        v *= self.momentum
        v += g
        p -= lr * (g + self.momentum * v)


@_optimizer("adam")
class Adam(Optimizer):
    slots = ("m", "v")

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(**kw)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name, p, g, lr):
        m, v = self.slot(name, "m", p), self.slot(name, "v", p)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        t = self.steps
        step = lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        p -= step * m / (np.sqrt(v) + self.eps)


def make_optimizer(config: dict) -> Optimizer:
    name = config.get("optimizer", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](momentum=config.get("momentum", 0.9),
                            weight_decay=config.get("weight_decay", 0.0))


# ---- schedules: (base lr, epoch, total epochs, config) -> lr ------------------------------------

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
    return 0.5 * lr * (1 + math.cos(math.pi * epoch / max(1, epochs)))


def learning_rate(config: dict, epoch: int) -> float:
    fn = SCHEDULES[config.get("schedule", "constant")]
    return fn(float(config.get("lr", 0.01)), epoch, int(config.get("epochs", 1)), config)
