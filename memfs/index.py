"""Tantivy index of every *.md entry: incremental, batched, scoped search.

Only the daemon writes it (one IndexWriter per index). Updates are queued by the
filesystem (release/fsync after a write, rename, unlink) and applied in batches in a
worker thread; a search first applies what is pending, so a caller finds what it just
wrote. A manifest (sqlite, DATA/state/) remembers the (mtime, size) of what was indexed,
so a restart re-indexes only files that changed while memfs was not looking.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import tantivy
import trio

from . import entry as entry_mod
from .policy import Kind, Scope
from .store import SCOPE_DIRS, Store

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
COMMIT_DELAY = 0.2  # seconds: updates arriving within this window share one commit
TEXT_FIELDS = ["name", "description", "tags", "body"]
MAX_BODY_CHARS = 1_000_000  # index at most this much text of one entry
MAX_QUERY_CHARS = 64 * 1024


def _schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_text_field("key", stored=True, tokenizer_name="raw")  # "<scope>\0<path>": unique
    b.add_text_field("scope", stored=True, tokenizer_name="raw")  # "private:alice"
    b.add_text_field("owner", stored=True, tokenizer_name="raw")  # the user or team: "alice", "eng"
    b.add_text_field("relpath", stored=True, tokenizer_name="raw")
    b.add_text_field("type", stored=True, tokenizer_name="raw")
    b.add_text_field("tag", stored=False, tokenizer_name="raw")
    b.add_text_field("name", stored=True)
    b.add_text_field("description", stored=True)
    b.add_text_field("tags", stored=True)
    b.add_text_field("body", stored=True)
    b.add_integer_field("mtime", stored=True, fast=True)
    b.add_integer_field("size", stored=True)
    b.add_text_field("problems", stored=True, tokenizer_name="raw")
    return b.build()


def is_entry(path: bytes) -> bool:
    return path.endswith(b".md")


def path_text(path: bytes) -> str:
    """A name as Tantivy can store it: UTF-8 as is; other bytes as "\0x" + hex (names
    cannot hold NUL, so this never collides with a real name)."""
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        return "\0x" + path.hex()


def path_bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:]) if text.startswith("\0x") else text.encode("utf-8")


def display_path(text: str) -> str:
    """A stored path as a person reads it: odd bytes and control characters escaped."""
    raw = path_bytes(text).decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def doc_key(scope: Scope, path: bytes) -> str:
    return f"{scope}\0{path_text(path)}"


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


class IndexUnavailable(Exception):
    """The index could not be updated (disk full, I/O error); the changes stay queued."""


# A queued folder change: ("delete_tree" | "index_tree", scope, path). Single files are
# queued as {(scope, path): "index" | "delete"}.
Change = tuple[str, Scope, bytes]


class Index:
    def __init__(self, data: Path, store: Store, types: tuple[str, ...] = entry_mod.DEFAULT_TYPES):
        self.store = store
        self.types = types
        self.dir = data / "index"
        self.schema = _schema()
        self._pending: dict[tuple[Scope, bytes], str] = {}
        self._trees: list[Change] = []
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self._ready = trio.Event()  # set once the start-up reconcile is done
        self._open(data)

    # -- opening --------------------------------------------------------------
    def _open(self, data: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        version_file = self.dir / "memfs-schema"
        fresh = not version_file.exists() or version_file.read_text().strip() != SCHEMA_VERSION
        if fresh:
            for p in self.dir.iterdir():  # derived data: a schema change rebuilds it
                if p.is_file():
                    p.unlink()
        self.index = tantivy.Index(self.schema, path=str(self.dir), reuse=not fresh)
        version_file.write_text(SCHEMA_VERSION + "\n")
        self.writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        self.db = sqlite3.connect(str(data / "state" / "manifest.sqlite"), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, mtime INTEGER, size INTEGER)"
        )
        if fresh:
            self.db.execute("DELETE FROM manifest")
        self.db.commit()

    def close(self) -> None:
        try:
            self.writer.wait_merging_threads()
        except Exception:  # the writer is gone after this anyway
            log.exception("index: waiting for merges failed")
        self.db.close()

    # -- queueing changes (called from handlers: cheap, no I/O) -----------------
    def touch(self, scope: Scope, path: bytes) -> None:
        if is_entry(path):
            self._pending[(scope, path)] = "index"
            self._wake.set()

    def remove(self, scope: Scope, path: bytes) -> None:
        if is_entry(path):
            self._pending[(scope, path)] = "delete"
            self._wake.set()

    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> None:
        if not is_dir:
            self.remove(src, src_path)
            self.touch(dst, dst_path)
            return
        self._trees.append(("delete_tree", src, src_path))
        self._trees.append(("index_tree", dst, dst_path))
        self._wake.set()

    # -- applying them --------------------------------------------------------
    async def run_committer(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delay = COMMIT_DELAY
        while True:
            await self._wake.wait()
            self._wake = trio.Event()  # only the committer resets it: flush() must not strand it
            await trio.sleep(delay)
            try:
                await self.flush()
                delay = COMMIT_DELAY
            except IndexUnavailable:
                delay = min(delay * 2, 30.0)  # back off while the disk is full

    def _rollback(self) -> None:
        try:
            self.writer.rollback()
            self.db.rollback()
        except Exception as e:  # the writer may be unusable after an I/O error: make a new one
            log.warning("index: rollback failed (%s); reopening the writer", e)
            self.writer = self.index.writer(heap_size=64_000_000, num_threads=1)

    async def flush(self, extra: Iterable[tuple[Scope, bytes]] = ()) -> None:
        """Make every queued change (and `extra` paths) visible to searches."""
        for scope, path in extra:
            self.touch(scope, path)
        async with self._lock:
            if not self._pending and not self._trees:
                return
            pending, self._pending = self._pending, {}
            trees, self._trees = self._trees, []
            try:
                await trio.to_thread.run_sync(self._apply, pending, trees, limiter=self._limiter)
            except Exception as e:  # e.g. ENOSPC under DATA/: keep the changes for the next try
                log.error("index: commit failed, will retry: %s", e)
                await trio.to_thread.run_sync(self._rollback, limiter=self._limiter)
                pending.update(self._pending)
                self._pending = pending
                self._trees = trees + self._trees
                raise IndexUnavailable(str(e)) from e

    def _apply(self, pending: dict, trees: list[Change]) -> None:
        t0 = time.perf_counter()
        for kind, scope, path in trees:
            if kind == "delete_tree":
                prefix = doc_key(scope, path) + "/"
                q = tantivy.Query.regex_query(self.schema, "key", re.escape(prefix) + ".*")
                self.writer.delete_documents_by_query(q)
                self.db.execute("DELETE FROM manifest WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
            else:
                for rel in self._walk(scope, path):
                    pending[(scope, rel)] = "index"
        for (scope, path), what in pending.items():
            key = doc_key(scope, path)
            self.writer.delete_documents_by_term("key", key)
            if what == "index":
                try:
                    row = self._add(scope, path, key)
                except Exception:  # one odd file must not keep the others out of the index
                    log.exception("index: cannot index %s/%r", scope, path)
                    row = None
                if row is not None:
                    self.db.execute("INSERT OR REPLACE INTO manifest VALUES (?, ?, ?)", row)
                    continue
            self.db.execute("DELETE FROM manifest WHERE key = ?", (key,))
        # The index first, then the manifest: a crash in between only re-indexes too much.
        self.writer.commit()
        self.db.commit()
        self.index.reload()
        log.debug("index: applied %d changes in %.1f ms", len(pending), (time.perf_counter() - t0) * 1000)

    def _add(self, scope: Scope, path: bytes, key: str) -> tuple[str, int, int] | None:
        """Index one file as it is on disk now; None if it is gone or not a regular file."""
        try:
            fd = self.store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            data = os.read(fd, min(st.st_size, self.store.max_file_bytes) + 1) if st.st_size else b""
        finally:
            os.close(fd)
        e = entry_mod.parse(data, self.types)
        doc = tantivy.Document(
            key=key,
            scope=str(scope),
            owner=scope.name,
            relpath=path_text(path),
            type=e.type,
            name=e.name,
            description=e.description,
            tags=" ".join(e.tags),
            body=e.body[:MAX_BODY_CHARS],
            mtime=st.st_mtime_ns,
            size=st.st_size,
        )
        for t in e.tags:
            doc.add_text("tag", t)
        for p in e.problems:
            doc.add_text("problems", p)
        self.writer.add_document(doc)
        return key, st.st_mtime_ns, st.st_size

    def _walk(self, scope: Scope, path: bytes) -> Iterable[bytes]:
        return (rel for rel, _st in walk_entries(self.store.path(scope, b""), path))

    # -- start-up reconcile ---------------------------------------------------
    async def reconcile(self) -> dict:
        """Bring the index in line with the files: changed ones re-indexed, vanished dropped."""
        counts: dict = {}
        try:
            async with self._lock:
                counts = await trio.to_thread.run_sync(self._reconcile, limiter=self._limiter)
            log.info(
                "index: reconciled %d entries (%d re-indexed, %d dropped) in %.2f s",
                counts["seen"],
                counts["changed"],
                counts["dropped"],
                counts["seconds"],
            )
        except Exception:  # e.g. a full disk: keep serving; searches answer from the old index
            log.exception("index: reconcile failed; the next mount tries again")
            await trio.to_thread.run_sync(self._rollback, limiter=self._limiter)
        finally:
            self._ready.set()  # searches wait for this, whatever happened
        return counts

    def _reconcile(self) -> dict:
        t0 = time.perf_counter()
        found = scan_entries(self.store.data)
        known = {k: (m, s) for k, m, s in self.db.execute("SELECT key, mtime, size FROM manifest")}
        pending = {}
        for key, (scope, path, mtime, size) in found.items():
            if known.get(key) != (mtime, size):
                pending[(scope, path)] = "index"
        vanished = [k for k in known if k not in found]
        for key in vanished:
            self.writer.delete_documents_by_term("key", key)
            self.db.execute("DELETE FROM manifest WHERE key = ?", (key,))
        if pending or vanished:
            self._apply(pending, [])
        return {
            "seen": len(found),
            "changed": len(pending),
            "dropped": len(vanished),
            "seconds": time.perf_counter() - t0,
        }

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Index everything from scratch (memfs reindex); runs without the daemon."""
        self.writer.delete_all_documents()
        self.db.execute("DELETE FROM manifest")
        found = scan_entries(self.store.data)
        done = 0
        batch: dict = {}
        for scope, path, _m, _s in found.values():
            batch[(scope, path)] = "index"
            if len(batch) >= 5000:
                self._apply(batch, [])
                done += len(batch)
                batch = {}
                if progress:
                    progress(done, len(found))
        self._apply(batch, [])
        done += len(batch)
        if progress:
            progress(done, len(found))
        return done

    # -- listing --------------------------------------------------------------
    async def entries(self, scopes: list[Scope]) -> list[Hit]:
        """Every indexed entry in these scopes (no ranking, no snippets)."""
        await self._ready.wait()
        return await trio.to_thread.run_sync(self._entries, scopes)

    def _entries(self, scopes: list[Scope]) -> list[Hit]:
        if not scopes:
            return []
        query = self._access_query(scopes)
        searcher = self.index.searcher()
        result = searcher.search(query, limit=max(1, searcher.num_docs), count=False)
        return [self._hit(searcher.doc(addr), 0.0, "") for _score, addr in result.hits]

    def _access_query(self, scopes: list[Scope]):
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "scope", str(s))) for s in scopes]
        )

    @staticmethod
    def _hit(doc, score: float, snippet: str) -> Hit:
        kind, _, name = (doc.get_first("scope") or "").partition(":")
        return Hit(
            scope=Scope(Kind(kind), name),
            relpath=doc.get_first("relpath") or "",
            score=float(score),
            name=doc.get_first("name") or "",
            type=doc.get_first("type") or "",
            description=doc.get_first("description") or "",
            snippet=snippet,
            mtime_ns=doc.get_first("mtime") or 0,
            problems=doc.get_all("problems"),
        )

    # -- searching ------------------------------------------------------------
    async def search(self, scopes: list[Scope], query: str, limit: int = 10) -> tuple[list[Hit], int]:
        await self._ready.wait()
        return await trio.to_thread.run_sync(self._search, scopes, query, limit)

    def _search(self, scopes: list[Scope], text: str, limit: int) -> tuple[list[Hit], int]:
        if not scopes:
            return [], 0
        text = text[:MAX_QUERY_CHARS]
        text, filters = split_filters(text)
        Occur = tantivy.Occur
        must: list = []
        allowed = list(scopes)
        for f_scope in filters.get("scope", []):
            kind = {"private": Kind.PRIVATE, "team": Kind.TEAM}.get(f_scope)
            allowed = [s for s in allowed if s.kind is kind]
        path_clauses = []
        for prefix in filters.get("path", []):
            scope, rel = resolve_view_path(prefix, scopes)
            if scope is None:
                allowed = []
                continue
            sub = [(Occur.Must, tantivy.Query.term_query(self.schema, "scope", str(scope)))]
            if rel:
                sub.append(
                    (Occur.Must, tantivy.Query.regex_query(self.schema, "relpath", re.escape(rel) + ".*"))
                )
            path_clauses.append((Occur.Should, tantivy.Query.boolean_query(sub)))
        if not allowed:
            return [], 0
        # The access filter is a Must clause inside the query: nothing outside it can match.
        must.append((Occur.Must, self._access_query(allowed)))
        if path_clauses:
            must.append((Occur.Must, tantivy.Query.boolean_query(path_clauses)))
        for t in filters.get("type", []):
            must.append((Occur.Must, tantivy.Query.term_query(self.schema, "type", t)))
        for t in filters.get("tag", []):
            must.append((Occur.Must, tantivy.Query.term_query(self.schema, "tag", t)))
        user_query = None
        if text.strip():
            user_query, _errors = self.index.parse_query_lenient(
                text, TEXT_FIELDS, field_boosts={"name": 3.0, "description": 2.0, "tags": 2.0}
            )
            must.append((Occur.Must, user_query))
        query = tantivy.Query.boolean_query(must)
        searcher = self.index.searcher()
        result = searcher.search(query, limit=limit, count=True)
        snippets = None
        if user_query is not None:
            snippets = tantivy.SnippetGenerator.create(searcher, user_query, self.schema, "body")
            snippets.set_max_num_chars(240)
        hits = []
        for score, addr in result.hits:
            doc = searcher.doc(addr)
            snippet = ""
            if snippets is not None:
                snippet = _markdown_snippet(snippets.snippet_from_doc(doc))
            if not snippet:
                body = (doc.get_first("body") or "").strip()
                snippet = " ".join(body.split())[:240]
            hits.append(self._hit(doc, score, snippet))
        return hits, result.count


