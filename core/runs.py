"""Run folders: what `train` writes into (metrics.jsonl, checkpoint.npz, summary.json).

A run folder is never overwritten and never shared: it is locked for the whole run (a
second run into it is refused, naming the folder), a folder that already holds a run is
refused without `--resume` (or, for the default folder, a fresh one is chosen), and no run
file is written through a symbolic link."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked there
    fcntl = None

from .atomic import atomic_write, remove_orphans
from .errors import LoomError

RUN_FILES = ("metrics.jsonl", "checkpoint.npz", "summary.json")
LOCK = ".lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class RunFolderError(LoomError):
    """The run folder cannot be used: it is not a folder, cannot be written, holds a link..."""


class RunFolderTaken(RunFolderError):
    """The run folder holds an earlier run, or another run is writing to it."""


def default_name(graph_file) -> str:
    """`mnist.v2.loom.json` -> `mnist.v2` (not up to the first dot, so versions stay apart);
    a leading dot is dropped so `.hidden.loom.json` never writes into `runs/` itself."""
    name = Path(graph_file).name
    stem = name[:-len(".loom.json")] if name.endswith(".loom.json") else Path(name).stem
    return stem.lstrip(".") or "run"


def holds_run(folder) -> bool:
    """An empty metrics file alone (a run stopped before its first checkpoint) loses nothing."""
    def present(name):
        try:
            return os.lstat(Path(folder) / name).st_size > 0 or name != "metrics.jsonl"
        except FileNotFoundError:
            return False
    return any(present(f) for f in RUN_FILES)


class RunFolder:
    """The locked folder of one run. `open()` takes the lock; `close()` releases it."""

    def __init__(self, path, resume=False):
        self.path = Path(path)
        self.resume = resume
        self._lock_fd = None

    def open(self):
        _make_folder(self.path)
        self._lock()
        try:
            self._check()
        except BaseException:
            self.close()
            raise
        remove_orphans(self.path, RUN_FILES)  # we hold the lock: no live write is removed
        return self

    def close(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def __enter__(self):
        return self if self._lock_fd is not None else self.open()

    def __exit__(self, *exc):
        self.close()

    def _lock(self):
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
        except OSError as exc:
            raise RunFolderError(f"cannot write to run folder {short(self.path)}: {exc.strerror}") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderTaken(f"another run is writing to {self.path} (it is locked): "
                                 f"wait for it or choose another --out") from None
        self._lock_fd = fd

    def _check(self):
        for name in RUN_FILES:
            if (self.path / name).is_symlink():
                raise RunFolderError(f"{self.path / name} is a symbolic link: "
                                     f"refusing to write run files through it")
        if not self.resume and holds_run(self.path):
            raise RunFolderTaken(f"{self.path} already holds a run: continue it with --resume, "
                                 f"or choose another --out (a run folder is never overwritten)")


def open_run_folder(out, graph_file, resume):
    """-> (RunFolder, note). An explicit `out` is used or refused; the default
    `runs/<graph name>` moves on to `-2`, `-3`... when it holds an earlier run."""
    if out is not None or resume:
        path = Path(out) if out is not None else Path("runs") / default_name(graph_file)
        return RunFolder(path, resume).open(), None
    base = Path("runs") / default_name(graph_file)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            return RunFolder(path).open(), (None if n == 1 else f"{base} is taken by an earlier "
                                                                f"run: writing to {path}")
        except RunFolderTaken:
            continue
    raise RunFolderError(f"no free run folder next to {base}")


def _make_folder(path):
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"run folder {short(path)} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create run folder {short(path)}: {exc.strerror}") from None


def short(path, limit=120) -> str:
    """A path for a one-line message: very long ones keep their start and end."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]}"


# ---- run files -------------------------------------------------------------------------------

def open_metrics(path, resume_step=None):
    """metrics.jsonl for appending, never through a link. On resume, records after the
    checkpoint's step are dropped first (atomically), so the resumed steps are not doubled."""
    path = Path(path)
    if resume_step is not None and path.exists():
        kept = kept_records(path.read_text(encoding="utf-8", errors="replace"), resume_step)
        atomic_write(path, lambda f: f.write(kept))
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise RunFolderError(f"cannot write {short(path)}: {exc.strerror}") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def kept_records(text: str, last_step: int) -> str:
    """The lines of a metrics file up to `last_step`; a torn last line (kill -9) is dropped."""
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) \
                and record["step"] <= last_step:
            kept.append(line + "\n")
    return "".join(kept)


def json_safe(value):
    """JSON without bare NaN/Infinity (which strict parsers reject): non-finite numbers
    become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
