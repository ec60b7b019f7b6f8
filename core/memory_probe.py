"""What the process (or device) actually uses, for the memory plots."""
from __future__ import annotations

import os


def process_memory(backend=None) -> dict:
    info = {"rss_bytes": _rss()}
    if backend is not None:
        info.update(backend.memory_info())
    return info


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak instead of current
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
