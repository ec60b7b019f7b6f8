#!/usr/bin/env python3
"""Loom's entry point: no arguments opens the editor; subcommands run headless."""
import sys

from core.cli import main


def open_editor(path: str) -> int:
    from app.main_window import run_editor  # Qt is imported only when the editor opens
    return run_editor(path)


if __name__ == "__main__":
    sys.exit(main(open_editor=open_editor))
