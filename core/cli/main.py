"""Argument parsing and the three headless commands. `main()` returns an exit code."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from . import exitcodes, export_cmd, import_cmd, infer_cmd, launch, plan, sinks, training
from .gui import display_problem
from .. import checkpoint, distributed
from ..backend import resolve_auto
from ..errors import LoomError
from ..generate import TextSampler
from ..graphfile import load
from ..layers import analyze
from ..settings import choices, training_config
from ..limits import parse_bytes
from ..step import check_memory, check_training_memory, plan_report
from ..runs import open_run_folder, short
from ..train import Trainer

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "examples" / "digits_mlp.loom.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="Loom: draw, compile and train "
                                "deep-learning graphs. With no command, opens the editor.")
    allowed = choices()
    sub = p.add_subparsers(dest="command")
    o = sub.add_parser("open", help="open FILE in the editor")
    o.add_argument("file", help="a graph file (*.loom.json)")
    t = sub.add_parser("train", help="train a saved graph headless")
    t.add_argument("file", help="a graph file (*.loom.json); its training section gives the defaults")
    t.add_argument("--epochs", type=int, metavar="N", help="passes over the training data")
    t.add_argument("--backend", choices=allowed["backend"],
                   help="auto: cupy when a GPU works, else numpy")
    t.add_argument("--out", help="run directory (default runs/<graph name>)")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    t.add_argument("--events", help="'-' streams JSON events on stdout")
    t.add_argument("--seed", type=int, metavar="N", help="initial weights, shuffling and the validation split")
    t.add_argument("--lr", type=float, metavar="RATE", help="learning rate (positive)")
    t.add_argument("--optimizer", choices=allowed["optimizer"])
    t.add_argument("--batch-size", type=int, dest="batch_size", metavar="N", help="samples per step")
    t.add_argument("--checkpoint", help="gradient checkpointing: none|sqrt|cheap|budget=BYTES")
    t.add_argument("--procs", type=int, metavar="K",
                   help="data-parallel over K processes on this machine (runs mpiexec -n K)")
    t.add_argument("--distributed", action="store_true",
                   help="this process is one rank of an MPI job (mpiexec -n K ... --distributed)")
    _add_max_memory(t)
    c = sub.add_parser("check", help="validate a graph file; exit 1 and list problems")
    c.add_argument("file", help="a graph file (*.loom.json)")
    pl = sub.add_parser("plan", help="schedule, fusion groups and memory plan")
    pl.add_argument("file", help="a graph file (*.loom.json)")
    pl.add_argument("--batch", type=int, default=64, metavar="N", help="batch size to plan for (default 64)")
    pl.add_argument("--json", action="store_true", help="the report as JSON instead of tables")
    pl.add_argument("--checkpoint", help="none|sqrt|cheap|budget=BYTES")
    pl.add_argument("--inference", action="store_true", help="plan the forward graph only")
    pl.add_argument("--schedule", choices=["auto", "topo", "memory"], default="auto",
                    help="auto: memory-aware order when its peak is lower; topo: breadth-first")
    pl.add_argument("--procs", type=int, default=1, metavar="K",
                    help="plan one rank's step of a K-process data-parallel run (allreduce buckets)")
    _add_max_memory(pl)
    sa = sub.add_parser("sample", help="write new text with a trained text model")
    sa.add_argument("file", help="a graph file with a TextDataset node (*.loom.json)")
    sa.add_argument("--checkpoint", required=True, metavar="CKPT",
                    help="the trained weights: a run's checkpoint.npz")
    sa.add_argument("--prompt", default="\n", help="the text to go on from (default: a new line)")
    sa.add_argument("--chars", type=int, default=400, metavar="N", help="characters to write (default 400)")
    sa.add_argument("--temperature", type=float, default=0.8, metavar="T",
                    help="below 1: safer, above 1: wilder (default 0.8)")
    sa.add_argument("--top-k", type=int, dest="top_k", metavar="K", help="draw among the K likeliest only")
    sa.add_argument("--seed", type=int, default=0, metavar="N", help="the draws' seed (default 0)")
    sa.add_argument("--backend", choices=allowed["backend"], default="numpy")
    import_cmd.add_parser(sub)
    export_cmd.add_parser(sub)
    infer_cmd.add_parser(sub)
    return p


def _add_max_memory(p):
    """The step (parameters, optimizer state, batch, arena) is planned from shapes first."""
    p.add_argument("--max-memory", type=parse_bytes, metavar="BYTES",
                   help="refuse a graph whose step needs more memory (e.g. 2G; default: all of it)")


def main(argv=None, open_editor=None) -> int:
    """`open_editor(path) -> int` is supplied by main.py: core never imports the GUI."""
    args = parser().parse_args(argv)
    if args.command is None or args.command == "open":
        problem = display_problem()
        if problem or open_editor is None:
            print(problem or "the editor is not available from here", file=sys.stderr)
            return exitcodes.BAD_INPUT
        _default_signals()
        return open_editor(getattr(args, "file", None) or str(EXAMPLE))
    command = {"train": cmd_train, "check": cmd_check, "plan": cmd_plan, "sample": cmd_sample,
               "import": import_cmd.run, "export": export_cmd.run, "infer": infer_cmd.run}[args.command]
    with _interrupts_raise():
        try:
            return command(args)
        except KeyboardInterrupt:  # before training took Ctrl-C over: nothing was written
            print("interrupted before training started: nothing to save", file=sys.stderr)
            return exitcodes.INTERRUPTED
        except LoomError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exitcodes.BAD_INPUT
        except OSError as exc:  # a file that cannot be read or written: one line, not a traceback
            print(f"error: {short(exc.filename or '')}: {exc.strerror or exc}", file=sys.stderr)
            return exitcodes.BAD_INPUT
        except Exception as exc:  # noqa: BLE001 - a bug: its own exit code, not "invalid graph"
            print(f"error: {training.internal_message(exc)}", file=sys.stderr)
            return exitcodes.INTERNAL


def _default_signals():
    """The editor gets Python's usual Ctrl-C and SIGTERM, not main.py's start-up handlers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _interrupts_raise():
    """SIGTERM (the editor's Stop) interrupts start-up like Ctrl-C does; the trainer takes
    both over while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.default_int_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# ---- check ---------------------------------------------------------------------------------

def cmd_check(args) -> int:
    doc = load(args.file)
    problems = analyze(doc).problems
    for problem in problems:
        print(f"{args.file}: {problem}")
    if problems:
        print(f"{len(problems)} problem{'s' * (len(problems) != 1)} found", file=sys.stderr)
        return exitcodes.INVALID_GRAPH
    print(f"{args.file}: ok ({len(doc.nodes)} nodes, {len(doc.edges)} edges)")
    return exitcodes.OK


# ---- train ----------------------------------------------------------------------------------

def cmd_train(args) -> int:
    if args.events == "-" and sys.stdout is None:
        raise LoomError("--events -: standard output is closed")
    if args.procs is not None and args.procs < 1:
        raise LoomError(f"--procs must be 1 or more, got {args.procs}")
    procs = args.procs or training_config(load(args.file)).get("procs", 1)
    if procs > 1 and not args.distributed:
        return launch.run_mpiexec(procs, _argv_without_procs())
    if args.distributed:
        return launch.train_as_rank(args, lambda: _train_checked(args))
    return _train_checked(args)


def _argv_without_procs() -> list[str]:
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--procs":
            skip = True
        elif not a.startswith("--procs="):
            argv.append(a)
    return argv


def _train_checked(args) -> int:
    doc = load_valid(args.file)
    if doc is None:
        return exitcodes.INVALID_GRAPH
    check_training_memory(doc, _overrides(args), args.max_memory)  # before allocating anything
    if not distributed.is_writer():  # rank 0 holds the run folder; the others read from it
        return _train_in(launch.shared_folder(None), doc, args)
    folder, note = open_run_folder(args.out, args.file, args.resume)
    with folder:  # locked until the run ends: a second run into it is refused
        if note:
            print(note, file=sys.stderr)
        launch.shared_folder(folder.path)
        return _train_in(folder.path, doc, args)


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in ("epochs", "backend", "seed", "lr", "batch_size",
                                          "checkpoint", "optimizer")}


def _train_in(out, doc, args) -> int:
    overrides = _overrides(args)
    event_sinks = []
    trainer = Trainer(doc, out, overrides, on_event=lambda e: [s(e) for s in event_sinks])
    if trainer.auto_reason:
        print(f"backend auto: using {trainer.backend.name} ({trainer.auto_reason})", file=sys.stderr)
    if args.resume:
        trainer.resume()
    if trainer.writer:
        event_sinks.extend(_sinks(args, trainer, out))
    stream = next((s for s in event_sinks if isinstance(s, sinks.EventStream)), None)
    try:
        return training.run_training(trainer, event_sinks, stream, out)
    finally:
        if event_sinks:
            event_sinks[0].close()  # metrics.jsonl


def _sinks(args, trainer, out):
    resume_step = trainer.saved_step if args.resume else None  # later records are dropped
    chosen = [sinks.MetricsFile(out / "metrics.jsonl", resume_step)]
    if args.events == "-":  # a closed stdout stops the run with a checkpoint, not a traceback
        chosen.append(sinks.EventStream(sys.stdout, on_failure=trainer.request_stop))
    elif sys.stderr.isatty():
        chosen.append(sinks.ProgressBar(trainer.config["epochs"], trainer.steps_per_epoch()))
    else:
        chosen.append(sinks.PlainLines(sys.stderr))
    return chosen


# ---- plan -----------------------------------------------------------------------------------

def load_valid(path):
    """The graph, or None after listing its problems on stderr: `plan`, `sample` and `train`
    refuse what `check` reports, with the same lines."""
    doc = load(path)
    problems = analyze(doc).problems
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    return None if problems else doc


def cmd_plan(args) -> int:
    doc = load_valid(args.file)
    if doc is None:
        return exitcodes.INVALID_GRAPH
    if args.procs < 1:
        raise LoomError(f"--procs must be 1 or more, got {args.procs}")
    report = plan_report(doc, args.batch, args.checkpoint, args.inference, args.schedule, args.procs)
    check_memory(report, args.max_memory)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        plan.print_report(report)
    return exitcodes.OK


# ---- sample ---------------------------------------------------------------------------------

def cmd_sample(args) -> int:
    doc = load_valid(args.file)
    if doc is None:
        return exitcodes.INVALID_GRAPH
    if args.chars < 0:
        raise LoomError(f"--chars must be 0 or more, got {args.chars}")
    params, _, _, _ = checkpoint.load(args.checkpoint)
    backend = args.backend if args.backend != "auto" else resolve_auto()[0]
    sampler = TextSampler(doc, params, backend)
    sampler.check_checkpoint(args.checkpoint)
    print(sampler.sample(args.prompt, args.chars, args.temperature, args.seed, args.top_k))
    return exitcodes.OK
