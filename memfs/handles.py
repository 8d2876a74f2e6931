"""Open file and directory handles: what open/opendir decided, for the calls without a caller."""

from __future__ import annotations

from dataclasses import dataclass

from .inodes import Node
from .policy import Scope


@dataclass(slots=True)
class FileHandle:
    node: Node
    fd: int
    uid: int
    writable: bool
    append: bool
    dirty: bool = False
    indexed: tuple[int, int] | None = None  # (mtime_ns, size) last handed to the index


@dataclass(slots=True)
class DirHandle:
    """A listing read as the kernel asks for it: memory per handle stays bounded whatever
    the folder's size. `start` makes the entry stream again (after a seekdir)."""

    uid: int
    scope: Scope | None
    path: bytes
    start: object  # () -> iterator of (name, os.stat_result | EntryAttributes | None)
    is_root: bool
    view: bool = False  # a grant reader's view: inodes of its own
    team_scope: Scope | None = None  # what `team` means in this caller's root listing
    entries: object = None  # the current iterator
    pos: int = 0  # offset of the next entry it yields
    back: tuple | None = None  # an entry the kernel had no room for, to send again

    def close(self) -> None:
        close = getattr(self.entries, "close", None)
        if close is not None:
            close()  # a generator over os.scandir: releases its directory fd now
        self.entries = None

    def seek(self, offset: int):
        if self.entries is None or offset != self.pos - (self.back is not None):
            self.close()
            self.entries, self.pos, self.back = iter(self.start()), 0, None
            for _ in range(offset):
                if next(self.entries, None) is None:
                    break
                self.pos += 1

    def next(self):
        if self.back is not None:
            item, self.back = self.back, None
            return item
        item = next(self.entries, None)
        if item is not None:
            self.pos += 1
        return item
