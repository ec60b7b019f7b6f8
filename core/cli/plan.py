"""`main.py plan`'s presentation: the step's plan report (core/step.py) as rich tables."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_report(report):
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
    for note in report.get("notes", ()):
        console.print(f"[yellow]note:[/yellow] {note}")


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
