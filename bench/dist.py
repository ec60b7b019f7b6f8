"""The data-parallel section of `make bench`: throughput of the MNIST MLP and CNN examples on
1 and 2 ranks (mpiexec, each rank with its share of the cores), the cost of their gradient
allreduces, how much of it the backward pass hid, and the same models under PyTorch DDP
(gloo, 2 processes) side by side."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).with_name("mpiexec")
GLOBAL_BATCH = 256
BUCKET_BYTES = 64 << 10  # small buckets: these models have 0.1-0.9 MB of gradients


def loom_run(example, procs, steps):
    command = [sys.executable, str(HERE / "dist_rank.py"), example, str(GLOBAL_BATCH), str(steps),
               str(BUCKET_BYTES)]
    if procs > 1:
        command = [str(MPIEXEC), "-n", str(procs), *command]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_run(kind, procs, steps):
    from bench import dist_torch
    return dist_torch.measure(kind, procs, GLOBAL_BATCH, steps)


def rows(quick):
    if not MPIEXEC.exists():
        return [["(mpiexec not installed: pip install '.[dist]')"] + [""] * 7]
    steps = 10 if quick else 40
    out = []
    for example, kind in (("mnist_mlp", "mlp"), ("mnist_cnn", "cnn")):
        one, two = loom_run(example, 1, steps), loom_run(example, 2, steps)
        hidden = max(0.0, 1 - two["exposed_ms"] / two["allreduce_ms"]) if two["allreduce_ms"] else 0.0
        torch_eff = _torch_efficiency(kind, steps)
        out.append([example, f"{one['samples_per_s']:,.0f}", f"{two['samples_per_s']:,.0f}",
                    f"{two['samples_per_s'] / one['samples_per_s']:.2f}×",
                    f"{two['allreduce_ms']:.2f}", f"{two['exposed_ms']:.2f}", f"{hidden:.0%}",
                    torch_eff])
    return out


def _torch_efficiency(kind, steps):
    try:
        one, two = torch_run(kind, 1, steps), torch_run(kind, 2, steps)
    except ImportError:
        return "n/a (no PyTorch)"
    return f"{two / one:.2f}× ({one:,.0f} → {two:,.0f}/s)"


HEADER = ["example (global batch 256)", "1 rank samples/s", "2 ranks samples/s",
          "Loom 2-rank speed-up", "allreduce ms (blocking)", "exposed ms", "hidden",
          "PyTorch DDP (gloo) 2-process speed-up"]
NOTE = """Each rank gets its share of the cores (2 cores: one thread per rank; one rank uses both).
allreduce ms: the step's buckets summed with blocking calls; exposed ms: what the step still
waited for at the end (communication not hidden behind the backward pass, and the ranks'
skew); hidden = 1 - exposed / allreduce, at least 0. MPICH moves a non-blocking allreduce
forward only inside MPI calls (no progress thread by default), so little is hidden here."""


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    print(HEADER)
    for row in rows(quick=os.environ.get("QUICK") == "1"):
        print(row)
