"""The .memfs/ control tree: files whose content depends on the caller (whoami, context.md,
index.md, status, search/<query>), the read-write query handles, and root's refresh.

The same inode serves different bytes to different callers, so these files are opened
with direct_io (no page cache) and answered with timeouts 0 (no attribute cache).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Protocol

import trio
import yaml
from pyfuse3 import EntryAttributes, FileInfo, FUSEError

from . import context as ctx_mod
from . import layout, policy
from .entry import INDEX_NAME
from .fleet import Snapshot
from .history.purge_file import PurgeFile, PurgeHandle
from .history.view import HISTORY, LOG, HistoryView
from .identity import Identities
from .index import Hit, Index, IndexUnavailable, QueryError, path_bytes
from .names import quote_path
from .numbers import (
    CONTROL_HANDLE_BASE,
    OWN_BASE,
    QUERY_BASE,
    Counter,
    is_control_inode,
)
from .policy import Kind, Principal, Scope, home, readable_scopes
from .secrets.service import SecretGuard
from .store import Store
from .sync import Sync
from .sync.service import SyncHost

CONTROL_ROOT = 2
WHOAMI = 3
USERS = 4
SEARCH = 5  # search/<query>: read it for ranked results
QUERY = 6  # write a query of any length to a handle, then read the results from it
QUERY_JSON = 7
CONTEXT = 8  # context.md: what a harness injects into a prompt at session start
INDEX_MD = 9  # index.md: generated from every readable entry's frontmatter
STATUS = 10  # status: everything wrong, one line each
REFRESH = 11  # root only: write backing paths changed behind memfs's back (memfs import)
SYNC = 14  # sync: read for the caller's scopes' sync state; write to it to sync them now
QUARANTINE = 15  # quarantine/<name>: the caller's own refused writes (the secret guard), read-only
ADMIN = 17  # admin.json: every user's and team's state (root and daemon.admin_group only)
PURGE = 16  # purge: write a request to purge versions of a file, read what went (history/purge_file.py)
ENTRIES = 18  # entries.json: index.md's entries as data (memfs ui), one object per readable entry

MAX_QUERY_BYTES = 64 * 1024
MAX_RESULTS = 20
# Worker threads one caller's searches and views may hold at once: with one, a search
# waited behind the same caller's status or entries.json build (~0.2 s at 10k entries:
# memfs ui's overview rebuild made its searches' p95 270 ms, measured).
PER_CALLER = 2


@dataclass
class RefreshHandle:
    data: bytearray = field(default_factory=bytearray)


@dataclass
class SyncHandle:
    principal: Principal
    request: bool = False
    result: bytes | None = None
    pos: int = 0


@dataclass
class QueryHandle:
    """A search through a handle: writes collect the query, the first read runs it."""

    principal: Principal
    json: bool
    query: bytearray = field(default_factory=bytearray)
    result: bytes | None = None
    pos: int = 0


class FsHost(SyncHost, Protocol):
    """What the control files need of the filesystem, handed over at construction."""

    def entry(self, scope: Scope, path: bytes, timeout: float, view: bool = False) -> EntryAttributes:
        """Look up a scope's path as a node the kernel may hold (a grant view's root)."""

    def dirty_paths(self, scopes: list[Scope]) -> list[tuple[Scope, bytes]]:
        """Files of these scopes being written through open handles, changed since indexed."""

    def refresh(self, paths: list[bytes]) -> None:
        """Backing paths changed behind memfs's back (memfs import): drop caches, re-index."""

    async def usage(self, p: Principal) -> dict:
        """The caller's usage against its limits."""

    def open_dirty(self, scopes: list[Scope]) -> list[tuple[Scope, bytes, str]]:
        """(scope, path, user) of files in these scopes open with writes not yet closed."""


class FleetView(Protocol):
    """The operator's view of every scope (fleet.Fleet): memfs status --all."""

    async def snapshot(self, count: bool = True) -> Snapshot: ...

    def is_admin(self, p: Principal) -> bool: ...


class NamedNumbers:
    """Names under a control folder (a query, a quarantined write) given inode numbers on
    first lookup, from a counter that never reuses one. Bounded: past MAX the map starts
    over, and the kernel asks again for the names it forgot."""

    MAX = 10_000

    def __init__(self, counter: Counter):
        self._next = counter
        self._numbers: dict[bytes, int] = {}
        self.name: dict[int, bytes] = {}

    def number(self, name: bytes) -> int:
        ino = self._numbers.get(name)
        if ino is None:
            if len(self._numbers) >= self.MAX:
                self._numbers.clear()
                self.name.clear()
            ino = self._numbers[name] = self._next()
            self.name[ino] = name
        return ino

    def __contains__(self, ino: int) -> bool:
        return ino in self.name


