"""File > Open of an .onnx model, File > Export ONNX and File > Export as Python: the editor's
side of core/interop and core/codegen. Each reports to the window's status bar and, when the
window is shown, in a message box."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.codegen import export_python as write_python, weights_path
from core.errors import LoomError
from core.interop.onnx_export import export_file
from core.interop.onnx_import import import_file

ONNX_FILTER = "ONNX models (*.onnx)"


def open_onnx(window, path) -> bool:
    """An ONNX model opens as a Loom graph: written beside the model (<stem>.loom.json and its
    weights, <stem>-2… when taken) and opened from there, so Save keeps both."""
    try:
        written = import_file(path, free_name(Path(path).with_suffix("").with_suffix(".loom.json")))
    except LoomError as exc:
        return _failed(window, "Cannot import model", exc)
    window.open_path(written)
    window.statusBar().showMessage(f"Imported {Path(path).name} as {written.name} "
                                   f"(weights in {window.document.weights})", 8000)
    return True


def export_onnx_dialog(window):
    path, _ = QFileDialog.getSaveFileName(window, "Export ONNX", f"{window.document.name}.onnx",
                                          ONNX_FILTER)
    if path:
        export_onnx(window, path)


def export_onnx(window, path) -> bool:
    """The inference graph as ONNX, with the weights of the last run's checkpoint when there is
    one (else the initial weights)."""
    ckpt = window.run_panel.checkpoint_path
    ckpt = ckpt if ckpt is not None and ckpt.exists() else None
    try:
        export_file(window.document, path, checkpoint=ckpt)
    except LoomError as exc:
        return _failed(window, "Cannot export", exc)
    weights = f"trained weights of {ckpt.parent.name}" if ckpt else "initial weights (no run yet)"
    window.statusBar().showMessage(f"Exported {path} with the {weights}", 8000)
    return True


def export_python_dialog(window, flavour):
    path, _ = QFileDialog.getSaveFileName(window, f"Export as Python ({FLAVOUR_NAMES[flavour]})",
                                          f"{window.document.name}.py", "Python scripts (*.py)")
    if path:
        export_python(window, path, flavour)


FLAVOUR_NAMES = {"torch": "PyTorch", "loom": "Loom"}


def export_python(window, path, flavour) -> bool:
    """The inference model as a script (blocks as classes or functions), with the last run's
    weights beside it when there is one (else the initial weights), as `main.py export
    --python` writes it."""
    ckpt = window.run_panel.checkpoint_path
    ckpt = ckpt if ckpt is not None and ckpt.exists() else None
    try:
        write_python(window.document, Path(path), flavour, ckpt)
    except LoomError as exc:
        return _failed(window, "Cannot export", exc)
    weights = f"trained weights of {ckpt.parent.name}" if ckpt else "initial weights (no run yet)"
    window.statusBar().showMessage(f"Exported {path} ({FLAVOUR_NAMES[flavour]}) with the "
                                   f"{weights} in {weights_path(path).name}", 8000)
    return True


def _failed(window, title, exc) -> bool:
    if window.isVisible():
        QMessageBox.warning(window, title, str(exc))
    window.statusBar().showMessage(str(exc))
    return False


def free_name(path: Path) -> Path:
    """`path`, or <stem>-2.loom.json, -3… when it is taken: an import never overwrites a graph."""
    stem, k = path.name[:-len(".loom.json")], 2
    while path.exists():
        path, k = path.with_name(f"{stem}-{k}.loom.json"), k + 1
    return path
