"""Loom's benchmark: speed and memory side by side with hand-written numpy and PyTorch CPU,
from one run, printed as tables with ratios. `python bench/run.py [--quick]`."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402  (before numpy: it sets how long OpenBLAS threads spin)
import numpy as np  # noqa: E402
from core.optim import make_optimizer  # noqa: E402
from bench import dist, gpt, growth, numpy_ref, onnx_models  # noqa: E402
from bench.graphs import wide_cnn  # noqa: E402
from tests.core.graphs import branchy, chain, cnn, mlp  # noqa: E402

try:
    import torch
    torch.set_num_threads(max(1, __import__("os").cpu_count() or 1))
except ImportError:  # the PyTorch columns say n/a
    torch = None
TORCH_THREADS = torch.get_num_threads() if torch else 0
CORES = os.cpu_count() or 1


def compare(fns, repeat, warmup=3, rounds=7):
    """ms per call of each fn: rounds interleave the contenders (a noisy moment on a shared
    machine hits all of them alike) and each keeps its best round."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / repeat)
    return [b * 1000 for b in best]


# ---- speed ---------------------------------------------------------------------------------

def loom_step(graph, chosen=None):
    """The compiled step, run until it has chosen its CPU thread count (core.ops.cpu.
    ThreadChoice), which goes into `chosen` (a list) where given."""
    loss, params, feed, _ = graph
    ex = core.Executor([loss, *core.gradients(loss, params)])
    ex.run(feed, to_numpy=False)
    while ex.choosing_threads:
        ex.run(feed, to_numpy=False)
    if chosen is not None:
        chosen.append(ex.cpu_threads)
    return lambda: ex.run(feed, to_numpy=False)


def numpy_step(graph, fn):
    loss, params, feed, _ = graph
    values = [feed[p] for p in params]
    inputs = [v for n, v in feed.items() if n.op == "placeholder"]
    return lambda: fn(values, *inputs)


