"""A graph's initial parameter values from its weights file (`GraphDocument.weights`: an .npz
beside the graph file, keyed by parameter name, no pickle), e.g. an imported model's trained
weights. Parameters the file does not name start from their initializer."""
from __future__ import annotations

import io
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


def stored_specs(path) -> dict:
    """{parameter name: (shape, dtype)} from the headers of an .npz's arrays alone: the graph
    checks run on every edit in the editor and must not inflate an imported model's weights."""
    try:
        with open_regular(path, MAX_WEIGHTS_BYTES) as f, zipfile.ZipFile(f) as zf:
            return {name[:-len(".npy")]: _header(zf, name) for name in zf.namelist()}
    except FileNotFoundError:
        raise WeightsError(f"{path}: the graph's weights file does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: unreadable weights file ({exc})") from None


def _header(zf, name):
    if not name.endswith(".npy"):
        raise ValueError(f"{name} is not an array")
    with zf.open(name) as member:
        version = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(member)
    return tuple(shape), np.dtype(dtype)


def mismatches(path, stored: dict, parameters) -> list[str]:
    """Why arrays of these (shape, dtype)s do not fit the parameter nodes (empty: they do)."""
    shapes = {p.name: tuple(p.attrs["shape"]) for p in parameters}
    out = [f"{path}: {key}: no such parameter in the graph" for key in stored if key not in shapes]
    out += [f"{path}: {key}: shape {shape}, the graph's parameter is {shapes[key]}"
            for key, (shape, _) in stored.items() if key in shapes and shape != shapes[key]]
    out += [f"{path}: {key}: {dtype} values, expected floating point"
            for key, (_, dtype) in stored.items() if key in shapes and dtype.kind != "f"]
    return out


def weight_problems(doc, parameters) -> list[str]:
    """Why the weights file does not fit these parameter nodes (empty when it does)."""
    path = weights_path(doc)
    if path is None:
        return []
    try:
        return mismatches(path, stored_specs(path), parameters)
    except WeightsError as exc:
        return [str(exc)]


def initial_values(doc, parameters, rng) -> dict:
    """{parameter name: host array}: the weights file's value where it has one (cast to the
    parameter's dtype), else a fresh one from the parameter's initializer."""
    path = weights_path(doc)
    stored = load_weights(path) if path is not None else {}
    problems = mismatches(path, {k: (v.shape, v.dtype) for k, v in stored.items()}, parameters)
    if problems:
        raise WeightsError(problems[0])
    out = {}
    for p in parameters:  # every parameter draws from rng: the others start as without a file
        fresh = init_value(p, rng)
        value = stored.get(p.name)
        out[p.name] = fresh if value is None else value.astype(p.attrs["dtype"])
    return out
