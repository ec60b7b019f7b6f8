"""Atomic file writes: a temporary file beside the target, fsync, then rename over it, so a
crash or a failed write never leaves a half-written file (graphs, checkpoints, summaries)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, write, binary=False):
    """Call `write(file)` on a temporary file and move it to `path` only if it succeeded."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
