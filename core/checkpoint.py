"""Checkpoints as `.npz` with no pickles: arrays under "param/", "opt/", "state/" keys and the
metadata as JSON bytes. Written to a temporary file and renamed, so an interrupted save
never leaves a broken checkpoint behind."""
from __future__ import annotations

import json

import numpy as np

from .atomic import atomic_write
from .errors import LoomError


class CheckpointError(LoomError):
    pass


def save(path, params: dict, opt_state: dict, state: dict, meta: dict):
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"opt/{k}": v for k, v in opt_state.items()})
    arrays.update({f"state/{k}": v for k, v in state.items()})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def load(path):
    """-> (params, opt_state, state, meta)"""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint to resume from") from None
    except Exception as exc:  # zip/npz corruption: say which file
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    groups = {"param": {}, "opt": {}, "state": {}}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        groups[group][name] = value
    return groups["param"], groups["opt"], groups["state"], meta
