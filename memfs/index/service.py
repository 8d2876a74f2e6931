"""The search index of every *.md entry: incremental, batched, one Tantivy index per scope.

Only the daemon writes it. The filesystem queues updates (release/fsync after a write,
rename, unlink); a committer applies them in batches in a worker thread; a search first
applies what is pending in the scopes it reads, so a caller finds what it just wrote. A
manifest (sqlite, DATA/state/) remembers the (mtime, size) of what was indexed, so a
restart re-indexes only files that changed while memfs was not looking.

Failures stay where they start: one file that cannot be indexed is logged and skipped;
a scope whose commit fails is retried with backoff without holding up the others, and
after a few failures its changes are left to a reconcile of that scope.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tantivy
import trio

from .. import entry as entry_mod
from .. import layout
from ..background import NicedProcess
from ..layout import resolve_view_path
from ..names import quote_path
from ..policy import Kind, Scope
from ..store import Store
from . import fusion
from .embed import Embedder, embed_in_worker, embed_text
from .query import MAX_QUERY_CHARS, QueryError, bounded, mode_of, split_filters, words_of
from .scan import scan_entries, walk_entries
from .schema import (
    MAX_BODY_CHARS,
    MAX_INDEXED_BYTES,
    SCHEMA_VERSION,
    TEXT_FIELDS,
    build_schema,
    doc_key,
    folders,
    is_entry,
    path_text,
    split_key,
)
from .shards import Shard, Shards
from .vectors import CREATE as CREATE_VECTORS
from .vectors import Filter, Row, Vectors

log = logging.getLogger("memfs.index")

COMMIT_DELAY = 0.2  # seconds: updates arriving within this window share one commit
MAX_BATCH = 2000  # changes per commit cycle: a flood by one caller is applied in slices
MAX_FAILURES = 5  # failed commits of one scope before its changes are left to a reconcile
MAX_BACKOFF = 30.0
BOOSTS = {"name": 3.0, "description": 2.0, "tags": 2.0}
FUSE_DEPTH = 30  # candidates each ranker hands to the fusion
INDEX_SLACK = 8  # extra keyword candidates: index files moved last must not crowd entries out
_MISSING = "FROM manifest m LEFT JOIN vectors v ON v.key = m.key WHERE v.key IS NULL"  # indexed, no vector
# A batch of more entries than this is embedded by the worker process (a burst); fewer
# (~0.3 ms each) here: most batches, and no worker to start for a mount that never bursts.
WORKER_MIN_TEXTS = 32
BACKFILL_SLICE = 500  # entries embedded per step of the background backfill (under the scope's lock)


@dataclass
class Hit:
    scope: Scope
    relpath: str
    score: float
    name: str
    type: str
    description: str
    snippet: str
    mtime_ns: int
    problems: list[str]
    rankers: tuple[str, ...] = ()  # which rankers found it: "keyword", "semantic"


def _head_past_frontmatter(fd: int, head: bytes, size: int) -> bytes:
    """What to parse of a file larger than MAX_INDEXED_BYTES: its head, unless a frontmatter
    runs past it. Then (it is over MAX_FRONTMATTER: flagged, not parsed) the head of the
    frontmatter, its closing line and the head of the body after it, found a MiB at a time,
    so the body stays searchable however long the frontmatter was."""
    if not head.startswith(b"---") or _FM_END.search(head, 3) is not None:
        return head
    pos = len(head) - 8  # a closing line split across two reads is still found
    while pos < size:
        chunk = os.pread(fd, 1 << 20, pos)
        if not chunk:
            break
        end = _FM_END.search(chunk)
        if end is not None:
            body = os.pread(fd, MAX_INDEXED_BYTES, pos + end.end())
            return head[: entry_mod.MAX_FRONTMATTER + 16] + b"\n---\n" + body
        pos += len(chunk) - 8
    return head


# The line that closes a frontmatter, as python-frontmatter's splitter reads it.
_FM_END = re.compile(rb"\n-{3,}[ \t\r]*(?:\n|$)")


class IndexBusy(Exception):
    """Another process (a mounted daemon, a reindex) has the index open for writing."""


class IndexUnavailable(Exception):
    """The index could not be updated (disk full, I/O error); the changes stay queued."""


# One queued change of a scope: ("index" | "delete" | "delete_tree" | "index_tree", path)
Op = tuple[str, bytes]


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
        self.store = store
        self.types = types
        self.embedder = embedder
        # documents are embedded there when given (embed.py: why), queries always here
        self.embed_worker = embed_worker
        self.schema = build_schema()
        # Per scope, in order of arrival: path -> latest file change, plus folder changes.
        self._pending: dict[Scope, dict[bytes, str]] = {}
        self._trees: dict[Scope, list[Op]] = {}
        self._failures: dict[Scope, int] = {}
        self._stale: set[Scope] = set()  # changes given up on: reconcile these scopes
        # One lock per scope: a commit of one scope never waits for another's (a flood of
        # folder moves by one caller cannot hold up another's read-your-writes).
        self._locks: dict[Scope, trio.Lock] = {}
        self._db_lock = threading.Lock()  # manifest writes from several worker threads
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(4)  # worker threads applying changes
        self._ready = trio.Event()  # set once the start-up reconcile is done
        self._backfill = trio.Event()  # entries may be waiting for their vectors
        self._open_db()
        self.shards = Shards(data, self.schema)
        db_path = str(self.data / "state" / "manifest.sqlite")
        self.vectors = Vectors(db_path, embedder.dim) if embedder is not None else None

    # -- opening --------------------------------------------------------------
    def _open_db(self) -> None:
        root = layout.index_root(self.data)
        root.mkdir(parents=True, exist_ok=True)
        # Writers open lazily per scope, so Tantivy's own lock cannot tell that a daemon
        # has this index: one lock for the whole index, held while this object lives.
        self._lockfile = open(self.data / "state" / "index.lock", "wb")  # noqa: SIM115
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise IndexBusy(f"the index in {root} is in use by another process") from None
        version_file = root / "memfs-schema"
        fresh = not version_file.exists() or version_file.read_text().strip() != SCHEMA_VERSION
        if fresh:  # derived data: a schema change rebuilds it
            for p in root.iterdir():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            version_file.write_text(SCHEMA_VERSION + "\n")
        self.db = sqlite3.connect(str(self.data / "state" / "manifest.sqlite"), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, mtime INTEGER, size INTEGER)"
        )
        self.db.execute(CREATE_VECTORS)
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        if fresh:
            self.db.execute("DELETE FROM manifest")
        # Vectors made by another embedder (or none) are dropped and made again in the
        # background (run_backfill), with progress in the log.
        model = self.embedder.id if self.embedder is not None else "none"
        row = self.db.execute("SELECT v FROM meta WHERE k = 'embedder'").fetchone()
        if fresh or row is None or row[0] != model:
            self.db.execute("DELETE FROM vectors")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (model,))
            if row is not None and row[0] != model:
                log.info("index: embedder changed from %s to %s: entries are embedded again", row[0], model)
        self.db.commit()

    def close(self) -> None:
        if self.embed_worker is not None:
            self.embed_worker.close()
        self.shards.close()
        if self.vectors is not None:
            self.vectors.close()
        self.db.close()
        self._lockfile.close()

    # -- queueing changes (called from handlers: cheap, no I/O) -----------------
    def _queue(self, scope: Scope, path: bytes, what: str) -> None:
        q = self._pending.setdefault(scope, {})
        q.pop(path, None)  # keep arrival order: the latest change of a path goes last
        q[path] = what
        self._wake.set()

    def touch(self, scope: Scope, path: bytes) -> None:
        if is_entry(path):
            self._queue(scope, path, "index")

    def remove(self, scope: Scope, path: bytes) -> None:
        if is_entry(path):
            self._queue(scope, path, "delete")

    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> None:
        if not is_dir:
            self.remove(src, src_path)
            self.touch(dst, dst_path)
            return
        # Files queued before the move are applied first, under their old paths.
        self._trees.setdefault(src, []).append(("delete_tree", src_path))
        self._trees.setdefault(dst, []).append(("index_tree", dst_path))
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

    def _lock(self, scope: Scope) -> trio.Lock:
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = trio.Lock()
        return lock

    def _requeue(self, scope: Scope, ops: list[Op]) -> None:
        """Put back a batch that failed, behind nothing newer of the same path."""
        newer = self._pending.get(scope, {})
        files = {p: w for w, p in ops if w in ("index", "delete") and p not in newer}
        self._pending[scope] = {**files, **newer}
        trees = [op for op in ops if op[0] in ("delete_tree", "index_tree")]
        if trees:
            self._trees[scope] = trees + self._trees.get(scope, [])

    def pending_count(self) -> int:
        return sum(len(q) for q in self._pending.values()) + sum(len(t) for t in self._trees.values())

    # -- applying them --------------------------------------------------------
    async def run_committer(self) -> None:
        delay = COMMIT_DELAY
        while True:
            if not self.pending_count() and not self._stale:
                await self._wake.wait()
            self._wake = trio.Event()  # only the committer resets it: flush() must not strand it
            await trio.sleep(delay)
            try:
                await self.flush(limit=MAX_BATCH)
                if self._stale:
                    await self.reconcile_stale()
                delay = COMMIT_DELAY
            except IndexUnavailable:
                delay = min(delay * 2, MAX_BACKOFF)  # back off while the disk is full

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
        await self._ready.wait()  # the start-up reconcile goes first
        # A scope being applied right now counts too: its changes are not visible yet.
        busy = {s for s, lock in self._locks.items() if lock.locked()}
        queued = self._pending.keys() | self._trees.keys() | busy
        targets = sorted(queued, key=str) if scopes is None else [s for s in scopes if s in queued]
        failed = {}
        for scope in targets:
            async with self._lock(scope):  # taken under the lock: a scope's changes stay in order
                ops = self._take(scope, limit)
                if not ops:
                    continue
                # Taken off the queue, a batch is applied whatever happens to this task: a
                # cancellation (unmount) before the thread starts would lose it.
                with trio.CancelScope(shield=True):
                    error = await trio.to_thread.run_sync(self._apply_one, scope, ops, limiter=self._limiter)
                if error is not None:
                    failed[scope] = error
                    self._give_up_or_retry(scope, ops, error)
        if failed:
            raise IndexUnavailable(", ".join(f"{s}: {e}" for s, e in failed.items()))

    def _apply(self, batch: dict[Scope, list[Op]], embed: bool = True) -> dict[Scope, str]:
        """Apply each scope's changes (in this thread); {scope: error} for those that failed."""
        failed = {}
        for scope, ops in batch.items():
            error = self._apply_one(scope, ops, embed)
            if error is not None:
                failed[scope] = error
        return failed

    def _apply_one(self, scope: Scope, ops: list[Op], embed: bool = True) -> str | None:
        """Apply and commit one scope's changes; the error if that failed (rolled back).
        `embed`: make the entries' vectors now (false: leave them to the backfill)."""
        t0 = time.perf_counter()
        try:
            self._apply_scope(scope, ops, embed)
        except Exception as e:  # e.g. ENOSPC under DATA/: this scope only
            shard = self.shards.get(scope)
            if shard is not None and shard.writer is not None:
                try:
                    shard.writer.rollback()
                except Exception:  # unusable after an I/O error: drop it, a new one opens next time
                    self.shards.drop_writer(shard)
            return str(e) or type(e).__name__
        log.debug("index: %s: %d changes in %.1f ms", scope, len(ops), (time.perf_counter() - t0) * 1e3)
        return None

    def _give_up_or_retry(self, scope: Scope, ops: list[Op], error: str) -> None:
        """After a failed commit (on the loop): keep the changes for a retry, or after
        MAX_FAILURES leave the scope to a reconcile, so nothing is lost and no poisoned
        change is retried forever."""
        n = self._failures[scope] = self._failures.get(scope, 0) + 1
        if n < MAX_FAILURES:
            log.warning("index: %s: commit failed (%s); %d changes kept for a retry", scope, error, len(ops))
            self._requeue(scope, ops)
        else:
            log.error(
                "index: %s: commit failed %d times (%s); left to a reconcile of the scope", scope, n, error
            )
            self._failures.pop(scope, None)
            self._stale.add(scope)

    def _apply_scope(self, scope: Scope, ops: list[Op], embed: bool) -> None:
        shard = self.shards.get(scope, create=True)
        w = self.shards.writer(shard)
        try:
            self._write_scope(scope, shard, w, ops, embed)
        finally:
            self.shards.release(shard)
        self.shards.recycle(shard)

    def _write_scope(self, scope: Scope, shard: Shard, w, ops: list[Op], embed: bool) -> None:
        """Folder deletes first, in order; then each file once, as it is on disk now. A
        folder moved back and forth 1,000 times in one batch indexes its entries once."""
        rows: list[tuple[str, tuple]] = []
        files: dict[bytes, str] = {}
        trees_deleted: set[bytes] = set()
        for what, path in ops:
            if what == "delete_tree":
                if path in trees_deleted:
                    continue  # every delete stays in Tantivy's writer until it is closed
                trees_deleted.add(path)
                shard.deletes += 1
                w.delete_documents_by_term("dirs", path_text(path))
                lo = doc_key(scope, path) + "/"
                for table in ("manifest", "vectors"):
                    rows.append((f"DELETE FROM {table} WHERE key >= ? AND key < ?", (lo, lo[:-1] + "0")))
            elif what == "index_tree":
                with self.store.at(scope) as root:
                    walked = [rel for rel, _st in walk_entries(root, path, [])]
                for rel in walked:
                    files.pop(rel, None)
                    files[rel] = "index"
            else:
                files.pop(path, None)
                files[path] = what
        shard.deletes += len(files)
        parsed: list[tuple[str, entry_mod.Entry]] = []
        for path, what in files.items():
            key = doc_key(scope, path)
            w.delete_documents_by_term("key", key)
            rows.append(("DELETE FROM vectors WHERE key = ?", (key,)))
            row = None
            if what == "index":
                try:
                    row, e = self._add(w, scope, path, key)
                    if row is not None:
                        parsed.append((key, e))
                except Exception:  # one odd file must not keep the others out of the index
                    log.exception("index: cannot index %s/%s; skipped", scope, quote_path(path))
            if row is None:
                rows.append(("DELETE FROM manifest WHERE key = ?", (key,)))
            else:
                rows.append(("INSERT OR REPLACE INTO manifest VALUES (?, ?, ?)", row))
        vecs = self._embed(parsed) if embed else []
        rows += [v.sql() for v in vecs]
        # The index first, then the manifest: a crash in between only re-indexes too much.
        w.commit()
        shard.index.reload()
        self._failures.pop(scope, None)
        self._commit_rows(rows)
        if self.vectors is not None:
            under = [doc_key(scope, p) + "/" for p in trees_deleted]
            self.vectors.patch(scope, vecs, [doc_key(scope, p) for p in files], under)

    def _embed(self, parsed: list[tuple[str, entry_mod.Entry]]) -> list[Row]:
        if self.embedder is None or not parsed:
            return []
        texts = [embed_text(e) for _key, e in parsed]
        if self.embed_worker is not None and len(texts) > WORKER_MIN_TEXTS:
            vecs = self.embed_worker.call(embed_in_worker, texts)
        else:
            vecs = self.embedder.embed(texts)
        return [Row(key, e.type, tuple(e.tags), v) for (key, e), v in zip(parsed, vecs, strict=True)]

    def _add(self, w, scope: Scope, path: bytes, key: str):
        """Index one file as it is on disk now: (its manifest row, the parsed entry), or
        (None, None) if it is gone, not a regular file, or cannot be read (logged: a
        reconcile tries again)."""
        read = self._read(scope, path)
        if read is None:
            return None, None
        st, data = read
        e = entry_mod.parse(data, self.types)
        w.add_document(self._document(scope, path, key, st, e))
        return (key, st.st_mtime_ns, st.st_size), e

    def _read(self, scope: Scope, path: bytes) -> tuple[os.stat_result, bytes] | None:
        try:
            fd = self.store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("index: cannot open %s/%s: %s; skipped", scope, quote_path(path), e)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            data = os.read(fd, min(st.st_size, MAX_INDEXED_BYTES)) if st.st_size else b""
            if st.st_size > len(data):
                data = _head_past_frontmatter(fd, data, min(st.st_size, self.store.max_file_bytes))
        except OSError as e:
            log.warning("index: cannot read %s/%s: %s; skipped", scope, quote_path(path), e)
            return None
        finally:
            os.close(fd)
        return st, data

    def _document(self, scope: Scope, path: bytes, key: str, st: os.stat_result, e: entry_mod.Entry):
        body = e.body[:MAX_BODY_CHARS]
        relpath = path_text(path)
        if entry_mod.is_index(relpath):
            e.problems = []  # an index has no frontmatter by design: nothing to report
        doc = tantivy.Document(
            key=key,
            scope=str(scope),
            relpath=relpath,
            type=e.type,
            name=e.name,
            description=e.description,
            tags=" ".join(e.tags),
            body=body,
            stem="\n".join((e.name, e.description, " ".join(e.tags), e.extra, body)),
            mtime=st.st_mtime_ns,
        )
        for d in folders(path):
            doc.add_text("dirs", d)
        for t in e.tags:
            doc.add_text("tag", t)
        for p in e.problems:
            doc.add_text("problems", p)
        return doc

    # -- vectors for entries indexed without them ---------------------------------
    async def reconciled(self) -> None:
        """Return once the start-up reconcile is done (searches wait for the same)."""
        await self._ready.wait()

    async def run_backfill(self) -> None:
        """Embed what the index holds without vectors: everything after the embedder
        changed, and what a reconcile indexed (it leaves embedding to this, so a first
        mount answers keyword searches as soon as keyword indexing is done)."""
        if self.embedder is None:
            return
        await self._ready.wait()
        while True:
            self._backfill = trio.Event()  # a reconcile from now on asks for another pass
            await self._backfill_all()
            await self._backfill.wait()

    async def _backfill_all(self) -> None:
        todo = await trio.to_thread.run_sync(self._missing_count, limiter=self._limiter)
        if not todo:
            return
        log.info("index: embedding %d entries with %s", todo, self.embedder.id)
        done, t0, last, after = 0, time.monotonic(), time.monotonic(), ""
        while True:  # one pass in key order (what is missing behind it waits for the next pass)
            keys = await trio.to_thread.run_sync(self._missing, after, BACKFILL_SLICE, limiter=self._limiter)
            if not keys:
                break
            after = keys[-1]
            by_scope: dict[Scope, list[bytes]] = {}
            for key in keys:
                scope_name, path = split_key(key)
                by_scope.setdefault(Scope.parse(scope_name), []).append(path)
            for scope, paths in by_scope.items():
                async with self._lock(scope):  # a commit of this scope never interleaves
                    await trio.to_thread.run_sync(self._embed_paths, scope, paths, limiter=self._limiter)
                done += len(paths)
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                log.info("index: embedding: %d of %d entries done", done, todo)
        log.info("index: embedded %d entries in %.1f s", done, time.monotonic() - t0)

    def _missing_count(self) -> int:
        with self._db_lock:
            return self.db.execute(f"SELECT count(*) {_MISSING}").fetchone()[0]

    def _missing(self, after: str, limit: int) -> list[str]:
        q = f"SELECT m.key {_MISSING} AND m.key > ? ORDER BY m.key LIMIT ?"
        with self._db_lock:
            return [k for (k,) in self.db.execute(q, (after, limit))]

    def _embed_paths(self, scope: Scope, paths: list[bytes]) -> None:
        """Vectors for entries as they are on disk now. One that cannot be read gets a
        zero vector (it matches nothing), so the backfill ends; its next change re-embeds."""
        keys = [doc_key(scope, path) for path in paths]
        with self._db_lock:  # dropped since they were listed: nothing to embed
            q = f"SELECT key FROM manifest WHERE key IN ({','.join('?' * len(keys))})"
            indexed = {k for (k,) in self.db.execute(q, keys)}
        parsed, empty = [], []
        for path, key in zip(paths, keys, strict=True):
            if key not in indexed:
                continue
            read = self._read(scope, path)
            if read is None:
                empty.append(Row(key, "", (), np.zeros(self.embedder.dim, dtype=np.float32)))
            else:
                parsed.append((key, entry_mod.parse(read[1], self.types)))
        vecs = self._embed(parsed) + empty
        self._commit_rows([v.sql() for v in vecs])
        self.vectors.patch(scope, vecs, (), ())

    def _commit_rows(self, rows: list[tuple[str, tuple]]) -> None:
        """Run manifest/vector statements as one transaction (all or none)."""
        with self._db_lock:
            try:
                for sql, args in rows:
                    self.db.execute(sql, args)
                self.db.commit()
            except Exception:
                self.db.rollback()
                raise

    # -- reconcile: the index brought in line with the files ----------------------
    async def reconcile(self) -> dict:
        """At start: changed files re-indexed, vanished ones dropped (flushes wait for it).
        Scopes are applied four at a time: a first mount of 1,000 users is 1,000 commits,
        each mostly waiting for its writer's own indexing thread."""
        counts: dict = {}
        try:
            batch, counts = await trio.to_thread.run_sync(self._plan, None, limiter=self._limiter)
            limiter = trio.CapacityLimiter(4)
            failed = counts["failed"]

            async def apply(scope: Scope, ops: list[Op]) -> None:
                if await trio.to_thread.run_sync(self._apply_one, scope, ops, False, limiter=limiter):
                    failed.append(scope)

            async with trio.open_nursery() as nursery:
                for scope, ops in batch.items():
                    nursery.start_soon(apply, scope, ops)
            self._stale.update(failed)
            counts["seconds"] = time.perf_counter() - counts["t0"]
            log.info(
                "index: reconciled %d entries (%d re-indexed, %d dropped) in %.2f s",
                counts["seen"],
                counts["changed"],
                counts["dropped"],
                counts["seconds"],
            )
        except Exception:  # e.g. a full disk: keep serving; searches answer from the old index
            log.exception("index: reconcile failed; the next mount tries again")
        finally:
            self._ready.set()  # searches wait for this, whatever happened
            self._backfill.set()
        return counts

    async def reconcile_stale(self) -> None:
        """Scopes whose changes were given up on: scan them again (raises IndexUnavailable)."""
        for scope in sorted(self._stale, key=str):
            async with self._lock(scope):
                try:
                    counts = await trio.to_thread.run_sync(self._reconcile, [scope], limiter=self._limiter)
                except Exception as e:
                    raise IndexUnavailable(f"reconcile of {scope}: {e}") from e
            if counts["failed"]:
                raise IndexUnavailable(f"reconcile of {scope} failed")
            self._stale.discard(scope)
            self._backfill.set()
            log.info("index: reconciled %s: %d re-indexed", scope, counts["changed"])

    def _reconcile(self, scopes: list[Scope] | None) -> dict:
        batch, counts = self._plan(scopes)
        counts["failed"] = list(self._apply(batch, embed=False))
        counts["seconds"] = time.perf_counter() - counts["t0"]
        return counts

    def _plan(self, scopes: list[Scope] | None) -> tuple[dict[Scope, list[Op]], dict]:
        """What a reconcile must apply: files changed since the manifest, files gone."""
        t0 = time.perf_counter()
        scan = scan_entries(self.data, scopes)
        if scopes is None:
            rows = self.db.execute("SELECT key, mtime, size FROM manifest")
        else:
            rows = []
            for s in scopes:
                lo = f"{s}\0"
                q = "SELECT key, mtime, size FROM manifest WHERE key >= ? AND key < ?"
                rows += self.db.execute(q, (lo, f"{s}\x01")).fetchall()
        known = {k: (m, s) for k, m, s in rows}
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
            log.warning(
                "index: %s: cannot read %d folder(s) (%s...); their entries kept", scope, len(tops), tops[0]
            )
        return batch, {
            "seen": len(scan.found),
            "changed": changed,
            "dropped": dropped,
            "failed": [],
            "t0": t0,
        }

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index everything from scratch (memfs reindex); runs without the daemon."""
        self.shards.close()
        for scope in self.shards.scopes():
            shutil.rmtree(layout.index_dir(self.data, scope))
        self.shards = Shards(self.data, self.schema)
        self.db.execute("DELETE FROM manifest")
        self.db.execute("DELETE FROM vectors")
        self.db.commit()
        if self.vectors is not None:
            self.vectors.forget()
        found = scan_entries(self.data).found
        done = 0
        by_scope: dict[Scope, list[Op]] = {}
        for scope, path, _m, _s in found.values():
            by_scope.setdefault(scope, []).append(("index", path))
        for scope, ops in by_scope.items():
            for i in range(0, len(ops), 5000):
                failed = self._apply({scope: ops[i : i + 5000]})
                if failed:
                    raise IndexUnavailable(failed[scope])
                done += len(ops[i : i + 5000])
                if progress:
                    progress(done, len(found))
        if progress:
            progress(done, len(found))
        return done

    # -- reading --------------------------------------------------------------
    async def entries(self, scopes: list[Scope], limiter: trio.CapacityLimiter | None = None) -> list[Hit]:
        """Every indexed entry in these scopes (no ranking, no snippets)."""
        await self._ready.wait()
        return await trio.to_thread.run_sync(self._entries, scopes, limiter=limiter)

    def _entries(self, scopes: list[Scope]) -> list[Hit]:
        out = []
        for scope in scopes:
            shard = self.shards.get(scope)
            if shard is None:
                continue
            searcher = shard.index.searcher()
            if not searcher.num_docs:
                continue
            result = searcher.search(tantivy.Query.all_query(), limit=searcher.num_docs, count=False)
            out += [_hit(searcher.doc(addr), 0.0, "") for _score, addr in result.hits]
        return out

    async def search(
        self, scopes: list[Scope], query: str, limit: int = 10, limiter: trio.CapacityLimiter | None = None
    ) -> tuple[list[Hit], int]:
        """Ranked hits in `scopes` and how many entries matched. Raises QueryError for a
        query that cannot run as asked (an unknown mode:, semantic search switched off)."""
        await self._ready.wait()
        return await trio.to_thread.run_sync(self._search, scopes, query, limit, limiter=limiter)

    def _search(self, scopes: list[Scope], text: str, limit: int) -> tuple[list[Hit], int]:
        text, filters = split_filters(text[:MAX_QUERY_CHARS])
        mode = mode_of(filters)
        words = words_of(text)
        if mode == "semantic" and self.embedder is None:
            raise QueryError("semantic search is off on this mount (search.embedder: none)")
        if mode == "hybrid" and (self.embedder is None or not words):
            mode = "keyword"  # nothing to embed: a filter-only query lists by keyword rules
        depth = limit + INDEX_SLACK if mode == "keyword" else max(limit, FUSE_DEPTH)
        keyword: list[_Found] = []
        total = 0
        if mode != "semantic":
            keyword, total = self._keyword(scopes, text, filters, depth)
            if mode == "keyword":
                return self._hits(_capped(_index_last(keyword, lambda f: f.key)[:limit]), ("keyword",)), total
        semantic, semantic_total = self._semantic(scopes, words, filters, depth)
        if mode == "semantic":
            semantic = _index_last([f for f in semantic if f[0] >= fusion.SEMANTIC_MIN], lambda f: f[2])
            found = [self._locate(scope, key, score, words) for score, scope, key in semantic[:limit]]
            hits = self._hits(_capped([f for f in found if f is not None]), ("semantic",))
            return hits, semantic_total
        by_key = {f.key: f for f in keyword}
        ranked = fusion.fuse([(f.key, f.score) for f in keyword], [(k, c) for c, _s, k in semantic])
        ranked = _index_last(ranked, lambda r: r[0])
        scope_of = {k: s for _c, s, k in semantic}
        out = []
        for key, score, rankers in ranked:
            f = by_key.get(key) or self._locate(scope_of[key], key, score, words)
            if f is None:
                continue
            f.score = score
            out.append((f, rankers))
            if len(out) == limit:
                break
        # Matches: keyword's, plus what only the semantic side found among its best.
        total += sum(1 for _k, _s, rankers in ranked if rankers == ("semantic",))
        _capped([f for f, _r in out])
        gens: dict = {}
        return [self._hit(f, rankers, gens) for f, rankers in out], max(total, len(out))

    # keyword -------------------------------------------------------------------
    def _keyword(self, scopes: list[Scope], text: str, filters: dict, depth: int) -> tuple[list, int]:
        words, plain = bounded(text)
        try:
            return self._keyword_in(scopes, words, filters, depth)
        except ValueError as e:  # syntax the parser takes but a search refuses (`body:*`)
            if plain:
                raise
            log.debug("index: query %r refused (%s); searched as words", text[:200], e)
            return self._keyword_in(scopes, bounded(text, plain=True)[0], filters, depth)

    def _keyword_in(self, scopes: list[Scope], text: str, filters: dict, depth: int) -> tuple[list, int]:
        found: list[_Found] = []
        total = 0
        for scope, wanted in _targets(scopes, filters):
            shard = self.shards.get(scope)
            if shard is None:
                continue
            must = self._filters(scope, wanted, filters)
            user_query = self._user_query(shard, text)
            if user_query is not None:
                must.append((tantivy.Occur.Must, user_query))
            searcher = shard.index.searcher()
            result = searcher.search(tantivy.Query.boolean_query(must), limit=depth, count=True)
            total += result.count
            found += [_Found(score, scope, addr, searcher, shard, user_query) for score, addr in result.hits]
        found.sort(key=lambda f: (-f.score, str(f.scope)))
        return found[:depth], total

    def _user_query(self, shard: Shard, text: str):
        if not text.strip():
            return None
        return shard.index.parse_query_lenient(text, TEXT_FIELDS, field_boosts=BOOSTS)[0]

    # semantic ------------------------------------------------------------------
    def _semantic(self, scopes: list[Scope], words: str, filters: dict, depth: int):
        """[(cosine, scope, key)] best first, from the caller's scopes only (filters
        applied before ranking), and how many reach fusion.SEMANTIC_MIN."""
        if not words:
            return [], 0
        q = self.embedder.embed([words])[0]
        if not q.any():
            return [], 0
        found = []
        total = 0
        for scope, wanted in _targets(scopes, filters):
            flt = _filter(scope, wanted, filters)
            best, matched = self.vectors.search(scope, q, depth, flt, fusion.SEMANTIC_MIN)
            total += matched
            found += [(c, scope, key) for c, key in best]
        found.sort(key=lambda f: (-f[0], f[2]))
        return found[:depth], total

    def _locate(self, scope: Scope, key: str, score: float, words: str) -> _Found | None:
        """An entry found by its vector, looked up in its scope's index by key (`words`
        mark its snippet)."""
        shard = self.shards.get(scope)
        if shard is None:
            return None
        searcher = shard.index.searcher()
        result = searcher.search(tantivy.Query.term_query(self.schema, "key", key), limit=1)
        if not result.hits:
            return None  # a vector whose entry was dropped in between
        return _Found(score, scope, result.hits[0][1], searcher, shard, self._user_query(shard, words))

    def _filters(self, scope: Scope, wanted: list[str] | None, filters: dict) -> list:
        """Must clauses of one scope's search. Each scope has its own index, so its
        statistics come from what the caller may read; the scope term is a second lock."""
        Occur, Q = tantivy.Occur, tantivy.Query
        must = [(Occur.Must, Q.term_query(self.schema, "scope", str(scope)))]
        if wanted is not None and "" not in wanted:
            paths = []
            for rel in wanted:
                paths.append((Occur.Should, Q.term_query(self.schema, "dirs", rel)))
                paths.append((Occur.Should, Q.term_query(self.schema, "relpath", rel)))
            must.append((Occur.Must, Q.boolean_query(paths)))
        for field in ("type", "tag"):
            for t in filters.get(field, []):
                must.append((Occur.Must, Q.term_query(self.schema, field, t)))
        return must

    # hits ----------------------------------------------------------------------
    def _hits(self, found: list[_Found], rankers: tuple[str, ...]) -> list[Hit]:
        gens: dict = {}
        return [self._hit(f, rankers, gens) for f in found]

    def _hit(self, f: _Found, rankers: tuple[str, ...], gens: dict) -> Hit:
        """`gens`: snippet generators by shard, shared by the hits of one search."""
        doc = f.doc()
        snippet = ""
        if f.user_query is not None:
            gen = gens.get(id(f.shard))
            if gen is None:
                gen = gens[id(f.shard)] = _snippets(f.searcher, f.user_query, self.schema)
            snippet = _markdown_snippet(gen.snippet_from_doc(doc))
        if not snippet:
            snippet = " ".join((doc.get_first("body") or "").split())[:240]
        return _hit(doc, f.score, snippet, rankers)


def _index_last(ranked: list, key_of) -> list:
    """Entries first, then index files (MEMORY.md), each in rank order: an index's hook
    lines repeat its entries' words, so it would otherwise outrank the entries it lists."""
    return sorted(ranked, key=lambda r: entry_mod.is_index(key_of(r).partition("\0")[2]))


