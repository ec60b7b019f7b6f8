"""Real 2-rank MPI jobs (mpi4py + MPICH from the `dist` extra): K ranks compute what one
process computes on the whole batch, rank 0 alone reports, and a rank that dies ends the job
instead of leaving the other waiting."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import ROOT, cli_command, events, run_cli, small_digits  # noqa: F401 (a fixture)

mpiexec = Path(sys.executable).with_name("mpiexec")
pytestmark = pytest.mark.skipif(
    not mpiexec.exists() or __import__("importlib").util.find_spec("mpi4py") is None,
    reason="needs the dist extra (mpi4py and mpich): pip install '.[dist]'")
SCRIPT = Path(__file__).with_name("rank_equivalence.py")


@pytest.mark.parametrize("mode", ["dist", "dist-standin"])
def test_two_ranks_give_the_parameters_of_one_process_float64(tmp_path, mode):
    """20 momentum steps of an MLP with synchronised batch norm and dropout, global batch 31
    (unequal shares): every parameter within 1e-9 of its scale, losses alike. `dist-standin`
    keeps everything on the stand-in device and sums through the backend's collectives, the
    path a GPU run takes with NCCL."""
    subprocess.run([sys.executable, SCRIPT, "single", tmp_path / "one.npz"], check=True, timeout=120)
    subprocess.run([mpiexec, "-n", "2", sys.executable, SCRIPT, mode, tmp_path / "two.npz"],
                   check=True, timeout=120)
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    for key in one.files:
        scale = max(1.0, float(np.abs(one[key]).max()))
        assert np.abs(one[key] - two[key]).max() <= 1e-9 * scale, key
    assert one["losses"][-1] < one["losses"][0]  # it did train


def _steps(stdout):
    return [e for e in events(stdout) if e["event"] == "step"]


def test_procs_2_trains_like_one_process_and_rank_0_alone_reports(small_digits, tmp_path):
    one = run_cli("train", small_digits, "--out", tmp_path / "one", "--events", "-")
    two = run_cli("train", small_digits, "--out", tmp_path / "two", "--events", "-", "--procs", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = _steps(one.stdout), _steps(two.stdout)
    assert [e["step"] for e in b] == [e["step"] for e in a]  # each step reported once
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-5
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert not list(tmp_path.glob("two-*"))  # one run folder, rank 0's


def test_a_device_backend_trains_data_parallel_through_its_own_collectives(small_digits, tmp_path):
    """`train --distributed` on the stand-in device: the trainer joins the backend's
    collectives (a GPU's NCCL) before anything is allocated and trains like one process."""
    one = run_cli("train", small_digits, "--out", tmp_path / "one", "--events", "-")
    two = subprocess.run([mpiexec, "-n", "2", *cli_command("train", small_digits, "--out", tmp_path / "two",
                                                          "--events", "-", "--distributed",
                                                          device="standin")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = _steps(one.stdout), _steps(two.stdout)
    assert [e["step"] for e in b] == [e["step"] for e in a]
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-5


def test_a_distributed_run_resumes(small_digits, tmp_path):
    first = run_cli("train", small_digits, "--out", tmp_path / "run", "--epochs", "1", "--procs", "2")
    assert first.returncode == 0, first.stderr
    again = run_cli("train", small_digits, "--out", tmp_path / "run", "--resume", "--procs", "2")
    assert again.returncode == 0, again.stderr
    straight = run_cli("train", small_digits, "--out", tmp_path / "straight", "--procs", "2")
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    whole = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert resumed["epochs"] == 2 and resumed["val_loss"] == pytest.approx(whole["val_loss"], abs=1e-6)


def _rank_pids(parent_pid, rank):
    """Processes below `parent_pid` that MPICH started as `rank` (PMI_RANK in their environment)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in env and b"--distributed" in cmd:
            found.append(int(proc.name))
    return found


def test_a_killed_rank_ends_the_job_and_keeps_the_checkpoint(small_digits, tmp_path):
    data = json.loads(small_digits.read_text())
    data["training"].update(epochs=500)
    small_digits.write_text(json.dumps(data))
    out = tmp_path / "run"
    job = subprocess.Popen([sys.executable, ROOT / "main.py", "train", small_digits, "--out", out,
                            "--events", "-", "--procs", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in job.stdout:  # wait for training to be under way
        if '"epoch"' in line and '"event": "epoch"' in line:
            break
    victims = _rank_pids(job.pid, 1)
    assert victims, "rank 1 not found"
    os.kill(victims[0], signal.SIGKILL)
    start = time.monotonic()
    try:
        job.wait(timeout=30)
    finally:
        job.kill()
    assert time.monotonic() - start < 30 and job.returncode != 0
    from core import checkpoint
    params, _, _, meta = checkpoint.load(out / "checkpoint.npz")  # intact: the last epoch's
    assert meta["epoch"] >= 1 and params


def test_a_failure_on_every_rank_is_one_clear_error_and_no_hang(small_digits, tmp_path):
    data = json.loads(small_digits.read_text())
    data["training"].update(lr=1e30, optimizer="sgd")
    small_digits.write_text(json.dumps(data))
    result = run_cli("train", small_digits, "--out", tmp_path / "run", "--procs", "2", timeout=120)
    assert result.returncode != 0
    assert "non-finite loss" in result.stderr and "Traceback" not in result.stderr


def test_the_benchmark_rank_times_every_bucket_of_a_two_rank_step():
    """bench/dist_rank.py under mpiexec: each rank records when it started and waited for each
    bucket, and rank 0 reports every bucket's blocking cost, exposed wait and skew."""
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, ROOT / "bench" / "dist_rank.py",
                          "mnist_mlp", "64", "3", str(64 << 10)],
                         capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["procs"] == 2 and len(report["buckets"]) == 4  # 64 KB buckets of the MLP
    for cost, exposed, skew in report["buckets"]:
        assert cost > 0 and exposed >= 0 and skew >= 0
