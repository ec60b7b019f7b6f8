"""Name -> loader registry. Each loader takes the Dataset node's attrs and returns a Dataset."""
from __future__ import annotations

from pathlib import Path

from ..limits import MAX_DATASET_BYTES, open_regular
from ..registry import add_unique
from .dataset import DatasetError

DATASETS: dict = {}
DATASET_SPECS: dict = {}  # name -> {"attrs": {attr: default}, "help": str}
BUNDLED = Path(__file__).resolve().parents[2] / "resources" / "datasets"


def register(name, help, **attr_defaults):
    def deco(fn):
        add_unique(DATASETS, name, fn, "dataset")
        DATASET_SPECS[name] = {"attrs": attr_defaults, "help": help}
        return fn
    return deco


def dataset_names():
    return sorted(DATASETS)


def load_dataset(spec: dict):
    name = spec.get("name")
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    attrs = dict(DATASET_SPECS[name]["attrs"])
    attrs.update({k: v for k, v in spec.items() if k != "name" and k in attrs})
    return DATASETS[name](**attrs)


def existing(path, what="dataset") -> Path:
    p = Path(str(path)).expanduser()
    if not str(path):
        raise DatasetError(f"{what}: no path given")
    if not p.exists():
        raise DatasetError(f"{what}: {p} does not exist")
    return p


def open_file(path, what="dataset"):
    """A dataset file opened for reading: only a regular file (not a device, a pipe or a
    folder) of at most MAX_DATASET_BYTES; anything else is refused naming the path."""
    p = existing(path, what)
    try:
        return open_regular(p, MAX_DATASET_BYTES)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{what}: {p}: {getattr(exc, 'strerror', None) or exc}") from None
