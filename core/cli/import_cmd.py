"""`main.py import MODEL.onnx [-o OUT.loom.json]`: an ONNX model as a Loom graph file and its
weights file, written beside each other (nothing is written if the model cannot be imported)."""
from __future__ import annotations

from . import exitcodes
from ..graphfile import load
from ..interop.onnx_import import import_file


def add_parser(subparsers):
    p = subparsers.add_parser("import", help="turn an ONNX model into a Loom graph file")
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to import")
    p.add_argument("-o", "--out", metavar="OUT.loom.json",
                   help="the graph file to write (default: beside the model, <name>.loom.json); "
                        "the weights go beside it as <name>.weights.npz")
    return p


def run(args) -> int:
    """Errors are LoomErrors (OnnxImportError naming the op type and node): the caller prints
    them as "error: ..." and exits 2."""
    out = import_file(args.model, args.out)
    doc = load(out)
    print(f"wrote {out} ({len(doc.nodes)} nodes, {len(doc.edges)} edges)")
    print(f"wrote {out.parent / doc.weights} (the imported weights)")
    return exitcodes.OK
