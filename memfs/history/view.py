"""The history as files: .memfs/history/<path>/<version>, .memfs/log, and a grant
reader's .memfs/users/<owner>/.memfs/history/. All read-only (EROFS).

Inode numbers are computed, not stored: HISTORY_BASE | scope number | view | kind | the
catalog row id. Catalog rows are never reused (AUTOINCREMENT), so a number never names
other bytes, and nothing grows with what the kernel holds. A version's bytes never change:
it may be cached.
"""

from __future__ import annotations

import errno
import heapq
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import trio
from pyfuse3 import EntryAttributes, FUSEError

from .. import policy
from ..identity import Identities
from ..names import quote_path
from ..numbers import HISTORY_BASE
from ..policy import Access, Kind, Principal, Scope, home, readable_scopes
from ..store import child_path
from .catalog import Catalog, catalog_file
from .gitrepo import Repo
from .service import History

HISTORY = 12  # .memfs/history: the caller's own history (per caller, like the root)
LOG = 13  # .memfs/log: the latest changes in every scope the caller reads

_SCOPE_SHIFT, _VIEW_BIT, _VERSION_BIT = 37, 1 << 36, 1 << 35
_ID_MASK = (1 << 35) - 1
_ROOT_ID = 0  # a scope's history root (team/, or a grant's .memfs/history)
_CTL_ID = _ID_MASK  # a grant view's .memfs/ folder, which holds only `history`
LOG_LINES = 1000
VERSION_TIMEOUT = 300.0  # a version never changes
MAX_READERS = 64  # catalog connections kept open for lookups


