"""Loom's GPU benchmark: one training step (forward + backward, as bench/run.py's speed table)
of the MLP 784-512-512-10 at batch 128 and the LeNet-like CNN at batch 64, Loom on the "cupy"
backend (eagerly, and replayed as a CUDA graph) against PyTorch CUDA eager, on the same
graphs (bench/run.py's builders). `python bench/gpu_bench.py [--quick]`.

Each timed call is one step followed by a device synchronisation (as a training loop reading
its loss waits for the step), best round of several, interleaved. "Loom calls/step" counts
the executor's step calls after fusion (`Executor.launches_per_step`: one per op or fused
group); each is one kernel launch, except that a conv op launches an im2col or col2im kernel
and a cuBLAS GEMM per chunk of samples (and a batch-sum kernel for the weight gradient), and
a matmul is one cuBLAS call. With a CUDA graph the whole step is one graph launch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cupy():
    try:
        import cupy
        return cupy if cupy.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no cupy, or no driver
        return None


def _torch_cuda():
    try:
        import torch
        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


def loom_step(cupy, graph, capture):
    """(timed function, executor): forward + backward on the device, fed device arrays."""
    import core
    loss, params, feed, _ = graph
    ex = core.Executor([loss, *core.gradients(loss, params)], backend="cupy", capture=capture)
    on_device = {n: cupy.asarray(v) for n, v in feed.items()}
    sync = cupy.cuda.Device().synchronize

    def step():
        ex.run(on_device, to_numpy=False)
        sync()
    step()  # compiles the plan and its kernels (and, with capture, records the graph next run)
    step()
    return step, ex


def torch_cuda_step(torch, graph, kind):
    """bench/run.py's PyTorch step, its tensors made on the GPU."""
    from bench.run import torch_step
    previous = torch.get_default_device()
    torch.set_default_device("cuda")
    try:
        step = torch_step(graph, kind)
    finally:
        torch.set_default_device(previous)

    def timed():
        step()
        torch.cuda.synchronize()
    return timed


def speed_rows(cupy, torch, quick):
    from bench.run import compare
    from tests.core.graphs import cnn, mlp
    rows = []
    cases = [("MLP 784-512-512-10, batch 128", lambda: mlp([784, 512, 512, 10], 128), "ce", 50),
             ("CNN (LeNet-like), batch 64", lambda: cnn(64), "cnn", 30)]
    for name, make, kind, repeat in cases:
        repeat = max(1, repeat // (5 if quick else 1))
        eager, ex = loom_step(cupy, make(), capture=False)
        graphed, _ = loom_step(cupy, make(), capture=True)
        contenders = [eager, graphed] + ([torch_cuda_step(torch, make(), kind)] if torch else [])
        times = compare(contenders, repeat)
        pt = times[2] if torch else None
        ratio = (lambda ms: f"{ms / pt:.2f}×") if pt else (lambda ms: "n/a")
        rows.append([name, f"{times[0]:.3f}", f"{times[1]:.3f}", f"{pt:.3f}" if pt else "n/a",
                     ratio(times[0]), ratio(times[1]), ex.launches_per_step,
                     len(ex.plan.schedule)])
    header = ["training step (fwd + bwd)", "Loom eager ms", "Loom CUDA graph ms", "PyTorch ms",
              "eager/PyTorch", "graph/PyTorch", "Loom calls/step", "ops before fusion"]
    return header, rows


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--quick", action="store_true", help="fewer repetitions")
    quick = args.parse_args().quick
    cupy = _cupy()
    if cupy is None:
        print("no GPU: skipped")
        return 0
    torch = _torch_cuda()
    from bench.run import show
    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    print(f"{device.decode() if isinstance(device, bytes) else device}, cupy {cupy.__version__}, "
          f"PyTorch {torch.__version__ if torch else 'with CUDA not installed'}")
    show("GPU speed: one training step", speed_rows(cupy, torch, quick), __doc__.split("\n\n")[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
