"""History: every change to a scope's files kept in that scope's git repository,
attributed to the user who made it.

Handlers only record what happened (a file closed after writing, removed, renamed), and
keep content a caller is about to destroy before the batch has committed it; every
`batch_seconds` the committer (committer.py, in a process of its own) turns each scope's
records into commits: it reads the files as they are then, writes the blobs that changed
and makes one commit per user of the batch. Reading history first commits the reader's pending changes
(read-your-writes). At mount, reconcile commits what changed while memfs was not looking
(an admin's edit, a crash before the last batch) with an author that says so.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import trio

from .. import layout
from ..background import NicedProcess
from ..config import HistoryConf, Limits
from ..names import quote_path
from ..policy import Scope
from ..store import Store
from . import committer, journal
from .committer import (
    MAX_VERSION_BYTES,
    RECONCILE_AUTHOR,
    SKIP,
    Event,
    Kept,
    PurgeRefused,
    open_file,
    read_file,
    spool_copy,
    spool_file,
)
from .gitrepo import BLOB, EXEC, blob_id
from .purge import Purged

log = logging.getLogger(__name__)

# Event(...) without the Python frame of a NamedTuple's __new__: (user, path, None, False).
_new_event: Callable[[type[Event], tuple[str, bytes, None, bool]], Event] = tuple.__new__

IMPORT_AUTHOR = "memfs-import"  # files an admin's `memfs import` wrote
PRUNE_EVERY = 6 * 3600.0
MAX_PAUSE = 60.0  # seconds between commit rounds at most, however slow the last round was
# The worker is replaced after a commit round that left it above this: libgit2's and
# malloc's leftovers of big rounds stayed until its RECYCLE-th call (scripts/bench --soak).
WORKER_MAX_RSS = 128 << 20
# Versions kept (spooled) until their batch commits (content about to be destroyed: a
# truncate, an overwrite, a rename over it): the caller pays one copy, not a commit. Past
# KEEP_HURRY bytes spooled in a scope the committer is woken (small batches keep it
# running alongside a fast writer); past KEEP_MAX, the writer waits for it.
KEEP_HURRY = 8 << 20
KEEP_MAX = 64 << 20
CARRIES_SCAN = 2000  # pending paths a folder rename looks through (~0.1 ms) for what it carries
FOLDER_MOVES = 16  # moves of committed folders one batch records as moves; later ones carry
KEEP_ON_LOOP = 128 << 10  # a smaller file is copied on the loop (µs); a bigger one in a thread


class History:
    def __init__(
        self,
        *,
        data: Path,
        store: Store,
        conf: HistoryConf,
        limits: Limits | None = None,
        hostname: str | None = None,
        shared: Iterable[Scope] = (),
        on_commit: Callable[[Scope], None] | None = None,
    ):
        """`shared`: scopes synced with a remote (retention never rewrites them);
        `on_commit`: told each scope a batch was committed to (sync pushes it)."""
        self.data = data
        self.store = store
        self.conf = conf
        self.limits = limits or Limits()
        # MEMFS_HOST: the name this daemon signs with (tests run several "hosts" on one machine)
        self.hostname = hostname or os.environ.get("MEMFS_HOST") or socket.gethostname()
        self._pending: dict[Scope, list[Event]] = {}
        self._paths: dict[Scope, dict[bytes, str]] = {}  # paths with pending events: who
        # A batch being committed: its paths (and whether any path may be in it, after a
        # folder move or a rescan). The worker reads those files from disk, so content a
        # caller destroys meanwhile must be kept as if the batch were still pending.
        self._inflight: dict[Scope, tuple[dict[bytes, str], bool]] = {}
        # scopes with a pending folder move (any path may be in it): who moved it
        self._dir_moves: dict[Scope, str] = {}
        self._folder_moves: dict[Scope, int] = {}  # moves of committed folders in the batch
        self._rescan: set[Scope] = set()
        self._kept: dict[Scope, list[Kept]] = {}
        self._kept_bytes: dict[Scope, int] = {}
        self._last_kept: dict[Scope, dict[bytes, tuple]] = {}  # each path's last kept (size, mtime, ...)
        self.spool = layout.spool_dir(data)  # kept versions' bytes until their batch commits
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        # this daemon's spool names: the pid may be a dead daemon's (a container's pid 1)
        self._stem = f"{os.getpid()}.{time.time_ns()}"
        self._spool_prefix = f"{self.spool}/{self._stem}-"
        # versions a daemon killed before its batch kept: committed by ready(), first
        self._recovered = journal.recover(self.spool)
        self.journal = journal.Journal(self.spool, self._stem)
        self._kept_flying: dict[Scope, list[Kept]] = {}  # taken by a batch, not yet committed
        self._spooled = 0
        self._drain_events: dict[Scope, trio.Event] = {}  # set as a chunk of kept versions commits
        self._segments: dict[Scope, list] = {}  # scope -> [fd, path, offset]: see _segment
        self._reader = trio.CapacityLimiter(2)  # threads reading big files to keep
        self._hurry = trio.Event()  # kept versions past KEEP_HURRY: commit now, not at the batch
        self._locks: dict[Scope, trio.Lock] = {}
        # commits, reconcile and retention: in a niced process of their own (committer.py)
        args = (data, store.max_file_bytes, conf, self.limits, self.hostname)
        self.background = NicedProcess(committer.start, args, "memfs-history", max_rss=WORKER_MAX_RSS)
        self._failures: dict[Scope, int] = {}
        self._since: dict[Scope, float] = {}  # wall time of the oldest uncommitted change (lag)
        self._flying_since: dict[Scope, float] = {}
        self._commits: dict[Scope, int] = {}
        self._over: set[Scope] = set()  # past max_bytes: prune soon
        self._prune_soon = trio.Event()
        self.reconciled = trio.Event()
        self.on_commit = on_commit
        self.shared = frozenset(shared)
        try:  # scopes whose files reconcile has not yet compared with their history
            self._unreconciled = set(layout.scopes_in(data))
        except OSError:
            self._unreconciled = set()

    # -- recording (on the loop, from handlers: cheap) ------------------------------
    def touch(self, scope: Scope, path: bytes, user: str) -> None:
        """A file written (or removed: the same event). Every close after a write and every
        rm runs it: the event is made by tuple.__new__ (a NamedTuple's own __new__ is a
        Python frame) and marked inline, where _add would take two frames more."""
        events = self._events(scope)
        if events is not None:
            events.append(_new_event(Event, (user, path, None, False)))
            self._paths.setdefault(scope, {})[path] = user  # _mark's work

    remove = touch

    def moved(
        self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool, user: str
    ) -> None:
        if src == dst:  # the new name holds uncommitted content only if the old one did
            carried = self._carries(src, src_path, is_dir)
            self._add(src, Event(user, src_path, dst_path, is_dir), carried)
            if not carried:  # the new name's history starts with the old one's version
                self._queue_kept(src, Kept(user, dst_path, BLOB, "", 0, 0, time.time(), src_path))
                if is_dir:
                    self._folder_moves[src] = self._folder_moves.get(src, 0) + 1
        else:  # another repository: gone here, new there
            self._add(src, Event(user, src_path, None, is_dir))
            self._add(dst, Event(user, dst_path, None, is_dir))

    def _carries(self, scope: Scope, path: bytes, is_dir: bool) -> bool:
        """Whether a rename of `path` moves content history has not committed. Most do not
        (a file written a batch or more ago): then an rm or a rewrite under the new name
        loses nothing, history holds the content under the old one, and it is unlinked as
        without history, not moved into the spool (measured: a rename costs ~2x an unlink
        on ext4). A folder carries it when anything below it is pending; past
        CARRIES_SCAN pending paths, or FOLDER_MOVES moves of folders in one batch (each
        costs the committer a pass over what history holds below it), it is assumed to
        (as before: every path then counts as pending until the batch), so a storm of
        folder renames costs O(1) each on the loop and in the committer."""
        if self.is_pending(scope, path):
            return True
        if not is_dir:
            return False
        if self._folder_moves.get(scope, 0) >= FOLDER_MOVES:
            return True
        paths, flying = self._paths.get(scope, {}), self._inflight.get(scope, ({}, False))[0]
        if len(paths) + len(flying) > CARRIES_SCAN:
            return True
        under = path + b"/"
        return any(p.startswith(under) for q in (paths, flying) for p in q)

    def _add(self, scope: Scope, ev: Event, carried: bool = True) -> None:
        """A rename's events (a write's and an rm's take touch's path)."""
        events = self._events(scope)
        if events is not None:
            events.append(ev)
            self._mark(scope, [ev], carried)

    def _events(self, scope: Scope) -> list[Event] | None:
        """The scope's pending events to add to, the oldest change's time noted; None when
        they are not listed: too many events, and one walk of the scope costs less."""
        self._since.setdefault(scope, time.time())  # the oldest change not yet committed
        if scope in self._rescan:
            return None
        events = self._pending.setdefault(scope, [])
        if len(events) >= self.conf.max_events:
            self._rescan.add(scope)
            self._pending.pop(scope)
            self._paths.pop(scope, None)
            self._dir_moves.pop(scope, None)
            return None
        return events

    def _mark(self, scope: Scope, events: list[Event], carried: bool = True) -> None:
        """Note what pending events touch, for is_pending. A rename's new name counts when
        `carried` uncommitted content (assumed for a requeued batch): that content lives
        there now, and a truncate, overwrite or rm there must keep it first. One that moved
        only committed content does not: a Kept with moved_from records the move."""
        paths = self._paths.setdefault(scope, {})
        for e in events:
            paths[e.path] = e.user
            if e.new_path is not None and carried:
                paths[e.new_path] = e.user
        for e in events:
            if e.is_dir and carried:
                self._dir_moves[scope] = e.user

    def pending(self, scope: Scope) -> bool:
        """Changes not yet in the branch: queued, or taken by a commit still running."""
        return any(scope in q for q in (self._pending, self._rescan, self._kept, self._inflight))

    def last_writer(self, scope: Scope, path: bytes) -> str:
        """Who changed this path last in the pending batch (a kept version's author)."""
        flying = self._inflight.get(scope, ({}, False))[0]
        return (
            self._paths.get(scope, {}).get(path)
            or self._dir_moves.get(scope)
            or flying.get(path)
            or RECONCILE_AUTHOR
        )

    async def keep(self, scope: Scope, path: bytes, user: str, removing: bool = False) -> None:
        """A caller is about to destroy this file's content (truncate, overwrite, a rename
        over it). If history has not yet committed it, keep it now: the kernel copies it to
        a spool file (copy_file_range: no bytes through the daemon, a reflink where the
        filesystem has them) that the batch commits, so the caller waits for one copy and
        never for a commit; `removing` (a rename over it): the name goes but the content
        stays, so a hard link keeps it, without a copy. rm goes through room() and
        remove_kept() instead. A scope with more than KEEP_MAX spooled makes its caller
        wait for the committer: bounded, nothing dropped."""
        if not await self.room(scope, path):
            return
        if removing:
            self._keep_by_link(scope, path, user)
            return
        opened = open_file(self.store, scope, path)
        if opened is None or opened is SKIP:
            return
        fd, st = opened
        sig = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
        last = self._last_kept.setdefault(scope, {})
        if st.st_size > MAX_VERSION_BYTES or last.get(path) == sig:
            os.close(fd)  # too big to version, or kept already (opened twice, no write between)
            return
        if st.st_size <= KEEP_ON_LOOP:  # appended to the scope's spool segment, here
            try:
                seg = self._segment(scope)
            except OSError as e:  # ENOSPC, EMFILE: this version is lost, the caller goes on
                os.close(fd)
                log.warning("%s: cannot keep a version of %s: %s", scope, quote_path(path), e)
                return
            n = spool_copy(fd, st.st_size, seg[0], seg[2])
            spool, offset = seg[1], seg[2]
            seg[2] += max(n, 0)
        else:  # a file of its own, in a thread
            spool, offset = self._spool_path(), 0
            with trio.CancelScope(shield=True):  # the fd is spool_file's to close
                n = await trio.to_thread.run_sync(spool_file, spool, fd, st.st_size, limiter=self._reader)
        if n < 0:
            return
        self._spooled_one(scope, path, user, st, str(spool), offset, n)

    async def room(self, scope: Scope, path: bytes) -> bool:
        """Whether `path` holds content history has not committed, after waiting, if the
        scope's spool is past KEEP_MAX, until the committer has taken a chunk of it."""
        if not self.is_pending(scope, path):
            return False
        # After a flood (history.max_events) every path counts as pending and is kept like one: a
        # rename for rm, a bounded copy otherwise. Never a wait for the rescan's commit (a
        # walk of the whole scope: 35 s at 100k files held the first rm of `rm -r` as long).
        while self._kept_bytes.get(scope, 0) > KEEP_MAX:  # the committer is behind: wait
            if self._failures.get(scope):  # and failing (disk full): the writer must not hang
                log.warning("%s: commits failing, spool full: %s changes unkept", scope, quote_path(path))
                return False
            self._hurry.set()  # for its next chunk of this scope (KEEP_HURRY bytes)
            await self._drain_events.setdefault(scope, trio.Event()).wait()
            if not self.is_pending(scope, path):
                return False
        return True

    def crowded(self, scope: Scope) -> bool:
        """Is the scope's spool past KEEP_MAX (room() would wait for the committer)?"""
        return self._kept_bytes.get(scope, 0) > KEEP_MAX

    def remove_kept(self, scope: Scope, path: bytes, waited: bool = True) -> str | None:
        """rm of a file whose content is pending (is_pending, then room() if crowded): it is
        moved into the spool instead of unlinked (one rename: no copy, no second link, no
        stat); the next batch commits it, then its removal. Returns the spool file, for
        `removed` once the caller has its answer, or None when the caller awaited since it
        asked is_pending (`waited`) and a batch committed the content meanwhile: the
        caller unlinks it as any other file."""
        if waited and not self.is_pending(scope, path):
            return None
        spool = self._spool_name()
        self.store.move_out(scope, path, spool)
        return spool

    def removed(self, scope: Scope, path: bytes, user: str, spool: str) -> os.stat_result | None:
        """After the reply to an rm that remove_kept moved into `spool`: what the name was,
        recorded as `user`'s version when it is one (an empty file too: its spool file goes
        with the commit, in the committer's thread, not here on the loop). A file too big
        to version, or one that is not a regular file, just goes. A folder (one that
        replaced the file behind the kernel's back, a sync round between its lookup and the
        rm: nothing else ran since the rename) is put back where it was, and None
        returned: nothing was removed."""
        st = os.lstat(spool)
        if stat.S_ISDIR(st.st_mode):
            log.warning("%s: rm of %s found a folder there: put back", scope, quote_path(path))
            self.store.move_in(spool, scope, path)
            return None
        self._adopt(scope, path, user, st, spool)
        return st

    def _keep_by_link(self, scope: Scope, path: bytes, user: str) -> None:
        spool = self._spool_path()
        try:
            self.store.link_out(scope, path, str(spool))
        except OSError:
            return  # gone already, a folder, or EMLINK: nothing to keep, or it cannot be
        self._adopt(scope, path, user, os.lstat(spool), str(spool))

    def _adopt(self, scope: Scope, path: bytes, user: str, st: os.stat_result, spool: str) -> None:
        """A whole spool file (`st` its lstat) becomes `path`'s kept version, or goes when it
        is none (too big to version, not a regular file)."""
        if _versionable(st):
            self._spooled_one(scope, path, user, st, spool, 0, st.st_size)
        else:
            os.unlink(spool)

    def _spool_path(self) -> Path:
        return Path(self._spool_name())

    def _spool_name(self) -> str:
        """A new file name in the spool, unique for this daemon's life."""
        self._spooled += 1
        return f"{self._spool_prefix}{self._spooled}"

    def _spooled_one(self, scope: Scope, path: bytes, user: str, st, spool: str, offset: int, n: int) -> None:
        self._last_kept.setdefault(scope, {})[path] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
        mode = EXEC if st.st_mode & 0o100 else BLOB
        k = Kept(user, path, mode, spool, offset, n, time.time())
        self.journal.record(scope, k)
        self._queue_kept(scope, k)

    def _queue_kept(self, scope: Scope, k: Kept) -> None:
        """A version (or a move, not journaled: its content is in history already) for the
        batch's commit_kept, in the order they happened."""
        self._kept.setdefault(scope, []).append(k)
        total = self._kept_bytes[scope] = self._kept_bytes.get(scope, 0) + k.cost
        if total > KEEP_HURRY:
            self._hurry.set()

    def _segment(self, scope: Scope) -> list:
        """[fd, path, next offset] of the scope's spool segment: small versions are appended
        to one file per batch (creating a file per version cost ~0.3-0.7 ms on ext4,
        measured; an append ~15 µs). The batch's commit removes it."""
        seg = self._segments.get(scope)
        if seg is None:
            path = self._spool_path()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            seg = self._segments[scope] = [fd, str(path), 0]
        return seg

    def _close_segment(self, scope: Scope) -> None:
        seg = self._segments.pop(scope, None)
        if seg is not None:
            os.close(seg[0])

    def is_pending(self, scope: Scope, path: bytes) -> bool:
        """Has this path (or, after a folder rename, anything) changed since the last
        committed batch? A batch still being committed counts as not committed."""
        if scope in self._rescan or scope in self._dir_moves or path in self._paths.get(scope, ()):
            return True
        flying = self._inflight.get(scope)
        return flying is not None and (flying[1] or path in flying[0])

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
            self._settle_journal()
            took = trio.current_time() - t0
            # A round's cost grows with the files it records and the trees it rewrites (a
            # storm into a folder of 100k files): pausing 3x as long as the last round took
            # keeps history's share of the cores, and of the GIL the loop needs, near a quarter
            # (and no change waits more than a minute past its batch for that).
            pause = max(self.conf.batch_seconds, min(3 * took, MAX_PAUSE))
            if took > 1:
                log.debug("a commit round took %.2f s; next in %.1f s", took, pause)

    async def flush(self, scopes: Iterable[Scope] | None = None, touched: Iterable = ()) -> None:
        """Commit what is pending (in these scopes only, if given). `touched`: (scope, path,
        user) of files still open with unsaved changes, read as they are now."""
        for scope, path, user in touched:
            self.touch(scope, path, user)
        # A batch in flight is waited for on the scope's lock in _flush_scope: a read right
        # after a write sees it.
        wanted = set(self._pending) | self._rescan | set(self._kept) | set(self._inflight)
        if scopes is not None:
            wanted &= set(scopes)
        async with trio.open_nursery() as n:
            for scope in wanted:
                n.start_soon(self._flush_scope, scope)

    def _settle_journal(self) -> None:
        queues = (self._kept, self._kept_flying)
        waiting = [(s, k) for q in queues for s, ks in q.items() for k in ks if k.moved_from is None]
        try:
            self.journal.settle(waiting)
        except OSError as e:
            log.warning("cannot rewrite %s: %s", self.journal.path, e)

    async def _flush_scope(self, scope: Scope) -> None:
        async with self.locked(scope):
            await self._flush_locked(scope)

    async def _flush_locked(self, scope: Scope) -> None:
        """One batch of the scope, its lock held."""
        events = self._pending.pop(scope, [])
        kept = self._kept.pop(scope, [])
        self._last_kept.pop(scope, None)
        self._close_segment(scope)  # later versions go to a new one
        paths = self._paths.pop(scope, {})
        moved_by = self._dir_moves.pop(scope, None)
        self._folder_moves.pop(scope, None)
        rescan = scope in self._rescan
        self._rescan.discard(scope)
        if not events and not rescan and not kept:
            return
        self._inflight[scope] = (paths, moved_by is not None or rescan)
        if kept:
            self._kept_flying[scope] = kept
        taken = self._since.pop(scope, None)
        if taken is not None:
            self._flying_since[scope] = taken
        try:
            await self._commit_batch(scope, events, kept, rescan)
        finally:
            self._inflight.pop(scope, None)
            self._kept_flying.pop(scope, None)
            self._flying_since.pop(scope, None)
            if taken is not None and self._failures.get(scope):  # back in the queue: as old as it was
                self._since[scope] = min(taken, self._since.get(scope, taken))

    async def _commit_batch(
        self,
        scope: Scope,
        events: list[Event],
        kept: list[Kept],
        rescan: bool,
    ) -> None:
        """Commit a batch taken off the queue (under the scope's lock); on failure it goes
        back (_requeue marks its paths pending again: their content is kept before it is
        destroyed)."""
        try:
            over = False
            spools = sorted({k.spool for k in kept if k.spool})
            while kept:  # in chunks: a writer held at KEEP_MAX waits for one, not all
                n, size = 0, 0
                while n < len(kept) and (n == 0 or size + kept[n].cost <= KEEP_HURRY):
                    size += kept[n].cost
                    n += 1
                chunk, last = kept[:n], n == len(kept)
                args = (scope, chunk, spools if last else [])
                over = await self.background.run(committer.call, "commit_kept", *args)
                kept = kept[n:]
                self._drained(scope, size)
            if rescan:
                over = await self.background.run(committer.call, "reconcile", scope, set())
            elif events:
                over = await self.background.run(committer.call, "commit", scope, events)
            if over:
                self._over.add(scope)
            self._failures.pop(scope, None)
            if scope in self._over:
                self._prune_soon.set()
            if self.on_commit is not None:
                self.on_commit(scope)
        except Exception as e:
            fails = self._failures[scope] = self._failures.get(scope, 0) + 1
            log.warning("%s: commit failed (%s): %s", scope, fails, e, exc_info=fails == 1)
            self._requeue(scope, events, kept, fails >= 5 or rescan)  # past 5: a rescan
            self._drained(scope, 0)  # writers waiting for room look again
        except BaseException:
            # Cancelled before the worker started (an unmount mid-round): the batch was
            # taken from the queue; put it back, so close() commits it.
            self._requeue(scope, events, kept, rescan)
            raise

    def _drained(self, scope: Scope, size: int) -> None:
        """`size` spooled bytes of the scope are committed: writers held at KEEP_MAX go on."""
        left = self._kept_bytes.get(scope, 0) - size
        if left > 0:
            self._kept_bytes[scope] = left
        else:
            self._kept_bytes.pop(scope, None)
        ev = self._drain_events.pop(scope, None)
        if ev is not None:
            ev.set()

    def _requeue(self, scope: Scope, events: list[Event], kept: list[Kept], rescan: bool) -> None:
        if kept:
            self._kept[scope] = kept + self._kept.get(scope, [])
            self._kept_bytes[scope] = sum(k.cost for k in self._kept[scope])
        if rescan:
            self._rescan.add(scope)
            self._pending.pop(scope, None)
        else:
            self._pending[scope] = events + self._pending.get(scope, [])
            self._mark(scope, events)

    def state(self, scope: Scope) -> tuple[int, float, int]:
        """(changes waiting, seconds the oldest has waited, failed commits in a row): for
        metrics and the admin's view."""
        waiting = len(self._pending.get(scope, ())) + len(self._kept.get(scope, ()))
        oldest = min(self._since.get(scope, math.inf), self._flying_since.get(scope, math.inf))
        lag = max(0.0, time.time() - oldest) if oldest != math.inf else 0.0
        return waiting, lag, self._failures.get(scope, 0)

    async def purge(self, scope: Scope, path: bytes, names: list[bytes] | None, user: str) -> Purged:
        """Take versions of a file out of the scope's history for good (`names`, or all but
        the current content): under the scope's lock, once what is pending (kept versions
        in the spool among it) is committed, so nothing waiting can bring them back."""
        await self.ready(scope)
        async with self.locked(scope):
            await self._flush_locked(scope)
            if scope in self._pending or scope in self._kept or scope in self._rescan:
                # a batch failed and was put back: its versions could hold what goes
                raise PurgeRefused(errno.EAGAIN, "history cannot commit this scope now; try again")
            result = await self.background.run(
                committer.call, "purge", scope, path, names, user, int(time.time())
            )
        if self.on_commit is not None:
            self.on_commit(scope)  # a synced scope pushes the rewritten history
        return result

    def repo_dir(self, scope: Scope) -> Path:
        return layout.history_dir(self.data, scope)

    def disk_blob(self, scope: Scope, path: bytes) -> bytes | None | object:
        """The blob id of a file as it is on disk now; None if absent."""
        disk = read_file(self.store, scope, path)
        if disk is None or disk is SKIP:
            return disk
        return blob_id(disk[1])

    # -- reconcile: what changed while memfs was not looking ------------------------------
    async def reconcile(self) -> None:
        """At mount, in the background: commit every scope's files that differ from its
        history (written by a daemon killed before its batch, or by an admin in DATA/)."""
        try:
            scopes = layout.scopes_in(self.data)
        except OSError as e:
            log.warning("reconcile: cannot list scopes: %s", e)
            scopes = []
        limiter = trio.CapacityLimiter(2)
        t0 = trio.current_time()

        async def one(scope: Scope) -> None:
            async with limiter:
                await self.ready(scope)

        async with trio.open_nursery() as n:
            for scope in scopes:
                n.start_soon(one, scope)
        self._recovered.clear()  # of scopes that are gone
        journal.clear(self.spool, keep=self._stem)  # what daemons before this one left
        self.reconciled.set()
        log.info("reconciled %d scopes in %.2f s", len(scopes), trio.current_time() - t0)

    async def ready(self, scope: Scope) -> None:
        """Reconcile this scope now if the mount has not yet: a reader right after a
        restart sees what a crash left uncommitted."""
        if scope not in self._unreconciled:
            return
        async with self.locked(scope):
            if scope not in self._unreconciled:
                return
            skip = {e.path for e in self._pending.get(scope, [])}
            if kept := self._recovered.pop(scope, None):
                try:  # before the files as they are now: they are older
                    await self.background.run(committer.call, "commit_kept", scope, kept, [])
                    log.info("%s: %d versions a stopped daemon kept, committed", scope, len(kept))
                except Exception:
                    log.exception("%s: versions a stopped daemon kept could not be committed", scope)
            try:
                if await self.background.run(committer.call, "reconcile", scope, skip):
                    self._over.add(scope)
            except Exception:
                log.exception("%s: reconcile failed", scope)
            self._unreconciled.discard(scope)

    def imported(self, scope: Scope, paths: list[bytes]) -> None:
        for path in paths:
            self.touch(scope, path, IMPORT_AUTHOR)

    # -- retention ---------------------------------------------------------------------
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
                        await self.background.run(
                            committer.call, "prune", scope, time.time(), scope in self.shared
                        )
                    except Exception:
                        log.exception("%s: retention failed", scope)
            self._prune_soon = trio.Event()
            wait = 60.0
            if self._over:  # waiting out their period
                soonest = min(pruned_at.get(s, now) for s in self._over) + self.conf.prune_seconds
                wait = max(0.0, min(wait, soonest - trio.current_time()))
            with trio.move_on_after(wait):
                await self._prune_soon.wait()

    # -- shutdown ----------------------------------------------------------------------
    async def close(self) -> None:
        """Unmounted: commit everything still pending, at normal priority."""
        self.background.hurry()
        await self.flush()
        if not self._kept and not self._kept_flying:
            self.journal.close()


def _versionable(st: os.stat_result) -> bool:
    """A regular file small enough to be kept as a version."""
    return stat.S_ISREG(st.st_mode) and st.st_size <= MAX_VERSION_BYTES


def _under_any(path: bytes, folders: list[bytes]) -> bool:
    return any(f == b"" or path == f or path.startswith(f + b"/") for f in folders)