class HistoryView:
    def __init__(self, history: History, ids: Identities, started_ns: int, open_dirty: Callable):
        self.history = history
        self.ids = ids
        self.started = started_ns
        self.open_dirty = open_dirty  # scopes -> (scope, path, user) of files open with unsaved writes
        self._scope_no: dict[Scope, int] = {}
        self._scopes: list[Scope] = []
        self._readers: OrderedDict[Scope, Catalog] = OrderedDict()

    # -- inode numbers ------------------------------------------------------------------
    @staticmethod
    def owns(ino: int) -> bool:
        return ino >= HISTORY_BASE or ino in (HISTORY, LOG)

    def _ino(self, scope: Scope, view: bool, version: bool, row: int) -> int:
        no = self._scope_no.get(scope)
        if no is None:
            no = self._scope_no[scope] = len(self._scopes)
            self._scopes.append(scope)
        flags = (_VIEW_BIT if view else 0) | (_VERSION_BIT if version else 0)
        return HISTORY_BASE | no << _SCOPE_SHIFT | flags | row

    def _decode(self, ino: int) -> tuple[Scope, bool, bool, int]:
        no = (ino - HISTORY_BASE) >> _SCOPE_SHIFT
        if no >= len(self._scopes):
            raise FUSEError(errno.ESTALE)
        return self._scopes[no], bool(ino & _VIEW_BIT), bool(ino & _VERSION_BIT), ino & _ID_MASK

    # -- catalog access -----------------------------------------------------------------
    def _catalog(self, scope: Scope) -> Catalog | None:
        """A connection for quick indexed reads on the loop (one row, or one page)."""
        if scope in self._readers:
            self._readers.move_to_end(scope)
            return self._readers[scope]
        path = catalog_file(self.history.repo_dir(scope))
        cat = Catalog(str(path)) if path.exists() else None
        if cat is not None:
            self._readers[scope] = cat
            while len(self._readers) > MAX_READERS:
                old = self._readers.popitem(last=False)[1]
                old.close()
        return cat

    def close(self) -> None:
        for cat in self._readers.values():
            if cat is not None:
                cat.close()
        self._readers.clear()

    async def _fresh(self, p: Principal, scopes: list[Scope]) -> None:
        """Read-your-writes: commit the caller's pending changes in these scopes first."""
        for s in scopes:
            await self.history.ready(s)
        wanted = [s for s in scopes if policy.access(p, s) >= Access.WRITE or p.uid == 0]
        touched = self.open_dirty(wanted)
        if touched or any(self.history.pending(s) for s in wanted):
            await self.history.flush(wanted, touched)

    # -- attributes ------------------------------------------------------------------------
    def _check(self, p: Principal, scope: Scope, view: bool) -> None:
        if policy.access(p, scope, view) < Access.READ:
            raise FUSEError(errno.EACCES)

    def _base(self, ino: int, scope: Scope | None, p: Principal | None) -> EntryAttributes:
        """Owned by the scope's shown owner; without a scope (a per-caller file), the caller."""
        a = EntryAttributes()
        a.st_ino = ino
        a.st_blksize = 4096
        if scope is not None:
            a.st_uid, a.st_gid, _ = self.ids.shown_owner(scope)
        elif p is not None:
            a.st_uid, a.st_gid = p.uid, p.gid
        return a

    def _dir_attrs(self, ino: int, scope: Scope | None, p: Principal, entry_timeout: float):
        a = self._base(ino, scope, p)
        kind = scope.kind if scope is not None else Kind.PRIVATE
        has_group = self.ids.shown_owner(scope)[2] if scope is not None else True
        a.st_mode = policy.shown_mode(kind, stat.S_IFDIR | 0o700, has_group)
        a.st_nlink = 2
        a.entry_timeout, a.attr_timeout = entry_timeout, 0
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self.started
        return a

    def _version_attrs(self, ino: int, scope: Scope, v) -> EntryAttributes:
        a = self._base(ino, scope, None)
        a.st_mode = policy.shown_mode(scope.kind, stat.S_IFREG | 0o600, self.ids.shown_owner(scope)[2])
        a.st_nlink = 1
        a.st_size = v.size
        a.st_blocks = (v.size + 511) // 512
        a.entry_timeout = a.attr_timeout = VERSION_TIMEOUT
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = v.time * 1_000_000_000
        return a

    def getattr(self, ino: int, p: Principal) -> EntryAttributes:
        if ino == HISTORY:
            return self._dir_attrs(ino, None, p, 0)
        if ino == LOG:
            a = self._base(ino, None, p)
            a.st_mode, a.st_nlink = stat.S_IFREG | 0o400, 1
            a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = time.time_ns()
            return a
        scope, view, version, row = self._decode(ino)
        self._check(p, scope, view)
        if version:
            cat = self._catalog(scope)
            v = cat.version(row) if cat is not None else None
            if v is None:
                raise FUSEError(errno.ENOENT)  # pruned by retention
            return self._version_attrs(ino, scope, v)
        if row not in (_ROOT_ID, _CTL_ID):
            cat = self._catalog(scope)
            if cat is None or cat.node_path(row) is None:
                raise FUSEError(errno.ENOENT)
        return self._dir_attrs(ino, scope, p, 0)

    # -- names -----------------------------------------------------------------------------
    def _where(self, ino: int, p: Principal) -> tuple[Scope, bool, bytes, float]:
        """(scope, view, path, entry timeout of its children) of a history folder."""
        if ino == HISTORY:
            return home(p), False, b"", 0  # names here resolve per caller
        scope, view, version, row = self._decode(ino)
        self._check(p, scope, view)
        if version or row == _CTL_ID:
            raise FUSEError(errno.ENOTDIR)
        if row == _ROOT_ID:
            return scope, view, b"", 0 if view else 1.0
        cat = self._catalog(scope)
        path = cat.node_path(row) if cat is not None else None
        if path is None:
            raise FUSEError(errno.ENOENT)
        return scope, view, path, 0 if view else 1.0

    async def grant_ctl(self, scope: Scope, p: Principal) -> EntryAttributes:
        """.memfs/ inside a grant reader's .memfs/users/<owner>/: it holds `history`."""
        self._check(p, scope, True)
        return self._dir_attrs(self._ino(scope, True, False, _CTL_ID), scope, p, 0)

    async def lookup(self, parent: int, name: bytes, p: Principal) -> EntryAttributes:
        if parent >= HISTORY_BASE:
            scope, view, version, row = self._decode(parent)
            if row == _CTL_ID and not version:
                self._check(p, scope, view)
                if name != b"history":
                    raise FUSEError(errno.ENOENT)
                return self._dir_attrs(self._ino(scope, True, False, _ROOT_ID), scope, p, 0)
        if parent == HISTORY and name == policy.TEAM_NAME:
            if p.team_scope is None:
                raise FUSEError(errno.ENOENT)
            return self._dir_attrs(self._ino(p.team_scope, False, False, _ROOT_ID), p.team_scope, p, 0)
        scope, view, path, timeout = self._where(parent, p)
        await self._fresh(p, [scope])
        cat = self._catalog(scope)
        if cat is None:
            raise FUSEError(errno.ENOENT)
        v = cat.version_named(path, name)
        if v is not None:
            return self._version_attrs(self._ino(scope, view, True, v.id), scope, v)
        node = cat.node_id(child_path(path, name))
        if node is None:
            raise FUSEError(errno.ENOENT)
        return self._dir_attrs(self._ino(scope, view, False, node), scope, p, timeout)

    async def opendir(self, ino: int, p: Principal) -> Callable[[], Iterator]:
        """A listing streamed from the catalog a page at a time, as the kernel reads it."""
        if ino >= HISTORY_BASE:
            scope, view, version, row = self._decode(ino)
            if row == _CTL_ID and not version:
                self._check(p, scope, view)
                here = self._dir_attrs(ino, scope, p, 0)
                hist = self._dir_attrs(self._ino(scope, True, False, _ROOT_ID), scope, p, 0)
                return lambda: iter([(b".", here), (b"..", here), (b"history", hist)])
        scope, view, path, timeout = self._where(ino, p)
        await self._fresh(p, [scope])
        here = self._dir_attrs(ino, scope if ino != HISTORY else None, p, 0)
        team = p.team_scope if ino == HISTORY else None

        def start():
            yield b".", here
            yield b"..", here
            if team is not None:
                yield policy.TEAM_NAME, self._dir_attrs(self._ino(team, False, False, _ROOT_ID), team, p, 0)
            cat = self._catalog(scope)
            if cat is None:
                return
            after = 0
            while page := cat.children(path, after):
                for node, name in page:
                    yield name, self._dir_attrs(self._ino(scope, view, False, node), scope, p, timeout)
                after = page[-1][0]
            after = 0
            while versions := cat.versions(path, after):
                for v in versions:
                    yield v.name, self._version_attrs(self._ino(scope, view, True, v.id), scope, v)
                after = versions[-1].id

        return start

    # -- contents -------------------------------------------------------------------------
    async def read_version(self, ino: int, p: Principal, limiter: trio.CapacityLimiter) -> bytes:
        scope, view, version, row = self._decode(ino)
        self._check(p, scope, view)
        if not version:
            raise FUSEError(errno.EISDIR)
        cat = self._catalog(scope)
        v = cat.version(row) if cat is not None else None
        if v is None:
            raise FUSEError(errno.ENOENT)
        if v.size > self.history.store.max_file_bytes:
            # a version pushed by a remote, over the cap a file may have here: never read whole
            raise FUSEError(errno.EFBIG)
        path = self.history.repo_dir(scope)
        try:
            return await trio.to_thread.run_sync(lambda: Repo(path).read(v.blob), limiter=limiter)
        except KeyError:
            raise FUSEError(errno.ENOENT) from None  # pruned between lookup and open

    async def log(self, p: Principal, view_prefix: Callable[[Scope], str], limiter) -> bytes:
        scopes = readable_scopes(p)
        await self._fresh(p, scopes)
        prefixes = {s: os.fsencode(view_prefix(s)) for s in scopes}

        def build() -> bytes:
            rows = []
            for s in scopes:
                f = catalog_file(self.history.repo_dir(s))
                if f.exists():
                    with Catalog(str(f)) as cat:
                        rows.append([(c.time, c.id, s, c) for c in cat.log(LOG_LINES)])
            out: list[str] = []
            for t, _, s, c in heapq.merge(*rows, key=lambda r: (r[0], r[1]), reverse=True):
                if len(out) >= LOG_LINES:
                    break
                line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))} {c.user} {c.op} "
                line += quote_path(prefixes[s] + c.path)
                if c.op == "P":  # a purge: the version's name, never its content
                    line += " version " + quote_path(c.new_path or b"")
                elif c.new_path is not None:
                    line += " -> " + quote_path(prefixes[s] + c.new_path)
                out.append(line + "\n")
            return "".join(out).encode()

        return await trio.to_thread.run_sync(build, limiter=limiter)
