"""Published architectures (torchvision's ResNet-50, Inception v3 and DenseNet-121, random
weights) exported by PyTorch, imported by Loom, run as `main.py infer` runs them against
onnxruntime, and opened in the editor (bench/onnx_models.py measures the same steps).
Slow (about half a minute each): excluded from `make test`; skipped without torchvision."""
import numpy as np
import pytest

from bench import onnx_models
from core.graphfile import load
from core.layers import analyze

pytestmark = pytest.mark.slow
# float32 through about a hundred layers: Loom and onnxruntime each differ from a float64
# run by about 2e-5 of the logits' scale (bench/onnx_models.py's table)
TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def torch_and_torchvision():
    loaded = onnx_models.load_torch()
    if loaded is None:
        pytest.skip("torch and torchvision are not installed (pip install -e '.[bench]')")
    return loaded


@pytest.mark.parametrize("key", list(onnx_models.MODELS))
def test_published_model_imports_infers_and_opens(key, torch_and_torchvision, ort, tmp_path):
    onnx_path = onnx_models.export(*torch_and_torchvision, key, tmp_path)
    graph_path, _ = onnx_models.timed_import(onnx_path, tmp_path)
    doc = load(graph_path)
    problems = [str(p) for p in analyze(doc).problems]
    assert problems == ["the graph has no loss node (add SoftmaxCrossEntropy or MSELoss)"]
    x = onnx_models.images(key)
    got, _ = onnx_models.loom_infer(onnx_path, x)
    want, _ = onnx_models.ort_infer(onnx_path, x)
    assert list(got) == ["logits"] and got["logits"].shape == (onnx_models.BATCH, 1000)
    assert np.isfinite(got["logits"]).all()
    assert onnx_models.relative_diff(got, want) <= TOLERANCE
    pytest.importorskip("PySide6")
    shot = tmp_path / f"{key}.png"
    assert onnx_models.editor_open(graph_path, shot) is not None and shot.stat().st_size > 0
