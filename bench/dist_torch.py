"""PyTorch DDP (gloo) on the MNIST MLP and CNN examples' shapes, K processes on this machine,
for bench/dist.py: samples per second at a global batch, each process with its share of the
cores."""
from __future__ import annotations

import os
import socket
import time


def _model(kind):
    import torch.nn as nn
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                             nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def _worker(rank, procs, kind, batch, steps, port, results):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=procs)
    model = torch.nn.parallel.DistributedDataParallel(_model(kind))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch // procs, 1, 28, 28)
    y = torch.randint(0, 10, (batch // procs,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(3):
        step()
    dist.barrier()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - began) / steps
    if rank == 0:
        results.put(batch / seconds)
    dist.destroy_process_group()


def measure(kind, procs, batch, steps) -> float:
    """Samples per second of the whole job."""
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(procs, kind, batch, steps, port, results), nprocs=procs,
                       start_method="spawn", join=True)
    return results.get()
