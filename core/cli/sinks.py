"""Event sinks for `train`: each is a callable taking one event dict."""
from __future__ import annotations

import json
import sys


class JsonLines:
    """One JSON object per line (the editor reads these from the child's stdout)."""

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, event):
        self.stream.write(json.dumps(event, default=float) + "\n")
        self.stream.flush()


class MetricsFile(JsonLines):
    """DIR/metrics.jsonl: step and epoch events, appended (a resumed run continues the file)."""

    def __init__(self, path, resume):
        super().__init__(open(path, "a" if resume else "w"))

    def __call__(self, event):
        if event["event"] in ("step", "epoch"):
            super().__call__(event)


class PlainLines:
    """For logs and pipes: a line per epoch, no control characters."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream

    def __call__(self, event):
        if event["event"] == "epoch":
            self.stream.write(_epoch_line(event) + "\n")
            self.stream.flush()


class ProgressBar:
    """A rich progress bar on a terminal: epochs, steps, loss and throughput."""

    def __init__(self, epochs, steps_per_epoch):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)
        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/" + str(epochs)),
                                 BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeRemainingColumn())
        self.task = self.progress.add_task("train", total=epochs * steps_per_epoch, epoch=1, info="")
        self.progress.start()

    def __call__(self, event):
        kind = event["event"]
        if kind == "step":
            self.progress.update(self.task, completed=event["step"], epoch=event["epoch"],
                                 info=f"loss {event['loss']:.4f}  {event['samples_per_s']:,.0f} samples/s")
        elif kind == "epoch":
            self.progress.console.print(_epoch_line(event))
        elif kind in ("done", "error"):
            self.progress.stop()


def _epoch_line(e):
    val = "" if e.get("val_accuracy") is None else \
        f"  val_loss {e['val_loss']:.4f}  val_acc {e['val_accuracy']:.4f}"
    return (f"epoch {e['epoch']:3d}  loss {e['loss']:.4f}  acc {e['accuracy']:.4f}{val}"
            f"  ({e['seconds']:.1f}s)")
