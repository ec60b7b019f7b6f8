"""Interrupting real `main.py train` processes at chosen moments, and what a resumed run must
then be: bit for bit the uninterrupted run, with exactly one metrics record per step."""
import json
import signal
import subprocess
import time
from pathlib import Path

from tests.cli.conftest import EXAMPLES, ROOT, cli_command
from tests.cli.runs_helpers import params, same_params

EPOCHS, STEPS_PER_EPOCH = 6, 45  # digits_logreg: 1,437 training images in batches of 32
STEPS = EPOCHS * STEPS_PER_EPOCH


def graph(folder) -> Path:
    data = json.loads((EXAMPLES / "digits_logreg.loom.json").read_text())
    data["training"].update(epochs=EPOCHS, batch_size=32, seed=0)
    path = folder / "digits.loom.json"
    path.write_text(json.dumps(data))
    return path


def run(*args, timeout=120):
    return subprocess.run(cli_command("train", *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def start(graph_file, out, *extra):
    return subprocess.Popen(cli_command("train", graph_file, "--out", out, "--events", "-", *extra),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_after(proc, steps, signals, gap=0.01):
    """Send `signals` (`gap` seconds apart) once `steps` step events were read -> (code, stderr)."""
    seen = 0
    for line in proc.stdout:
        seen += '"event": "step"' in line
        if seen >= steps:
            break
    for i, sig in enumerate(signals):
        time.sleep(gap if i else 0)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def interrupt_while_starting(proc, delay):
    """SIGINT `delay` s after main.py took SIGTERM over (its first statement), i.e. while the
    engine imports, the graph loads or the first steps run -> (code, stderr)."""
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and status.exists() and not _catches_sigterm(status):
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _catches_sigterm(status):
    try:
        mask = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def step_losses(out):
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["event"] == "step"]


def epochs_recorded(out):
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [r["epoch"] for r in map(json.loads, lines) if r["event"] == "epoch"]


def problems(out, reference) -> list[str]:
    """What differs from the uninterrupted run in `reference` (empty: the trial holds)."""
    out, found = Path(out), []
    if not same_params(params(out), params(reference)):
        found.append("final parameters differ")
    if step_losses(out) != step_losses(reference):
        steps = [s for s, _ in step_losses(out)]
        found.append(f"step records differ ({len(steps)} records, {len(set(steps))} distinct steps)")
    if epochs_recorded(out) != list(range(1, EPOCHS + 1)):
        found.append(f"epoch records {epochs_recorded(out)}")
    if list(out.glob(".*.tmp")):
        found.append("temporary files left behind")
    return found
