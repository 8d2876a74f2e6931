"""Open file and directory handles: what open/opendir decided, for the calls without a caller."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .inodes import Node
from .policy import Scope

if TYPE_CHECKING:
    from pyfuse3 import EntryAttributes

# One entry of a listing: its name and its stat, its attributes ('.', '..', control
# entries), or None (looked up when sent).
Listed = tuple[bytes, "os.stat_result | EntryAttributes | None"]


@dataclass(slots=True)
class FileHandle:
    node: Node
    fd: int
    uid: int
    user: str  # the memory user who opened it: the writer history is told of at release
    writable: bool
    append: bool
    dirty: bool = False
    indexed: tuple[int, int] | None = None  # (mtime_ns, size) last handed to the index


class OpenFiles(dict[int, FileHandle]):
    """Every open file handle by number (its fd). Also what the others ask about files
    being written: history and sync (open_dirty, busy) and the index (dirty_paths)."""

    def _dirty(self, scopes: list[Scope]):
        wanted = set(scopes)
        return (h for h in self.values() if h.dirty and not h.node.unlinked and h.node.scope in wanted)

    def open_dirty(self, scopes: list[Scope]) -> list[tuple[Scope, bytes, str]]:
        """(scope, path, writer) of files in these scopes with writes not yet closed."""
        return [(h.node.scope, h.node.path, h.user) for h in self._dirty(scopes)]

    def dirty_paths(self, scopes: list[Scope]) -> list[tuple[Scope, bytes]]:
        """Files in these scopes written through handles still open and changed since the
        index last saw them: a search reads them as they are now (and only those)."""
        out = []
        for h in self._dirty(scopes):
            st = os.fstat(h.fd)
            sig = (st.st_mtime_ns, st.st_size)
            if sig != h.indexed:
                h.indexed = sig
                out.append((h.node.scope, h.node.path))
        return out

    def busy(self, scope: Scope) -> set[bytes]:
        """Paths of a scope open for writing: a sync never replaces them under the writer."""
        return {h.node.path for h in self.values() if h.writable and h.node.scope == scope}


@dataclass(slots=True)
class DirHandle:
    """A listing read as the kernel asks for it: memory per handle stays bounded whatever
    the folder's size. `start` makes the entry stream again (after a seekdir)."""

    uid: int
    scope: Scope | None
    path: bytes
    start: Callable[[], Iterable[Listed]]
    is_root: bool
    view: bool = False  # a grant reader's view: inodes of its own
    team_scope: Scope | None = None  # what `team` means in this caller's root listing
    entries: Iterator[Listed] | None = None  # the current iterator
    pos: int = 0  # offset of the next entry it yields
    back: Listed | None = None  # an entry the kernel had no room for, to send again
    node: Node | None = None  # the folder listed (None: the root, a control listing)

    def where(self) -> tuple[Scope | None, bytes] | None:
        """Where the listed folder is now. A folder's handle follows its renames within its
        scope, as a directory fd does (listing what sits at the old name would show
        another folder); None once the folder is removed, or moved to another scope: the
        caller was checked for this one only, so nothing more is listed there."""
        node = self.node
        if node is None:
            return self.scope, self.path
        if node.unlinked or node.scope != self.scope:
            return None
        return node.scope, node.path

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

    def next(self) -> Listed | None:
        if self.back is not None:
            back, self.back = self.back, None
            return back
        assert self.entries is not None, "readdir seeks first"
        item = next(self.entries, None)
        if item is not None:
            self.pos += 1
        return item
