"""The changes the filesystem queues per scope, and the committer that applies them.

Handlers queue a change without I/O (release/fsync after a write, rename, unlink); the
committer applies them in batches, each scope in a worker thread under its own lock, so
a commit of one scope never waits for another's (a flood of folder moves by one caller
cannot hold up another's read-your-writes). A scope whose commit fails is retried with
backoff without holding up the others, and after a few failures its changes are left to
a reconcile of that scope.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import trio

from ..policy import Scope
from .schema import ENTRY_SUFFIX
from .writer import Op, Writer

log = logging.getLogger("memfs.index")

COMMIT_DELAY = 0.2  # seconds: updates arriving within this window share one commit
MAX_BATCH = 2000  # changes per commit cycle: a flood by one caller is applied in slices
MAX_FAILURES = 5  # failed commits of one scope before its changes are left to a reconcile
MAX_BACKOFF = 30.0


class IndexUnavailable(Exception):
    """The index could not be updated (disk full, I/O error); the changes stay queued."""


class Committer:
    def __init__(self, writer: Writer, ready: trio.Event, limiter: trio.CapacityLimiter):
        """`ready`: set once the start-up reconcile is done (it goes first); `limiter`:
        the worker threads applying changes."""
        self.writer = writer
        self.ready = ready
        self.limiter = limiter
        # Per scope, in order of arrival: path -> latest file change, plus folder changes.
        self._pending: dict[Scope, dict[bytes, str]] = {}
        self._trees: dict[Scope, list[Op]] = {}
        self.stale: set[Scope] = set()  # changes given up on: reconcile these scopes
        self._locks: dict[Scope, trio.Lock] = {}
        self._applying: set[Scope] = set()  # scopes whose changes are being applied now
        self._wake = trio.Event()
        self._since: dict[Scope, float] = {}  # wall time of the oldest change not yet applied (lag)

    # -- queueing changes (called from handlers: cheap, no I/O) -----------------
    def _queue(self, scope: Scope, path: bytes, what: str) -> None:
        q = self._pending.setdefault(scope, {})
        q.pop(path, None)  # keep arrival order: the latest change of a path goes last
        q[path] = what
        self._since.setdefault(scope, time.time())
        self._wake.set()

    # touch and remove run on every close after a write and every rm: is_entry inline
    def touch(self, scope: Scope, path: bytes) -> None:
        if path.endswith(ENTRY_SUFFIX):
            self._queue(scope, path, "index")

    def remove(self, scope: Scope, path: bytes) -> None:
        if path.endswith(ENTRY_SUFFIX):
            self._queue(scope, path, "delete")

    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> None:
        if not is_dir:
            self.remove(src, src_path)
            self.touch(dst, dst_path)
            return
        # Files queued before the move are applied first, under their old paths.
        self._trees.setdefault(src, []).append(("delete_tree", src_path))
        self._trees.setdefault(dst, []).append(("index_tree", dst_path))
        for scope in (src, dst):
            self._since.setdefault(scope, time.time())
        self._wake.set()

    def _take(self, scope: Scope, limit: int | None) -> list[Op]:
        """Queued changes of a scope, up to `limit`: its folder changes first, then its
        files in the order they arrived."""
        ops = self._trees.pop(scope, [])
        files = self._pending.get(scope, {})
        while files and (limit is None or len(ops) < limit):
            path = next(iter(files))
            ops.append((files.pop(path), path))
        if not files:
            self._pending.pop(scope, None)
        return ops

    def lock(self, scope: Scope) -> trio.Lock:
        """The scope's lock: its changes are applied (and its vectors made) by one task at
        a time, in order."""
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = trio.Lock()
        return lock

    @asynccontextmanager
    async def applying(self, scope: Scope) -> AsyncIterator[None]:
        """The scope's lock, held to change what searches find: a search of the scope waits
        for it. Not for making vectors of what is already indexed (the backfill): a search
        waited ~150 ms behind each backfill slice after a first mount (measured)."""
        async with self.lock(scope):
            self._applying.add(scope)
            try:
                yield
            finally:
                self._applying.discard(scope)

    def _requeue(self, scope: Scope, ops: list[Op]) -> None:
        """Put back a batch that failed, behind nothing newer of the same path."""
        newer = self._pending.get(scope, {})
        files = {p: w for w, p in ops if w in ("index", "delete") and p not in newer}
        self._pending[scope] = {**files, **newer}
        trees = [op for op in ops if op[0] in ("delete_tree", "index_tree")]
        if trees:
            self._trees[scope] = trees + self._trees.get(scope, [])

    def state(self, scope: Scope) -> tuple[int, float]:
        """(changes queued, seconds the oldest has waited): for metrics and the admin's view."""
        queued = len(self._pending.get(scope, ())) + len(self._trees.get(scope, ()))
        since = self._since.get(scope, math.inf)
        return queued, (max(0.0, time.time() - since) if since != math.inf else 0.0)

    def pending_count(self) -> int:
        return sum(len(q) for q in self._pending.values()) + sum(len(t) for t in self._trees.values())

    # -- applying them --------------------------------------------------------
    async def run(self, reconcile_stale: Callable[[], Awaitable[None]]) -> None:
        """Apply what is queued, a batch every COMMIT_DELAY at most, backing off while
        commits fail; `reconcile_stale` scans the scopes given up on."""
        delay = COMMIT_DELAY
        while True:
            if not self.pending_count() and not self.stale:
                await self._wake.wait()
            self._wake = trio.Event()  # only the committer resets it: flush() must not strand it
            await trio.sleep(delay)
            try:
                await self.flush(limit=MAX_BATCH)
                if self.stale:
                    await reconcile_stale()
                delay = COMMIT_DELAY
            except IndexUnavailable:
                delay = min(delay * 2, MAX_BACKOFF)  # back off while the disk is full

    async def release_idle(self, seconds: float) -> None:
        """Close the writers idle for `seconds`, each under its scope's lock (a search of
        that scope waits for the close, once after a quiet spell). Not during the start-up
        reconcile, which applies scopes without their locks."""
        if not self.ready.is_set():
            return
        shards = self.writer.shards
        for scope in shards.idle_writers(seconds):
            async with self.applying(scope):
                await trio.to_thread.run_sync(shards.close_writer, scope, limiter=self.limiter)

    async def flush(
        self,
        extra: Iterable[tuple[Scope, bytes]] = (),
        scopes: Iterable[Scope] | None = None,
        limit: int | None = None,
    ) -> None:
        """Make queued changes (and `extra` paths) visible to searches: those of `scopes`
        only if given (a caller waits for its own scopes, not for everyone's backlog)."""
        for scope, path in extra:
            self.touch(scope, path)
        await self.ready.wait()  # the start-up reconcile goes first
        targets = self._targets(scopes)
        if targets:  # nothing queued (most searches): no worker to lift
            with self.writer.boosted():
                await self._apply(targets, limit)

    async def _apply(self, targets: list[Scope], limit: int | None) -> None:
        failed = {}
        for scope in targets:
            async with self.applying(scope):  # taken under the lock: a scope's changes stay in order
                ops = self._take(scope, limit)
                if not ops:
                    continue
                # Taken off the queue, a batch is applied whatever happens to this task: a
                # cancellation (unmount) before the thread starts would lose it.
                with trio.CancelScope(shield=True):
                    error = await trio.to_thread.run_sync(
                        self.writer.apply_one, scope, ops, limiter=self.limiter
                    )
                if error is not None:
                    failed[scope] = error
                    self._give_up_or_retry(scope, ops, error)
                elif scope not in self._pending and scope not in self._trees:
                    self._since.pop(scope, None)  # nothing of it waits any more
        if failed:
            raise IndexUnavailable(", ".join(f"{s}: {e}" for s, e in failed.items()))

    def _targets(self, scopes: Iterable[Scope] | None) -> list[Scope]:
        """The scopes a flush applies: those with queued changes (of `scopes`, if given)."""
        # A scope being applied right now counts too: its changes are not visible yet.
        queued = self._pending.keys() | self._trees.keys() | self._applying
        return sorted(queued, key=str) if scopes is None else [s for s in scopes if s in queued]

    def _give_up_or_retry(self, scope: Scope, ops: list[Op], error: str) -> None:
        """After a failed commit (on the loop): keep the changes for a retry, or after
        MAX_FAILURES leave the scope to a reconcile, so nothing is lost and no poisoned
        change is retried forever."""
        n = self.writer.failed(scope)
        if n < MAX_FAILURES:
            log.warning("%s: commit failed (%s); %d changes kept for a retry", scope, error, len(ops))
            self._requeue(scope, ops)
        else:
            log.error("%s: commit failed %d times (%s); left to a reconcile of the scope", scope, n, error)
            self.writer.forgive(scope)
            self.stale.add(scope)
