"""Applying a scope's changes: its Tantivy shard, then its manifest and vector rows.

Runs in worker threads, one per scope at a time (the scope's lock is the caller's). A
file is read as it is on disk when its change is applied, so a burst of writes to one
file indexes it once. One file that cannot be indexed is logged and skipped; a commit
that fails is rolled back and reported, for the committer to retry.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import re
import stat
import time

import tantivy

from .. import entry as entry_mod
from ..background import NicedProcess
from ..names import quote_path
from ..policy import Scope
from ..store import Store
from .embed import Embedder, embed_in_worker, embed_text
from .manifest import Batch, Manifest
from .scan import walk_entries
from .schema import MAX_BODY_CHARS, MAX_INDEXED_BYTES, doc_key, folders, path_text
from .shards import Shard, Shards
from .vectors import Row, Vectors

log = logging.getLogger("memfs.index")


# One queued change of a scope: ("index" | "delete" | "delete_tree" | "index_tree", path).
# A file's "index" and "delete" are applied alike, as the file is on disk then (_sort_ops).
Op = tuple[str, bytes]

# The line that closes a frontmatter, as python-frontmatter's splitter reads it.
_FM_END = re.compile(rb"\n-{3,}[ \t\r]*(?:\n|$)")


class Writer:
    def __init__(
        self,
        store: Store,
        shards: Shards,
        manifest: Manifest,
        vectors: Vectors | None,
        types: tuple[str, ...],
        embedder: Embedder | None,
        embed_worker: NicedProcess | None,
    ):
        self.store = store
        self.shards = shards
        self.manifest = manifest
        self.vectors = vectors
        self.types = types
        self.embedder = embedder
        # documents are embedded there when given (embed.py: why), queries always here
        self.embed_worker = embed_worker
        self._failures: dict[Scope, int] = {}  # failed commits of a scope since one landed

    def failed(self, scope: Scope) -> int:
        """Count a failed commit of the scope; how many failed since one landed."""
        n = self._failures[scope] = self._failures.get(scope, 0) + 1
        return n

    def forgive(self, scope: Scope) -> None:
        """Start counting the scope's failures afresh (its changes were given up on)."""
        self._failures.pop(scope, None)

    def boosted(self) -> contextlib.AbstractContextManager:
        """The embed worker at normal niceness while a caller waits on a batch: its vectors
        come before the batch is visible, and the committer's own batches leave it on idle
        cores (NicedProcess.boosted)."""
        return self.embed_worker.boosted() if self.embed_worker is not None else contextlib.nullcontext()

    def apply(self, batch: dict[Scope, list[Op]], embed: bool = True) -> dict[Scope, str]:
        """Apply each scope's changes (in this thread); {scope: error} for those that failed."""
        failed = {}
        for scope, ops in batch.items():
            error = self.apply_one(scope, ops, embed)
            if error is not None:
                failed[scope] = error
        return failed

    def apply_one(self, scope: Scope, ops: list[Op], embed: bool = True) -> str | None:
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
        log.debug("%s: %d changes in %.1f ms", scope, len(ops), (time.perf_counter() - t0) * 1e3)
        return None

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
        rows = Batch()
        files, trees_deleted = self._sort_ops(scope, shard, w, ops, rows)
        parsed = self._write_files(scope, shard, w, files, rows)
        vecs = self.embed(parsed) if embed else []
        rows.put_vectors(vecs)
        # The index first, then the manifest: a crash in between only re-indexes too much.
        w.commit()
        shard.reload()
        self._failures.pop(scope, None)
        self.manifest.commit(rows)
        if self.vectors is not None:
            under = [doc_key(scope, p) + "/" for p in trees_deleted]
            self.vectors.patch(scope, vecs, [doc_key(scope, p) for p in files], under)

    def _sort_ops(
        self, scope: Scope, shard: Shard, w, ops: list[Op], rows: Batch
    ) -> tuple[dict[bytes, None], set[bytes]]:
        """Delete the folders the ops delete (now); the files left to write, and the
        folders deleted. Every file is written as it is on disk now, whatever was queued
        for it ("index" of a file gone drops it): an rm queued before a folder rename put
        a new file at that path must not drop the new one (the rm and the rename arrive in
        that order, but the rename's folder ops come first in a batch)."""
        files: dict[bytes, None] = {}  # in the order of their last change
        trees_deleted: set[bytes] = set()
        for what, path in ops:
            if what == "delete_tree":
                if path in trees_deleted:
                    continue  # every delete stays in Tantivy's writer until it is closed
                trees_deleted.add(path)
                shard.deletes += 1
                w.delete_documents_by_term("dirs", path_text(path))
                rows.drop_below(doc_key(scope, path) + "/")
                continue
            changed = [path]
            if what == "index_tree":
                with self.store.at(scope) as root:
                    changed = [rel for rel, _st in walk_entries(root, path, [])]
            for rel in changed:
                files.pop(rel, None)
                files[rel] = None
        return files, trees_deleted

    def _write_files(
        self, scope: Scope, shard: Shard, w, files: dict[bytes, None], rows: Batch
    ) -> list[tuple[str, entry_mod.Entry]]:
        """Each file's old document out, its new one in (none if it is gone); the entries
        parsed."""
        shard.deletes += len(files)
        parsed: list[tuple[str, entry_mod.Entry]] = []
        for path in files:
            key = doc_key(scope, path)
            w.delete_documents_by_term("key", key)
            rows.drop_vector(key)
            row = None
            try:
                row, e = self._add(w, scope, path, key)
                if row is not None:
                    parsed.append((key, e))
            except Exception:  # one odd file must not keep the others out of the index
                log.exception("cannot index %s/%s; skipped", scope, quote_path(path))
            if row is None:
                rows.drop(key)
            else:
                rows.put(*row)
        return parsed

    def embed(self, parsed: list[tuple[str, entry_mod.Entry]]) -> list[Row]:
        if self.embedder is None or not parsed:
            return []
        texts = [embed_text(e) for _key, e in parsed]
        # Every batch in the worker (forked from the seed, its model loaded there once): the
        # daemon loading the model for small batches held ~70 MiB more for the mount's life
        # (measured); the worker ends when idle (background.stop_idle_workers).
        if self.embed_worker is not None:
            try:
                vecs = self.embed_worker.call(embed_in_worker, texts)
            except concurrent.futures.BrokenExecutor:
                # Its worker died with the batch in it (killed, out of memory, its seed
                # killed): making vectors changes nothing, so once more, in a new worker,
                # rather than failing the whole commit (t4_privilege's seed kill, in CI).
                vecs = self.embed_worker.call(embed_in_worker, texts)
        else:
            vecs = self.embedder.embed(texts)
        return [Row(key, e.type, tuple(e.tags), v) for (key, e), v in zip(parsed, vecs, strict=True)]

    def embed_paths(self, scope: Scope, paths: list[bytes]) -> None:
        """Vectors for entries as they are on disk now. One that cannot be read gets a
        zero vector (it matches nothing), so the backfill ends; its next change re-embeds."""
        embedder, vectors = self.embedder, self.vectors
        assert embedder is not None and vectors is not None, "the backfill runs only with an embedder"
        import numpy as np  # here: only a mount with an embedder needs it

        keys = [doc_key(scope, path) for path in paths]
        indexed = self.manifest.indexed(keys)  # dropped since they were listed: nothing to embed
        parsed, empty = [], []
        for path, key in zip(paths, keys, strict=True):
            if key not in indexed:
                continue
            read = self._read(scope, path)
            if read is None:
                empty.append(Row(key, "", (), np.zeros(embedder.dim, dtype=np.float32)))
            else:
                parsed.append((key, entry_mod.parse(read[1], self.types)))
        vecs = self.embed(parsed) + empty
        rows = Batch()
        rows.put_vectors(vecs)
        self.manifest.commit(rows)
        vectors.patch(scope, vecs, (), ())

    def _add(self, w, scope: Scope, path: bytes, key: str):
        """Index one file as it is on disk now: (its manifest row, the parsed entry), or
        (None, None) if it is gone, not a regular file, or cannot be read (logged: a
        reconcile tries again)."""
        read = self._read(scope, path)
        if read is None:
            return None, None
        st, data = read
        e = entry_mod.parse(data, self.types)
        w.add_document(_document(scope, path, key, st, e))
        return (key, st.st_mtime_ns, st.st_size), e

    def _read(self, scope: Scope, path: bytes) -> tuple[os.stat_result, bytes] | None:
        try:
            fd = self.store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):  # gone (a folder on its way: a file now)
            return None
        except OSError as e:
            log.warning("cannot open %s/%s: %s; skipped", scope, quote_path(path), e)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            data = os.read(fd, min(st.st_size, MAX_INDEXED_BYTES)) if st.st_size else b""
            if st.st_size > len(data):
                data = _head_past_frontmatter(fd, data, min(st.st_size, self.store.max_file_bytes))
        except OSError as e:
            log.warning("cannot read %s/%s: %s; skipped", scope, quote_path(path), e)
            return None
        finally:
            os.close(fd)
        return st, data


def _document(scope: Scope, path: bytes, key: str, st: os.stat_result, e: entry_mod.Entry):
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
