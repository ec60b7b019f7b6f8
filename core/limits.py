"""The limits Loom puts on what it reads, in one place: the memory a graph may ask for, and
how large, deep or long a file's contents may be. Every refusal names the numbers."""
from __future__ import annotations

import os
import re
import stat

from .errors import LoomError

MAX_JSON_DEPTH = 64  # a graph file is about six levels deep: far deeper is a broken file
MAX_INT = 2 ** 63 - 1  # sizes, counts and seeds end up in int64 arrays
MAX_INT_DIGITS = 20  # longer integer literals are refused before Python converts them
MAX_DATASET_BYTES = 4 << 30  # a dataset file is read whole into memory
MAX_GRAPH_BYTES = 1 << 30  # a million-node graph file is about 150 MB

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def machine_memory() -> int | None:
    """Physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def memory_limit(max_memory=None) -> tuple[int | None, str]:
    """(bytes, what they are) for messages: `--max-memory` if given, else the machine's."""
    if max_memory is not None:
        return int(max_memory), "--max-memory"
    return machine_memory(), "this machine's memory"


def refuse_oversized(what: str, needs: dict, max_memory=None):
    """Raise LoomError (`oversized`'s message) when `needs` does not fit."""
    message = oversized(what, needs, max_memory)
    if message:
        raise LoomError(message)


def oversized(what: str, needs: dict, max_memory=None) -> str | None:
    """None when the byte counts in `needs` (label -> bytes) add up to at most the limit,
    else a message naming each count and the limit."""
    limit, source = memory_limit(max_memory)
    total = sum(needs.values())
    if limit is None or total <= limit:
        return None
    parts = [f"{label} {show_bytes(n)}" for label, n in needs.items() if n]
    detail = f" ({', '.join(parts)})" if len(parts) > 1 else ""
    return f"{what}: {show_bytes(total)}{detail}, more than {source} ({show_bytes(limit)})"


def show_bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def parse_bytes(text: str) -> int:
    """`--max-memory` values: bytes, or a number with K, M, G or T (binary, optional iB)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if match is None or len(match.group(1)) > MAX_INT_DIGITS:
        raise ValueError(f"not a size in bytes: {text!r} (e.g. 2000000000 or 2G)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def open_regular(path, max_bytes: int):
    """A binary file object for `path` if it is a regular file of at most `max_bytes`;
    otherwise ValueError saying why (callers raise their own error type naming the path).
    Opened non-blocking and checked on the open descriptor: a FIFO cannot hang the open, and
    nothing can be swapped in between the check and the read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"not a regular file ({_file_type(info.st_mode)})")
        if info.st_size > max_bytes:
            raise ValueError(f"{show_bytes(info.st_size)} is more than the "
                             f"{show_bytes(max_bytes)} a file may have here")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _file_type(mode) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a pipe"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
