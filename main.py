#!/usr/bin/env python3
"""Loom's entry point: no arguments opens the editor; subcommands run headless."""
import signal
import sys

# Ctrl-C (or the editor's Stop) while the engine is still importing: nothing has been
# written yet, so leave quietly with 130 instead of a KeyboardInterrupt traceback.
signal.signal(signal.SIGTERM, signal.default_int_handler)
try:
    from core.cli import main
except KeyboardInterrupt:
    print("interrupted before training started: nothing to save", file=sys.stderr)
    sys.exit(130)


def open_editor(path: str) -> int:
    from app.main_window import run_editor  # Qt is imported only when the editor opens
    return run_editor(path)


if __name__ == "__main__":
    try:
        code = main(open_editor=open_editor)
    except KeyboardInterrupt:  # in the last instants, after the run was saved and reported
        code = 130
    for _signal in (signal.SIGINT, signal.SIGTERM):  # the outcome is decided: exit with it
        signal.signal(_signal, signal.SIG_IGN)
    sys.exit(code)
