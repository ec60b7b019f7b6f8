"""The training loop shared by the CLI and the editor (which runs it as a child process).

Everything a run reports goes through one callback, `on_event(dict)`, as the events the
README's command-line section lists: step, epoch, done, error. Sinks (JSON lines, metrics.jsonl, a progress bar) are
just callbacks."""
from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import threading

from . import backend as backends, checkpoint, layers
from .atomic import atomic_write
from .data import load_dataset
from .errors import LoomError
from .executor import Executor
from .graph import init_value, topological_order
from .memory_probe import process_memory
from .ops.base import is_source
from .optim import learning_rate, make_optimizer
from .settings import DEFAULTS, training_config  # noqa: F401  (re-exported for callers)
from .step import accuracy_node, training_step


class NonFiniteLoss(LoomError):
    pass


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list = field(default_factory=list)  # per-epoch summaries


class Trainer:
    def __init__(self, doc, out_dir, overrides=None, on_event=None):
        self.doc = doc
        self.config = training_config(doc, overrides)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.emit = on_event or (lambda e: None)
        self.stop_requested = False
        self.run_state = RunState()
        self._setup()

    # ---- setup -------------------------------------------------------------------------
    def _setup(self):
        """Parameters, optimizer state and running statistics live on the backend for the
        whole run (the compiled updates write into them in place); the host sees them only
        through `backend.to_numpy`."""
        cfg = self.config
        self.built = layers.build(self.doc, training=True, seed=cfg["seed"])
        self.eval_built = layers.build(self.doc, training=False, seed=cfg["seed"])
        if self.built.loss is None:
            raise LoomError("the graph has no loss node: add SoftmaxCrossEntropy or MSELoss")
        data = load_dataset(self.built.dataset)
        self.train_set, self.val_set = data.split(cfg["val_fraction"], seed=cfg["seed"])
        self.backend_choice = backends.resolve_auto() if cfg["backend"] == "auto" else None
        self.backend = backends.get(self.backend_choice[0] if self.backend_choice else cfg["backend"])
        rng = np.random.default_rng(cfg["seed"])
        self.params = {p.name: self.backend.asarray(init_value(p, rng)) for p in self.built.parameters}
        self.optimizer = make_optimizer(cfg, self.backend)
        self.step = training_step(self.built, self.optimizer)
        self.train_ex = Executor(self.step.outputs, backend=self.backend.name, **_compile_options(cfg))
        self.eval_ex = Executor([self.eval_built.loss, accuracy_node(self.eval_built)],
                                backend=self.backend.name)

    # ---- checkpoints -----------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return self.out / "checkpoint.npz"

    def save_checkpoint(self):
        meta = {"epoch": self.run_state.epoch, "step": self.run_state.step,
                "optimizer_steps": self.optimizer.steps, "history": self.run_state.history,
                "config": self.config}
        host = self.backend.to_numpy
        checkpoint.save(self.checkpoint_path, {k: host(v) for k, v in self.params.items()},
                        {k: host(v) for k, v in self.optimizer.state.items()}, {}, meta)

    def resume(self):
        params, opt_state, _, meta = checkpoint.load(self.checkpoint_path)
        missing = set(self.params) - set(params)
        if missing:
            raise LoomError(f"{self.checkpoint_path}: checkpoint lacks parameters "
                            f"{', '.join(sorted(missing))} (was the graph changed?)")
        device = self.backend.asarray  # each array moves to the device once
        self.params = {k: device(params[k]) for k in self.params}
        self.optimizer.state = {k: device(v) for k, v in opt_state.items()}
        self.optimizer.steps = meta["optimizer_steps"]
        self.run_state = RunState(meta["epoch"], meta["step"], meta["history"])

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        start = time.perf_counter()
        # Overflow is reported once, as a NonFiniteLoss naming the node, not as numpy warnings.
        with _sigint_requests_stop(self), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while self.run_state.epoch < cfg["epochs"] and not self.stop_requested:
                self._train_epoch(self.run_state.epoch)
        self.save_checkpoint()
        status = "stopped" if self.stop_requested else "completed"
        summary = self._summary(status, time.perf_counter() - start)
        _write_json(self.out / "summary.json", summary)
        self.emit({"event": "done", **summary})
        return summary

    def _train_epoch(self, epoch):
        cfg = self.config
        lr = learning_rate(cfg, epoch)
        losses, accs, t0 = [], [], time.perf_counter()
        batches = self.train_set.batches(cfg["batch_size"], seed=cfg["seed"] + epoch)
        for xb, yb in batches:
            loss, acc = self._train_step(xb, yb, lr)
            losses.append(loss)
            accs.append(acc)
            if self.stop_requested:
                return  # the partial epoch is not counted: resume redoes it
        val_loss, val_acc = self.evaluate()
        self.run_state.epoch = epoch + 1
        record = {"event": "epoch", "epoch": epoch + 1, "step": self.run_state.step,
                  "loss": float(np.mean(losses)), "accuracy": float(np.mean(accs)),
                  "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
                  "seconds": time.perf_counter() - t0}
        self.run_state.history.append(record)
        self.emit(record)
        self.save_checkpoint()

    def _train_step(self, xb, yb, lr):
        t0 = time.perf_counter()
        feed = self._feed(self.built, xb, yb)
        self.optimizer.begin_step(lr)
        out = self.train_ex.run({**feed, **self.optimizer.feed(self.params)}, to_numpy=False)
        host = self.backend.to_numpy
        loss, acc = float(host(out[0])), float(host(out[1]))
        if not math.isfinite(loss):  # the updates skipped themselves: parameters are intact
            raise NonFiniteLoss(self._first_non_finite(feed))
        self._update_running_stats(out[2:2 + len(self.step.stats)])
        self.run_state.step += 1
        seconds = time.perf_counter() - t0
        self.emit({"event": "step", "epoch": self.run_state.epoch + 1, "step": self.run_state.step,
                   "loss": loss, "accuracy": acc, "lr": lr, "samples_per_s": len(xb) / seconds,
                   "memory": self._memory()})
        return loss, acc

    def _feed(self, built, xb, yb):
        feed = {built.feeds["images"]: xb, built.feeds["labels"]: yb}
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
        backend = self.backend.name + (f" ({self.backend_choice[1]})" if self.backend_choice else "")
        return {"status": status, "epochs": self.run_state.epoch, "steps": self.run_state.step,
                "backend": backend,
                "seconds": seconds, "val_accuracy": last.get("val_accuracy"),
                "val_loss": last.get("val_loss"), "loss": last.get("loss"),
                "checkpoint": str(self.checkpoint_path)}


def _compile_options(cfg):
    mode = cfg.get("checkpoint", "none")
    return {} if mode in (None, "none") else {"checkpoint": mode}


def _write_json(path, data):
    atomic_write(path, lambda f: json.dump(data, f, indent=2))


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
