"""Argument parsing and the three headless commands. `main()` returns an exit code."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import exitcodes, plan, sinks
from .gui import display_problem
from .. import backend as backends
from ..errors import LoomError
from ..graphfile import load
from ..layers import analyze
from ..settings import choices
from ..step import plan_report
from ..train import NonFiniteLoss, Trainer

EXAMPLE = Path(__file__).resolve().parents[2] / "resources" / "examples" / "digits_mlp.loom.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="Loom: draw, compile and train "
                                "deep-learning graphs. With no command, opens the editor.")
    allowed = choices()
    sub = p.add_subparsers(dest="command")
    o = sub.add_parser("open", help="open FILE in the editor")
    o.add_argument("file")
    t = sub.add_parser("train", help="train a saved graph headless")
    t.add_argument("file")
    t.add_argument("--epochs", type=int)
    t.add_argument("--backend", choices=allowed["backend"],
                   help="auto: cupy when a GPU works, else numpy")
    t.add_argument("--out", help="run directory (default runs/<graph name>)")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    t.add_argument("--events", help="'-' streams JSON events on stdout")
    t.add_argument("--seed", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=allowed["optimizer"])
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--checkpoint", help="gradient checkpointing: none|sqrt|cheap|budget=BYTES")
    c = sub.add_parser("check", help="validate a graph file; exit 1 and list problems")
    c.add_argument("file")
    pl = sub.add_parser("plan", help="schedule, fusion groups and memory plan")
    pl.add_argument("file")
    pl.add_argument("--batch", type=int, default=64)
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--checkpoint", help="none|sqrt|cheap|budget=BYTES")
    pl.add_argument("--inference", action="store_true", help="plan the forward graph only")
    pl.add_argument("--schedule", choices=["auto", "topo", "memory"], default="auto",
                    help="auto: memory-aware order when its peak is lower; topo: breadth-first")
    return p


def main(argv=None, open_editor=None) -> int:
    """`open_editor(path) -> int` is supplied by main.py: core never imports the GUI."""
    args = parser().parse_args(argv)
    if args.command is None or args.command == "open":
        problem = display_problem()
        if problem or open_editor is None:
            print(problem or "the editor is not available from here", file=sys.stderr)
            return exitcodes.BAD_INPUT
        return open_editor(getattr(args, "file", None) or str(EXAMPLE))
    command = {"train": cmd_train, "check": cmd_check, "plan": cmd_plan}[args.command]
    try:
        return command(args)
    except LoomError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.BAD_INPUT


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
    doc = load(args.file)
    problems = analyze(doc).problems
    if problems:
        for problem in problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return exitcodes.INVALID_GRAPH
    out = Path(args.out or Path("runs") / Path(args.file).name.split(".")[0])
    overrides = {k: getattr(args, k) for k in ("epochs", "backend", "seed", "lr", "batch_size",
                                               "checkpoint", "optimizer")}
    event_sinks = []
    trainer = Trainer(doc, out, overrides, on_event=lambda e: [s(e) for s in event_sinks])
    if trainer.backend_choice:
        print(f"backend auto: using {trainer.backend.name} ({trainer.backend_choice[1]})", file=sys.stderr)
    if args.resume:
        trainer.resume()
    event_sinks.extend(_sinks(args, trainer, out))
    try:
        summary = trainer.run()
    except NonFiniteLoss as exc:
        for s in event_sinks:
            s({"event": "error", "message": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.TRAINING_FAILED
    if summary["status"] == "stopped":
        print(f"interrupted: checkpoint saved to {summary['checkpoint']}; "
              f"continue with --resume --out {out}", file=sys.stderr)
        return exitcodes.INTERRUPTED
    print(f"done: {summary['epochs']} epochs, val_accuracy {summary['val_accuracy']:.4f}, "
          f"{summary['seconds']:.1f}s; results in {out}", file=sys.stderr)
    return exitcodes.OK


def _sinks(args, trainer, out):
    chosen = [sinks.MetricsFile(out / "metrics.jsonl", resume=args.resume)]
    if args.events == "-":
        chosen.append(sinks.JsonLines(sys.stdout))
    elif sys.stderr.isatty():
        steps = -(-len(trainer.train_set.y) // trainer.config["batch_size"])
        chosen.append(sinks.ProgressBar(trainer.config["epochs"], steps))
    else:
        chosen.append(sinks.PlainLines(sys.stderr))
    return chosen


# ---- plan -----------------------------------------------------------------------------------

def cmd_plan(args) -> int:
    report = plan_report(load(args.file), args.batch, args.checkpoint, args.inference, args.schedule)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        plan.print_report(report)
    return exitcodes.OK