def _capped(found: list[_Found]) -> list[_Found]:
    """Scores that never rise down the list: an index file moved after the entries shows
    at most the score of the hit above it."""
    for above, f in zip(found, found[1:], strict=False):
        f.score = min(f.score, above.score)
    return found


class _Found:
    """One candidate of a search: where its document is, and how it scored."""

    def __init__(self, score: float, scope: Scope, addr, searcher, shard: Shard, user_query):
        self.score = score
        self.scope = scope
        self.addr = addr
        self.searcher = searcher
        self.shard = shard
        self.user_query = user_query
        self._doc = None

    def doc(self):
        if self._doc is None:
            self._doc = self.searcher.doc(self.addr)
        return self._doc

    @property
    def key(self) -> str:
        return self.doc().get_first("key") or ""


def _filter(scope: Scope, wanted: list[str] | None, filters: dict) -> Filter | None:
    """The semantic side's type:/tag:/path: filters for one scope (None: none), the same
    rules as the keyword side's Must clauses."""
    types = frozenset(filters.get("type", []))
    tags = frozenset(filters.get("tag", []))
    prefixes = None
    if wanted is not None and "" not in wanted:
        prefixes = tuple(f"{scope}\0{rel}" for rel in wanted)
    if not types and not tags and prefixes is None:
        return None
    return Filter(types, tags, prefixes)


