"""Every number memfs hands the kernel, inodes and handles: one map of the ranges, so no
two kinds of object can ever share a number, and one place that says which kind a
number is (the log names a handle by looking it up in the right table).

Inodes, low to high:
    1                       the caller's root (ROOT_INODE)
    2 .. 999                fixed inodes of the .memfs/ control tree
    BACKING_BASE + st_ino   a file or folder, numbered by its backing inode (VIEW_BIT set
                            in a grant reader's view): st_ino stays a file's for its life
    QUERY_BASE + n          a search/<query> file, one per distinct query, never reused
    OWN_BASE + n            a node whose backing number was still held by another
    HISTORY_BASE | ...      .memfs/history/, computed from (scope, view, kind, row)
Handles:
    0 .. 2^31               a file's handle is its backing fd (no table lookup to read)
    DIR_HANDLE_BASE + n     a folder listing
    CONTROL_HANDLE_BASE + n an open control file
"""

from __future__ import annotations

import enum

ROOT_INODE = 1
FIRST_DYNAMIC_INODE = 1000  # below: fixed inodes of the control tree
BACKING_BASE = 1 << 20  # inode = BACKING_BASE + backing st_ino (+ VIEW_BIT in a grant view)
VIEW_BIT = 1 << 40
QUERY_BASE = 1 << 41
OWN_BASE = 1 << 42
HISTORY_BASE = 1 << 60


def is_control_inode(ino: int) -> bool:
    """A number of the .memfs/ tree: its fixed inodes, a search file, history's view.
    (Asked on nearly every request: one function, plain comparisons.)"""
    return 1 < ino < FIRST_DYNAMIC_INODE or QUERY_BASE <= ino < OWN_BASE or ino >= HISTORY_BASE


DIR_HANDLE_BASE = 1 << 32  # above any fd (file handles)
CONTROL_HANDLE_BASE = 1 << 40


class Handle(enum.Enum):
    FILE = "fh"
    DIR = "dh"
    CONTROL = "ch"


def handle_kind(fh: int) -> Handle:
    if fh >= CONTROL_HANDLE_BASE:
        return Handle.CONTROL
    if fh >= DIR_HANDLE_BASE:
        return Handle.DIR
    return Handle.FILE


class Counter:
    """Numbers from one range, each handed out once: a number never names two objects
    over a mount's life, so a stale one held by the kernel cannot reach a new object."""

    def __init__(self, base: int, limit: int, last: int | None = None):
        self._next = base if last is None else max(base, last)
        self._limit = limit

    def __call__(self) -> int:
        self._next += 1
        if self._next >= self._limit:
            raise OverflowError(f"number range exhausted at {self._next}")
        return self._next