class Control:
    def __init__(
        self,
        *,
        ids: Identities,
        store: Store,
        host: FsHost,
        mountpoint: str = "",
        index: Index | None = None,
        limits: ctx_mod.ContextLimits | None = None,
        history_view: HistoryView | None = None,
        sync: Sync | None = None,
        secrets: SecretGuard | None = None,
        fleet: FleetView | None = None,
    ):
        self.ids = ids
        self.fleet = fleet
        self.store = store
        self.mountpoint = mountpoint
        self.index = index
        self.limits = limits or ctx_mod.ContextLimits()
        self.host = host
        self._handles: dict[int, bytes | QueryHandle] = {}
        self._next_handle = Counter(CONTROL_HANDLE_BASE, 1 << 63)
        self._started = time.time_ns()
        # Heavy work (searches, views) runs in threads, one at a time per caller: one caller's
        # load queues behind itself, never in front of the others.
        self._limiters: dict[int, trio.CapacityLimiter] = {}
        self._async_files = {
            WHOAMI: self.whoami,
            CONTEXT: self.context_md,
            INDEX_MD: self.index_md,
            STATUS: self.status,
            ENTRIES: self.entries_json,
            ADMIN: self.admin,
        }
        root = {b"whoami": WHOAMI, b"users": USERS, b"refresh": REFRESH}
        if fleet is not None:
            root[b"admin.json"] = ADMIN
        if index is not None:
            root.update({b"search": SEARCH, b"query": QUERY, b"query.json": QUERY_JSON})
            root.update({b"context.md": CONTEXT, b"index.md": INDEX_MD, b"status": STATUS})
            root[b"entries.json"] = ENTRIES
        self.history_view = history_view
        self.purges = PurgeFile(history_view.history) if history_view is not None else None
        if history_view is not None:
            root.update({b"history": HISTORY, b"log": LOG, b"purge": PURGE})
        self.sync = sync
        if sync is not None:
            root[b"sync"] = SYNC
        self.secrets = secrets
        if secrets is not None and secrets.policy.on:
            root[b"quarantine"] = QUARANTINE
        self._names = {CONTROL_ROOT: root}
        self._next_query_ino = Counter(QUERY_BASE, OWN_BASE)  # never reused: an old number names no new query
        self._queries = NamedNumbers(self._next_query_ino)  # search/<query>
        self._kept = NamedNumbers(self._next_query_ino)  # quarantine/<name>

    # The files that use them exist only with an index (search, query, context.md, ...) or
    # a sync (sync): these say so to the type checker.
    def _index(self) -> Index:
        assert self.index is not None, "an index file without an index"
        return self.index

    def _purges(self) -> PurgeFile:
        assert self.purges is not None, "the purge file without history"
        return self.purges

    def _sync(self) -> Sync:
        assert self.sync is not None, "the sync file without a sync"
        return self.sync

    # -- what fs.py asks ------------------------------------------------------
    # history's view (HISTORY, LOG and HISTORY_BASE up) lies in these ranges too
    owns = staticmethod(is_control_inode)

    def refusal(self, ino: int) -> int:
        """The errno for changing something here: history is a read-only tree."""
        return errno.EROFS if HistoryView.owns(ino) else errno.EACCES

    def _attrs(self, ino: int, mode: int, size: int = 0) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = ino
        a.entry_timeout = a.attr_timeout = 0  # per-caller content
        a.st_mode = mode
        a.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        a.st_size = size
        a.st_blksize = 4096
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._started
        return a

    def _owned(self, a: EntryAttributes, p: Principal) -> EntryAttributes:
        a.st_uid, a.st_gid = p.uid, p.gid
        return a

    def root_attrs(self, p: Principal) -> EntryAttributes:
        return self.getattr(CONTROL_ROOT, p)

    def getattr(self, ino: int, p: Principal) -> EntryAttributes:
        if self.history_view is not None and HistoryView.owns(ino):
            return self.history_view.getattr(ino, p)
        if ino in self._names or ino in (USERS, SEARCH, QUARANTINE):
            return self._owned(self._attrs(ino, stat.S_IFDIR | 0o500), p)
        if ino in (QUERY, QUERY_JSON, SYNC, PURGE):
            return self._owned(self._attrs(ino, stat.S_IFREG | 0o600), p)
        if ino == REFRESH:
            a = self._attrs(ino, stat.S_IFREG | 0o200)
            a.st_uid = a.st_gid = 0
            return a
        if ino == ADMIN:  # root's, like /etc/shadow: memfs decides who reads it (is_admin)
            a = self._attrs(ino, stat.S_IFREG | 0o400)
            a.st_uid = a.st_gid = 0
            return a
        if ino in self._queries or ino in self._async_files or ino in self._kept:
            # Content is made at open; direct_io readers read to EOF whatever the size says.
            return self._owned(self._attrs(ino, stat.S_IFREG | 0o400), p)
        raise FUSEError(errno.ENOENT)

    async def lookup(self, parent: int, name: bytes, p: Principal) -> EntryAttributes:
        if self.history_view is not None and HistoryView.owns(parent):
            return await self.history_view.lookup(parent, name, p)
        if parent == USERS:
            owner = os.fsdecode(name)
            if not policy.sees_grant(p, owner):
                raise FUSEError(errno.ENOENT)
            # A granted owner's private root: an ordinary scope inode, read-only by policy.
            return self.host.entry(Scope(Kind.PRIVATE, owner), b"", 0, view=True)
        if parent == SEARCH:
            return self.getattr(self._queries.number(name), p)
        if parent == QUARANTINE:
            if p.user is None or os.fsdecode(name) not in self._quarantine().quarantined(p.user):
                raise FUSEError(errno.ENOENT)
            return self.getattr(self._kept.number(name), p)
        ino = self._names.get(parent, {}).get(name)
        if ino is None:
            raise FUSEError(errno.ENOENT)
        return self.getattr(ino, p)

    def _quarantine(self) -> SecretGuard:
        assert self.secrets is not None, "the quarantine without a secret guard"
        return self.secrets

    async def grant_ctl(self, scope: Scope, p: Principal) -> EntryAttributes:
        """.memfs/ in a grant reader's view of an owner's root: the owner's history."""
        if self.history_view is None:
            raise FUSEError(errno.ENOENT)
        return await self.history_view.grant_ctl(scope, p)

    async def opendir(self, ino: int, p: Principal):
        """A callable that (re)starts the folder's listing: (name, attributes) pairs."""
        if self.history_view is not None and HistoryView.owns(ino):
            return await self.history_view.opendir(ino, p)
        if ino in (USERS, SEARCH):
            listing = []  # reachable by name (see whoami and README), not enumerated
        elif ino == QUARANTINE:
            here = self.getattr(ino, p)
            kept = self._quarantine().quarantined(p.user) if p.user is not None else []
            listing = [(b".", here), (b"..", here)]
            listing += [(n, self.getattr(self._kept.number(n), p)) for n in map(os.fsencode, kept)]
        else:
            names = self._names.get(ino)
            if names is None:
                raise FUSEError(errno.ENOTDIR)
            here = self.getattr(ino, p)
            listing = [(b".", here), (b"..", here)] + [(n, self.getattr(i, p)) for n, i in names.items()]
        return lambda: iter(listing)

    def _handle(self, content) -> int:
        fh = self._next_handle()
        self._handles[fh] = content
        return fh

    async def open(self, ino: int, flags: int, p: Principal) -> FileInfo:
        if ino == REFRESH:
            if not policy.may_refresh(p) or flags & os.O_ACCMODE == os.O_RDONLY:
                raise FUSEError(errno.EACCES)
            return FileInfo(fh=self._handle(RefreshHandle()), direct_io=True, keep_cache=False)
        if ino == SYNC:
            fh = self._handle(SyncHandle(p))
            return FileInfo(fh=fh, direct_io=True, keep_cache=False, nonseekable=True)
        if ino == PURGE:
            return FileInfo(
                fh=self._handle(PurgeHandle(p)), direct_io=True, keep_cache=False, nonseekable=True
            )
        if ino in (QUERY, QUERY_JSON):
            fh = self._handle(QueryHandle(p, json=ino == QUERY_JSON))
            # nonseekable: results follow the query in one stream, whatever the offset
            return FileInfo(fh=fh, direct_io=True, keep_cache=False, nonseekable=True)
        writes = flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC
        if self.history_view is not None and HistoryView.owns(ino):
            if writes:
                raise FUSEError(errno.EROFS)
            if ino == LOG:
                content = await self.history_view.log(p, self._view_prefix(p), self.limiter(p))
                return FileInfo(fh=self._handle(content), direct_io=True, keep_cache=False)
            content = await self.history_view.read_version(ino, p, self.limiter(p))
            # a version's bytes never change, and its inode names only them: cache them
            return FileInfo(fh=self._handle(content), direct_io=False, keep_cache=True)
        if ino in self._kept:
            if writes:
                raise FUSEError(errno.EACCES)
            return FileInfo(fh=self._handle(await self._kept_bytes(ino, p)), direct_io=True, keep_cache=False)
        if ino not in self._queries and ino not in self._async_files:
            raise FUSEError(errno.EISDIR)
        if writes:
            raise FUSEError(errno.EACCES)
        if ino in self._queries:
            query = _decode_query(self._queries.name[ino])
            content = await self.search(p, query, as_json=False)
        else:
            content = await self._async_files[ino](p)
        return FileInfo(fh=self._handle(content), direct_io=True, keep_cache=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self._handles[fh]
        if isinstance(h, SyncHandle):
            if h.result is None:
                h.result = await self._sync_report(h.principal, now=bool(h.request))
            chunk = h.result[h.pos : h.pos + size]
            h.pos += len(chunk)
            return chunk
        if isinstance(h, PurgeHandle):
            return await self._purges().read(h, size)
        if isinstance(h, QueryHandle):
            if h.result is None:
                h.result = await self.search(h.principal, _decode_query(bytes(h.query)), h.json)
            chunk = h.result[h.pos : h.pos + size]
            h.pos += len(chunk)
            return chunk
        return h[off : off + size]

    def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self._handles[fh]
        if isinstance(h, RefreshHandle):
            h.data += buf
            return len(buf)
        if isinstance(h, SyncHandle):
            h.request = True  # any write asks for a sync now
            return len(buf)
        if isinstance(h, PurgeHandle):
            return self._purges().write(h, buf)
        if not isinstance(h, QueryHandle):
            raise FUSEError(errno.EBADF)
        if len(h.query) + len(buf) > MAX_QUERY_BYTES:
            raise FUSEError(errno.EFBIG)
        if h.result is not None:  # a new query after reading results: start over
            h.query.clear()
            h.result, h.pos = None, 0
        h.query += buf
        return len(buf)

    def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if isinstance(h, RefreshHandle):
            self.host.refresh(bytes(h.data).splitlines())

    async def _kept_bytes(self, ino: int, p: Principal) -> bytes:
        """A refused write kept in quarantine, for its writer alone (the caller's own folder)."""
        if p.user is None:
            raise FUSEError(errno.ENOENT)
        read = self._quarantine().read_quarantined
        try:
            return await trio.to_thread.run_sync(read, p.user, self._kept.name[ino], limiter=self.limiter(p))
        except FileNotFoundError:
            raise FUSEError(errno.ENOENT) from None

    # -- the files ------------------------------------------------------------
    def limiter(self, p: Principal) -> trio.CapacityLimiter:
        lim = self._limiters.get(p.uid)
        if lim is None:
            lim = self._limiters[p.uid] = trio.CapacityLimiter(PER_CALLER)
        return lim

    async def admin(self, p: Principal) -> bytes:
        """Every user's and team's state, for root and daemon.admin_group (JSON)."""
        if self.fleet is None or not self.fleet.is_admin(p):
            raise FUSEError(errno.EACCES)
        snap = await self.fleet.snapshot()
        return json.dumps(snap.as_dict(), indent=1).encode() + b"\n"

    async def whoami(self, p: Principal) -> bytes:
        mnt = self.mountpoint.rstrip("/")
        info = {
            "user": p.user,
            "uid": p.uid,
            "team": p.team,
            "private_path": mnt or "/",
            "team_path": f"{mnt}/team" if p.team else None,
            "grants": [
                {"owner": o, "access": "read", "path": f"{mnt}/.memfs/users/{o}"} for o in sorted(p.readable)
            ],
            "usage": await self.host.usage(p),
        }
        if self.ids.is_fallback(p):
            info["note"] = fallback_hint(p)
        return yaml.safe_dump(info, sort_keys=False).encode()

    async def _sync_report(self, p: Principal, now: bool) -> bytes:
        """The caller's scopes with a remote: where, when last synced, commits waiting.
        Written to first: sync them now (the caller's own limiter) and say what moved."""
        sync = self._sync()
        scopes = [s for s in (p.private, p.team_scope) if s is not None and s in sync.state]
        if now:
            async with self.limiter(p):
                for scope in scopes:
                    await sync.sync_scope(scope, self.host)
        return yaml.safe_dump(sync.status(scopes), sort_keys=False).encode()

    # -- search -----------------------------------------------------------------
    @staticmethod
    def _view_prefix(p: Principal):
        return lambda scope: layout.view_path(p, scope, "")

    @staticmethod
    def view_path(p: Principal, scope: Scope, rel: str) -> str:
        """An indexed file's path as this caller sees it under the mount, shown as every
        path is (names.quote_path): the whole path, so an odd name quotes it once."""
        return quote_path(layout.view_path(p, scope, "").encode() + path_bytes(rel))

    async def _flush(self, p: Principal, scopes: list[Scope]) -> None:
        """Read-your-writes: apply what is queued in the scopes the caller reads (only
        those: a caller never waits for another's backlog). Root (an admin, memfs doctor)
        waits for everything."""
        try:
            await self._index().flush(self.host.dirty_paths(scopes), scopes=None if p.uid == 0 else scopes)
        except IndexUnavailable:
            pass  # answer from the index as it is; the changes stay queued

    async def search(self, p: Principal, query: str, as_json: bool) -> bytes:
        scopes = readable_scopes(p)
        await self._flush(p, scopes)
        try:
            hits, total = await self._index().search(scopes, query, MAX_RESULTS, limiter=self.limiter(p))
        except QueryError as e:  # said in the results, where the asker reads
            if as_json:
                return (json.dumps({"query": query, "error": str(e), "total": 0, "hits": []}) + "\n").encode()
            return f"# Search: {' '.join(query.split())}\n\nError: {e}\n".encode()
        if as_json:
            return (
                json.dumps(
                    {"query": query, "total": total, "hits": [self._hit_json(p, h) for h in hits]}, indent=2
                )
                + "\n"
            ).encode()
        return render_markdown(query, total, [(self.view_path(p, h.scope, h.relpath), h) for h in hits])

    def _hit_json(self, p: Principal, h: Hit) -> dict:
        return {
            "path": self.view_path(p, h.scope, h.relpath),
            "score": round(h.score, 3),
            "name": h.name,
            "type": h.type,
            "description": h.description,
            "snippet": h.snippet,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h.mtime_ns / 1e9)),
            "problems": h.problems,
            "rankers": list(h.rankers),
        }

    # -- agent views: context.md, index.md, status --------------------------------------
    async def _view(self, p: Principal, render) -> bytes:
        """Build one view from the caller's MEMORY.md files and readable entries, in a
        worker thread behind the caller's own limiter (a 10 MiB MEMORY.md costs its
        writer, not everyone)."""
        scopes = readable_scopes(p)
        await self._flush(p, scopes)
        hits = await self._index().entries(scopes, limiter=self.limiter(p))
        return await trio.to_thread.run_sync(
            self._build_view, p, scopes, hits, render, limiter=self.limiter(p)
        )

    def _build_view(self, p: Principal, scopes: list[Scope], hits: list[Hit], render) -> bytes:
        groups = {p.private: "Private"}
        if p.team_scope is not None:
            groups[p.team_scope] = f"Team ({p.team})"
        for o in sorted(p.readable):
            groups[Scope(Kind.PRIVATE, o)] = f"{o} (read-only grant)"
        docs = [
            ctx_mod.Doc(
                path=self.view_path(p, h.scope, h.relpath),
                scope=str(h.scope),
                relpath=h.relpath,
                group=groups.get(h.scope, str(h.scope)),
                name=h.name,
                description=h.description,
                type=h.type,
                mtime_ns=h.mtime_ns,
                problems=h.problems,
            )
            for h in hits
        ]
        memos = [_read_memory(self.store, home(p), "Private memory", "MEMORY.md", self.limits)]
        if p.team_scope is not None:
            label = f"Team memory ({p.team})"
            memos.append(_read_memory(self.store, p.team_scope, label, "team/MEMORY.md", self.limits))
        by_name = {str(s): s for s in scopes}

        def exists(scope: str, rel: str) -> bool:
            try:
                self.store.lstat(by_name[scope], os.fsencode(rel))
                return True
            except (OSError, KeyError, ValueError):  # ValueError: a NUL in a link target
                return False

        analysis = ctx_mod.analyze(memos, docs, exists, self.limits)
        return render(p, memos, docs, analysis, list(groups.values())).encode()

    async def context_md(self, p: Principal) -> bytes:
        def render(p, memos, docs, analysis, groups):
            return ctx_mod.render_context(p.user, memos, analysis, self.limits, time.time_ns())

        return await self._view(p, render)

    async def index_md(self, p: Principal) -> bytes:
        return await self._view(
            p, lambda p, memos, docs, analysis, groups: ctx_mod.render_index(docs, groups)
        )

    async def entries_json(self, p: Principal) -> bytes:
        return await self._view(
            p, lambda p, memos, docs, analysis, groups: ctx_mod.render_entries(docs, groups)
        )

    async def status(self, p: Principal) -> bytes:
        problems = self._index().problems()
        secrets: list[str] = []
        if self.secrets is not None:
            await self.secrets.settle(p)  # the caller's files closed just now are scanned
            # taken here, on the loop that changes them, not in the thread that renders
            secrets = self.secrets.status_lines(p)
        if self.sync is not None:  # what the caller's scopes' remotes brought and sync refused
            secrets += self.sync.refusals.lines(p, [s for s in (p.private, p.team_scope) if s is not None])

        fallback = self.ids.is_fallback(p)

        def render(p, memos, docs, analysis, groups):
            lines = ctx_mod.status_lines(memos, docs, analysis, self.limits) + secrets + problems
            if fallback and not any(d.scope == str(p.private) for d in docs):
                lines.append(fallback_hint(p))
            return "".join(line + "\n" for line in lines)

        return await self._view(p, render)


