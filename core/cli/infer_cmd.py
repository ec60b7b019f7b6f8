"""`main.py infer FILE.(loom.json|onnx) --input IN.npz [--checkpoint C] [--output OUT.npz]
[--backend B] [--batch-size N]`: the inference model run on the arrays of IN.npz (keyed by
input name, e.g. "images"), in slices of the first axis so a large file never needs the
whole batch's activations at once. Outputs are printed (name, shape) and, with --output,
saved keyed by output name (atomic, no pickle)."""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from . import exitcodes
from .export_cmd import check_folder
from .. import backend as backends
from ..atomic import atomic_write
from ..compiler.shapes import show_shape
from ..errors import LoomError
from ..executor import Executor
from ..graph import topological_order
from ..graphfile import load
from ..inference import inference_graph, parameter_values, probe_shapes
from ..limits import open_regular
from ..settings import choices

DEFAULT_BATCH = 256
MAX_INPUT_BYTES = 16 << 30
SHOWN_ROWS = 8
NPY_MAGIC = b"\x93NUMPY"


class InferError(LoomError):
    """Input arrays that do not fit the model; the message names the file and the key."""


def add_parser(subparsers):
    p = subparsers.add_parser("infer", help="run a model on the arrays of an .npz file")
    p.add_argument("file", help="a graph file (*.loom.json) or an ONNX model (*.onnx)")
    p.add_argument("--input", required=True, metavar="IN.npz",
                   help="arrays keyed by the model's input names (e.g. 'images'), batch first")
    p.add_argument("--checkpoint", metavar="C", help="trained weights (a run's checkpoint.npz)")
    p.add_argument("--output", metavar="OUT.npz", help="save the outputs, keyed by output name")
    p.add_argument("--backend", choices=choices()["backend"], default="numpy",
                   help="auto: cupy when a GPU works, else numpy")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, dest="batch_size",
                   metavar="N", help=f"samples run at once (default {DEFAULT_BATCH})")
    return p


def run(args) -> int:
    if args.batch_size < 1:
        raise LoomError(f"--batch-size must be 1 or more, got {args.batch_size}")
    if args.output:
        check_folder(args.output)
    doc, weights = load_model(args.file)
    graph = inference_graph(doc)
    params = parameter_values(doc, graph.built, args.checkpoint, weights)
    if graph.built.parameters and not (args.checkpoint or weights or doc.weights):
        print("note: no --checkpoint: the graph's initial (untrained) weights", file=sys.stderr)
    arrays = checked_inputs(graph, read_npz(args.input), args.input)
    outputs = run_batches(graph, params, arrays, _backend(args.backend), args.batch_size)
    report(outputs)
    if args.output:
        save_npz(args.output, outputs)
        print(f"wrote {args.output}")
    return exitcodes.OK


# ---- the model ------------------------------------------------------------------------------

def _loom_model(path):
    return load(path), None


def _onnx_model(path):
    try:  # onnx is imported only when used
        from ..interop.onnx_import import import_model
    except ModuleNotFoundError as exc:
        raise LoomError(f"{path}: ONNX models cannot be read here ({exc})") from None
    return import_model(path)


# file suffix -> loader(path) -> (GraphDocument, imported weights or None)
MODEL_LOADERS = {".onnx": _onnx_model}


def load_model(path):
    return MODEL_LOADERS.get(Path(path).suffix.lower(), _loom_model)(path)


def _backend(name) -> str:
    if name != "auto":
        return name
    chosen, why = backends.resolve_auto()
    print(f"backend auto: using {chosen} ({why})", file=sys.stderr)
    return chosen


# ---- input arrays ---------------------------------------------------------------------------

def read_npz(path) -> dict:
    """{key: array} of an .npz file (no pickles), or InferError naming the file."""
    try:
        with open_regular(path, MAX_INPUT_BYTES) as f:
            raw = f.read()
        if raw.startswith(NPY_MAGIC):  # a bare array has no name to match an input with
            raise InferError(f"{path}: a single array (.npy), not an .npz archive of named "
                             f"arrays (save with numpy.savez(path, images=...))")
        if not zipfile.is_zipfile(io.BytesIO(raw)):  # np.load would try it as a pickle
            raise InferError(f"{path}: not an .npz file (no zip archive)")
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InferError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InferError(f"{path}: not a readable .npz file ({exc})") from None


