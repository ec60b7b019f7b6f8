"""Every I/O failure ends the same way: one line on stderr, the documented exit code, an
`error` event where stdout still works, and the last good checkpoint kept (a resume from it
reproduces the uninterrupted run)."""
import errno
import os
import subprocess

import numpy as np
import pytest

from core import checkpoint
from core.cli import exitcodes

from .conftest import ROOT, cli_command
from .runs_helpers import one_line_error, params, same_params, strict_events, tiny_graph, train

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _mount_tmpfs(path, options):
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount to make a real small or read-only file system")
    return path


@pytest.fixture
def read_only_dir(tmp_path):
    if os.geteuid() != 0:  # chmod binds everyone but root
        path = tmp_path / "ro"
        path.mkdir(mode=0o555)
        yield path
        path.chmod(0o755)
        return
    yield _mount_tmpfs(tmp_path / "ro", "ro,size=64k")
    subprocess.run(["umount", str(tmp_path / "ro")], check=True)


@pytest.fixture
def full_disk(tmp_path):
    yield _mount_tmpfs(tmp_path / "full", "size=64k")
    subprocess.run(["umount", str(tmp_path / "full")], check=True)


@pytest.fixture
def straight(tmp_path_factory, capsys):
    """Parameters of the uninterrupted 2-epoch run."""
    folder = tmp_path_factory.mktemp("straight")
    assert train(capsys, tiny_graph(folder), "--out", folder / "run")[0] == 0
    return params(folder / "run")


# ---- the run folder cannot be used: refused before training, exit 2 ---------------------------

@pytest.mark.parametrize("case", ["a file", "under a file", "5000 characters", "read-only"])
def test_an_unusable_run_folder_is_one_line_and_exit_2(tmp_path, capsys, request, case):
    (tmp_path / "file").write_text("not a folder")
    out = {"a file": lambda: tmp_path / "file", "under a file": lambda: tmp_path / "file" / "run",
           "5000 characters": lambda: tmp_path / "/".join(["d" * 99] * 50),
           "read-only": lambda: request.getfixturevalue("read_only_dir") / "run"}[case]()
    code, _, err = train(capsys, tiny_graph(tmp_path), "--out", out)
    assert code == exitcodes.BAD_INPUT and one_line_error(err), err
    assert len(err) < 400  # a 5,000-character path is shortened in the message


# ---- a write fails during training: exit 3, error event, last good checkpoint kept -------------

def _fail_checkpoint_save(monkeypatch, at=3):
    """np.savez writes part of the file and then finds the disk full, on save number `at`
    (1: the start, 2: after epoch 1, 3: after epoch 2)."""
    real, calls = np.savez, []

    def savez(f, **arrays):
        calls.append(1)
        if len(calls) == at:
            f.write(b"PK\x03\x04 half a zip")
            raise ENOSPC
        return real(f, **arrays)
    monkeypatch.setattr(np, "savez", savez)


def _fail_metrics_write(monkeypatch, at=30):
    """metrics.jsonl: the disk is full at its `at`-th line (step 30 is inside epoch 2)."""
    import core.cli.sinks as sinks
    real = sinks.open_metrics

    def open_metrics(path, resume_step=None):
        stream, lines = real(path, resume_step), []

        class Full:
            def write(self, text):
                lines.append(text)
                if len(lines) >= at:
                    raise ENOSPC
                return stream.write(text)

            def __getattr__(self, name):
                return getattr(stream, name)
        return Full()
    monkeypatch.setattr(sinks, "open_metrics", open_metrics)


@pytest.mark.parametrize("fault, kept_epochs", [(_fail_checkpoint_save, 1), (_fail_metrics_write, 1)])
def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch, straight,
                                                    fault, kept_epochs):
    graph, out = tiny_graph(tmp_path), tmp_path / "run"
    with monkeypatch.context() as patch:
        fault(patch)
        code, stdout, err = train(capsys, graph, "--out", out, "--events", "-")
    assert code == exitcodes.TRAINING_FAILED and one_line_error(err), err
    assert "No space left on device" in err and str(out) in err
    error = strict_events(stdout)[-1]
    assert error["event"] == "error" and "No space left" in error["message"]
    assert checkpoint.load(out / "checkpoint.npz")[3]["epoch"] == kept_epochs
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert train(capsys, graph, "--out", out, "--resume")[0] == 0
    assert same_params(params(out), straight)


