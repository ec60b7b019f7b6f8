"""Data-parallel runs from the command line: `train --procs K` starts `mpiexec -n K` on
itself with `--distributed`; each rank then joins the job, rank 0 opens the run folder and
tells the others where it is, and a rank that fails ends the whole job (nothing waits on a
dead rank's allreduce)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from . import exitcodes
from .. import distributed
from ..errors import LoomError


def run_mpiexec(procs: int, argv: list[str]) -> int:
    """Run the job and wait for it; Ctrl-C and SIGTERM (the editor's Stop) are passed on, so
    every rank saves its place and stops at the same step."""
    command = distributed.launch_command(procs, argv)
    child = subprocess.Popen(command, env=distributed.launch_env(procs))
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, f: child.send_signal(s))
    code = child.wait()
    # mpiexec reports a rank killed by a signal as 128 + signal or as its own codes
    return code if code in (0, 1, 2, 3, 4, exitcodes.INTERRUPTED) else exitcodes.TRAINING_FAILED


def train_as_rank(args, train) -> int:
    """One rank's run. A failure on this rank ends every rank (MPI_Abort) after its message."""
    world = distributed.start()
    try:
        code = train()
    except LoomError as exc:
        _say(world, f"error: {exc}")
        code = exitcodes.BAD_INPUT
    if code not in (exitcodes.OK, exitcodes.INTERRUPTED) and world.size > 1:
        _say(world, f"error: rank {world.rank} failed (exit {code}): ending all {world.size} ranks")
        world.abort(code)
    return code


def _say(world, line):
    print(line if world.rank == 0 else f"[rank {world.rank}] {line}", file=sys.stderr, flush=True)


def shared_folder(path):
    """Rank 0 passes the run folder it opened (or None when it could not); the others
    receive it. Called by every rank, in the same place."""
    world = distributed.world()
    if world is None:
        return path
    found = world.comm.bcast(None if path is None else str(path), root=0)
    if found is None:
        raise LoomError("rank 0 could not open the run folder")
    return Path(found)
