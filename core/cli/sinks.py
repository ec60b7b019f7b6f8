"""Event sinks for `train`: each is a callable taking one event dict."""
from __future__ import annotations

import json
import os
import sys

from ..runs import json_safe, open_metrics


class JsonLines:
    """One JSON object per line (the editor reads these from the child's stdout)."""

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, event):
        # strict JSON: a non-finite number is written as null, never as a bare NaN
        self.stream.write(json.dumps(json_safe(event), default=float, allow_nan=False) + "\n")
        self.stream.flush()


class EventStream(JsonLines):
    """`--events -`: when stdout fails (closed pipe, `| head -1`, full disk) the run is asked
    to stop with a checkpoint (`on_failure`), and the stream is silenced so that neither a
    later event nor the interpreter's final flush raises again."""

    def __init__(self, stream, on_failure):
        super().__init__(stream)
        self.on_failure = on_failure
        self.failure = None

    def __call__(self, event):
        if self.failure is not None:
            return
        try:
            super().__call__(event)
        except OSError as exc:
            self.failure = exc
            _silence(self.stream)
            self.on_failure()


def _silence(stream):
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file: nothing will flush into it at exit either


class MetricsFile(JsonLines):
    """DIR/metrics.jsonl: step and epoch events (see core.runs.open_metrics for resuming).
    A write that fails raises, naming the file: the run ends keeping the last good checkpoint."""

    def __init__(self, path, resume_step=None):
        super().__init__(open_metrics(path, resume_step))
        self.path = path

    def __call__(self, event):
        if event["event"] in ("step", "epoch"):
            try:
                super().__call__(event)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None

    def close(self):
        try:
            self.stream.close()
        except OSError:
            pass  # the write that failed was already reported


class PlainLines:
    """For logs and pipes: a line per epoch, no control characters."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream

    def __call__(self, event):
        if event["event"] in ("epoch", "sample"):
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
        elif kind in ("epoch", "sample"):
            self.progress.console.print(_epoch_line(event), markup=False, highlight=False)
        elif kind in ("done", "error"):
            self.progress.stop()


def _epoch_line(e):
    if e["event"] == "sample":
        return f"sample after epoch {e['epoch']}:\n{e['text']}\n"
    val = "" if e.get("val_accuracy") is None else \
        f"  val_loss {e['val_loss']:.4f}  val_acc {e['val_accuracy']:.4f}"
    return (f"epoch {e['epoch']:3d}  loss {e['loss']:.4f}  acc {e['accuracy']:.4f}{val}"
            f"  ({e['seconds']:.1f}s)")
