"""Time opening and laying out a 500-node graph in the editor (offscreen). Prints seconds."""
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtWidgets import QApplication  # noqa: E402

from core import graphfile  # noqa: E402
from core.document import GraphDocument  # noqa: E402


def big_graph(blocks=123):
    """Dataset -> Flatten -> blocks of (Linear, ReLU, Add-skip, Tanh) -> loss: ~500 nodes."""
    doc = GraphDocument("big")
    doc.add_node("Dataset", {"name": "digits"}, (0, 0), "data")
    doc.add_node("Flatten", {}, (0, 0), "flat")
    doc.add_edge(("data", "images"), ("flat", "in"))
    prev = "flat"
    for i in range(blocks):
        lin, act, add, tanh = (doc.add_node(k, {"out_features": 64} if k == "Linear" else {}, (0, 0))
                               for k in ("Linear", "ReLU", "Add", "Tanh"))
        doc.add_edge((prev, "out"), (lin, "in"))
        doc.add_edge((lin, "out"), (act, "in"))
        doc.add_edge((act, "out"), (add, "a"))
        doc.add_edge((lin, "out"), (add, "b"))
        doc.add_edge((add, "out"), (tanh, "in"))
        prev = tanh
    head = doc.add_node("Linear", {"out_features": 10}, (0, 0))
    loss = doc.add_node("SoftmaxCrossEntropy", {}, (0, 0))
    doc.add_edge((prev, "out"), (head, "in"))
    doc.add_edge((head, "out"), (loss, "logits"))
    doc.add_edge(("data", "labels"), (loss, "labels"))
    return doc


def main():
    app = QApplication.instance() or QApplication([])
    from app.main_window import MainWindow
    path = Path(tempfile.mkdtemp()) / "big.loom.json"
    doc = big_graph()
    graphfile.save(doc, path)
    window = MainWindow(recovery_dir=path.parent / "rec")
    start = time.perf_counter()
    window.open_path(path)
    app.processEvents()
    opened = time.perf_counter() - start
    start = time.perf_counter()
    window.auto_layout()
    app.processEvents()
    laid_out = time.perf_counter() - start
    start = time.perf_counter()
    window.scene.refresh_analysis()
    analysed = time.perf_counter() - start
    print(f"{len(doc.nodes)} nodes, {len(doc.edges)} edges: open {opened:.2f}s, "
          f"layout {laid_out:.2f}s, live analysis {analysed:.2f}s")
    os._exit(0)


if __name__ == "__main__":
    main()