def torch_step(graph, kind):
    if torch is None:
        return None
    loss, params, feed, _ = graph
    ps = [torch.tensor(feed[p], requires_grad=True) for p in params]
    x, y = [torch.tensor(v) for n, v in feed.items() if n.op == "placeholder"]

    def forward():
        if kind == "cnn":
            h = torch.nn.functional.conv2d(x, ps[0], padding=2) + ps[1]
            h = torch.nn.functional.max_pool2d(torch.relu(h), 2)
            h = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(h, ps[2]) + ps[3]), 2)
            h, dense = h.reshape(len(x), -1), ps[4:]
        elif kind == "wide":
            h = x
            for k, b in zip(ps[0:6:2], ps[1:6:2]):
                h = torch.nn.functional.conv2d(h, k, padding=1) + b
                h = torch.nn.functional.max_pool2d(torch.relu(h), 2)
            h, dense = h.reshape(len(x), -1), ps[6:]
        else:
            h, dense = x, ps
        for i in range(len(dense) // 2):
            h = h @ dense[2 * i] + dense[2 * i + 1]
            if i < len(dense) // 2 - 1:
                h = torch.relu(h)
        if kind == "mse":
            return ((h - y) ** 2).mean()
        return torch.nn.functional.cross_entropy(h, y)

    def step():
        for p in ps:
            p.grad = None
        forward().backward()
    return step


def wide_ref(params, x, y):
    return numpy_ref.conv_stack_step(params, x, y, pads=(1, 1, 1))


def speed_table(quick):
    rows = []
    cases = [("MLP 784-512-512-10, batch 128", mlp([784, 512, 512, 10], 128), numpy_ref.mlp_step, "ce", 20),
             ("tiny MLP 32-32-32-1, batch 32", mlp([32, 32, 32, 1], 32, loss="mse"), numpy_ref.mse_mlp_step, "mse", 300),
             ("CNN (LeNet-like), batch 64", cnn(64), numpy_ref.cnn_step, "cnn", 5),
             ("wide CNN 32-64-128, batch 64", wide_cnn(64), wide_ref, "wide", 1)]
    for name, graph, ref, kind, repeat in cases:
        repeat = max(1, repeat // (4 if quick else 1))
        chosen = []
        loom, hand = compare([loom_step(graph, chosen), numpy_step(graph, ref)], repeat)
        single = loom_one_thread(graph, repeat)
        # PyTorch on its own: its OpenMP workers spin on after a call and would slow
        # whichever contender ran next. Once with all cores, once with one thread.
        step = torch_step(graph, kind)
        pt = pt1 = None
        if step:
            pt = compare([step], repeat)[0]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            pt1 = compare([step], repeat)[0]
            torch.set_num_threads(threads)
        ratio = lambda t: f"{loom / t:.2f}×" if t else "n/a"  # noqa: E731
        rows.append([name, f"{loom:.3f} ({chosen[0].label()})", f"{single:.3f}", f"{hand:.3f}",
                     f"{pt:.3f}" if pt else "n/a", f"{pt1:.3f}" if pt1 else "n/a",
                     f"{loom / hand:.2f}×", ratio(pt), f"{single / pt1:.2f}×" if pt1 else "n/a"])
    return ["training step", "Loom ms", "Loom 1T ms", "numpy ms", f"PyTorch {TORCH_THREADS}T ms",
            "PyTorch 1T ms", "Loom/numpy", "Loom/PyTorch", "Loom 1T/PyTorch 1T"], rows


def loom_one_thread(graph, repeat):
    """The same step on one core: LOOM_CPU_THREADS=1 and one BLAS thread."""
    saved = os.environ.get("LOOM_CPU_THREADS")
    os.environ["LOOM_CPU_THREADS"] = "1"
    try:
        with _one_blas_thread():
            return compare([loom_step(graph)], repeat)[0]
    finally:
        if saved is None:
            del os.environ["LOOM_CPU_THREADS"]
        else:
            os.environ["LOOM_CPU_THREADS"] = saved


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # make bench installs it; elsewhere the column is BLAS's default
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


SPEED_NOTE = f"""nT: n threads. Loom: GEMMs of 4M multiply-adds or more cut into one part per thread
({core.ops.cpu.thread_count()}), each on one BLAS thread (a product by rows of its result, a convolution by runs of
its batch: a rule, so that a resumed run has the same bits); large row-wise ops (elementwise,
activations, layer norm, softmax), im2col copies and pools split over the threads or whole,
as the step's first runs measured faster; in brackets what the step runs. 1T:
LOOM_CPU_THREADS=1 and one BLAS thread. PyTorch: all {TORCH_THREADS} cores, then one thread.
Where other work holds a core, whatever splits ops over all cores waits for that core at
every op: compare the 1-thread columns then."""


# ---- memory --------------------------------------------------------------------------------

GRAPH_KINDS = {
    "training step": "forward, backward and SGD updates: what `main.py train` compiles",
    "gradients": "forward and backward, every weight gradient returned (core.gradients)",
    "inference": "forward only",
}


def report(graph, kind, **options):
    loss, params, feed, h = graph
    feed = dict(feed)
    if kind == "training step":
        optimizer = make_optimizer({"optimizer": "sgd"})
        outputs = [loss, *optimizer.updates(params, core.gradients(loss, params), loss)]
        optimizer.begin_step(0.0)  # plan and run the step; keep the weights as they are
        feed.update(optimizer.feed({p.name: feed[p] for p in params}))
    else:
        outputs = [loss, *core.gradients(loss, params)] if kind == "gradients" else [h]
    ex = core.Executor(outputs, **options)
    ex.run(feed, to_numpy=False)
    return ex.memory_report()


def memory_table():
    rows = []
    for name, make in (("MLP 784-512-512-10 b128", lambda: mlp([784, 512, 512, 10], 128)),
                       ("CNN b64", lambda: cnn(64)), ("branchy (inception-like) b32", lambda: branchy(32, 64, 4, 3))):
        for kind in GRAPH_KINDS:
            r = report(make(), kind)
            mib = lambda k: r[k] / 2 ** 20  # noqa: E731
            rows.append([name, kind, f"{mib('naive_bytes'):.2f}",
                         f"{mib('planned_bytes'):.2f}", f"{mib('lower_bound_bytes'):.2f}",
                         f"{mib('result_bytes'):.2f}",
                         f"{r['naive_bytes'] / r['planned_bytes']:.2f}×",
                         f"{r['naive_bytes'] / r['lower_bound_bytes']:.2f}×",
                         f"{r['planned_bytes'] / r['lower_bound_bytes']:.3f}"])
    return ["graph", "kind", "no sharing MiB", "planned MiB", "lower bound MiB", "of it results MiB",
            "saved", "best possible", "arena/bound"], rows


MEMORY_NOTE = "\n".join(f"{kind}: {what}." for kind, what in GRAPH_KINDS.items()) + """
lower bound: the most bytes live at one step of the schedule; no arena for it is smaller.
best possible = no sharing / lower bound. With gradients returned, every weight gradient is
a result, live when the step ends, which bounds the MLP; in the training step each one dies
at its update. An inference chain of matmuls needs its input and output live at once, so two
layer-sized buffers are its floor."""


def schedule_table():
    rows = []
    for name, make, kind in (("branchy inference", lambda: branchy(32, 64, 4, 3), "inference"),
                             ("branchy training step", lambda: branchy(32, 64, 4, 3), "training step"),
                             ("MLP training step", lambda: mlp([784, 512, 512, 10], 128), "training step"),
                             ("CNN training step", lambda: cnn(64), "training step")):
        topo = report(make(), kind, schedule="topo")["lower_bound_bytes"]
        aware = report(make(), kind)["lower_bound_bytes"]
        rows.append([name, f"{topo / 2**20:.2f}", f"{aware / 2**20:.2f}", f"{topo / aware:.2f}×"])
    return ["graph", "topological (BFS) peak MiB", "memory-aware peak MiB", "gain"], rows


def checkpoint_table(quick):
    """One BLAS thread: waking a second thread for each 64-wide GEMM adds more jitter than
    the recomputation being measured."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _checkpoint_rows(quick)
    with threadpool_limits(limits=1, user_api="blas"):
        return _checkpoint_rows(quick)


def _checkpoint_rows(quick):
    rows = []
    for layers in ((25, 100) if quick else (25, 50, 100)):
        loss, params, feed, _ = chain(layers, width=64, batch=256)
        runs = {mode: core.Executor([loss, *core.gradients(loss, params)], checkpoint=mode)
                for mode in (None, "sqrt")}
        steps = [lambda ex=ex: ex.run(feed, to_numpy=False) for ex in runs.values()]
        times = compare(steps, 3 if quick else 10)
        base_ms = times[0]
        base = runs[None].memory_report()
        for (mode, ex), ms in zip(runs.items(), times):
            r = ex.memory_report()
            rows.append([layers, mode or "none", f"{r['stored_activation_bytes'] / 2**10:.0f}",
                         f"{r['lower_bound_bytes'] / 2**20:.2f}", f"{r['planned_bytes'] / 2**20:.2f}",
                         f"{ms:.2f}", f"{ms / base_ms - 1:+.0%}" if mode else "",
                         f"{recompute_share(loss, params, feed, mode):.0%}" if mode else "",
                         f"{base['planned_bytes'] / r['planned_bytes']:.2f}×" if mode else ""])
    return ["layers", "checkpoint", "stored activations KiB", "peak MiB", "arena MiB", "ms/step",
            "extra time", "recompute work", "arena saved"], rows


def recompute_share(loss, params, feed, mode, runs=10):
    """Time of the recomputed ops over the time of the step without them (per-op clocks):
    what checkpointing must cost however well it is scheduled."""
    ex = core.Executor([loss, *core.gradients(loss, params)], checkpoint=mode, profile=True)
    for _ in range(runs):
        ex.run(feed, to_numpy=False)
    times = ex.profile()
    extra = sum(t for name, t in times.items() if name.endswith("'"))
    return extra / (sum(times.values()) - extra)


CHECKPOINT_NOTE = """recompute work: the per-op time of the recomputed forward ops over the rest of the step.
"sqrt" recomputes about one forward pass, so its extra time is the forward's share of a step."""


def show(title, table, note=None):
    header, rows = table
    try:
        from rich.console import Console
        from rich.table import Table
        t = Table(title=title)
        for h in header:
            t.add_column(str(h), justify="right")
        for r in rows:
            t.add_row(*map(str, r))
        console = Console()
        (console if console.is_terminal else Console(width=160)).print(t)
    except ImportError:
        print(f"\n{title}\n" + " | ".join(header))
        for r in rows:
            print(" | ".join(map(str, r)))
    if note:
        print(note)


GPT_NOTE = """Both sides: forward, backward and one Adam(W) update on the same shapes (PyTorch's
model is bench/gpt_torch.py: separate q, k, v projections, attention written out, tanh GELU)."""
GPT_MEMORY_NOTE = """per block: only each block's output (the residual stream) is kept for the backward
pass; everything inside a block is recomputed just before its gradients need it."""


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    args.add_argument("--only", choices=("speed", "memory", "growth", "gpt", "dist", "onnx"),
                      help="one section")
    options = args.parse_args()
    quick = options.quick
    print(f"numpy {np.__version__}, PyTorch {torch.__version__ if torch else 'not installed'}, "
          f"{__import__('os').cpu_count()} CPU cores")
    wanted = lambda section: options.only in (None, section)  # noqa: E731
    if wanted("speed"):
        show("Speed: one training step (forward + backward)", speed_table(quick), SPEED_NOTE)
    if wanted("memory"):
        show("Memory: intermediates (arena) per graph", memory_table(), MEMORY_NOTE)
        show("Scheduling: peak live bytes", schedule_table())
        show("Gradient checkpointing on a deep tanh MLP chain (width 64, batch 256, one BLAS thread)",
             checkpoint_table(quick), CHECKPOINT_NOTE)
    if wanted("gpt"):
        show("Baby GPT (4 blocks, 4 heads, width 128, context 64): one training step",
             (["step", "Loom ms", "PyTorch ms", "Loom / PyTorch"], gpt.speed_rows(compare, torch, quick)),
             GPT_NOTE)
        show("Baby GPT training step (batch 12): memory of the intermediates", gpt.memory_rows(),
             GPT_MEMORY_NOTE)
    if wanted("dist"):
        show("Data-parallel on MPI: 1 and 2 ranks", (dist.HEADER, dist.rows(quick)), dist.NOTE)
    if wanted("onnx"):
        show("ONNX import of published CNNs (torchvision, random weights, batch 2)",
             (onnx_models.HEADER, onnx_models.rows(quick)), onnx_models.NOTE)
    if wanted("growth"):
        growth_tables, png = growth.tables(report, quick)
        for title, table, note in growth_tables:
            show(title, table, note)
        print(f"growth plot: {png}")


if __name__ == "__main__":
    main()
