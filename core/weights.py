"""A graph's initial parameter values from its weights file (`GraphDocument.weights`: an .npz
beside the graph file, keyed by parameter name, no pickle), e.g. an imported model's trained
weights. Parameters the file does not name start from their initializer."""
from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import LoomError
from .graph import init_value
from .limits import open_regular

MAX_WEIGHTS_BYTES = 8 << 30


class WeightsError(LoomError):
    """A weights file is missing, unreadable or does not fit the graph; names file and key."""


def weights_path(doc) -> Path | None:
    if not doc.weights:
        return None
    path = Path(os.path.expanduser(doc.weights))
    return path if path.is_absolute() or doc.base_dir is None else Path(doc.base_dir) / path


def load_weights(path) -> dict:
    """{parameter name: array} from an .npz, checked whole before use."""
    try:
        with open_regular(path, MAX_WEIGHTS_BYTES) as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise WeightsError(f"{path}: the graph's weights file does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: unreadable weights file ({exc})") from None


def save_weights(path, arrays: dict):
    """Atomically, as an uncompressed .npz (no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)


def weight_problems(doc, parameters) -> list[str]:
    """Why the weights file does not fit these parameter nodes (empty when it does)."""
    path = weights_path(doc)
    if path is None:
        return []
    try:
        values = load_weights(path)
    except WeightsError as exc:
        return [str(exc)]
    shapes = {p.name: tuple(p.attrs["shape"]) for p in parameters}
    out = [f"{path}: {key}: no such parameter in the graph" for key in values if key not in shapes]
    out += [f"{path}: {key}: shape {tuple(v.shape)}, the graph's parameter is {shapes[key]}"
            for key, v in values.items() if key in shapes and tuple(v.shape) != shapes[key]]
    out += [f"{path}: {key}: {v.dtype} values, expected floating point"
            for key, v in values.items() if key in shapes and v.dtype.kind != "f"]
    return out


def initial_values(doc, parameters, rng) -> dict:
    """{parameter name: host array}: the weights file's value where it has one (cast to the
    parameter's dtype), else a fresh one from the parameter's initializer."""
    problems = weight_problems(doc, parameters)
    if problems:
        raise WeightsError(problems[0])
    path = weights_path(doc)
    stored = load_weights(path) if path is not None else {}
    out = {}
    for p in parameters:  # every parameter draws from rng: the others start as without a file
        fresh = init_value(p, rng)
        value = stored.get(p.name)
        out[p.name] = fresh if value is None else value.astype(p.attrs["dtype"])
    return out


def total_bytes(arrays: dict) -> int:
    return sum(math.prod(v.shape) * v.dtype.itemsize for v in arrays.values())
