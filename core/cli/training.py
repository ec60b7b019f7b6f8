"""How a `train` run ends, as the exit codes promise: every failure is one line on stderr,
an `error` event for the editor, and the last good checkpoint left in place."""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

from . import exitcodes
from ..errors import LoomError
from ..train import NonFiniteLoss, RunIOError

# failure during training -> exit code (the first matching class wins)
FAILURES = ((NonFiniteLoss, exitcodes.TRAINING_FAILED), (RunIOError, exitcodes.TRAINING_FAILED),
            (MemoryError, exitcodes.TRAINING_FAILED), (LoomError, exitcodes.BAD_INPUT))


def run_training(trainer, sinks, stream, out) -> int:
    """Run `trainer`, reporting to `sinks`; `stream` is the `--events -` sink (or None)."""
    try:
        summary = trainer.run()
    except Exception as exc:  # noqa: BLE001 - each becomes a clean exit with an event
        code = next((c for kind, c in FAILURES if isinstance(exc, kind)), exitcodes.INTERNAL)
        return fail(sinks, _message(exc, code), code)
    ignore_interrupts()  # the run is saved: a late Ctrl-C must not garble the report
    if not trainer.writer:  # data-parallel: rank 0 reports the run
        return exitcodes.INTERRUPTED if summary["status"] == "stopped" else exitcodes.OK
    if stream is not None and stream.failure is not None:
        return fail(sinks, f"the events stream (stdout) failed: {stream.failure.strerror or stream.failure}; "
                    f"training stopped at step {summary['steps']} with a checkpoint in "
                    f"{summary['checkpoint']}; continue with --resume --out {out}",
                    exitcodes.TRAINING_FAILED)
    if summary["status"] == "stopped":
        print(f"interrupted: checkpoint saved to {summary['checkpoint']}; "
              f"continue with --resume --out {out}", file=sys.stderr)
        return exitcodes.INTERRUPTED
    val, loss = summary["val_accuracy"], summary["val_loss"]
    print(f"done: {summary['epochs']} epochs, val_accuracy "
          f"{'n/a' if val is None else f'{val:.4f}'}"
          f"{'' if loss is None else f', val_loss {loss:.4f}'}, {summary['seconds']:.1f}s; "
          f"results in {out}", file=sys.stderr)
    return exitcodes.OK


def fail(sinks, message, code) -> int:
    for sink in sinks:  # a sink that cannot take the event any more must not hide the error
        try:
            sink({"event": "error", "message": message})
        except OSError:
            pass
    print(f"error: {message}", file=sys.stderr)
    return code


def _message(exc, code) -> str:
    if isinstance(exc, MemoryError):
        return f"out of memory during training ({exc or 'MemoryError'})"
    if code == exitcodes.INTERNAL:
        return internal_message(exc)
    return str(exc)


def internal_message(exc) -> str:
    """An exception Loom did not expect: one line, the traceback only on request."""
    if os.environ.get("LOOM_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    return (f"internal error: {type(exc).__name__}: {exc} (a bug in Loom; "
            f"set LOOM_DEBUG=1 to see the traceback)")


def ignore_interrupts():
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
