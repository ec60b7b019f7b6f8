"""The training loop shared by the CLI and the editor (which runs it as a child process).

Everything a run reports goes through one callback, `on_event(dict)`, as the events the
README's command-line section lists: step, epoch, done, error. Sinks (JSON lines, metrics.jsonl, a progress bar) are
just callbacks."""
from __future__ import annotations

import itertools
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import threading

from . import backend as backends, checkpoint, distributed, generate, layers
from .atomic import atomic_write
from .errors import LoomError
from .executor import Executor
from .graph import topological_order
from .memory_probe import process_memory
from .ops import comm_ops
from .ops.base import is_source
from .optim import learning_rate, make_optimizer
from .runs import json_safe
from .settings import training_config
from .step import accuracy_node, training_step
from .weights import initial_values


class NonFiniteLoss(LoomError):
    pass


class RunIOError(LoomError):
    """A run file could not be written (full disk, read-only folder...); the last good
    checkpoint is kept."""


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list = field(default_factory=list)  # per-epoch summaries
    # the epoch in progress: batches done (its order is fixed by the seed) and their results,
    # so a run stopped mid-epoch resumes at the next batch, exactly
    epoch_step: int = 0
    epoch_losses: list = field(default_factory=list)
    epoch_accuracies: list = field(default_factory=list)


