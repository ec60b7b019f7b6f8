"""ONNX import of published architectures: ResNet-50, Inception v3 and DenseNet-121 from
torchvision (random weights, batch-norm statistics taken from random images), each exported
by PyTorch (TorchScript exporter, opset 17, batch axis dynamic), then
  - imported as `main.py import` does (graph file and weights written; timed),
  - run as `main.py infer model.onnx` does, on a batch of 2, against onnxruntime,
  - opened in the editor offscreen: seconds from open_path to the first frame painted at
    Frame All, and a screenshot of the window.
`python bench/onnx_models.py [--models resnet50 ...] [--out DIR]`; `bench/run.py --only onnx`."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.cli import infer_cmd  # noqa: E402
from core.graphfile import load  # noqa: E402
from core.inference import inference_graph, parameter_values  # noqa: E402
from core.interop.onnx_import import import_file  # noqa: E402

# key -> (name in the table, torchvision constructor keywords, image size)
MODELS = {
    "resnet50": ("ResNet-50", {}, 224),
    "inception_v3": ("Inception v3", {"aux_logits": False, "init_weights": True}, 299),
    "densenet121": ("DenseNet-121", {}, 224),
}
HEADER = ["model", "ONNX nodes", "Loom nodes", "import s", "infer max diff", "Loom infer s",
          "onnxruntime s", "editor open s"]
BATCH = 2
NOTE = """max diff: the largest |Loom - onnxruntime| over the logits of a batch of 2 random
images, relative to the largest |logit|. import s: reading the .onnx, translating, laying out
and writing the graph and weights files (main.py import). editor open s: open_path of the
imported graph to its first painted frame at Frame All (offscreen)."""


# ---- PyTorch's side ----------------------------------------------------------------------------

def load_torch():
    """(torch, torchvision), or None when either is missing."""
    try:
        import torch
    except ImportError:
        return None
    try:
        import torchvision
    except ImportError:
        return None
    except RuntimeError:  # its C++ ops built for another torch: see _torchvision_without_ops
        torchvision = _torchvision_without_ops(torch)
    return torch, torchvision


def _torchvision_without_ops(torch):
    """torchvision's wheel built against torch's CUDA build cannot load its C++ ops beside
    the CPU build, and its import then fails registering fake kernels for two of them
    (nms, qnms). The models need no C++ op: declaring those two lets the import finish."""
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    for op in ("nms", "qnms"):
        torch.library.define(f"torchvision::{op}",
                             "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    return torchvision


def export(torch, torchvision, key, folder) -> Path:
    """The model with random weights, exported to FOLDER/KEY.onnx (input "images", output
    "logits", batch axis "N")."""
    _, kwargs, size = MODELS[key]
    torch.manual_seed(0)
    model = getattr(torchvision.models, key)(weights=None, **kwargs)
    calibrate(torch, model, size)
    path = Path(folder) / f"{key}.onnx"
    dummy = torch.randn(BATCH, 3, size, size)
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}})
    return path


def calibrate(torch, model, size):
    """Batch-norm statistics of a few random images (a cumulative average in train mode):
    with the initial ones (mean 0, variance 1) activations grow layer by layer, and
    Inception's logits reach 1e12, nothing like a trained model's numbers."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size))
    model.eval()


# ---- Loom's side --------------------------------------------------------------------------------

def images(key, seed=0):
    size = MODELS[key][2]
    return np.random.default_rng(seed).standard_normal((BATCH, 3, size, size)).astype(np.float32)


def timed_import(onnx_path, folder):
    """(graph file, seconds) of `main.py import MODEL -o FOLDER`."""
    start = time.perf_counter()
    out = import_file(onnx_path, folder)
    return out, time.perf_counter() - start


def loom_infer(onnx_path, x):
    """({output name: array}, seconds) as `main.py infer MODEL.onnx` computes them."""
    doc, weights = infer_cmd.load_model(onnx_path)
    graph = inference_graph(doc)
    params = parameter_values(doc, graph.built, None, weights)
    start = time.perf_counter()
    out = infer_cmd.run_batches(graph, params, {next(iter(graph.inputs)): x}, "numpy", BATCH)
    return out, time.perf_counter() - start


