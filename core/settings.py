"""A graph file's training section: its defaults, the user's overrides, and the values each
choice may take, read from the registries (so the CLI and the Run panel never list them again)."""
from __future__ import annotations

from . import backend
from .compiler import CHECKPOINT_MODES
from .optim import OPTIMIZERS, SCHEDULES

DEFAULTS = {"optimizer": "adam", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0,
            "batch_size": 64, "epochs": 10, "schedule": "constant", "step_size": 10,
            "gamma": 0.1, "seed": 0, "val_fraction": 0.2, "backend": "numpy",
            "checkpoint": "none"}


def training_config(doc, overrides=None) -> dict:
    config = dict(DEFAULTS)
    config.update(doc.training or {})
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config


def choices() -> dict[str, list[str]]:
    """The allowed values of each choice setting, from the registries."""
    return {"optimizer": list(OPTIMIZERS), "backend": [*backend.names(), "auto"],
            "checkpoint": list(CHECKPOINT_MODES), "schedule": list(SCHEDULES)}
