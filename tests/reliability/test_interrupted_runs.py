"""kill -9, Ctrl-C, two Ctrl-C 10 ms apart and Ctrl-C during start-up, at moments drawn from a
seeded generator, each followed by `--resume`: the resumed run must equal the uninterrupted
one bit for bit, with one metrics record per step. LOOM_TRIALS=N runs N trials of each kind."""
import os
import random
import signal

import pytest

from . import trials

COUNT = int(os.environ.get("LOOM_TRIALS", "2"))
DRAW = random.Random(17)
MOMENTS = [DRAW.randrange(1, trials.STEPS) for _ in range(4 * COUNT)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability")
    graph = trials.graph(folder)
    result = trials.run(graph, "--out", folder / "reference")
    assert result.returncode == 0, result.stderr
    return graph, folder / "reference"


def _resume_and_compare(graph, out, reference):
    result = trials.run(graph, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert trials.problems(out, reference) == []


@pytest.mark.parametrize("step", MOMENTS[:COUNT])
def test_kill_9_then_resume_is_exact(setup, tmp_path, step):
    graph, reference = setup
    code, _ = trials.interrupt_after(trials.start(graph, tmp_path / "run"), step, [signal.SIGKILL])
    assert code == -signal.SIGKILL
    _resume_and_compare(graph, tmp_path / "run", reference)


@pytest.mark.parametrize("step", MOMENTS[COUNT:2 * COUNT])
@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
                         ids=["ctrl-c", "ctrl-c-twice", "sigterm"])
def test_interrupt_then_resume_is_exact(setup, tmp_path, step, signals):
    graph, reference = setup
    code, err = trials.interrupt_after(trials.start(graph, tmp_path / "run"), step, signals)
    assert code == 130 and "Traceback" not in err and "--resume" in err, err
    _resume_and_compare(graph, tmp_path / "run", reference)


@pytest.mark.parametrize("first, second", list(zip(MOMENTS[2 * COUNT:3 * COUNT], MOMENTS[3 * COUNT:])))
def test_interrupting_a_resumed_run_is_exact_too(setup, tmp_path, first, second):
    graph, reference = setup
    out = tmp_path / "run"
    assert trials.interrupt_after(trials.start(graph, out), first, [signal.SIGINT])[0] == 130
    resumed = trials.start(graph, out, "--resume")
    code, err = trials.interrupt_after(resumed, second, [signal.SIGINT])
    assert code in (0, 130), err  # 0: the rest of the run was shorter than `second` steps
    _resume_and_compare(graph, out, reference)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc to see start-up")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6])  # start-up takes about 0.5 s
def test_ctrl_c_during_start_up_ends_cleanly(setup, tmp_path, delay):
    graph, reference = setup
    out = tmp_path / "run"
    code, err = trials.interrupt_while_starting(trials.start(graph, out), delay)
    assert code in (0, 130) and "Traceback" not in err, err
    if (out / "checkpoint.npz").exists():
        _resume_and_compare(graph, out, reference)
    else:  # interrupted before anything was written: the folder holds no run
        assert trials.run(graph, "--out", out).returncode == 0
        assert trials.problems(out, reference) == []
