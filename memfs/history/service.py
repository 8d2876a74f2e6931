"""History: every change to a scope's files kept in that scope's git repository,
attributed to the user who made it.

Handlers only record what happened (a file closed after writing, removed, renamed); a
committer turns each scope's records into commits every `batch_seconds`, in a worker
thread: it reads the files as they are then, writes the blobs that changed and makes one
commit per user of the batch. Reading history first commits the reader's pending changes
(read-your-writes). At mount, reconcile commits what changed while memfs was not looking
(an admin's edit, a crash before the last batch) with an author that says so.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pygit2
import trio

from .. import layout
from ..background import NicedPool
from ..config import HistoryConf, Limits
from ..policy import Kind, Scope
from ..store import Store, walk_tree
from .catalog import Catalog, rename_lines
from .gitrepo import BLOB, EXEC, Repo, blob_id

log = logging.getLogger(__name__)

RECONCILE_AUTHOR = "memfs-reconcile"  # changes found at mount: made outside memfs, or a crash
IMPORT_AUTHOR = "memfs-import"  # files an admin's `memfs import` wrote
MAX_EVENTS = 50_000  # per scope and batch; past it the batch becomes a rescan of the scope
MAX_VERSION_BYTES = 64 << 20  # an admin's bigger file in DATA/ is not copied into history
MAX_RENAME_LINES = 10_000
GC_EVERY = 200  # commits per scope between `git gc --auto` checks
PRUNE_EVERY = 6 * 3600.0
LOW_WATER = 0.75  # a scope past its budget is pruned to this share of it: the next prune waits for growth
MAX_PAUSE = 60.0  # seconds between commit rounds at most, however slow the last round was
# Versions kept in memory until their batch commits (content about to be destroyed: a
# truncate, an overwrite, a rename over it): the caller pays one read, not a commit. Past
# this many bytes per scope the committer is woken; past twice, the caller waits for it.
KEEP_BYTES = 32 << 20
KEEP_ON_LOOP = 128 << 10  # a smaller file is read on the loop (tens of µs); a bigger one in a thread
_SKIP = object()  # a file whose state cannot be known now (EACCES, EMFILE): leave it as is


@dataclass(frozen=True, slots=True)
class Event:
    user: str
    path: bytes
    new_path: bytes | None = None  # a rename's destination
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Kept:
    """A file's content as it was just before a caller destroyed it, still to be committed."""

    user: str
    path: bytes
    mode: int
    data: bytes
    oid: bytes
    when: float