def _targets(scopes: list[Scope], filters: dict) -> list[tuple[Scope, list[str] | None]]:
    """The scopes a search runs in (scope: and path: narrow the caller's), each with the
    folders its path: filters name (None: no path filter)."""
    allowed = list(scopes)
    for f_scope in filters.get("scope", []):
        kind = {"private": Kind.PRIVATE, "team": Kind.TEAM}.get(f_scope)
        allowed = [s for s in allowed if s.kind is kind]
    if "path" not in filters:
        return [(s, None) for s in allowed]
    wanted: dict[Scope, list[str]] = {}
    for prefix in filters["path"]:
        scope, rel = resolve_view_path(prefix, scopes)
        if scope is not None:
            wanted.setdefault(scope, []).append(rel)
    return [(s, wanted[s]) for s in allowed if s in wanted]


def _snippets(searcher, query, schema):
    gen = tantivy.SnippetGenerator.create(searcher, query, schema, "body")
    gen.set_max_num_chars(240)
    return gen


def _hit(doc, score: float, snippet: str, rankers: tuple[str, ...] = ()) -> Hit:
    return Hit(
        scope=Scope.parse(doc.get_first("scope") or ""),
        relpath=doc.get_first("relpath") or "",
        score=float(score),
        name=doc.get_first("name") or "",
        type=doc.get_first("type") or "",
        description=doc.get_first("description") or "",
        snippet=snippet,
        mtime_ns=doc.get_first("mtime") or 0,
        problems=doc.get_all("problems"),
        rankers=rankers,
    )


def _markdown_snippet(snippet) -> str:
    html = snippet.to_html()
    if not html:
        return ""
    text = html.replace("<b>", "**").replace("</b>", "**")
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(ent, ch)
    return " ".join(text.split())
