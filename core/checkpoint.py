"""Checkpoints as `.npz` with no pickles: arrays under "param/", "opt/", "state/" keys and the
metadata as JSON bytes. Written to a temporary file and renamed, so an interrupted save
never leaves a broken checkpoint behind."""
from __future__ import annotations

import json
import math
import os
import zipfile

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


def load(path, max_bytes=None):
    """-> (params, opt_state, state, meta). The zip directory and every array's header are
    checked before anything is inflated: a member whose key, dtype or size is not what a
    checkpoint holds, or more bytes in all than `max_bytes` (default: this machine's memory),
    is refused naming the file and the key."""
    try:
        with open(path, "rb") as f:
            with zipfile.ZipFile(f) as zf:
                _check_directory(path, zf, _memory_bytes() if max_bytes is None else max_bytes)
            f.seek(0)
            with np.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint to resume from") from None
    except CheckpointError:
        raise
    except Exception as exc:  # zip/npz corruption: say which file
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    meta = _meta(path, arrays.pop("meta"))
    groups = {g: {} for g in GROUPS}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        groups[group][name] = value
    return groups["param"], groups["opt"], groups["state"], meta


# ---- what a checkpoint may hold ------------------------------------------------------------------

GROUPS = ("param", "opt", "state")
# meta field -> (type, required); counts are non-negative
META_FIELDS = {"epoch": (int, True), "step": (int, True), "optimizer_steps": (int, True),
               "history": (list, True), "config": (dict, True), "epoch_step": (int, False),
               "epoch_losses": (list, False), "epoch_accuracies": (list, False),
               "random_state": (list, False)}


def _check_directory(path, zf, max_bytes):
    members = zf.infolist()
    keys = [_key(path, m.filename) for m in members]
    if "meta" not in keys:
        raise CheckpointError(f"{path}: no 'meta' entry (not a Loom checkpoint)")
    total = sum(m.file_size for m in members)  # as declared, before inflating anything
    if total > max_bytes:
        raise CheckpointError(f"{path}: its arrays would inflate to {total:,} bytes, more than "
                              f"the {max_bytes:,} this run can need: refused unread")
    for key, member in zip(keys, members):
        _check_header(path, key, zf, member)


def _key(path, filename):
    key = filename[:-4] if filename.endswith(".npy") else filename
    group, _, name = key.partition("/")
    if not (key == "meta" or (group in GROUPS and name and filename.endswith(".npy"))):
        raise CheckpointError(f"{path}: unexpected key {key!r} (a checkpoint holds 'meta', "
                              f"'param/…', 'opt/…' and 'state/…' arrays)")
    return key


def _check_header(path, key, zf, member):
    """The .npy header's dtype and shape must fit the member's declared size exactly."""
    try:
        with zf.open(member) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read(f)
            data_bytes = member.file_size - f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: {key}: unreadable array header ({exc})") from None
    wanted = "u" if key == "meta" else "f"
    if dtype.kind != wanted or dtype.hasobject:
        raise CheckpointError(f"{path}: {key}: dtype {dtype} where "
                              f"{'bytes (uint8)' if key == 'meta' else 'floats'} are expected")
    if math.prod(shape) * dtype.itemsize != data_bytes:
        raise CheckpointError(f"{path}: {key}: header says shape {shape} {dtype}, "
                              f"the file holds {data_bytes:,} bytes of data")


def _meta(path, raw) -> dict:
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: meta: not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: meta: a JSON object expected, got {type(meta).__name__}")
    for field, (kind, required) in META_FIELDS.items():
        if field not in meta and not required:
            continue
        value = meta.get(field)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            what = "a non-negative integer" if kind is int else f"a JSON {kind.__name__}"
            found = _brief(value) if field in meta else "missing"
            raise CheckpointError(f"{path}: meta.{field} is {found}: {what} expected")
    return meta


def _brief(value) -> str:
    text = json.dumps(value) if isinstance(value, (str, type(None))) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


# ---- does it fit the run that resumes from it? ------------------------------------------------

# Settings that give the saved state and position their meaning: a resumed run keeps them.
KEPT_SETTINGS = ("optimizer", "seed", "batch_size", "val_fraction")


def check_fits(path, meta, config, arrays, expected):
    """Refuse a checkpoint whose settings, parameters or optimizer state do not fit the run.
    `arrays`/`expected`: {"param"|"opt"|"state": {key: array | (shape, dtype)}}."""
    _check_settings(path, meta["config"], config)
    if meta["optimizer_steps"] == 0 and not arrays["opt"]:
        expected = {**expected, "opt": {}}  # state is created by the first step
    for group in GROUPS:
        _check_group(path, group, arrays[group], expected.get(group, {}))


def _check_settings(path, saved, config):
    changed = [f"{k} {saved[k]!r} (this run: {config.get(k)!r})" for k in KEPT_SETTINGS
               if k in saved and saved[k] != config.get(k)]
    if changed:
        raise CheckpointError(f"{path}: the checkpoint was trained with {', '.join(changed)}; "
                              f"resume with the checkpoint's settings or start a new run "
                              f"(its optimizer state and position would not mean the same)")


def _check_group(path, group, arrays, expected):
    what = {"param": "parameters", "opt": "optimizer state", "state": "state"}[group]
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {what} {_names(group, missing)} "
                              f"(was the graph or the optimizer changed?)")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: unexpected key {_names(group, extra)} "
                              f"(not {what} of this graph)")
    for key, (shape, dtype) in expected.items():
        value = arrays[key]
        if tuple(value.shape) != tuple(shape) or value.dtype != dtype:
            raise CheckpointError(f"{path}: {group}/{key}: {value.dtype} {tuple(value.shape)} "
                                  f"in the checkpoint, {np.dtype(dtype)} {tuple(shape)} expected")


def _names(group, keys) -> str:
    shown = ", ".join(f"{group}/{k}" for k in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
