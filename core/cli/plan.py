"""`main.py plan`: compile the graph at a batch size and report schedule, fusion groups and
the memory plan, as rich tables or JSON."""
from __future__ import annotations

import numpy as np

from ..compiler.report import plan_tables
from ..executor import Executor
from ..graph import init_value
from ..optim import make_optimizer
from ..train import training_config, training_updates


def plan_report(doc, batch, checkpoint=None, inference=False, schedule="auto") -> dict:
    """Training plans the step `train` runs: forward, backward and the optimizer's updates."""
    from .. import layers
    built = layers.build(doc, training=not inference)
    feed = _zero_feed(built, batch)
    optimizer = None
    if inference:
        outputs = [built.logits]
    else:
        optimizer = make_optimizer(training_config(doc))
        outputs = [built.loss, *training_updates(built, optimizer)]
        optimizer.begin_step(0.0)  # a step size of zero: planning leaves the weights alone
        feed.update(optimizer.feed({p.name: feed[p] for p in built.parameters}))
    options = {"schedule": schedule}
    if checkpoint not in (None, "none"):
        options["checkpoint"] = checkpoint
    ex = Executor(outputs, **options)
    ex.run(feed)
    report = {"graph": doc.name, "batch": batch, "mode": "inference" if inference else "training",
              "checkpoint": checkpoint or "none", "order": schedule, "memory": ex.memory_report(),
              "node_of": dict(built.node_of)}
    report.update(plan_tables(ex.plan, built.node_of))
    report["persistent"] = _persistent(built, optimizer)
    return report


def _persistent(built, optimizer) -> list[dict]:
    """Parameters and, for training, the optimizer's state arrays: allocations that live
    across steps, outside the arena."""
    from ..compiler.shapes import nbytes
    rows = [{"name": p.name, "role": "parameter", "node": built.node_of.get(p.name, ""),
             "bytes": nbytes(p.attrs["shape"], p.attrs.get("dtype") or "float32")}
            for p in built.parameters]
    for key, value in (optimizer.state.items() if optimizer else ()):
        param = key.rsplit("/", 1)[0]
        rows.append({"name": key, "role": "optimizer", "node": built.node_of.get(param, ""),
                     "bytes": value.nbytes})
    return rows


def _zero_feed(built, batch):
    """Values with the right shapes: planning needs shapes, and a step on zeros is cheap."""
    rng = np.random.default_rng(0)
    feed = {p: init_value(p, rng) for p in built.parameters}
    for node in built.feeds.values():
        shape = tuple(batch if d is None else d for d in node.attrs["shape"])
        dtype = node.attrs.get("dtype") or "float32"
        feed[node] = np.zeros(shape, dtype=dtype)
    return feed


def print_report(report):
    from rich.console import Console
    from rich.table import Table
    console = Console()
    if not console.is_terminal:  # a log or a pipe: full names rather than 80-column ellipses
        console = Console(width=160)
    for name, rows in report.items():
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            table = Table(title=name, show_lines=False)
            for col in rows[0]:
                table.add_column(str(col), justify="right" if _numeric(rows[0][col]) else "left")
            for row in rows:
                table.add_row(*["scalar" if k == "shape" and v == [] else _fmt(v)
                                for k, v in row.items()])
            console.print(table)
    mem = report["memory"]
    summary = Table(title=f"memory ({report['mode']}, batch {report['batch']}, "
                          f"checkpoint {report['checkpoint']})")
    for col in ("no sharing", "planned arena", "lower bound", "workspaces (unshared)", "params",
                "optimizer state", "feeds"):
        summary.add_column(col, justify="right")
    optimizer = sum(b["bytes"] for b in report.get("persistent", []) if b["role"] == "optimizer")
    summary.add_row(*[_bytes(mem[k]) for k in ("naive_bytes", "planned_bytes", "lower_bound_bytes")],
                    _bytes(mem.get("workspace_bytes", 0)),
                    _bytes(mem["param_bytes"]), _bytes(optimizer), _bytes(mem["feed_bytes"]))
    console.print(summary)


def _numeric(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "×".join(map(str, v)) if all(isinstance(x, int) for x in v) else ", ".join(map(str, v))
    return str(v)


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