class Trainer:
    def __init__(self, doc, out_dir, overrides=None, on_event=None):
        self.doc = doc
        self.config = training_config(doc, overrides)
        self.out = Path(out_dir)
        # data-parallel (core/distributed.py): every rank trains, rank 0 alone reports and writes
        self.world = distributed.world()
        self.writer = distributed.is_writer()
        if self.writer:
            self.out.mkdir(parents=True, exist_ok=True)
        self.emit = (on_event or (lambda e: None)) if self.writer else (lambda e: None)
        self.stop_requested = False
        self.run_state = RunState()
        self.saved_step = None  # the step of the newest checkpoint on disk, once there is one
        self.sampler = None  # text models: writes the sample after each epoch
        self._setup()

    # ---- setup -------------------------------------------------------------------------
    def _setup(self):
        """Parameters, optimizer state and running statistics live on the backend for the
        whole run (the compiled updates write into them in place); the host sees them only
        through `backend.to_numpy`."""
        cfg = self.config
        procs = 1 if self.world is None else self.world.size
        if procs > cfg["batch_size"]:
            raise LoomError(f"{procs} processes need a batch of at least {procs} samples "
                            f"(batch_size is {cfg['batch_size']})")
        self.built = layers.build(self.doc, training=True, seed=cfg["seed"], distributed=procs > 1)
        self.eval_built = layers.build(self.doc, training=False, seed=cfg["seed"])
        if self.built.loss is None:
            raise LoomError("the graph has no loss node: add SoftmaxCrossEntropy or MSELoss")
        data = self.built.load_dataset()
        self.train_set, self.val_set = data.split(cfg["val_fraction"], seed=cfg["seed"])
        name, self.auto_reason = cfg["backend"], None  # why "auto" chose what it chose
        if name == "auto":
            name, self.auto_reason = backends.resolve_auto()
        self.backend = backends.get(name)
        if procs > 1:
            self._join_device(procs)
        rng = np.random.default_rng(cfg["seed"])
        start = initial_values(self.doc, self.built.parameters, rng)  # a weights file, or fresh
        self.params = {name: self.backend.asarray(v) for name, v in start.items()}
        self.optimizer = make_optimizer(cfg, self.backend)
        self.step = training_step(self.built, self.optimizer, procs, cfg["bucket_bytes"])
        self.train_ex = Executor(self.step.outputs, backend=self.backend.name, **_compile_options(cfg))
        self.eval_ex = Executor([self.eval_built.loss, accuracy_node(self.eval_built)],
                                backend=self.backend.name)

    def _join_device(self, procs):
        """A device backend sums gradients with its own collectives (NCCL between GPUs),
        joined before anything of this run is allocated: joining picks this rank's GPU."""
        if self.backend.name == "numpy":
            return
        if self.backend.collectives is None:
            raise LoomError(f"data-parallel training ({procs} processes) needs collectives on "
                            f"the {self.backend.name} backend; it has none (numpy sums through MPI, cupy "
                            f"through NCCL)")
        self.world.attach_device(self.backend.collectives(self.world))

    # ---- checkpoints -----------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return self.out / "checkpoint.npz"

    def save_checkpoint(self):
        rs = self.run_state
        if not self.writer:  # rank 0 writes it; every rank knows where it stands
            self.saved_step = rs.step
            return
        meta = {"epoch": rs.epoch, "step": rs.step, "optimizer_steps": self.optimizer.steps,
                "history": rs.history, "config": self.config, "epoch_step": rs.epoch_step,
                "epoch_losses": rs.epoch_losses, "epoch_accuracies": rs.epoch_accuracies,
                "random_state": self._random_state()}
        host = self.backend.to_numpy
        checkpoint.save(self.checkpoint_path, {k: host(v) for k, v in self.params.items()},
                        {k: host(v) for k, v in self.optimizer.state.items()}, {}, json_safe(meta))
        self.saved_step = rs.step

    def resume(self):
        """Continue from the checkpoint, refusing one that does not fit this graph and these
        settings (rather than silently zeroing or reinterpreting state)."""
        path = self.checkpoint_path
        params, opt_state, state, meta = checkpoint.load(path, max_bytes=self._checkpoint_cap())
        expected = {"param": {k: (v.shape, v.dtype) for k, v in self.params.items()},
                    "opt": self._expected_optimizer_state()}
        checkpoint.check_fits(path, meta, self.config,
                              {"param": params, "opt": opt_state, "state": state}, expected)
        device = self.backend.asarray  # each array moves to the device once
        self.params = {k: device(params[k]) for k in self.params}
        self.optimizer.state = {k: device(v) for k, v in opt_state.items()}
        self.optimizer.steps = meta["optimizer_steps"]
        self.run_state = RunState(meta["epoch"], meta["step"], meta["history"],
                                  meta.get("epoch_step", 0), meta.get("epoch_losses", []),
                                  meta.get("epoch_accuracies", []))
        self._restore_random_state(path, meta.get("random_state", []))
        self.saved_step = meta["step"]

    # Dropout masks come from one generator per node (core/ops/nn.py): its state is part of
    # the run, or a resumed run would draw the masks of the epoch start again.
    def _random_generators(self) -> list:
        """The generators masks are drawn from on this backend, in graph order (node names
        are numbered per process, the order is not); created here the way the op creates
        them on first use, so that a resume can set their state first."""
        xp = self.backend.xp
        nodes = (n for n in topological_order(self.step.outputs) if n.opdef.random)
        return [n.attrs.setdefault("_rng", {}).setdefault(xp.__name__, xp.random.default_rng(n.attrs["seed"]))
                for n in nodes]

    def _random_state(self) -> list:
        """Each generator's state where the backend exposes one (numpy's do)."""
        return [getattr(getattr(rng, "bit_generator", None), "state", None)
                for rng in self._random_generators()]

    def _restore_random_state(self, path, states):
        for i, (rng, state) in enumerate(zip(self._random_generators(), states)):
            try:
                if state is not None:
                    rng.bit_generator.state = state
            except (AttributeError, TypeError, ValueError, KeyError) as exc:
                raise checkpoint.CheckpointError(
                    f"{path}: meta.random_state[{i}]: not a state this backend's generator "
                    f"accepts ({exc})") from None

    def _expected_optimizer_state(self) -> dict:
        """key -> (shape, dtype) of every optimizer state array a step of this run keeps."""
        owner = {k: self.params[k.rsplit("/", 1)[0]] for k in self.optimizer.state_nodes}
        return {k: (p.shape, p.dtype) for k, p in owner.items()}

    def _checkpoint_cap(self) -> int:
        """Bytes a checkpoint of this run can hold: parameters, their optimizer state and
        room for the metadata. Anything declaring more is refused before it is inflated."""
        param_bytes = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in self.params.values())
        return 2 * param_bytes * (1 + len(self.optimizer.slots)) + (64 << 20)

    # ---- the loop ---------------------------------------------------------------------------
    def request_stop(self):
        """Finish the current step, save a checkpoint, end the run (Ctrl-C, a closed stdout)."""
        self.stop_requested = True

    def run(self) -> dict:
        cfg = self.config
        start = time.perf_counter()
        # The signal handler stays until the summary is written: a second Ctrl-C cannot cut
        # the final save short. Overflow is reported once, as a NonFiniteLoss naming the node.
        with _sigint_requests_stop(self), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                if self.saved_step is None:  # from the start, --resume has a checkpoint to go on from
                    self.save_checkpoint()
                while self.run_state.epoch < cfg["epochs"] and not self.stop_requested:
                    self._train_epoch(self.run_state.epoch)
                self.save_checkpoint()
                summary = self._summary("stopped" if self.stop_requested else "completed",
                                        time.perf_counter() - start)
                if self.writer:
                    _write_json(self.out / "summary.json", summary)
            except OSError as exc:  # a run file could not be written: keep the last good checkpoint
                raise RunIOError(self._io_failure(exc)) from exc
            self.emit({"event": "done", **summary})
        return summary

    def _io_failure(self, exc) -> str:
        what = f"could not write {exc.filename}" if exc.filename else "a run file could not be written"
        kept = ("no checkpoint was saved yet" if self.saved_step is None else
                f"the last good checkpoint (step {self.saved_step}) is kept in {self.checkpoint_path}")
        return f"{what}: {exc.strerror or exc}; {kept}"

    def _train_epoch(self, epoch):
        cfg, rs = self.config, self.run_state
        t0 = time.perf_counter()
        steps = self.steps_per_epoch()
        batches = itertools.islice(self.train_set.batches(cfg["batch_size"], seed=cfg["seed"] + epoch),
                                   steps)
        lr = learning_rate(cfg, epoch + rs.epoch_step / steps, rs.step)
        for i, (xb, yb) in enumerate(itertools.islice(batches, rs.epoch_step, None), rs.epoch_step):
            if self._stopping():
                return  # the checkpoint keeps the position: resume goes on from this batch
            lr = learning_rate(cfg, epoch + i / steps, rs.step)
            self._train_step(xb, yb, lr)
        val_loss, val_acc = self.evaluate()
        record = {"event": "epoch", "epoch": epoch + 1, "step": rs.step,
                  "loss": float(np.mean(rs.epoch_losses)), "accuracy": float(np.mean(rs.epoch_accuracies)),
                  "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
                  "seconds": time.perf_counter() - t0}
        rs.epoch, rs.epoch_step, rs.epoch_losses, rs.epoch_accuracies = epoch + 1, 0, [], []
        rs.history.append(record)
        self.emit(record)
        self._emit_sample(epoch + 1)
        self.save_checkpoint()

    def _emit_sample(self, epoch):
        """Text models write a little text after each epoch, from the validation text's
        first line: the quickest way to see what the model has learnt."""
        chars = self.config.get("sample_chars", 0)
        if not chars or not self.writer or not generate.is_text_model(self.doc):
            return
        if self.sampler is None:
            self.sampler = generate.TextSampler(self.doc, self.params, self.backend.name, shared=True)
        self.sampler.params = self.params  # a resume replaces the arrays
        prompt = generate.sample_prompt(self.val_set)
        text = self.sampler.sample(prompt, chars, temperature=0.8, seed=epoch)
        self.emit({"event": "sample", "epoch": epoch, "prompt": prompt, "text": text})

    def _stopping(self) -> bool:
        """A stop request (Ctrl-C, the editor's Stop): in a data-parallel run every rank stops
        at the same step, whichever of them was asked."""
        if self.world is not None:
            self.stop_requested = self.world.any(self.stop_requested)
        return self.stop_requested

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch: the setting, or one pass over the training set."""
        full = max(1, len(self.train_set) // self.config["batch_size"]
                   + bool(len(self.train_set) % self.config["batch_size"]))
        return self.config.get("steps_per_epoch") or full

    def _train_step(self, xb, yb, lr):
        t0 = time.perf_counter()
        feed = self._feed(self.built, *self._shard(xb, yb))
        self.optimizer.begin_step(lr)
        out = self.train_ex.run({**feed, **self.optimizer.feed(self.params)}, to_numpy=False)
        host = self.backend.to_numpy
        loss, acc = float(host(out[0])), float(host(out[1]))
        if not math.isfinite(loss):  # the updates skipped themselves: parameters are intact
            raise NonFiniteLoss(self._first_non_finite(feed))
        self._update_running_stats(out[2:2 + len(self.step.stats)])
        rs = self.run_state  # the step is done: count it before anything can fail to report it
        rs.step, rs.epoch_step = rs.step + 1, rs.epoch_step + 1
        rs.epoch_losses.append(loss)
        rs.epoch_accuracies.append(acc)
        seconds = time.perf_counter() - t0
        self.emit({"event": "step", "epoch": self.run_state.epoch + 1, "step": self.run_state.step,
                   "loss": loss, "accuracy": acc, "lr": lr, "samples_per_s": len(xb) / seconds,
                   "memory": self._memory()})
        return loss, acc

    def _shard(self, xb, yb):
        """This rank's rows of the global batch, and their share of it (the weight of its
        mean gradient in the allreduce sum)."""
        if self.world is None:
            return xb, yb, 1.0
        start, stop = distributed.shard(len(xb), self.world.rank, self.world.size)
        distributed.set_shard(start, stop, len(xb))
        return xb[start:stop], yb[start:stop], (stop - start) / len(xb)

    def _feed(self, built, xb, yb, fraction=None):
        feed = {built.feed_of("data"): xb, built.feed_of("label"): yb}
        if fraction is not None and self.world is not None:  # the data-parallel step reads it
            feed[comm_ops.FRACTION] = np.array(fraction)
        feed.update({p: self.params[p.name] for p in built.parameters})
        return feed

    def _update_running_stats(self, stats, momentum=0.1):
        for s, (mean, var) in zip(self.built.state, zip(stats[0::2], stats[1::2])):
            for key, value in (("running_mean", mean), ("running_var", var)):
                running = self.params[s[key].name]
                running *= 1 - momentum
                running += momentum * value.reshape(running.shape)

    def evaluate(self, batch_size=512):
        losses, accs, counts = [], [], []
        for xb, yb in self.val_set.batches(batch_size, seed=0, shuffle=False):
            loss, acc = self.eval_ex.run(self._feed(self.eval_built, xb, yb))  # to host
            losses.append(float(loss))
            accs.append(float(acc))
            counts.append(len(xb))
        if not counts:
            return None, None
        return float(np.average(losses, weights=counts)), float(np.average(accs, weights=counts))

    def _memory(self):
        report = self.train_ex.memory_report()
        return {"planned_bytes": report["planned_bytes"],
                "lower_bound_bytes": report["lower_bound_bytes"],
                "naive_bytes": report["naive_bytes"],
                "param_bytes": report["param_bytes"], **process_memory(self.train_ex.backend)}

    def _first_non_finite(self, feed) -> str:
        """Re-run the step on the host keeping every value, and name the first node that went
        non-finite (the updates skipped themselves, so the parameters are the step's inputs)."""
        nodes = [n for n in topological_order([self.built.loss]) if not is_source(n)]
        host = {node: self.backend.to_numpy(value) for node, value in feed.items()}
        values = Executor(nodes, backend="numpy").run(host)
        for node, value in zip(nodes, values):
            if not np.all(np.isfinite(value)):
                where = self.built.node_of.get(node.name)
                place = f"node {where} " if where else ""
                return (f"non-finite loss at step {self.run_state.step + 1}: "
                        f"{place}(op {node.op}, {node.name}) produced NaN/inf first; "
                        f"try a lower learning rate")
        return f"non-finite loss at step {self.run_state.step + 1}"

    def _summary(self, status, seconds):
        last = self.run_state.history[-1] if self.run_state.history else {}
        backend = self.backend.name + (f" ({self.auto_reason})" if self.auto_reason else "")
        return {"status": status, "epochs": self.run_state.epoch, "steps": self.run_state.step,
                "backend": backend,
                "seconds": seconds, "val_accuracy": last.get("val_accuracy"),
                "val_loss": last.get("val_loss"), "loss": last.get("loss"),
                "checkpoint": str(self.checkpoint_path)}


def _compile_options(cfg):
    mode = cfg.get("checkpoint", "none")
    return {} if mode in (None, "none") else {"checkpoint": mode}


def _write_json(path, data):
    atomic_write(path, lambda f: json.dump(json_safe(data), f, indent=2, allow_nan=False))


class _sigint_requests_stop:
    """Ctrl-C (or SIGTERM from the editor's Stop) finishes the current step, saves a
    checkpoint and ends the run cleanly instead of dying mid-write."""

    def __init__(self, trainer):
        self.trainer = trainer

    def _handler(self, signum, frame):
        self.trainer.stop_requested = True

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            self._old = {}  # signals can only be caught on the main thread
            return
        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
