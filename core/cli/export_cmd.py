"""`main.py export FILE -o MODEL.onnx [--checkpoint C] [--opset N]`: the graph's inference
model as ONNX; `main.py export FILE --python OUT.py [--flavour torch|loom] [--checkpoint C]`:
the same model as a standalone script (core/codegen) with its weights beside it. Each target
format is one entry in `TARGETS` (the option that asks for it -> the function writing it)."""
from __future__ import annotations

import math
from pathlib import Path

from . import exitcodes
from ..codegen import FLAVOURS, export_python, weights_path
from ..errors import LoomError
from ..graphfile import load

DEFAULT_OPSET = 17  # as core.interop.onnx_export: not imported here, so `core.cli` loads no onnx


def add_parser(subparsers):
    p = subparsers.add_parser("export", help="write a graph's inference model (ONNX, or a "
                              "Python script)")
    p.add_argument("file", help="a graph file (*.loom.json)")
    p.add_argument("-o", "--output", metavar="MODEL.onnx",
                   help="write the ONNX model here (loss and metrics dropped, batch symbolic)")
    p.add_argument("--checkpoint", metavar="C",
                   help="trained weights (a run's checkpoint.npz); default: the graph's own "
                        "initial weights")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset to target (default {DEFAULT_OPSET})")
    p.add_argument("--python", metavar="OUT.py",
                   help="write the model as a Python script (inference with --input/--output "
                        "as main.py infer, and --train), its weights beside it as "
                        "OUT.weights.npz")
    p.add_argument("--flavour", choices=list(FLAVOURS), default="torch",
                   help="what the script is written with: torch (an nn.Module) or loom "
                        "(Loom's Python API); default torch")
    return p


def check_folder(path):
    """An output's folder must exist: said plainly, before any work (the atomic write would
    name its temporary file)."""
    folder = Path(path).expanduser().resolve().parent
    if not folder.is_dir():
        raise LoomError(f"{path}: the folder {folder} does not exist")


def _onnx(args, doc):
    from ..interop import onnx_export  # onnx is imported only when a model is written
    check_folder(args.output)
    model = onnx_export.export_file(doc, args.output, args.checkpoint, args.opset)
    weights = f"weights of {args.checkpoint}" if args.checkpoint else "initial weights"
    print(f"wrote {args.output} ({weights})")
    print(describe(model))


def describe(model) -> str:
    """The model's inputs and outputs (name, shape with the batch as N, element type)."""
    from onnx import helper

    def line(v):
        t = v.type.tensor_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
        return f"{v.name} ({', '.join(map(str, dims))}) {helper.tensor_dtype_to_np_dtype(t.elem_type)}"
    count = sum(math.prod(i.dims) for i in model.graph.initializer)
    return (f"inputs: {'; '.join(map(line, model.graph.input))}\n"
            f"outputs: {'; '.join(map(line, model.graph.output))}\n"
            f"opset {model.opset_import[0].version}, {count:,} stored values")


def _python(args, doc):
    check_folder(args.python)
    plan = export_python(doc, args.python, args.flavour, args.checkpoint)
    weights = f"weights of {args.checkpoint}" if args.checkpoint else "initial weights"
    print(f"wrote {args.python} ({args.flavour} flavour) and {weights_path(args.python)} "
          f"({weights})")
    print(f"inputs: {'; '.join(p.describe() for p in plan.inputs)}")
    print(f"outputs: {'; '.join(p.describe() for p in plan.outputs)}")


# option (the args attribute) -> writer(args, doc); each one given is written
TARGETS = {"output": _onnx, "python": _python}


def run(args) -> int:
    chosen = [name for name in TARGETS if getattr(args, name, None)]
    if not chosen:
        raise LoomError("export: say where to write the model: -o MODEL.onnx or --python OUT.py")
    doc = load(args.file)
    for name in chosen:
        TARGETS[name](args, doc)
    return exitcodes.OK
