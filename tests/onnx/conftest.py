"""ONNX interop tests. onnxruntime (a test extra) is the reference where a test compares
outputs; without it those comparisons are skipped, never failed."""
import pytest


@pytest.fixture
def ort():
    return pytest.importorskip(
        "onnxruntime", reason="onnxruntime is not installed: the comparison with ONNX's "
        "reference runtime is skipped (pip install -e '.[test]' installs it)")
