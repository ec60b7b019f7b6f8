"""Atomic file writes: a temporary file beside the target, fsync, rename over it, then fsync
the folder, so a crash or a failed write never leaves a half-written file (graphs,
checkpoints, summaries) and a finished rename survives a power cut."""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

# O_NOFOLLOW: a planted link at the temporary name is refused, never written through.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def atomic_write(path, write, binary=False):
    """Call `write(file)` on a temporary file and move it to `path` only if it succeeded.
    The file gets the permissions any new file gets under the umask (0666 & ~umask)."""
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # replaces a link at `path` itself, never its target
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def _naming(exc: OSError, path) -> OSError:
    """A failed write() says "No space left on device" but not where: add the file."""
    if exc.filename is None:
        return OSError(exc.errno, exc.strerror or str(exc), str(path))
    return exc


def _create_temporary(path):
    """mkstemp makes files 0600 whatever the umask; os.open with 0666 lets the umask decide."""
    while True:
        tmp = path.parent / temporary_name(path.name)
        try:
            return os.open(tmp, _CREATE, 0o666), tmp
        except FileExistsError:
            continue


def temporary_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.tmp"


def fsync_folder(folder):
    """Make a rename in `folder` durable. Some file systems cannot fsync a folder: fine."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def remove_orphans(folder, names) -> list[Path]:
    """Delete temporary files an interrupted `atomic_write` of one of `names` left behind
    (call it only while holding the folder, so no live write is removed)."""
    removed = []
    for name in names:
        for orphan in Path(folder).glob(f".{name}.*.tmp"):
            orphan.unlink(missing_ok=True)
            removed.append(orphan)
    return removed
