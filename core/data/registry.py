"""Name -> loader registry. Each loader takes the Dataset node's attrs and returns a Dataset."""
from __future__ import annotations

from pathlib import Path

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
