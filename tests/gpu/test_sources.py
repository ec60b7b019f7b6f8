"""Every generated CUDA source compiles on its own to PTX (nvcc -ptx, or NVRTC through cupy),
warnings as errors. Runs on machines without a GPU; skipped, saying why, without a compiler."""
import pytest

from . import ptx
from .sources import all_sources


def test_every_generated_source_compiles_alone():
    name, detail = ptx.compiler()
    if name is None:
        pytest.skip(detail)
    failures = ptx.compile_all(all_sources())
    assert not failures, "\n\n".join(f"== {label}\n{log}" for label, log in failures.items())


def test_sources_cover_every_kernel_kind():
    labels = " ".join(all_sources())
    for kind in ("im2col", "col2im", "swap_outer", "sum_batch", "max_pool", "avg_pool_grad",
                 "softmax", "log_softmax", "sce_grad", "accuracy", "adam_update",
                 "reduce_mean/float64", "expand_like/float32", "mnist_cnn/step", "constants"):
        assert kind in labels, kind