# what each kind of input takes: numpy dtype kind -> the kinds cast to it without a surprise
ACCEPTED_KINDS = {"f": "fiu", "i": "iu", "u": "u", "b": "b"}


def checked_inputs(graph, arrays, source) -> dict:
    """Each model input from `arrays`, checked (per-sample shape, dtype, equal lengths) and
    cast to the input's dtype."""
    if not graph.inputs:
        raise InferError(f"{source}: the model has no inputs: there is nothing to feed it")
    missing = [name for name in graph.inputs if name not in arrays]
    if missing:
        expected = ", ".join(f"{n} {show_shape(graph.input_shape(n))} {graph.input_dtype(n)}"
                             for n in graph.inputs)
        raise InferError(f"{source}: no array {missing[0]!r}: the model's inputs are {expected}; "
                         f"the file has {', '.join(sorted(arrays)) or 'no arrays'}")
    out = {name: _checked(graph, name, arrays[name], source) for name in graph.inputs}
    lengths = {name: len(v) for name, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise InferError(f"{source}: the inputs hold different numbers of samples: "
                         f"{', '.join(f'{k} {v}' for k, v in lengths.items())}")
    if not any(lengths.values()):
        raise InferError(f"{source}: no samples (the arrays' first axis is empty)")
    _check_ids(graph, out, source)
    return out


def _checked(graph, name, value, source):
    want, dtype = graph.input_shape(name), graph.input_dtype(name)
    fits = value.ndim == len(want) and all(d is None or d == a for d, a in zip(want, value.shape))
    if not fits:
        raise InferError(f"{source}: {name}: shape {tuple(value.shape)}, the model takes "
                         f"{show_shape(want)}")
    if value.dtype.kind not in ACCEPTED_KINDS.get(dtype.kind, dtype.kind):
        raise InferError(f"{source}: {name}: {value.dtype} values, the model takes {dtype}")
    return value.astype(dtype, copy=False)


def _check_ids(graph, arrays, source):
    """Token ids an embedding looks up must be rows of its table (numpy's take would raise,
    or wrap negative ids round, deep inside the run)."""
    fed = {node: name for name, node in graph.inputs.items()}
    lookups = [n for n in topological_order(list(graph.outputs.values()))
               if n.op == "gather" and n.inputs[1] in fed]
    shapes, _ = probe_shapes(lookups) if lookups else ({}, {})
    for node in lookups:
        name, rows = fed[node.inputs[1]], shapes[node.inputs[0]][node.attrs["axis"]]
        ids = arrays[name]
        if ids.min() < 0 or ids.max() >= rows:
            raise InferError(f"{source}: {name}: ids from {ids.min()} to {ids.max()}, the "
                             f"model's table has rows 0 to {rows - 1}")


# ---- running ----------------------------------------------------------------------------------

def run_batches(graph, params, arrays, backend, batch_size) -> dict:
    """{output name: array} over all samples, `batch_size` at a time (all at once where an
    output is not batch-first, e.g. a mean over the batch: slices would change it)."""
    ex = Executor(list(graph.outputs.values()), backend=backend)
    feed = {p: ex.backend.asarray(params[p.name]) for p in graph.built.parameters}
    total = len(next(iter(arrays.values())))
    step = batch_size if graph.batch_major() else total
    parts = {name: [] for name in graph.outputs}
    for lo in range(0, total, step):
        feed.update({graph.inputs[k]: v[lo:lo + step] for k, v in arrays.items()})
        for name, value in zip(graph.outputs, ex.run(feed)):
            parts[name].append(value)
    return {name: np.concatenate(p) if len(p) > 1 else p[0] for name, p in parts.items()}


def report(outputs):
    for name, value in outputs.items():
        print(f"{name}: {show_shape(value.shape)} {value.dtype}")
        if value.ndim == 2 and value.dtype.kind == "f" and value.shape[1] > 1:  # a classifier
            shown = value[:SHOWN_ROWS].argmax(axis=1).tolist()
            more = " ..." if len(value) > SHOWN_ROWS else ""
            print(f"  argmax of the first rows: {shown}{more}")


def save_npz(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)
