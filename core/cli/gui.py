"""Starting the editor from the CLI: say clearly when there is no display or no Qt plugin,
instead of letting Qt abort the process."""
from __future__ import annotations

import ctypes.util
import os
import sys

HEADLESS_HELP = """\
Loom's editor needs a display, and none was found (no DISPLAY / WAYLAND_DISPLAY).
Headless commands:
  python main.py train FILE [--epochs N] [--backend numpy|cupy|auto] [--out DIR] [--resume] [--events -]
  python main.py check FILE
  python main.py plan FILE [--batch N] [--json]
To render the editor without a screen anyway: QT_QPA_PLATFORM=offscreen python main.py"""


def display_problem() -> str | None:
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return HEADLESS_HELP
    if os.environ.get("DISPLAY") and not ctypes.util.find_library("xcb-cursor"):
        return ("Qt's xcb platform plugin needs libxcb-cursor0, which is not installed.\n"
                "On Debian/Ubuntu: sudo apt-get install libxcb-cursor0")
    return None
