"""Is the disk under DATA/ full? Asked when something memfs keeps beside the files (the
index, the history) cannot be opened, to tell "wait for space" from a real fault."""

from __future__ import annotations

import os
from pathlib import Path

# Below this much free space a store that needs to write to open (sqlite's -shm and
# journal, git's lock files, Tantivy's meta) is treated as full.
LOW_BYTES = 1 << 20
# How often a part waiting for space tries again: one statvfs, and an open once there is room.
RETRY_SECONDS = 2.0


def free_bytes(path: Path) -> int:
    v = os.statvfs(path)
    return v.f_bavail * v.f_frsize


def full(path: Path) -> bool:
    try:
        return free_bytes(path) < LOW_BYTES
    except OSError:
        return False