def fallback_hint(p: Principal) -> str:
    """Why a caller's memory may look empty: its uid maps to no user, so it is uid-N."""
    return (
        f"you are {p.user}: uid {p.uid} is in neither the mount's config (users:) nor passwd, so "
        f"your memory is kept as {p.user}; if it is under another name, ask the admin to add "
        f"users.<name>: {{uid: {p.uid}}} to the config and remount"
    )


def _decode_query(raw: bytes) -> str:
    """search/<name> may be URL-encoded (for '/' and friends); handles take plain text."""
    text = raw.decode("utf-8", errors="replace")
    return urllib.parse.unquote(text) if "%" in text else text


def render_markdown(query: str, total: int, hits: list[tuple[str, Hit]]) -> bytes:
    q = " ".join(query.split())
    if not hits:
        return f"# Search: {q}\n\nNo results.\n".encode()
    shown = f"{len(hits)} of {total}" if total > len(hits) else str(total)
    out = [f"# Search: {q}", "", f"{shown} result{'s' if total != 1 else ''}", ""]
    for i, (path, h) in enumerate(hits, 1):
        out.append(f"## {i}. {path}")
        out.append(f"- score: {h.score:.3g}")
        if h.rankers:
            out.append(f"- found by: {', '.join(h.rankers)}")
        if h.name:
            out.append(f"- name: {h.name}")
        if h.type:
            out.append(f"- type: {h.type}")
        if h.description:
            out.append(f"- description: {h.description}")
        out.append(f"- updated: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(h.mtime_ns / 1e9))}")
        if h.snippet:
            out.append("")
            out.append(f"> {h.snippet}")
        out.append("")
    return "\n".join(out).encode()


def _read_memory(store: Store, scope: Scope, label: str, path: str, limits: ctx_mod.ContextLimits):
    """A scope's MEMORY.md, read only as far as the views need: the part that can reach
    context.md (its caps) and a margin for the index lines beyond; the rest is counted,
    not read into memory (a 10 MiB file costs a scan of its newlines, not a parse)."""
    memo = ctx_mod.MemoryFile(label, path, str(scope), None)
    try:
        fd = store.open(scope, INDEX_NAME.encode(), os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return memo
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return memo
        keep = max(ctx_mod.ANALYZED_BYTES, 4 * limits.max_bytes)
        data = os.read(fd, keep)
        if len(data) == keep:  # more: count its lines without keeping them
            data = data[: data.rfind(b"\n") + 1] or data
            rest, pos, last = 0, len(data), b"\n"
            while chunk := os.pread(fd, 1 << 20, pos):
                rest += chunk.count(b"\n")
                pos, last = pos + len(chunk), chunk[-1:]
            memo.more_lines = rest + (last != b"\n")  # an unterminated last line counts too
            memo.size = pos
        else:
            memo.size = len(data)
        memo.text = data.decode("utf-8", errors="replace")
        return memo
    finally:
        os.close(fd)
