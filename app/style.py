"""Colours shared by the canvas, palette and plots (one place to restyle the editor)."""
from pathlib import Path

PORT_COLOURS = {"data": "#4fc3f7", "label": "#ffb74d", "loss": "#ef5350", "metric": "#81c784",
                "parameter": "#ba68c8"}
CATEGORY_COLOURS = {"Data": "#37474f", "Layers": "#283593", "Activations": "#00695c",
                    "Losses": "#8e2424", "Ops": "#4e342e",
                    "Block": "#2e6b34"}  # block instances and the ports inside a block
CANVAS_BG = "#1e1f22"
GRID = "#2a2b2f"
CUT = "#ff8a80"  # the knife line of a Ctrl+right-drag
HINT = "#8a8d93"  # text that says what to do on an empty view
NODE_BODY = "#2d2f34"
TEXT = "#e6e6e6"
DIM_TEXT = "#9aa0a6"
ERROR = "#ff5252"
SELECTED = "#ffd54f"

STYLESHEET = Path(__file__).resolve().parents[1] / "resources" / "style.qss"


def stylesheet() -> str:
    return STYLESHEET.read_text() if STYLESHEET.exists() else ""
