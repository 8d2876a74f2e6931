"""What the pages need, read and written through the mount as the user who runs the page
(memfs.client knows the .memfs/ protocol; this module knows only files and folders).
Blocking file calls: the views run these in worker threads, never on the event loop."""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .. import client
from ..entry import INDEX_NAME
from ..names import conflict_original, quote_path, unquote_path
from .cache import Snapshot

MAX_READ = 16 * 1024 * 1024  # above memfs's own file cap (10 MiB by default): read whole
MAX_MEMO_SHOWN = 256 * 1024  # of a MEMORY.md rendered on the overview
MAX_PATH = 4096
VERSION_CACHE = 32 * 1024 * 1024  # bytes of versions kept: a diff of two 1 MB versions read each twice


class BadPath(ValueError):
    """A path from a request that does not name a file inside the mount."""


def rel_of(shown: str) -> str:
    """A path as pages show it (names.quote_path) -> a path relative to the mount, or
    BadPath: no absolute path, no '.' or '..' part, no NUL, bounded."""
    raw = unquote_path(shown)
    parts = raw.split(b"/")
    if not raw or len(raw) > MAX_PATH or b"\0" in raw or raw.startswith(b"/"):
        raise BadPath(shown)
    if any(p in (b"", b".", b"..") for p in parts):
        raise BadPath(shown)
    return os.fsdecode(raw)


def shown(rel: str) -> str:
    return quote_path(os.fsencode(rel))


@dataclass
class Memo:
    path: str
    text: str | None  # None: there is none
    size: int = 0


@dataclass
class Overview:
    who: dict
    groups: list[str]
    entries: list[dict]
    status: list[str]
    memos: list[Memo]
    by_type: Counter = field(default_factory=Counter)
    by_folder: Counter = field(default_factory=Counter)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (copy, original)


class Memory:
    def __init__(self, mount: Path):
        self.mount = mount
        self.overviews: Snapshot[Overview] = Snapshot(self._overview)
        self._lock = threading.Lock()
        self._versions: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cached = 0

    def _full(self, rel: str) -> Path:
        full = self.mount / rel
        # memfs refuses symlinks; any other file system under --mount might not
        real, top = os.path.realpath(full), os.path.realpath(self.mount)
        if os.path.commonpath([real, top]) != top:
            raise BadPath(rel)
        return full

    # -- reading ------------------------------------------------------------------------
    def overview(self) -> tuple[Overview, float]:
        """The overview and when it was taken (at most cache.MAX_AGE old, or being rebuilt)."""
        return self.overviews.get()

    def _overview(self) -> Overview:
        listing = client.entries(self.mount)
        who = client.whoami(self.mount)
        memos = [self._memo(INDEX_NAME)]
        if who.get("team"):
            memos.append(self._memo(f"team/{INDEX_NAME}"))
        newest = sorted(listing["entries"], key=lambda e: -int(e.get("mtime_ns") or 0))  # once, not per visit
        view = Overview(who, listing.get("groups", []), newest, client.status(self.mount), memos)
        for e in view.entries:
            view.by_type[(e.get("group", ""), e.get("type") or "(no type)")] += 1
            view.by_folder[folder_of(e["path"])] += 1
            if (copy := conflict_original(e["path"])) is not None:
                view.conflicts.append((e["path"], copy[0]))
        return view

    def _memo(self, rel: str) -> Memo:
        try:
            with open(self._full(rel), "rb") as f:
                data = f.read(MAX_MEMO_SHOWN)
                size = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            return Memo(rel, None)
        return Memo(rel, data.decode("utf-8", errors="replace"), size)

    def read(self, rel: str) -> bytes:
        with open(self._full(rel), "rb") as f:
            return f.read(MAX_READ)

    def exists(self, rel: str) -> bool:
        return self._full(rel).is_file()

    def history(self, rel: str) -> list[client.Version]:
        """Oldest first; a file that was never recorded has none."""
        try:
            return client.history(self.mount, rel)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def version(self, rel: str, name: str) -> bytes:
        if "/" in name or name in ("", ".", ".."):
            raise BadPath(name)
        key = (rel, name)
        with self._lock:
            if (data := self._versions.get(key)) is not None:
                self._versions.move_to_end(key)
                return data
        data = client.read_version(self.mount, rel, name)
        with self._lock:  # a version never changes: kept, up to VERSION_CACHE bytes
            self._versions[key] = data
            self._cached += len(data)
            while self._cached > VERSION_CACHE and self._versions:
                self._cached -= len(self._versions.popitem(last=False)[1])
        return data

    def search(self, query: str, mode: str) -> client.Results:
        return client.search_results(self.mount, query, mode)

    def changes(self) -> list[client.Change]:
        return client.changes(self.mount)

    # -- writing ------------------------------------------------------------------------
    def save(self, rel: str, data: bytes) -> None:
        self._full(rel)
        self.overviews.drop()
        client.replace(self.mount, rel, data)

    def delete(self, rel: str) -> None:
        self.overviews.drop()
        self._full(rel).unlink()

    def restore(self, rel: str, name: str) -> None:
        self.save(rel, self.version(rel, name))


def folder_of(path: str) -> str:
    head, sep, _ = path.rpartition("/")
    return head if sep else "."