def walk_entries(root: bytes, top: bytes = b""):
    """(path relative to root, stat) of every *.md file at or below root/top; no symlinks."""
    stack = [top]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(root + b"/" + rel if rel else root)
        except OSError:
            continue
        with it:
            for e in it:
                child = rel + b"/" + e.name if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append(child)
                elif is_entry(e.name) and e.is_file(follow_symlinks=False):
                    yield child, e.stat(follow_symlinks=False)


def scan_entries(data: Path) -> dict[str, tuple[Scope, bytes, int, int]]:
    """Every *.md file under DATA/private and DATA/teams: key -> (scope, path, mtime_ns, size)."""
    found = {}
    for kind, sub in SCOPE_DIRS.items():
        base = data / os.fsdecode(sub)
        if not base.is_dir():
            continue
        for name in os.listdir(base):
            scope = Scope(kind, name)
            for child, st in walk_entries(os.fsencode(base / name)):
                found[doc_key(scope, child)] = (scope, child, st.st_mtime_ns, st.st_size)
    return found


_FILTER_RE = re.compile(r'(?:^|\s)(type|scope|path|tag):("[^"]*"|\S+)')


def split_filters(text: str) -> tuple[str, dict[str, list[str]]]:
    """Pull memfs's own filters (type: scope: path: tag:) out of a query."""
    filters: dict[str, list[str]] = {}

    def take(m: re.Match) -> str:
        filters.setdefault(m.group(1), []).append(m.group(2).strip('"'))
        return " "

    return _FILTER_RE.sub(take, text), filters


def resolve_view_path(prefix: str, scopes: list[Scope]) -> tuple[Scope | None, str]:
    """A path prefix as the caller sees it -> (scope, relative prefix)."""
    prefix = prefix.lstrip("/")
    private = next((s for s in scopes if s.kind is Kind.PRIVATE), None)
    team = next((s for s in scopes if s.kind is Kind.TEAM), None)
    if prefix == "team" or prefix.startswith("team/"):
        return team, prefix[5:]
    if prefix.startswith(".memfs/users/"):
        owner, _, rel = prefix[len(".memfs/users/") :].partition("/")
        grant = Scope(Kind.PRIVATE, owner)
        return (grant if grant in scopes and grant != private else None), rel
    return private, prefix


def _markdown_snippet(snippet) -> str:
    html = snippet.to_html()
    if not html:
        return ""
    text = html.replace("<b>", "**").replace("</b>", "**")
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(ent, ch)
    return " ".join(text.split())
