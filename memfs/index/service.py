"""The search index of every *.md entry: incremental, batched, one Tantivy index per scope.

Only the daemon writes it. This is the face the rest of memfs sees; the work is done by
committer.py (queued changes, applied in batches), writer.py (one scope's commit),
reconcile.py (the index brought in line with the files; vectors made in the background),
search.py (ranked hits) and manifest.py (what was indexed, in sqlite under DATA/state/).
A search first applies what is pending in the scopes it reads, so a caller finds what it
just wrote.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import trio

from .. import entry as entry_mod
from .. import layout
from ..background import NicedProcess
from ..policy import Scope
from ..store import Store
from .committer import Committer
from .embed import Embedder
from .manifest import Manifest
from .manifest import path_of as manifest_path
from .reconcile import Reconciler
from .schema import SCHEMA_VERSION, build_schema
from .search import Hit, Searcher
from .shards import Shards
from .vectors import Vectors
from .writer import Writer


class IndexBusy(Exception):
    """Another process (a mounted daemon, a reindex) has the index open for writing."""


class Index:
    def __init__(
        self,
        data: Path,
        store: Store,
        types: tuple[str, ...] = entry_mod.DEFAULT_TYPES,
        embedder: Embedder | None = None,
        embed_worker: NicedProcess | None = None,
    ):
        self.data = data
        self.embed_worker = embed_worker
        self.schema = build_schema()
        self._lockfile, fresh = _claim(data)
        try:
            self.manifest = Manifest(data, fresh, embedder.id if embedder is not None else "none")
            self.vectors = Vectors(str(manifest_path(data)), embedder.dim) if embedder is not None else None
        except BaseException:
            if hasattr(self, "manifest"):
                self.manifest.close()
            self._lockfile.close()  # a failed open (a full disk) must not keep the lock: it is retried
            raise
        self.shards = Shards(data, self.schema)
        self.writer = Writer(store, self.shards, self.manifest, self.vectors, types, embedder, embed_worker)
        self._ready = trio.Event()  # set once the start-up reconcile is done
        limiter = trio.CapacityLimiter(4)  # worker threads applying changes
        self.committer = Committer(self.writer, self._ready, limiter)
        # The calls every write, rm and rename makes, bound straight to the committer: one
        # Python frame each, not two (Standby, which never runs this, keeps its methods).
        self.touch = self.committer.touch  # type: ignore[method-assign]
        self.remove = self.committer.remove  # type: ignore[method-assign]
        self.moved = self.committer.moved  # type: ignore[method-assign]
        self.reconciler = Reconciler(
            data, self.committer, self.writer, self.manifest, self.shards, self.vectors, embedder
        )
        self.searcher = Searcher(self.shards, self.schema, embedder, self.vectors)

    def close(self) -> None:
        if self.embed_worker is not None:
            self.embed_worker.close()
        self.shards.close()
        if self.vectors is not None:
            self.vectors.close()
        self.manifest.close()
        self._lockfile.close()

    def problems(self) -> list[str]:
        """Lines for .memfs/status about the index itself (none while it is open)."""
        return []

    # -- changes (from handlers: cheap, no I/O) and applying them -------------------
    def touch(self, scope: Scope, path: bytes) -> None:
        self.committer.touch(scope, path)

    def remove(self, scope: Scope, path: bytes) -> None:
        self.committer.remove(scope, path)

    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> None:
        self.committer.moved(src, src_path, dst, dst_path, is_dir)

    def pending_count(self) -> int:
        return self.committer.pending_count()

    def queue_state(self, scope: Scope) -> tuple[int, float]:
        """(changes queued for the scope, seconds the oldest has waited)."""
        return self.committer.state(scope)

    async def embedding_backlog(self) -> int:
        """Indexed entries still waiting for their vectors (0 without an embedder)."""
        if self.vectors is None:
            return 0
        return await trio.to_thread.run_sync(self.manifest.missing_count, limiter=self.committer.limiter)

    async def run_committer(self) -> None:
        await self.committer.run(self.reconciler.reconcile_stale)

    async def release_idle(self, seconds: float) -> None:
        """Writers not used for `seconds` are closed (memory back after a burst)."""
        await self.committer.release_idle(seconds)

    async def flush(
        self,
        extra: Iterable[tuple[Scope, bytes]] = (),
        scopes: Iterable[Scope] | None = None,
        limit: int | None = None,
    ) -> None:
        """Make queued changes (and `extra` paths) visible to searches: those of `scopes`
        only if given (a caller waits for its own scopes, not for everyone's backlog)."""
        await self.committer.flush(extra, scopes, limit)

    # -- reconcile, backfill, rebuild ---------------------------------------------
    async def reconcile(self) -> dict:
        return await self.reconciler.reconcile()

    async def reconcile_stale(self) -> None:
        await self.reconciler.reconcile_stale()

    async def reconciled(self) -> None:
        """Return once the start-up reconcile is done (searches wait for the same)."""
        await self._ready.wait()

    async def run_backfill(self) -> None:
        await self.reconciler.run_backfill()

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index everything from scratch (memfs reindex); runs without the daemon."""
        return self.reconciler.rebuild(progress)

    # -- reading --------------------------------------------------------------
    async def entries(self, scopes: list[Scope], limiter: trio.CapacityLimiter | None = None) -> list[Hit]:
        """Every indexed entry in these scopes (no ranking, no snippets)."""
        await self._ready.wait()
        return await trio.to_thread.run_sync(self.searcher.entries, scopes, limiter=limiter)

    async def search(
        self, scopes: list[Scope], query: str, limit: int = 10, limiter: trio.CapacityLimiter | None = None
    ) -> tuple[list[Hit], int]:
        """Ranked hits in `scopes` and how many entries matched. Raises QueryError for a
        query that cannot run as asked (an unknown mode:, semantic search switched off)."""
        await self._ready.wait()
        return await trio.to_thread.run_sync(self.searcher.search, scopes, query, limit, limiter=limiter)


def _claim(data: Path) -> tuple[BinaryIO, bool]:
    """Lock the index for this process (the lock file, to keep open while the index is);
    and whether the index was emptied, for a schema change (it is derived data)."""
    root = layout.index_root(data)
    root.mkdir(parents=True, exist_ok=True)
    # Writers open lazily per scope, so Tantivy's own lock cannot tell that a daemon
    # has this index: one lock for the whole index, held while this object lives.
    lockfile = open(data / "state" / "index.lock", "wb")  # noqa: SIM115
    try:
        fcntl.flock(lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lockfile.close()
        raise IndexBusy(f"the index in {root} is in use by another process") from None
    version_file = root / "memfs-schema"
    fresh = not version_file.exists() or version_file.read_text().strip() != SCHEMA_VERSION
    if fresh:
        for p in root.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        version_file.write_text(SCHEMA_VERSION + "\n")
    return lockfile, fresh
