"""The index brought in line with the files, and the vectors with the index.

At start (and for a scope whose commits were given up on) the files are compared with the
manifest: changed mtimes/sizes are re-indexed, vanished files dropped, so a crash or an
admin's direct edit never leaves search wrong. Keyword indexing comes first; the backfill
then embeds what has no vector yet, so a first mount answers keyword searches early.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import trio

from .. import layout
from ..policy import Scope
from .committer import Committer, IndexUnavailable
from .embed import Embedder
from .manifest import Manifest
from .scan import scan_entries
from .schema import split_key
from .shards import Shards
from .vectors import Vectors
from .writer import Op, Writer

log = logging.getLogger("memfs.index")

BACKFILL_SLICE = 500  # entries embedded per step of the background backfill (under the scope's lock)
REBUILD_SLICE = 5000  # entries per commit of memfs reindex


class Reconciler:
    def __init__(
        self,
        data: Path,
        committer: Committer,
        writer: Writer,
        manifest: Manifest,
        shards: Shards,
        vectors: Vectors | None,
        embedder: Embedder | None,
    ):
        self.data = data
        self.committer = committer
        self.writer = writer
        self.manifest = manifest
        self.shards = shards
        self.vectors = vectors
        self.embedder = embedder
        self._backfill = trio.Event()  # entries may be waiting for their vectors

    # -- reconcile ----------------------------------------------------------------
    async def reconcile(self) -> dict:
        """At start: changed files re-indexed, vanished ones dropped (flushes wait for it).
        Scopes are applied four at a time: a first mount of 1,000 users is 1,000 commits,
        each mostly waiting for its writer's own indexing thread."""
        counts: dict = {}
        try:
            batch, counts = await trio.to_thread.run_sync(self._plan, None, limiter=self.committer.limiter)
            limiter = trio.CapacityLimiter(4)
            failed = counts["failed"]

            async def apply(scope: Scope, ops: list[Op]) -> None:
                if await trio.to_thread.run_sync(self.writer.apply_one, scope, ops, False, limiter=limiter):
                    failed.append(scope)

            async with trio.open_nursery() as nursery:
                for scope, ops in batch.items():
                    nursery.start_soon(apply, scope, ops)
            self.committer.stale.update(failed)
            counts["seconds"] = time.perf_counter() - counts["t0"]
            log.info(
                "reconciled %d entries (%d re-indexed, %d dropped) in %.2f s",
                counts["seen"],
                counts["changed"],
                counts["dropped"],
                counts["seconds"],
            )
        except Exception:  # e.g. a full disk: keep serving; searches answer from the old index
            log.exception("reconcile failed; the next mount tries again")
        finally:
            self.committer.ready.set()  # searches wait for this, whatever happened
            self._backfill.set()
        return counts

    async def reconcile_stale(self) -> None:
        """Scopes whose changes were given up on: scan them again (raises IndexUnavailable)."""
        for scope in sorted(self.committer.stale, key=str):
            async with self.committer.applying(scope):
                try:
                    counts = await trio.to_thread.run_sync(
                        self._reconcile, [scope], limiter=self.committer.limiter
                    )
                except Exception as e:
                    raise IndexUnavailable(f"reconcile of {scope}: {e}") from e
            if counts["failed"]:
                raise IndexUnavailable(f"reconcile of {scope} failed")
            self.committer.stale.discard(scope)
            self._backfill.set()
            log.info("reconciled %s: %d re-indexed", scope, counts["changed"])

    def _reconcile(self, scopes: list[Scope] | None) -> dict:
        batch, counts = self._plan(scopes)
        counts["failed"] = list(self.writer.apply(batch, embed=False))
        counts["seconds"] = time.perf_counter() - counts["t0"]
        return counts

    def _plan(self, scopes: list[Scope] | None) -> tuple[dict[Scope, list[Op]], dict]:
        """What a reconcile must apply: files changed since the manifest, files gone."""
        t0 = time.perf_counter()
        scan = scan_entries(self.data, scopes)
        known = self.manifest.known(scopes)
        batch: dict[Scope, list[Op]] = {}
        changed = dropped = 0
        for key, (scope, path, mtime, size) in scan.found.items():
            if known.get(key) != (mtime, size):
                batch.setdefault(scope, []).append(("index", path))
                changed += 1
        by_name = {str(s): s for s in scan.unreadable}
        for key in known.keys() - scan.found.keys():
            scope_name, path = split_key(key)
            scope = by_name.get(scope_name) or Scope.parse(scope_name)
            if scan.unknown(scope, path):
                continue  # unreadable just now (EACCES, EMFILE, EIO), not gone
            batch.setdefault(scope, []).append(("delete", path))
            dropped += 1
        for scope, tops in scan.unreadable.items():
            log.warning("%s: cannot read %d folder(s) (%s...); their entries kept", scope, len(tops), tops[0])
        return batch, {
            "seen": len(scan.found),
            "changed": changed,
            "dropped": dropped,
            "failed": [],
            "t0": t0,
        }

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index everything from scratch (memfs reindex); runs without the daemon."""
        self.shards.clear()
        for scope in self.shards.scopes():
            shutil.rmtree(layout.index_dir(self.data, scope))
        self.manifest.clear()
        if self.vectors is not None:
            self.vectors.forget()
        found = scan_entries(self.data).found
        done = 0
        by_scope: dict[Scope, list[Op]] = {}
        for scope, path, _m, _s in found.values():
            by_scope.setdefault(scope, []).append(("index", path))
        for scope, ops in by_scope.items():
            for i in range(0, len(ops), REBUILD_SLICE):
                failed = self.writer.apply({scope: ops[i : i + REBUILD_SLICE]})
                if failed:
                    raise IndexUnavailable(failed[scope])
                done += len(ops[i : i + REBUILD_SLICE])
                if progress:
                    progress(done, len(found))
        if progress:
            progress(done, len(found))
        return done

    # -- vectors for entries indexed without them ---------------------------------
    async def run_backfill(self) -> None:
        """Embed what the index holds without vectors: everything after the embedder
        changed, and what a reconcile indexed (it leaves embedding to this, so a first
        mount answers keyword searches as soon as keyword indexing is done)."""
        embedder = self.embedder
        if embedder is None:
            return
        await self.committer.ready.wait()
        while True:
            self._backfill = trio.Event()  # a reconcile from now on asks for another pass
            await self._backfill_all(embedder)
            await self._backfill.wait()

    async def _backfill_all(self, embedder: Embedder) -> None:
        limiter = self.committer.limiter
        todo = await trio.to_thread.run_sync(self.manifest.missing_count, limiter=limiter)
        if not todo:
            return
        log.info("embedding %d entries with %s", todo, embedder.id)
        done, t0, last, after = 0, time.monotonic(), time.monotonic(), ""
        while True:  # one pass in key order (what is missing behind it waits for the next pass)
            keys = await trio.to_thread.run_sync(
                self.manifest.missing, after, BACKFILL_SLICE, limiter=limiter
            )
            if not keys:
                break
            after = keys[-1]
            for scope, paths in _by_scope(keys).items():
                async with self.committer.lock(scope):  # a commit of this scope never interleaves
                    await trio.to_thread.run_sync(self.writer.embed_paths, scope, paths, limiter=limiter)
                done += len(paths)
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                log.info("embedding: %d of %d entries done", done, todo)
        log.info("embedded %d entries in %.1f s", done, time.monotonic() - t0)


def _by_scope(keys: list[str]) -> dict[Scope, list[bytes]]:
    by_scope: dict[Scope, list[bytes]] = {}
    for key in keys:
        scope_name, path = split_key(key)
        by_scope.setdefault(Scope.parse(scope_name), []).append(path)
    return by_scope
