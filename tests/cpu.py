"""CPU a process tree has spent, from /proc (utime + stime, in seconds), for the sync
tests and benches: a process, its live descendants, the children it reaped (cutime +
cstime) and, with `also`, processes whose command line holds that text (ssh's connection
masters detach from the process that started them)."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _all() -> dict[int, list[str]]:
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (f := _stat(int(d))) is not None:
            stats[int(d)] = f
    return stats


def descendants(root: int, stats: dict[int, list[str]] | None = None) -> set[int]:
    """`root` and every process below it (by parent pid), alive now."""
    stats = _all() if stats is None else stats
    keep = {root}
    changed = True
    while changed:
        changed = False
        for pid, f in stats.items():
            if int(f[1]) in keep and pid not in keep:
                keep.add(pid)
                changed = True
    return keep


def tree_cpu(root: int, also: bytes | None = None) -> float:
    """CPU seconds of `root` and its descendants (alive or reaped), plus matches of `also`."""
    stats = _all()
    keep = descendants(root, stats)
    if also is not None:
        for pid in stats:
            try:
                if also in Path(f"/proc/{pid}/cmdline").read_bytes():
                    keep.add(pid)
            except OSError:
                pass
    total = 0
    for pid in keep:
        f = stats.get(pid)
        if f is not None:
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / TICK