def ort_infer(onnx_path, x):
    """({output name: array}, seconds) from onnxruntime, or (None, None) without it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    values = session.run(None, {session.get_inputs()[0].name: x})
    return dict(zip([o.name for o in session.get_outputs()], values)), time.perf_counter() - start


def relative_diff(got, want) -> float:
    """max |got - want| over max |want|, over outputs of the same names (a missing name is
    a KeyError: the names must survive the import)."""
    return max(float(np.abs(got[k] - v).max() / max(np.abs(v).max(), 1e-30))
               for k, v in want.items())


# ---- the editor --------------------------------------------------------------------------------

def editor_open(graph_path, screenshot):
    """Seconds from open_path to the first frame painted at Frame All, the window saved as
    SCREENSHOT; None without PySide6."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:
        return None
    app = QApplication.instance() or QApplication([])
    scratch = Path(tempfile.mkdtemp(prefix="loom-bench-editor-"))
    window = _window(app, scratch)
    seconds = _until_painted(app, window, lambda: window.open_path(graph_path))
    _settle(app)  # the analysis and routes that follow the first frame, then the picture
    window.grab().save(str(screenshot))
    window.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds


def _window(app, scratch):
    """The editor as a user sees it (shown, 1600 x 1000), its settings and recovery files in
    SCRATCH (as tests/app/conftest.py builds it)."""
    from PySide6.QtCore import QSettings
    from app.main_window import MainWindow
    window = MainWindow(recovery_dir=scratch / "recovery",
                        settings=QSettings(str(scratch / "settings.ini"), QSettings.IniFormat))
    window.resize(1600, 1000)
    window.show()
    _settle(app)
    return window


def _until_painted(app, window, action) -> float:
    """Seconds from calling `action` until the canvas has painted a frame."""
    from PySide6.QtCore import QEvent, QObject

    class FirstPaint(QObject):
        painted = False

        def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
            self.painted |= event.type() == QEvent.Paint
            return False
    watch = FirstPaint()
    viewport = window.view.viewport()
    viewport.installEventFilter(watch)
    start = time.perf_counter()
    action()
    while not watch.painted:
        app.processEvents()
    seconds = time.perf_counter() - start
    viewport.removeEventFilter(watch)
    return seconds


def _settle(app, rounds=20):
    for _ in range(rounds):
        app.processEvents()


# ---- the table ----------------------------------------------------------------------------------

def measure(key, torch, torchvision, folder, shots) -> dict:
    """One model: exported, imported, run and opened; the numbers of its row."""
    import onnx
    onnx_path = export(torch, torchvision, key, folder)
    graph_path, import_s = timed_import(onnx_path, folder)
    x = images(key)
    got, loom_s = loom_infer(onnx_path, x)
    want, ort_s = ort_infer(onnx_path, x)
    shot = Path(shots) / f"loom_onnx_{key}.png"
    onnx_nodes = len(onnx.load(str(onnx_path), load_external_data=False).graph.node)
    return {"key": key, "onnx_nodes": onnx_nodes,
            "loom_nodes": len(load(graph_path).nodes), "import_s": import_s,
            "diff": None if want is None else relative_diff(got, want), "outputs": list(got),
            "loom_s": loom_s, "ort_s": ort_s, "editor_s": editor_open(graph_path, shot),
            "screenshot": shot, "graph": graph_path}


def row(result) -> list:
    show = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    return [MODELS[result["key"]][0], result["onnx_nodes"], result["loom_nodes"],
            show(result["import_s"], ".2f"), show(result["diff"], ".1e"),
            show(result["loom_s"], ".2f"), show(result["ort_s"], ".2f"),
            show(result["editor_s"], ".2f")]


def rows(quick=False, keys=None, folder=None, shots=None) -> list:
    """The table's rows (one line saying what is missing without torch or torchvision).
    `quick`: ResNet-50 only. The models and imported graphs go to FOLDER (default: a
    temporary one, removed after: about 250 MB), the screenshots to SHOTS (default: the
    system's temporary folder)."""
    loaded = load_torch()
    if loaded is None:
        return [["skipped: torch or torchvision is not installed (the bench extra has both)"]
                + [""] * (len(HEADER) - 1)]
    keys = keys or (["resnet50"] if quick else list(MODELS))
    shots = shots or tempfile.gettempdir()
    with tempfile.TemporaryDirectory(prefix="loom-bench-onnx-") as scratch:
        where = Path(folder or scratch)
        where.mkdir(parents=True, exist_ok=True)
        results = [measure(key, *loaded, where, shots) for key in keys]
    for r in (r for r in results if r["editor_s"] is not None):
        print(f"{MODELS[r['key']][0]}: screenshot {r['screenshot']}", file=sys.stderr)
    return [row(r) for r in results]


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--models", nargs="+", choices=list(MODELS), help="some of the models")
    args.add_argument("--out", help="folder for the .onnx models and imported graphs "
                                    "(default: a new temporary one)")
    options = args.parse_args()
    from bench.run import show
    show("ONNX import of published CNNs (torchvision, random weights, batch 2)",
         (HEADER, rows(keys=options.models, folder=options.out)), NOTE)
    sys.stdout.flush()
    os._exit(0)  # Qt's teardown after a closed offscreen window is not worth waiting for


if __name__ == "__main__":
    main()
