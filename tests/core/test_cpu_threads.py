"""Large row-wise ops split over CPU threads (core/ops/cpu.py): the same bits as on one
thread for whole training steps, the right arrays cut, errors raised on the caller."""
import numpy as np
import pytest

import core
from core.ops import OPS, cpu
from tests.cli.test_text_models import tiny_gpt

from .graphs import cnn, mlp


@pytest.fixture
def threads(monkeypatch):
    def set_threads(n):
        monkeypatch.setenv("LOOM_CPU_THREADS", str(n))
        monkeypatch.setattr(cpu, "SPLIT_BYTES", 0)  # split even these small ops
        monkeypatch.setattr(cpu, "MIN_BYTES", 0)
    return set_threads


def _gpt_step(tmp_path):
    from core import graphfile
    from core.layers import build
    from core.step import sample_feed, trainable_parameters
    built = build(graphfile.load(tiny_gpt(tmp_path)), training=True)
    params = trainable_parameters(built)
    feed = sample_feed(built, 3, fill="random")
    rng = np.random.default_rng(0)
    for node in built.feeds.values():
        feed[node] = rng.integers(0, 66, feed[node].shape)
    return [built.loss, *core.gradients(built.loss, params)], feed


def _graphs(tmp_path):
    loss, params, feed, _ = mlp([20, 32, 32, 5], 8)
    yield [loss, *core.gradients(loss, params)], feed
    loss, params, feed, _ = cnn(6)
    yield [loss, *core.gradients(loss, params)], feed
    yield _gpt_step(tmp_path)


def test_split_steps_give_the_bits_of_one_thread(threads, tmp_path, default_device):
    """MLP, CNN and a transformer (layer norm, GELU, softmax, pools and im2col copies split
    on numpy; a device backend never splits)."""
    for outputs, feed in _graphs(tmp_path):
        threads(1)
        want = core.Executor(outputs).run(feed)
        for count in (2, 3):
            threads(count)
            ex = core.Executor(outputs)
            ex.run(feed)
            assert ex._last.row_threads == (count if default_device == "numpy" else 1)
            for got, ref in zip(ex.run(feed), want):
                assert got.tobytes() == ref.tobytes()


def test_only_row_aligned_arrays_are_cut(threads):
    threads(2)
    x, gamma, beta = np.ones((6, 4)), np.ones(4), np.zeros(4)
    out, ws = np.empty((6, 4)), {"tmp": np.empty((6, 4)), "total": np.empty(4)}
    parts = cpu.row_parts(OPS["layer_norm"], {"eps": 1e-5}, [x, gamma, beta], out, ws, threads=2)
    assert [p[1].shape for p in parts] == [(3, 4), (3, 4)]
    (a, b, c), _, part_ws = parts[1]
    assert a.shape == (3, 4) and b is gamma and c is beta
    assert part_ws["tmp"].shape == (3, 4) and part_ws["total"] is ws["total"]
    assert np.shares_memory(parts[1][1], out[3:])


def test_ops_whose_rows_are_not_independent_run_whole(threads):
    threads(2)
    x = np.ones((8, 5))
    assert cpu.row_parts(OPS["layer_norm"], {"eps": 1e-5}, [np.ones(5), x[0], x[0]],
                         np.empty(5), None, 2) is None  # a single row: the axis is the row
    assert cpu.row_parts(OPS["softmax"], {"axis": 0}, [x], np.empty((8, 5)), None, 2) is None
    assert cpu.row_parts(OPS["softmax"], {"axis": -1}, [x], np.empty((8, 5)), None, 2) is not None
    assert cpu.row_parts(OPS["matmul"], {}, [x, x.T], np.empty((8, 8)), None, 2) is None
    assert cpu.row_parts(OPS["exp"], {}, [x], np.empty((8, 5)), None, 1) is None  # one thread
    assert cpu.row_parts(OPS["add"], {}, [x, x], np.empty((8, 5)), None, 2) is None  # memory-bound


def test_errors_in_a_thread_reach_the_caller():
    def fail():
        raise ValueError("part failed")
    with pytest.raises(ValueError, match="part failed"):
        cpu.together([lambda: None, fail])
    cpu.together([lambda: None, lambda: None])  # the crew still works afterwards


def test_a_busy_crew_runs_a_second_callers_parts_on_its_own_thread():
    seen = []

    def nested():  # a part that itself asks for the crew (as a pool inside a split op could)
        cpu.together([lambda: seen.append("inner a"), lambda: seen.append("inner b")])
    cpu.together([nested, lambda: seen.append("outer")])
    assert sorted(seen) == ["inner a", "inner b", "outer"]
