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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.overlap import hidden_fraction  # noqa: E402

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
        return [["(mpiexec not installed: pip install '.[dist]')"] + [""] * (len(HEADER) - 1)]
    steps = 10 if quick else 40
    out = []
    for example, kind in (("mnist_mlp", "mlp"), ("mnist_cnn", "cnn")):
        one, two = loom_run(example, 1, steps), loom_run(example, 2, steps)
        cost, exposed, skew = (sum(column) for column in zip(*two["buckets"]))
        early = two["buckets"][:-1]  # [blocking ms, exposed ms, skew ms] of all but the last
        hidden_early = (hidden_fraction(sum(b[1] for b in early), sum(b[0] for b in early))
                        if early else None)
        torch_eff = _torch_efficiency(kind, steps)
        out.append([example, f"{one['samples_per_s']:,.0f}", f"{two['samples_per_s']:,.0f}",
                    f"{two['samples_per_s'] / one['samples_per_s']:.2f}×",
                    str(len(two["buckets"])), f"{cost:.3f}", f"{exposed:.3f}", f"{skew:.3f}",
                    f"{hidden_fraction(exposed, cost):.0%}",
                    "n/a (one bucket)" if hidden_early is None else f"{hidden_early:.0%}", torch_eff])
    return out


def _torch_efficiency(kind, steps):
    try:
        one, two = torch_run(kind, 1, steps), torch_run(kind, 2, steps)
    except ImportError:
        return "n/a (no PyTorch)"
    return f"{two / one:.2f}× ({one:,.0f} → {two:,.0f}/s)"


HEADER = ["example (global batch 256)", "1 rank samples/s", "2 ranks samples/s",
          "Loom 2-rank speed-up", "buckets", "allreduce ms (blocking)", "exposed ms", "skew ms",
          "hidden", "hidden, all but the last bucket", "PyTorch DDP (gloo) 2-process speed-up"]
NOTE = """Each rank gets its share of the cores (2 cores: one thread per rank; one rank uses both).
allreduce ms: the step's buckets, each summed with a blocking call (ranks in step, best of
20); exposed ms: per step, the waits for buckets after every rank had started them
(communication the backward pass did not hide); skew ms: the waits before that, for a slower
rank to start them (see core/overlap.py); hidden = 1 - exposed / allreduce. The last bucket
(the first layers' gradients) starts when the backward pass ends and has only the updates
to hide behind, so the next column leaves it out. Started allreduces move on between the
step's ops (the executor polls MPI there)."""


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    print(HEADER)
    for row in rows(quick=os.environ.get("QUICK") == "1"):
        print(row)
