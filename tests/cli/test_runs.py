"""Run folders are never overwritten, never shared and never written through a link; their
default name is the whole graph name; a resume continues the metrics without doubling them."""
import json
import os
import stat

import pytest

from core import graphfile
from core.runs import RunFolder, default_name

from .runs_helpers import tiny_graph, train


@pytest.mark.parametrize("file, folder", [
    ("mnist.v1.loom.json", "mnist.v1"), ("mnist.v2.loom.json", "mnist.v2"),
    (".hidden.loom.json", "hidden"), (".loom.json", "run"), ("model.json", "model"),
])
def test_default_folder_is_the_whole_graph_name(file, folder):
    assert default_name(file) == folder


def test_versions_get_their_own_folders_and_nothing_lands_in_runs_itself(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("mnist.v1.loom.json", "mnist.v2.loom.json", ".hidden.loom.json"):
        code, _, err = train(capsys, tiny_graph(tmp_path, name, epochs=1))
        assert code == 0, err
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["hidden", "mnist.v1", "mnist.v2"]
    assert all((runs / d / "checkpoint.npz").exists() for d in ("hidden", "mnist.v1", "mnist.v2"))


def test_an_existing_run_is_refused_without_resume_and_left_untouched(tmp_path, capsys):
    graph, out = tiny_graph(tmp_path, epochs=1), tmp_path / "run"
    assert train(capsys, graph, "--out", out)[0] == 0
    before = {f: (out / f).read_bytes() for f in ("metrics.jsonl", "checkpoint.npz", "summary.json")}
    code, _, err = train(capsys, graph, "--out", out)
    assert code == 2 and str(out) in err and "--resume" in err
    assert {f: (out / f).read_bytes() for f in before} == before


def test_the_default_folder_moves_on_to_a_fresh_one_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    graph = tiny_graph(tmp_path, epochs=1)
    assert train(capsys, graph)[0] == 0
    first = (tmp_path / "runs/digits/metrics.jsonl").read_bytes()
    code, _, err = train(capsys, graph)
    assert code == 0 and "writing to runs/digits-2" in err and "runs/digits is taken" in err
    assert (tmp_path / "runs/digits-2/checkpoint.npz").exists()
    assert (tmp_path / "runs/digits/metrics.jsonl").read_bytes() == first


@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_another_run_is_writing_to_is_refused(tmp_path, capsys, resume):
    graph, out = tiny_graph(tmp_path, epochs=1), tmp_path / "run"
    if resume:
        assert train(capsys, graph, "--out", out)[0] == 0
    with RunFolder(out, resume=True):  # another run holds the lock
        code, _, err = train(capsys, graph, "--out", out, *(["--resume"] if resume else []))
    assert code == 2 and "another run is writing to" in err and str(out) in err


@pytest.mark.parametrize("link, resume", [("metrics.jsonl", False), ("metrics.jsonl", True),
                                          ("summary.json", True), ("checkpoint.npz", False)])
def test_run_files_are_never_written_through_a_link(tmp_path, capsys, link, resume):
    graph, out = tiny_graph(tmp_path, epochs=1), tmp_path / "run"
    out.mkdir()
    if resume:
        assert train(capsys, graph, "--out", out)[0] == 0
        (out / link).unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / link).symlink_to(victim)
    code, _, err = train(capsys, graph, "--out", out, *(["--resume"] if resume else []))
    assert code == 2 and "symbolic link" in err and link in err
    assert victim.read_text() == "precious\n"


def test_resume_drops_records_after_the_checkpoint_and_orphaned_temporaries(tmp_path, capsys):
    """As after a kill -9 mid-epoch: records past the checkpoint, a torn line, a .tmp file."""
    graph, out = tiny_graph(tmp_path, epochs=1), tmp_path / "run"
    assert train(capsys, graph, "--out", out)[0] == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"event": "step", "epoch": 2, "step": 1000}) + '\n{"event": "st')
    orphan = out / ".checkpoint.npz.deadbeef.tmp"
    orphan.write_bytes(b"half a checkpoint")
    assert train(capsys, graph, "--out", out, "--resume", "--epochs", "2")[0] == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1))
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2]
    assert not orphan.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_run_files_and_graphs_get_the_umask_permissions(tmp_path, capsys, umask):
    old = os.umask(umask)
    try:
        graph, out = tiny_graph(tmp_path, epochs=1), tmp_path / "run"
        assert train(capsys, graph, "--out", out)[0] == 0
        graphfile.save(graphfile.load(graph), tmp_path / "saved.loom.json")
    finally:
        os.umask(old)
    for path in (out / "checkpoint.npz", out / "summary.json", out / "metrics.jsonl",
                 tmp_path / "saved.loom.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    from core import atomic
    calls, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(
        "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    atomic.atomic_write(tmp_path / "x.json", lambda f: f.write("{}"))
    assert calls == ["file", "rename", "folder"]
