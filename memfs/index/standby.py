"""The index while DATA/ is too full to open it (issue 26: degrade, don't die).

The mount comes up anyway. Until there is room, searches and the agent files read the
per-scope Tantivy indexes as they were (keyword ranking; the vectors live in the sqlite
manifest, which cannot open), and changes are not queued: when the index opens, its
start-up reconcile re-indexes every file whose mtime or size moved, as after any restart.
A task tries to open it every space.RETRY_SECONDS once the disk has room again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import trio

from .. import space
from ..policy import Scope
from .schema import build_schema
from .search import Hit, Searcher
from .service import Index
from .shards import Shards

log = logging.getLogger("memfs.index")

WAITING = (
    "search: DATA/ is full: results come from the index as it was; new changes are indexed once space returns"
)


class Standby(Index):
    """An Index that is not open yet: the same face, delegating once `run_opener` opened it.
    It overrides every method the mount calls, so the parts its base class would hold are
    never touched while it waits."""

    def __init__(self, data: Path, opener: Callable[[], Index], close_worker: Callable[[], None]):
        # no super().__init__(): that is the open that failed
        self.data = data
        self._opener = opener
        self._close_worker = close_worker  # the embedder's worker, if the index never opens
        self._real: Index | None = None
        self._opened = trio.Event()
        schema = build_schema()
        self._old = Shards(data, schema)  # read only: Shards.get(create=False) never writes
        self._old_searcher = Searcher(self._old, schema, None, None)

    # -- opening -----------------------------------------------------------------------
    async def run_opener(self) -> None:
        while self._real is None:
            await trio.sleep(space.RETRY_SECONDS)
            if space.full(self.data):
                continue
            try:
                real = await trio.to_thread.run_sync(self._opener)
            except Exception as e:  # still no room (sqlite, Tantivy), or a fault: try again
                log.info("index: still cannot open (%s); trying again in %.0f s", e, space.RETRY_SECONDS)
                continue
            self._old.close()
            self._real = real
            self._opened.set()
            log.info("index: opened now that DATA/ has room; re-indexing what changed meanwhile")

    async def _ready_index(self) -> Index:
        await self._opened.wait()
        assert self._real is not None
        return self._real

    def problems(self) -> list[str]:
        return [] if self._real is not None else [WAITING]

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
        else:
            self._old.close()
            self._close_worker()

    # -- changes: dropped while waiting (the reconcile at open finds them) -------------
    def touch(self, scope: Scope, path: bytes) -> None:
        if self._real is not None:
            self._real.touch(scope, path)

    def remove(self, scope: Scope, path: bytes) -> None:
        if self._real is not None:
            self._real.remove(scope, path)

    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> None:
        if self._real is not None:
            self._real.moved(src, src_path, dst, dst_path, is_dir)

    def pending_count(self) -> int:
        return self._real.pending_count() if self._real is not None else 0

    def queue_state(self, scope: Scope) -> tuple[int, float]:
        return self._real.queue_state(scope) if self._real is not None else (0, 0.0)

    async def embedding_backlog(self) -> int:
        return await self._real.embedding_backlog() if self._real is not None else 0

    async def flush(
        self,
        extra: Iterable[tuple[Scope, bytes]] = (),
        scopes: Iterable[Scope] | None = None,
        limit: int | None = None,
    ) -> None:
        if self._real is not None:
            await self._real.flush(extra, scopes, limit)

    async def release_idle(self, seconds: float) -> None:
        if self._real is not None:
            await self._real.release_idle(seconds)

    # -- background tasks wait for the open ---------------------------------------------
    async def run_committer(self) -> None:
        await (await self._ready_index()).run_committer()

    async def reconcile(self) -> dict:
        return await (await self._ready_index()).reconcile()

    async def reconcile_stale(self) -> None:
        await (await self._ready_index()).reconcile_stale()

    async def reconciled(self) -> None:
        await (await self._ready_index()).reconciled()

    async def run_backfill(self) -> None:
        await (await self._ready_index()).run_backfill()

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        raise RuntimeError("the index is not open")

    # -- reading: the old index until the real one is open -------------------------------
    async def entries(self, scopes: list[Scope], limiter: trio.CapacityLimiter | None = None) -> list[Hit]:
        if self._real is not None:
            return await self._real.entries(scopes, limiter)
        return await trio.to_thread.run_sync(self._old_searcher.entries, scopes, limiter=limiter)

    async def search(
        self, scopes: list[Scope], query: str, limit: int = 10, limiter: trio.CapacityLimiter | None = None
    ) -> tuple[list[Hit], int]:
        if self._real is not None:
            return await self._real.search(scopes, query, limit, limiter)
        return await trio.to_thread.run_sync(self._old_searcher.search, scopes, query, limit, limiter=limiter)
