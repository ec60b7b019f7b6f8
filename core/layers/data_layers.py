"""Sources of data: the Dataset node (images + labels) and a bare Input."""
from __future__ import annotations

import functools
import json
from typing import NamedTuple

from ..data import DATASET_SPECS, dataset_names, load_dataset
from ..graph import placeholder
from .base import AttrSpec, LayerKind, Port, register


class Signature(NamedTuple):
    """What analysis needs to know of a dataset: one sample's shape, the number of classes
    (labels run from 0 to classes - 1) and the number of samples."""
    shape: tuple
    classes: int
    samples: int


# Bundled sets are known without loading them (the editor asks on every edit).
KNOWN = {"digits": Signature((1, 8, 8), 10, 1797), "mnist_subset": Signature((1, 28, 28), 10, 5000)}


@functools.lru_cache(maxsize=16)
def _probe(spec_json):
    ds = load_dataset(json.loads(spec_json))
    return Signature(ds.sample_shape, ds.num_classes, len(ds))


def dataset_signature(attrs) -> Signature:
    """The signature of the dataset a node names, loading it only if needed (files are
    checked whole on the way: labels, non-finite values)."""
    name = attrs.get("name", "digits")
    if name in KNOWN:
        return KNOWN[name]
    spec = {k: v for k, v in attrs.items() if k == "name" or k in DATASET_SPECS.get(name, {}).get("attrs", {})}
    return _probe(json.dumps(spec, sort_keys=True))


def dataset_label(attrs) -> str:
    """How messages name a training-data node's dataset: a bundled name, or the text."""
    return attrs.get("name") or attrs.get("text") or "?"


def _build_dataset(ctx, attrs, ins):
    shape = dataset_signature(attrs).shape
    return {"images": placeholder("images", (None, *shape), dtype="float32"),
            "labels": placeholder("labels", (None,), dtype="int64")}


register(LayerKind(
    "Dataset", "Data", (), (Port("images", "data"), Port("labels", "label")),
    (AttrSpec("name", "choice", "digits", choices=tuple(dataset_names()),
              help="which dataset: bundled digits / mnist_subset, a file, or a synthetic set"),
     AttrSpec("path", "str", "", path=True,
              help="file or folder for mnist / npz / csv datasets (relative to the graph file)")),
    _build_dataset, help="Training data: a batch of images (N, C, H, W) and their labels (N,)",
    load=load_dataset, signature=dataset_signature))


def _build_input(ctx, attrs, ins):
    return {"out": placeholder(ctx.node_id, (None, *attrs["shape"]), dtype=attrs["dtype"])}


register(LayerKind(
    "Input", "Data", (), (Port("out", "data"),),
    (AttrSpec("shape", "ints", [784], min=1, help="shape of one sample (the batch is added)"),
     AttrSpec("dtype", "choice", "float32", choices=("float32", "int64"),
              help="int64 for ids (tokens, classes) an Embedding or gather looks up")),
    _build_input, help="A fed input of a given per-sample shape"))


def _build_parameter(ctx, attrs, ins):
    return {"out": ctx.param("value", tuple(attrs["shape"]), init=attrs["init"])}


register(LayerKind(
    "Parameter", "Data", (), (Port("out", "data"),),
    (AttrSpec("shape", "ints", [1], min=1, help="full shape (no batch axis)"),
     AttrSpec("init", "choice", "xavier", choices=("xavier", "he", "normal", "uniform", "zeros", "ones"))),
    _build_parameter, help="A trained tensor of a fixed shape, for wiring ops by hand (e.g. matmul)"))
