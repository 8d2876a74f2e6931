"""Inode table: inode <-> (scope, relative path), with kernel lookup counts.

One inode per (scope, path, view): the kernel's page and attribute caches are keyed by
inode and shared by every caller, so an inode must never stand for two files. A grant
reader's view (.memfs/users/<owner>/...) gets inodes of its own: Linux keeps one name
per directory inode, and a shared one would move the owner's cwd into the view.

A node's number comes from its backing file's inode number, so `st_ino` stays the same
for the file's whole life: across renames, the kernel forgetting it (memory pressure,
drop_caches) and remounts, as tools that key on (dev, ino) expect. Only when that number
is still held by another node the kernel knows (a backing inode reused while an old one
is open) does a node get a number of its own, from a range no backing number reaches; the
file keeps that number from then on, across remounts too (the table of such numbers is
kept by own_numbers.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .numbers import BACKING_BASE, HISTORY_BASE, OWN_BASE, ROOT_INODE, VIEW_BIT, Counter
from .own_numbers import OwnNumbers
from .policy import Scope

# Below the root every inode has one scope, so the kernel may cache it.
CACHE_TIMEOUT = 300.0
# A grant reader's view of another user's tree: the owner's renames cannot be pushed to
# the view's dentries, so the kernel keeps them briefly.
VIEW_TIMEOUT = 1.0


def entry_timeout(parent_inode: int) -> float:
    """Names in the root resolve per caller: the kernel must ask again every time."""
    return 0 if parent_inode == ROOT_INODE else CACHE_TIMEOUT


@dataclass(slots=True, eq=False)
class Node:
    ino: int
    scope: Scope
    path: bytes  # relative to the scope root; b"" is the scope root itself
    nlookup: int = 0
    open_fds: set[int] = field(default_factory=set)
    unlinked: bool = False  # removed or renamed over while the kernel still knows it
    view: bool = False  # reached through a grant view, not the owner's tree
    sig: tuple[int, int] | None = None  # (mtime_ns, size) when memfs last saw it open or close
    gone: os.stat_result | None = None  # a removed folder's last stat (no backing fd to ask)
    creator: tuple[int, int] | None = None  # a team file's (backing st_ino, uid shown as owner)


def removed_stat(st: os.stat_result) -> os.stat_result:
    """A removed file's or folder's stat as the kernel shows one: no links left."""
    extra = ("st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev")
    return os.stat_result((*st[:3], 0, *st[4:10]), {k: getattr(st, k) for k in extra})


class InodeTable:
    def __init__(self, own: OwnNumbers | None = None):
        self._by_ino: dict[int, Node] = {}
        # the node of a number, or None: the dict's own get (asked on every request)
        self.get: Callable[[int], Node | None] = self._by_ino.get
        # Per scope, so a folder move scans the nodes of its own scope, not everyone's.
        self._by_key: dict[Scope, dict[tuple[bytes, bool], Node]] = {}
        # backing inode number -> the number of its own a file got because the backing one
        # was held by an older node: that file keeps it for the mount's life, whenever the
        # kernel forgets and looks it up again (st_ino never changes while a file exists)
        self._own = own if own is not None else OwnNumbers()
        self._next = Counter(OWN_BASE, HISTORY_BASE, self._own.last())

    def __len__(self) -> int:
        return len(self._by_ino)

    def find(self, scope: Scope, path: bytes, view: bool = False) -> Node | None:
        return self._by_key.get(scope, {}).get((path, view))

    def node_for(self, scope: Scope, path: bytes, view: bool = False, backing_ino: int | None = None) -> Node:
        """The node of a live (scope, path), made on first sight."""
        keys = self._by_key.setdefault(scope, {})
        node = keys.get((path, view))
        if node is None:
            node = keys[(path, view)] = self._made(scope, path, view, backing_ino)
        return node

    def _made(self, scope: Scope, path: bytes, view: bool, backing_ino: int | None) -> Node:
        """A new node, numbered by its backing inode unless an older node holds that number."""
        ino: int | None
        if backing_ino is None or not 0 < backing_ino < VIEW_BIT - BACKING_BASE:
            ino = self._next()
        else:
            key = backing_ino + (VIEW_BIT if view else 0)
            ino = self._own.get(key)
            if ino is None or ino in self._by_ino:
                ino = BACKING_BASE + key
                if ino in self._by_ino:
                    ino = self._next()
                    self._own.give(key, ino)
        node = self._by_ino[ino] = Node(ino, scope, path, view=view)
        return node

    def looked_up(self, scope: Scope, path: bytes, view: bool, backing_ino: int) -> Node:
        """node_for, then remember once: what a lookup or a create hands the kernel."""
        node = self.node_for(scope, path, view, backing_ino)
        node.nlookup += 1
        return node

    def remember(self, node: Node, count: int = 1) -> None:
        """The kernel got a reference to this node (lookup, create, readdirplus)."""
        node.nlookup += count

    def forget(self, ino: int, count: int) -> None:
        node = self._by_ino.get(ino)
        if node is None:
            return
        node.nlookup -= count
        self._maybe_drop(node)

    def closed(self, node: Node, fd: int) -> None:
        node.open_fds.discard(fd)
        if node.nlookup <= 0 and not node.open_fds:  # _maybe_drop's test first: one frame fewer a close
            self._maybe_drop(node)

    def drop_if_unused(self, node: Node) -> None:
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        if node.nlookup <= 0 and not node.open_fds:
            self._by_ino.pop(node.ino, None)
            if node.unlinked and node.ino >= OWN_BASE:  # the file is gone: its number may go too
                self._own.release(node.ino)
            keys = self._by_key.get(node.scope, {})
            if not node.unlinked and keys.get((node.path, node.view)) is node:
                del keys[(node.path, node.view)]
                if not keys:
                    del self._by_key[node.scope]

    def unlinked(self, scope: Scope, path: bytes) -> list[Node]:
        """The name is gone; an open or still-known node lives on, reachable by number only."""
        gone = []
        for view in (False, True):
            node = self._by_key.get(scope, {}).pop((path, view), None)
            if node is not None:
                node.unlinked = True
                gone.append(node)
                self._maybe_drop(node)
        return gone

    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> list[Node]:
        """Re-key the node at src and, for a directory, every known node below it."""
        self.unlinked(dst, dst_path)
        if not is_dir:  # the common case (temp file + rename): no scan of the table
            moved = []
            for view in (False, True):
                node = self._by_key.get(src, {}).pop((src_path, view), None)
                if node is not None:
                    node.scope, node.path = dst, dst_path
                    self._by_key.setdefault(dst, {})[(dst_path, view)] = node
                    moved.append(node)
            return moved
        prefix = src_path + b"/"
        found = []
        keys = self._by_key.get(src, {})
        for (path, view), node in list(keys.items()):
            if path == src_path:
                new_path = dst_path
            elif path.startswith(prefix):
                new_path = dst_path + b"/" + path[len(prefix) :]
            else:
                continue
            del keys[(path, view)]
            found.append((node, new_path))
        for node, new_path in found:
            node.scope, node.path = dst, new_path
            self._by_key.setdefault(dst, {})[(new_path, node.view)] = node
        return [n for n, _ in found]
