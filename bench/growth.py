"""Growth: compile time and step time against graph size, arena bytes against batch size,
each with its fitted exponent (the slope of log y against log x: 1.0 is linear), the editor's
re-plan of the bundled examples, and a PNG of the curves (bench/out/growth.png)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import core
from tests.core.graphs import chain, cnn

OUT = Path(__file__).resolve().parent / "out"
EXAMPLES = Path(__file__).resolve().parents[1] / "resources" / "examples"


def exponent(xs, ys) -> float:
    """Least-squares slope of log y over log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def chain_rows(layer_counts, steps=7):
    """A tanh chain of width 64 (batch 32) with its gradients, as in issue 16: the first run
    (compile + one step; the best of two compilations up to 10,000 nodes) and the best of
    `steps` later steps."""
    _first_run(*chain(10)[:3])  # imports and caches warm before the first timing
    rows = []
    for layers in layer_counts:
        loss, params, feed, _ = chain(layers, width=64, batch=32)
        ex, first = _first_run(loss, params, feed)
        if layers < 2000:
            first = min(first, _first_run(loss, params, feed)[1])
        step = float("inf")
        for _ in range(steps):
            start = time.perf_counter()
            ex.run(feed, to_numpy=False)
            step = min(step, time.perf_counter() - start)
        r = ex.memory_report()
        rows.append({"layers": layers, "nodes": r["steps"], "first": first, "compile": first - step,
                     "step": step, "arena": r["planned_bytes"], "bound": r["lower_bound_bytes"]})
    return rows


def _first_run(loss, params, feed):
    ex = core.Executor([loss, *core.gradients(loss, params)])
    start = time.perf_counter()
    ex.run(feed, to_numpy=False)
    return ex, time.perf_counter() - start


def batch_rows(report, batches):
    """Arena of the LeNet-like CNN's training step and inference against the batch size."""
    rows = []
    for batch in batches:
        train, infer = report(cnn(batch), "training step"), report(cnn(batch), "inference")
        rows.append({"batch": batch, "train": train["planned_bytes"],
                     "train_bound": train["lower_bound_bytes"], "infer": infer["planned_bytes"],
                     "infer_naive": infer["naive_bytes"]})
    return rows


def replan_rows(batch=64, repeat=5):
    """What the editor's Memory plan tab does after an edit: `plan_report` of the document."""
    from core import graphfile
    from core.step import plan_report
    rows = []
    for path in sorted(EXAMPLES.glob("*.loom.json")):
        doc = graphfile.load(path)
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            plan_report(doc, batch)
            best = min(best, time.perf_counter() - start)
        rows.append([path.name.removesuffix(".loom.json"), f"{best * 1000:.1f}"])
    return ["bundled example", "re-plan ms (batch 64)"], rows


def tables(report, quick=False):
    """[(title, (header, rows), note)] for run.py's `show`, and the PNG's path (or why none)."""
    layer_counts = (50, 100, 200, 400, 800, 1600) if quick else (50, 100, 200, 400, 800, 1600, 4000)
    chains = chain_rows(layer_counts)
    batches = batch_rows(report, (8, 16, 32, 64, 128, 256))
    nodes = [r["nodes"] for r in chains]
    size_rows = [[r["layers"], r["nodes"], f"{r['first']:.3f}", f"{r['compile']:.3f}",
                  f"{r['step'] * 1000:.2f}", f"{r['step'] / r['nodes'] * 1e6:.2f}",
                  f"{r['arena'] / 2 ** 20:.2f}", f"{r['arena'] / r['bound']:.4f}"] for r in chains]
    fits = {what: exponent(nodes, [r[what] for r in chains]) for what in ("compile", "step", "arena")}
    upper = {what: exponent(nodes[-3:], [r[what] for r in chains[-3:]]) for what in ("compile", "step")}
    size_note = (f"fitted exponent against nodes: compile n^{fits['compile']:.2f} "
                 f"(largest three: n^{upper['compile']:.2f}), step n^{fits['step']:.2f} "
                 f"(largest three: n^{upper['step']:.2f}), arena n^{fits['arena']:.2f}.\n"
                 "first run = compile + one step, as Executor.run is timed the first time; "
                 "compile = first run - step.")
    bs = [r["batch"] for r in batches]
    batch_table = [[r["batch"], f"{r['train'] / 2 ** 20:.2f}", f"{r['train'] / r['train_bound']:.3f}",
                    f"{r['infer'] / 2 ** 20:.2f}", f"{r['infer_naive'] / r['infer']:.2f}×"] for r in batches]
    batch_note = (f"fitted exponent against batch: training arena b^{exponent(bs, [r['train'] for r in batches]):.2f}, "
                  f"inference arena b^{exponent(bs, [r['infer'] for r in batches]):.2f}.")
    png = plot(chains, batches, fits)
    return [("Growth: a tanh chain (width 64, batch 32) with its gradients, by size",
             (["layers", "nodes", "first run s", "compile s", "step ms", "step µs/node", "arena MiB",
               "arena/bound"], size_rows), size_note),
            ("Growth: the LeNet-like CNN's arena by batch size",
             (["batch", "training MiB", "arena/bound", "inference MiB", "inference saved"], batch_table),
             batch_note),
            ("The editor's re-plan after an edit (core.step.plan_report)", replan_rows(), None)], png


def plot(chains, batches, fits) -> str:
    """The growth curves as a PNG (pyqtgraph, offscreen); returns its path or why none."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    try:
        import pyqtgraph as pg
        import pyqtgraph.exporters
        from PySide6.QtWidgets import QApplication
    except Exception as exc:  # noqa: BLE001 - no Qt here: the tables say it all
        return f"no plot ({exc.__class__.__name__}: {exc})"
    app = QApplication.instance() or QApplication([])  # noqa: F841 - pyqtgraph needs one
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    layout = pg.GraphicsLayoutWidget()
    layout.resize(1500, 480)
    nodes = np.array([r["nodes"] for r in chains], float)
    panels = [("compile time, s", "compile", fits["compile"]), ("step time, s", "step", fits["step"])]
    for title, key, fit in panels:
        p = layout.addPlot(title=f"{title} vs nodes (log-log): n^{fit:.2f}")
        p.setLogMode(x=True, y=True)
        p.showGrid(x=True, y=True, alpha=0.3)
        ys = np.array([r[key] for r in chains])
        p.plot(nodes, ys, pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolBrush="#1f77b4")
        p.plot(nodes, ys[0] * nodes / nodes[0], pen=pg.mkPen("#999999", width=1, style=pg.QtCore.Qt.DashLine))
        p.setLabel("bottom", "nodes in schedule")
    p = layout.addPlot(title="CNN arena vs batch (log-log), MiB")
    p.setLogMode(x=True, y=True)
    p.showGrid(x=True, y=True, alpha=0.3)
    p.addLegend()
    bs = np.array([r["batch"] for r in batches], float)
    for key, colour, name in (("train", "#d62728", "training step"), ("infer", "#2ca02c", "inference")):
        p.plot(bs, np.array([r[key] for r in batches]) / 2 ** 20, pen=pg.mkPen(colour, width=2),
               symbol="o", symbolBrush=colour, name=name)
    p.setLabel("bottom", "batch")
    OUT.mkdir(exist_ok=True)
    path = OUT / "growth.png"
    exporter = pg.exporters.ImageExporter(layout.ci)
    exporter.parameters()["width"] = 1500
    exporter.export(str(path))
    return str(path)
