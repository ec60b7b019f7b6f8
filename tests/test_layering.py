"""The layers the README's layout section draws: core/ and gpu/ never import Qt, pyqtgraph or
app; core/ never imports cupy at module level (the GPU backend is reached lazily through the
backend registry); the editor uses core but not the CLI front end beside it; the compiler
is below layers, training and the CLI."""
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


def qualified_imports(path, root=ROOT):
    """Every imported module as a dotted name, relative imports resolved against the package."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            yield module
            yield from (f"{module}.{a.name}" for a in node.names)


def under(module, prefix):
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("path", py_files("app"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_editor_does_not_import_the_cli(path):
    assert not [m for m in qualified_imports(path) if under(m, "core.cli")]


@pytest.mark.parametrize("path", py_files("core/compiler"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_compiler_imports_nothing_above_it(path):
    above = ("core.layers", "core.train", "core.cli", "core.step")
    assert not [m for m in qualified_imports(path) if any(under(m, a) for a in above)]


def test_the_layering_check_sees_relative_imports(tmp_path):
    """The check must resolve `from ..cli import x` inside core/compiler (so it can fail)."""
    fake = tmp_path / "core" / "compiler" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..cli import main\nfrom . import memory\n")
    found = set(qualified_imports(fake, root=tmp_path))
    assert "core.cli" in found and "core.compiler.memory" in found
