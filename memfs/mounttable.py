"""What /proc says about mounts and the processes that hold them, read without touching
the mount: a memfs mount may refuse the caller (`unknown_uids: deny` refuses root too),
so stat() on it cannot tell "not mounted" from "mounted, but not for you"."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MEMFS_TYPE = "fuse.memfs"
_ESCAPE = re.compile(r"\\([0-7]{3})")  # /proc/mounts writes space, tab, newline, \ as \ooo


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def fstype(mountpoint: Path, table: str = "/proc/self/mounts") -> str | None:
    """The filesystem type mounted at `mountpoint` (the last one stacked there), None if none."""
    found = None
    try:
        text = Path(table).read_text(errors="surrogateescape")
    except OSError:
        return None
    want = os.fsdecode(os.path.abspath(mountpoint))
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and _unescape(parts[1]) == want:
            found = parts[2]
    return found


def is_memfs(mountpoint: Path) -> bool:
    return fstype(mountpoint) == MEMFS_TYPE


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    how: str  # "cwd", "root", "open file"

    def __str__(self) -> str:
        return f"{self.pid} ({self.command}, {self.how})"


def _under(target: str, mountpoint: str) -> bool:
    return target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")


def _links(pid: str) -> list[tuple[str, str]]:
    """(how, target) for a process's cwd, root and open fds."""
    base = f"/proc/{pid}"
    out = []
    for name, how in (("cwd", "cwd"), ("root", "root")):
        try:
            out.append((how, os.readlink(f"{base}/{name}")))
        except OSError:
            pass
    try:
        fds = os.listdir(f"{base}/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            out.append(("open file", os.readlink(f"{base}/fd/{fd}")))
        except OSError:
            pass
    return out


def holders(mountpoint: Path, limit: int = 20) -> list[Holder]:
    """Processes whose cwd, root or open files are under `mountpoint` (what makes umount
    EBUSY), as far as the caller may see them in /proc (root sees all)."""
    mnt = os.fsdecode(os.path.abspath(mountpoint))
    me = str(os.getpid())
    found: list[Holder] = []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit() and p != me), key=int):
        how = next((how for how, target in _links(pid) if _under(target, mnt)), None)
        if how is None:
            continue
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            command = "?"
        found.append(Holder(int(pid), command, how))
        if len(found) >= limit:
            break
    return found
