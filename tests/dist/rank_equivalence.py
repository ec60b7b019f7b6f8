"""One side of the data-parallel equivalence test: 20 steps of a float64 MLP with batch norm
and dropout, either in one process (`single`) or as a rank of an MPI job (`dist`, or
`dist-standin`: on the strict stand-in device, its gradients summed by the backend's own
collectives as a GPU's are by NCCL); rank 0 writes the parameters and the losses to the npz
named on the command line."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import core  # noqa: E402
from core import backend as backends, distributed  # noqa: E402
from core.layers.builder import Built  # noqa: E402
from core.ops import comm_ops  # noqa: E402
from core.optim import make_optimizer  # noqa: E402
from core.step import training_step  # noqa: E402

BATCH, STEPS = 31, 20  # 31: ranks get unequal shares (16 and 15), weighted by the fraction feed


def model(sync):
    x = core.placeholder("x", (None, 8), "float64")
    y = core.placeholder("y", (None,), "int64")
    w1 = core.parameter("w1", (8, 16), dtype="float64")
    b1 = core.parameter("b1", (16,), init="zeros", dtype="float64")
    gamma = core.parameter("gamma", (16,), init="ones", dtype="float64")
    beta = core.parameter("beta", (16,), init="zeros", dtype="float64")
    w2 = core.parameter("w2", (16, 4), dtype="float64")
    b2 = core.parameter("b2", (4,), init="zeros", dtype="float64")
    h = core.batch_norm(core.matmul(x, w1) + b1, gamma, beta, sync=sync)
    h = core.dropout(core.relu(h), 0.25, seed=5)
    logits = core.matmul(h, w2) + b2
    loss = core.softmax_cross_entropy(logits, y)
    built = Built(loss=loss, logits=logits, metrics={"acc": core.accuracy(logits, y)},
                  parameters=[w1, b1, gamma, beta, w2, b2])
    return built, x, y


def main(mode, out):
    world = distributed.start() if mode.startswith("dist") else None
    size = 1 if world is None else world.size
    be = _backend(mode, world)
    built, x, y = model(sync=size > 1)
    optimizer = make_optimizer({"optimizer": "momentum", "lr": 0.2}, be)
    step = training_step(built, optimizer, procs=size, bucket_bytes=600)  # several buckets
    ex = core.Executor(step.outputs, backend=be.name)
    rng = np.random.default_rng(0)
    params = {p.name: be.asarray(core.init_value(p, rng)) for p in built.parameters}
    data = np.random.default_rng(1)
    losses = []
    for _ in range(STEPS):
        xb, yb = data.standard_normal((BATCH, 8)), data.integers(0, 4, BATCH)
        start, stop = (0, BATCH) if world is None else distributed.shard(BATCH, world.rank, size)
        if world is not None:
            distributed.set_shard(start, stop, BATCH)
        optimizer.begin_step(0.2)
        feed = {x: xb[start:stop], y: yb[start:stop], comm_ops.FRACTION: np.array((stop - start) / BATCH),
                **{p: params[p.name] for p in built.parameters}, **optimizer.feed(params)}
        losses.append(float(ex.run(feed)[0]))
    if world is not None and world.device is not None:
        # every bucket and the global loss went through the device's collectives
        assert world.device.calls >= STEPS * 2, world.device.calls
    if world is None or world.rank == 0:
        np.savez(out, losses=np.array(losses), **{k: be.to_numpy(v) for k, v in params.items()})


def _backend(mode, world):
    if not mode.endswith("standin"):
        return backends.get("numpy")
    from tests import standin
    standin.register()
    be = backends.get(standin.NAME)
    world.attach_device(be.collectives(world))  # what Trainer._join_device does
    return be


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
