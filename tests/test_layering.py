"""DESIGN.md's layers: core/ and gpu/ never import Qt, pyqtgraph or app; core/ never imports
cupy at module level (the GPU backend is reached lazily through the backend registry)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"PySide6", "pyqtgraph", "app", "PyQt5", "PyQt6"}


def imports(path, module_level_only=False):
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def py_files(*dirs):
    return [p for d in dirs for p in (ROOT / d).rglob("*.py")]


@pytest.mark.parametrize("path", py_files("core", "gpu"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_gui_imports(path):
    assert not set(imports(path)) & FORBIDDEN


@pytest.mark.parametrize("path", py_files("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_level_cupy_in_core(path):
    assert "cupy" not in set(imports(path, module_level_only=True))


def test_importing_core_loads_neither_cupy_nor_qt():
    code = ("import sys, core, core.layers, core.train, core.cli; "
            "bad = [m for m in ('cupy', 'PySide6', 'pyqtgraph') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