def test_a_real_full_file_system(full_disk, capsys, tmp_path):
    graph, out = tiny_graph(tmp_path, epochs=100), full_disk / "run"
    code, stdout, err = train(capsys, graph, "--out", out, "--events", "-")
    assert code == exitcodes.TRAINING_FAILED and one_line_error(err) and "No space left" in err
    assert strict_events(stdout)[-1]["event"] == "error"
    assert checkpoint.load(out / "checkpoint.npz")[3]["step"] > 0


# ---- stdout: closed, or its reader gone (`| head -1`) ------------------------------------------

def _closed_stdout():
    os.close(1)


@pytest.mark.parametrize("events, code", [(True, exitcodes.BAD_INPUT), (False, exitcodes.OK)])
def test_a_closed_stdout(tmp_path, events, code):
    args = ["train", tiny_graph(tmp_path, epochs=1), "--out", tmp_path / "run"]
    result = subprocess.run(cli_command(*args, *(["--events", "-"] if events else [])), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_closed_stdout, timeout=120)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert not events or (one_line_error(result.stderr) and "standard output" in result.stderr)


def test_a_reader_that_goes_away_stops_training_with_a_checkpoint(tmp_path, capsys):
    """40 epochs of events overflow the pipe, so the run cannot finish before the reader leaves."""
    graph, out = tiny_graph(tmp_path, epochs=40), tmp_path / "run"
    proc = subprocess.Popen(cli_command("train", graph, "--out", out, "--events", "-"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == exitcodes.TRAINING_FAILED
    assert one_line_error(err) and "stdout" in err and "--resume" in err, err
    assert 0 < checkpoint.load(out / "checkpoint.npz")[3]["step"]
    assert train(capsys, graph, "--out", out, "--resume")[0] == 0
    assert train(capsys, graph, "--out", tmp_path / "straight")[0] == 0
    assert same_params(params(out), params(tmp_path / "straight"))


# ---- what the event stream may contain, and unexpected failures ---------------------------------

def test_events_and_summary_never_hold_bare_nan(tmp_path, capsys, monkeypatch):
    from core.train import Trainer
    monkeypatch.setattr(Trainer, "evaluate", lambda self, batch_size=512: (float("nan"), float("inf")))
    out = tmp_path / "run"
    code, stdout, err = train(capsys, tiny_graph(tmp_path, epochs=1), "--out", out, "--events", "-")
    assert code == 0, err
    epoch = next(e for e in strict_events(stdout) if e["event"] == "epoch")
    assert epoch["val_loss"] is None and epoch["val_accuracy"] is None
    strict_events((out / "metrics.jsonl").read_text())
    strict_events((out / "summary.json").read_text().replace("\n", " "))


def test_an_unexpected_exception_has_its_own_exit_code_and_an_event(tmp_path, capsys, monkeypatch):
    from core.train import Trainer

    def boom(*_):
        raise RuntimeError("boom")
    monkeypatch.setattr(Trainer, "_train_step", boom)
    code, stdout, err = train(capsys, tiny_graph(tmp_path), "--out", tmp_path / "run", "--events", "-")
    assert code == exitcodes.INTERNAL != exitcodes.INVALID_GRAPH
    assert one_line_error(err) and "internal error: RuntimeError: boom" in err
    assert strict_events(stdout)[-1] == {"event": "error", "message": err.strip()[len("error: "):]}


def test_the_readme_lists_every_exit_code():
    readme = (ROOT / "README.md").read_text()
    codes = [v for k, v in vars(exitcodes).items() if k.isupper()]
    assert all(f"`{code}`" in readme for code in codes)
