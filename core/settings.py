"""A graph file's training section: its defaults, the user's overrides, and the values each
choice may take, read from the registries (so the CLI and the Run panel never list them again)."""
from __future__ import annotations

import math
import re

from . import backend
from .compiler import CHECKPOINT_MODES
from .errors import LoomError
from .limits import MAX_INT
from .optim import OPTIMIZERS, SCHEDULES

DEFAULTS = {"optimizer": "adam", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0,
            "batch_size": 64, "epochs": 10, "schedule": "constant", "step_size": 10,
            "gamma": 0.1, "seed": 0, "val_fraction": 0.2, "backend": "numpy",
            "checkpoint": "none", "steps_per_epoch": 0, "warmup_steps": 0, "min_lr_ratio": 0.0,
            "beta2": 0.999, "sample_chars": 200, "procs": 1,
            "bucket_bytes": 25 << 20}


def training_config(doc, overrides=None) -> dict:
    """The file's settings over the defaults, the command line's over both; every value is
    checked (`validate_training`), whichever of the three it came from."""
    config = dict(DEFAULTS)
    config.update(doc.training or {})
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    validate_training(config)
    return config


def validate_training(config: dict):
    """Raise LoomError naming the first setting whose value is not allowed."""
    problems = training_problems(config)
    if problems:
        raise LoomError(problems[0])


def training_problems(training: dict) -> list[str]:
    """One line per bad setting ("training setting lr: ..."), for `check` and the editor."""
    return [f"training setting {name}: {reason}" for name, reason in setting_reasons(training)]


def setting_reasons(training: dict) -> list[tuple[str, str]]:
    """(setting, why its value is refused) for each bad setting."""
    rules = _rules()
    out = []
    for name, value in training.items():
        rule = rules.get(name)
        reason = f"unknown setting (known: {', '.join(rules)})" if rule is None else rule(value)
        if reason:
            out.append((name, reason))
    return out


# ---- the rule of each setting: value -> None, or why it is refused ---------------------------

def _number(low=None, high=None, open_low=False, open_high=False, integer=False):
    def rule(value):
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"expected {kind}, got {value!r}"  # 64.0 is not an integer
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if integer and abs(value) > MAX_INT:
            return f"{value!r} is too large"
        if low is not None and (value <= low if open_low else value < low):
            return f"{value!r} must be {'above' if open_low else 'at least'} {low}"
        if high is not None and (value >= high if open_high else value > high):
            return f"{value!r} must be {'below' if open_high else 'at most'} {high}"
        return None
    return rule


def _one_of(values):
    return lambda value: None if value in values else \
        f"{value!r} is not one of {', '.join(map(str, values))}"


def _checkpoint(value):
    if isinstance(value, str) and re.fullmatch(r"none|sqrt|cheap|budget=[0-9]{1,19}", value):
        return None
    return f"{value!r} is not none, sqrt, cheap or budget=BYTES"


def _rules() -> dict:
    allowed = choices()
    return {
        "optimizer": _one_of(allowed["optimizer"]),
        "lr": _number(0, open_low=True),
        "momentum": _number(0, 1),
        "weight_decay": _number(0),
        "batch_size": _number(1, 1 << 24, integer=True),
        "epochs": _number(1, 1 << 31, integer=True),
        "schedule": _one_of(allowed["schedule"]),
        "step_size": _number(1, 1 << 31, integer=True),
        "gamma": _number(0, open_low=True),
        "seed": _number(0, 2 ** 32 - 1, integer=True),  # numpy seeds are unsigned 32-bit words
        "val_fraction": _number(0, 1, open_low=True, open_high=True),
        "backend": _one_of(allowed["backend"]),
        "checkpoint": _checkpoint,
        "steps_per_epoch": _number(0, 1 << 31, integer=True),  # 0: one pass over the training set
        "warmup_steps": _number(0, 1 << 31, integer=True),
        "min_lr_ratio": _number(0, 1),  # cosine ends at lr * min_lr_ratio
        "beta2": _number(0, 1, open_high=True),  # Adam's second-moment decay
        "sample_chars": _number(0, 100_000, integer=True),  # text models: a sample per epoch
        "procs": _number(1, 4096, integer=True),  # data-parallel processes (MPI ranks)
        "bucket_bytes": _number(1, 1 << 40, integer=True),  # gradients per allreduce
    }


def choices() -> dict[str, list[str]]:
    """The allowed values of each choice setting, from the registries."""
    return {"optimizer": list(OPTIMIZERS), "backend": [*backend.names(), "auto"],
            "checkpoint": list(CHECKPOINT_MODES), "schedule": list(SCHEDULES)}