class History:
    def __init__(
        self,
        data: Path,
        store: Store,
        conf: HistoryConf,
        limits: Limits | None = None,
        hostname: str | None = None,
    ):
        self.data = data
        self.store = store
        self.conf = conf
        self.limits = limits or Limits()
        # MEMFS_HOST: the name this daemon signs with (tests run several "hosts" on one machine)
        self.hostname = hostname or os.environ.get("MEMFS_HOST") or socket.gethostname()
        self._pending: dict[Scope, list[Event]] = {}
        self._paths: dict[Scope, dict[bytes, str]] = {}  # paths with pending events: who
        # scopes with a pending folder move (any path may be in it): who moved it
        self._dir_moves: dict[Scope, str] = {}
        self._rescan: set[Scope] = set()
        self._kept: dict[Scope, list[Kept]] = {}
        self._kept_bytes: dict[Scope, int] = {}
        self._reader = trio.CapacityLimiter(2)  # threads reading big files to keep
        self._hurry = trio.Event()  # kept versions past KEEP_BYTES: commit now, not at the batch
        self._locks: dict[Scope, trio.Lock] = {}
        # history's and sync's thread work: 2 niced threads (2 cores here: one is left for callers)
        self.background = NicedPool(2, "memfs-history")
        self._failures: dict[Scope, int] = {}
        self._commits: dict[Scope, int] = {}
        self._over: set[Scope] = set()  # past max_bytes: prune soon
        self._prune_soon = trio.Event()
        self.reconciled = trio.Event()
        self.on_commit = None  # scope -> None, after a batch was committed (sync pushes it)
        self.shared: set[Scope] = set()  # scopes synced with a remote: retention never rewrites them
        try:  # scopes whose files reconcile has not yet compared with their history
            self._unreconciled = set(layout.scopes_in(data))
        except OSError:
            self._unreconciled = set()

    # -- recording (on the loop, from handlers: cheap) ------------------------------
    def touch(self, scope: Scope, path: bytes, user: str) -> None:
        self._add(scope, Event(user, path))

    def remove(self, scope: Scope, path: bytes, user: str) -> None:
        self._add(scope, Event(user, path))

    def moved(
        self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool, user: str
    ) -> None:
        if src == dst:
            self._add(src, Event(user, src_path, dst_path, is_dir))
        else:  # another repository: gone here, new there
            self._add(src, Event(user, src_path, None, is_dir))
            self._add(dst, Event(user, dst_path, None, is_dir))

    def _add(self, scope: Scope, ev: Event) -> None:
        if scope in self._rescan:
            return
        events = self._pending.setdefault(scope, [])
        if len(events) >= MAX_EVENTS:  # a flood: one walk of the scope costs less than the list
            self._rescan.add(scope)
            self._pending.pop(scope)
            self._paths.pop(scope, None)
            self._dir_moves.pop(scope, None)
            return
        events.append(ev)
        self._mark(scope, [ev])

    def _mark(self, scope: Scope, events: list[Event]) -> None:
        """Note what pending events touch, for is_pending. A rename's new name counts: the
        renamed file's uncommitted content lives there now, and a truncate or overwrite
        there must keep it first."""
        paths = self._paths.setdefault(scope, {})
        for e in events:
            paths[e.path] = e.user
            if e.new_path is not None:
                paths[e.new_path] = e.user
        for e in events:
            if e.is_dir:
                self._dir_moves[scope] = e.user

    def pending(self, scope: Scope) -> bool:
        return scope in self._pending or scope in self._rescan or scope in self._kept

    def last_writer(self, scope: Scope, path: bytes) -> str:
        """Who changed this path last in the pending batch (a kept version's author)."""
        return self._paths.get(scope, {}).get(path) or self._dir_moves.get(scope) or RECONCILE_AUTHOR

    async def keep(self, scope: Scope, path: bytes, user: str) -> None:
        """A caller is about to destroy this file's content (truncate, overwrite, unlink, a
        rename over it). If history has not yet committed it, keep it now: read it into
        the batch, so the caller waits for one read and never for a commit. Only a scope
        whose kept versions pass twice KEEP_BYTES makes its caller wait for the committer
        (memory stays bounded, nothing is dropped)."""
        if not self.is_pending(scope, path):
            return
        if self._kept_bytes.get(scope, 0) > 2 * KEEP_BYTES:
            await self.flush([scope])
            return
        try:
            size = self.store.lstat(scope, path).st_size
        except OSError:
            return
        if size <= KEEP_ON_LOOP:
            disk = self._read(scope, path)
        else:
            disk = await trio.to_thread.run_sync(self._read, scope, path, limiter=self._reader)
        if disk is None or disk is _SKIP:
            return
        mode, data, _ = disk
        oid = blob_id(data)
        kept = self._kept.setdefault(scope, [])
        last = next((k for k in reversed(kept) if k.path == path), None)
        if last is not None and last.oid == oid and last.mode == mode:
            return  # this content is kept already (opened twice without a write between)
        kept.append(Kept(user, path, mode, data, oid, time.time()))
        total = self._kept_bytes[scope] = self._kept_bytes.get(scope, 0) + len(data)
        if total > KEEP_BYTES:
            self._hurry.set()

    def is_pending(self, scope: Scope, path: bytes) -> bool:
        """Has this path (or, after a folder rename, anything) changed since the last batch?"""
        return scope in self._rescan or scope in self._dir_moves or path in self._paths.get(scope, ())

    # -- committing ------------------------------------------------------------------
    def locked(self, scope: Scope) -> trio.Lock:
        """The scope's lock: whoever moves its branch (commits, reconcile, retention, sync) holds it."""
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = trio.Lock()
        return lock

    async def run_committer(self) -> None:
        pause = self.conf.batch_seconds
        while True:
            with trio.move_on_after(pause):
                await self._hurry.wait()
            self._hurry = trio.Event()
            t0 = trio.current_time()
            await self.flush()
            took = trio.current_time() - t0
            # A round's cost grows with the files it records and the trees it rewrites (a
            # storm into a folder of 100k files): pausing 3x as long as the last round took
            # keeps history's share of the cores, and of the GIL the loop needs, near a quarter
            # (and no change waits more than a minute past its batch for that).
            pause = max(self.conf.batch_seconds, min(3 * took, MAX_PAUSE))
            if took > 1:
                log.debug("history: a commit round took %.2f s; next in %.1f s", took, pause)

    async def flush(self, scopes: Iterable[Scope] | None = None, touched: Iterable = ()) -> None:
        """Commit what is pending (in these scopes only, if given). `touched`: (scope, path,
        user) of files still open with unsaved changes, read as they are now."""
        for scope, path, user in touched:
            self.touch(scope, path, user)
        wanted = set(self._pending) | self._rescan | set(self._kept)
        if scopes is not None:
            wanted &= set(scopes)
        async with trio.open_nursery() as n:
            for scope in wanted:
                n.start_soon(self._flush_scope, scope)

    async def _flush_scope(self, scope: Scope) -> None:
        async with self.locked(scope):
            events = self._pending.pop(scope, [])
            kept = self._kept.pop(scope, [])
            self._kept_bytes.pop(scope, None)
            self._paths.pop(scope, None)
            self._dir_moves.pop(scope, None)
            rescan = scope in self._rescan
            self._rescan.discard(scope)
            if not events and not rescan and not kept:
                return
            try:
                if kept:
                    await self.background.run(self._commit_kept, scope, kept)
                    kept = []
                if rescan:
                    await self.background.run(self._reconcile, scope, set())
                elif events:
                    await self.background.run(self._commit, scope, events)
                self._failures.pop(scope, None)
                if scope in self._over:
                    self._prune_soon.set()
                if self.on_commit is not None:
                    self.on_commit(scope)
            except Exception as e:
                fails = self._failures[scope] = self._failures.get(scope, 0) + 1
                log.warning("history %s: commit failed (%s): %s", scope, fails, e, exc_info=fails == 1)
                self._requeue(scope, events, kept, fails >= 5 or rescan)  # past 5: a rescan
            except BaseException:
                # Cancelled before the worker started (an unmount mid-round): the batch was
                # taken from the queue; put it back, so close() commits it.
                self._requeue(scope, events, kept, rescan)
                raise

    def _requeue(self, scope: Scope, events: list[Event], kept: list[Kept], rescan: bool) -> None:
        if kept:
            self._kept[scope] = kept + self._kept.get(scope, [])
            self._kept_bytes[scope] = sum(len(k.data) for k in self._kept[scope])
        if rescan:
            self._rescan.add(scope)
            self._pending.pop(scope, None)
        else:
            self._pending[scope] = events + self._pending.get(scope, [])
            self._mark(scope, events)

    def repo_dir(self, scope: Scope) -> Path:
        return layout.history_dir(self.data, scope)

    def disk_blob(self, scope: Scope, path: bytes) -> bytes | None | object:
        """The blob id of a file as it is on disk now; None if absent."""
        disk = self._read(scope, path)
        if disk is None or disk is _SKIP:
            return disk
        return blob_id(disk[1])

    @contextmanager
    def _open(self, scope: Scope):
        path = self.repo_dir(scope)
        repo = Repo(path)
        cat = Catalog.of(path)
        try:
            yield repo, cat
        finally:
            cat.close()

    def _sig(self, user: str, when: int) -> pygit2.Signature:
        email = self.conf.email.format(user=user, hostname=self.hostname)
        return pygit2.Signature(user, email, when, 0)

    def _read(self, scope: Scope, path: bytes):
        """(mode, bytes, stat) of a file as it is now; None if it is not a file (any more)."""
        try:
            # O_NOATIME: keeping a version must not show as a read of the file
            fd = self.store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOATIME)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            return _SKIP
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_size > MAX_VERSION_BYTES:
                log.warning(
                    "history %s: %r is %d bytes, over %d: not versioned",
                    scope,
                    path,
                    st.st_size,
                    MAX_VERSION_BYTES,
                )
                return _SKIP
            chunks, pos = [], 0
            while pos <= MAX_VERSION_BYTES and (chunk := os.pread(fd, 1 << 20, pos)):
                chunks.append(chunk)
                pos += len(chunk)
            return (EXEC if st.st_mode & 0o100 else BLOB), b"".join(chunks), st
        except OSError:
            return _SKIP
        finally:
            os.close(fd)

    def _walk_files(self, scope: Scope, top: bytes) -> list[bytes]:
        with self.store.at(scope) as root:
            return [p for p, st in walk_tree(root, top, []) if stat.S_ISREG(st.st_mode)]

    def _commit(self, scope: Scope, events: list[Event]) -> None:
        """One batch of a scope: in a worker thread, under the scope's lock."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)  # commits made behind memfs's back (an admin's git) come first
            examine: dict[bytes, str] = {}
            renames: dict[str, list[tuple[bytes, bytes]]] = {}
            for ev in events:
                if ev.new_path is not None and (
                    cat.current_of(ev.path) is not None or (ev.is_dir and cat.current_under(ev.path))
                ):
                    renames.setdefault(ev.user, []).append((ev.path, ev.new_path))
                for path in (ev.path, ev.new_path):
                    if path is None:
                        continue
                    examine[path] = ev.user
                    if ev.is_dir:  # a folder moved away, or in (from another scope, or a rename)
                        for p in cat.current_under(path):
                            examine[p] = ev.user
                        for p in self._walk_files(scope, path):
                            examine[p] = ev.user
            self._write(repo, cat, scope, examine, renames, time.time())

    def _commit_kept(self, scope: Scope, kept: list[Kept]) -> None:
        """Versions kept before callers destroyed them, committed in the order they were
        kept, as of when they were kept: each a commit of its own unless it can share one
        with the previous (same user, another path). Before the batch's own commit."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            head: dict[bytes, tuple[bytes, int] | None] = {}
            group: dict[bytes, tuple[int, bytes]] = {}
            made = 0

            def commit(user: str, when: float) -> None:
                nonlocal made
                n = len(group)
                msg = f"memfs: {n} change{'s' if n != 1 else ''} by {user}\n"
                sig = self._sig(user, int(when))
                made += (
                    repo.commit(dict(group), sig, self._sig("memfs", int(when)), msg, publish=False)
                    is not None
                )
                group.clear()

            prev: Kept | None = None
            for k in kept:
                if k.path not in head:
                    head[k.path] = cat.current_of(k.path)
                if head[k.path] == (k.oid, k.mode):
                    continue  # committed already
                if group and (k.path in group or k.user != prev.user):
                    commit(prev.user, prev.when)
                repo.blob(k.data, k.oid)
                group[k.path] = (k.mode, k.oid)
                head[k.path] = (k.oid, k.mode)
                prev = k
            if group:
                commit(prev.user, prev.when)
            repo.publish()
            cat.catch_up(repo)
            self._count(repo, cat, scope, made)

    def _write(self, repo: Repo, cat: Catalog, scope: Scope, examine: dict[bytes, str], renames, now) -> None:
        by_user: dict[str, dict] = {}
        seen = []
        for path, user in examine.items():
            head = cat.current_of(path)
            disk = self._read(scope, path)
            if disk is _SKIP:
                continue
            if disk is None:
                if head is not None:
                    by_user.setdefault(user, {})[path] = None
                continue
            mode, data, st = disk
            oid = blob_id(data)
            if head != (oid, mode):
                repo.blob(data)
                by_user.setdefault(user, {})[path] = (mode, oid)
            seen.append((path, oid, (st.st_size, st.st_mtime_ns, st.st_ino)))
        when = int(now)
        committer = self._sig("memfs", when)
        made = 0
        for user, changes in by_user.items():
            moved = renames.get(user, [])[:MAX_RENAME_LINES]
            n = len(changes)
            msg = f"memfs: {n} change{'s' if n != 1 else ''} by {user}\n\n{rename_lines(moved)}"
            made += repo.commit(changes, self._sig(user, when), committer, msg) is not None
        cat.catch_up(repo)
        cat.remember_stat(seen)
        self._count(repo, cat, scope, made)

    def _count(self, repo: Repo, cat: Catalog, scope: Scope, made: int) -> None:
        """After commits: note a scope past its budget for retention; gc now and then."""
        if made:
            if cat.version_bytes() > self.budget(scope):
                self._over.add(scope)
            before = self._commits.get(scope, 0)
            self._commits[scope] = before + made
            if before // GC_EVERY != (before + made) // GC_EVERY:
                self._gc(repo, scope, auto=True)

    def _gc(self, repo: Repo, scope: Scope, auto: bool) -> None:
        try:
            repo.gc(auto)
        except Exception as e:  # a missing or failing git CLI costs disk, never history
            log.warning("history %s: git gc failed: %s", scope, e)

    # -- reconcile: what changed while memfs was not looking ------------------------------
    async def reconcile(self) -> None:
        """At mount, in the background: commit every scope's files that differ from its
        history (written by a daemon killed before its batch, or by an admin in DATA/)."""
        try:
            scopes = layout.scopes_in(self.data)
        except OSError as e:
            log.warning("history reconcile: cannot list scopes: %s", e)
            scopes = []
        limiter = trio.CapacityLimiter(2)
        t0 = trio.current_time()

        async def one(scope: Scope) -> None:
            async with limiter:
                await self.ready(scope)

        async with trio.open_nursery() as n:
            for scope in scopes:
                n.start_soon(one, scope)
        self.reconciled.set()
        log.info("history: reconciled %d scopes in %.2f s", len(scopes), trio.current_time() - t0)

    async def ready(self, scope: Scope) -> None:
        """Reconcile this scope now if the mount has not yet: a reader right after a
        restart sees what a crash left uncommitted."""
        if scope not in self._unreconciled:
            return
        async with self.locked(scope):
            if scope not in self._unreconciled:
                return
            skip = {e.path for e in self._pending.get(scope, [])}
            try:
                await self.background.run(self._reconcile, scope, skip)
            except Exception:
                log.exception("history %s: reconcile failed", scope)
            self._unreconciled.discard(scope)

    def _reconcile(self, scope: Scope, skip: set[bytes], author: str = RECONCILE_AUTHOR) -> int:
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            cur = cat.current()
            examine: dict[bytes, str] = {}
            unreadable: list[bytes] = []
            on_disk = set()
            with self.store.at(scope) as root:
                for path, st in walk_tree(root, b"", unreadable):
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    on_disk.add(path)
                    row = cur.get(path)
                    if path not in skip and (
                        row is None or row[2] != (st.st_size, st.st_mtime_ns, st.st_ino)
                    ):
                        examine[path] = author
            for path in cur:
                if path not in on_disk and path not in skip and not _under_any(path, unreadable):
                    examine[path] = author
            if examine:
                self._write(repo, cat, scope, examine, {}, time.time())
            return len(examine)

    def imported(self, scope: Scope, paths: list[bytes]) -> None:
        for path in paths:
            self.touch(scope, path, IMPORT_AUTHOR)

    # -- retention ---------------------------------------------------------------------
    def budget(self, scope: Scope) -> int:
        """Bytes of versions a scope keeps: history.max_bytes, else the scope's quota."""
        if self.conf.max_bytes is not None:
            return self.conf.max_bytes
        return self.limits.team_bytes if scope.kind is Kind.TEAM else self.limits.user_bytes

    async def run_retention(self) -> None:
        """After reconcile, then every few hours: prune versions older than keep_days. A
        scope past its budget is pruned soon after, to LOW_WATER of it, and then at most
        once per prune_seconds: a prune costs what the scope keeps (its commits are
        replayed, its pack rewritten), so a scope held at its cap must not pay it per batch."""
        await self.reconciled.wait()
        last = -PRUNE_EVERY
        pruned_at: dict[Scope, float] = {}
        while True:
            now = trio.current_time()
            due = now - last >= PRUNE_EVERY
            if due:
                last = now
                scopes = layout.history_scopes(self.data)
            else:
                period = self.conf.prune_seconds
                scopes = sorted((s for s in self._over if now - pruned_at.get(s, -period) >= period), key=str)
            for scope in scopes:
                self._over.discard(scope)
                pruned_at[scope] = trio.current_time()
                async with self.locked(scope):
                    try:
                        await self.background.run(self.prune, scope, time.time())
                    except Exception:
                        log.exception("history %s: retention failed", scope)
            self._prune_soon = trio.Event()
            wait = 60.0
            if self._over:  # waiting out their period
                soonest = min(pruned_at.get(s, now) for s in self._over) + self.conf.prune_seconds
                wait = max(0.0, min(wait, soonest - trio.current_time()))
            with trio.move_on_after(wait):
                await self._prune_soon.wait()

    def prune(self, scope: Scope, now: float) -> int:
        """Apply retention to one scope (worker thread, under its lock). Returns versions dropped."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            cutoff = int(now - self.conf.keep_days * 86400)
            budget = self.budget(scope)
            by_bytes = cat.cutoff_for_bytes(int(budget * LOW_WATER)) if cat.version_bytes() > budget else None
            if by_bytes is not None:
                cutoff = max(cutoff, by_bytes)
            _, _, oldest = cat.stats()
            if not oldest or oldest >= cutoff:
                return 0
            if scope in self.shared:  # rewriting would fork it from its remote's history
                log.info("history %s: synced with a remote: retention leaves its history whole", scope)
                return 0
            repo.rewrite_before(cutoff, self._sig("memfs", int(now)))
            root = next(iter(repo.commits_since(None)), None)
            base = {p for p, _, _ in repo.files(root.tree_id)} if root is not None else set()
            dropped = cat.prune(cutoff, base)
            cat.set("head", str(repo.head()))
            cat.db.commit()
            self._gc(repo, scope, auto=False)
            # logged once the blobs are gone too: the line means the space is free
            log.info(
                "history %s: pruned %d versions older than %s",
                scope,
                dropped,
                time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(cutoff)),
            )
            return dropped

    # -- shutdown ----------------------------------------------------------------------
    async def close(self) -> None:
        """Unmounted: commit everything still pending."""
        await self.flush()


def _under_any(path: bytes, folders: list[bytes]) -> bool:
    return any(f == b"" or path == f or path.startswith(f + b"/") for f in folders)
