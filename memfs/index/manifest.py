"""The manifest (DATA/state/manifest.sqlite): every SQL statement of the index lives here.

Table `manifest` remembers the (mtime, size) of each indexed file, so a restart re-indexes
only files that changed while memfs was not looking; `vectors` holds each entry's vector
(float16), written in the same transaction as its manifest row, so a crash leaves both as
they were; `meta` names the embedder that made the vectors.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..policy import Scope

if TYPE_CHECKING:
    import numpy as np  # imported where used: only a mount with an embedder needs it

    from .vectors import Row

log = logging.getLogger("memfs.index")

_CREATE = (
    "CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, mtime INTEGER, size INTEGER)",
    """CREATE TABLE IF NOT EXISTS vectors (
    key TEXT PRIMARY KEY, type TEXT NOT NULL, tags TEXT NOT NULL, vec BLOB NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
)
_MISSING = "FROM manifest m LEFT JOIN vectors v ON v.key = m.key WHERE v.key IS NULL"  # indexed, no vector
_ORPHAN = "FROM vectors v LEFT JOIN manifest m ON m.key = v.key WHERE m.key IS NULL"  # vector, not indexed

Statement = tuple[str, tuple]


def path_of(data: Path) -> Path:
    return data / "state" / "manifest.sqlite"


def _scope_range(scope: Scope) -> tuple[str, str]:
    """The keys of one scope: `<scope>\\0<path>`, so every key of it sorts in [lo, hi)."""
    return f"{scope}\0", f"{scope}\x01"


@dataclass
class Batch:
    """The manifest and vector rows of one commit, in order; Manifest.commit writes them
    in one transaction (all or none)."""

    statements: list[Statement] = field(default_factory=list)

    def drop_below(self, prefix: str) -> None:
        """Every row of the entries below a folder (`prefix` ends with '/')."""
        for table in ("manifest", "vectors"):
            self.statements.append(
                (f"DELETE FROM {table} WHERE key >= ? AND key < ?", (prefix, prefix[:-1] + "0"))
            )

    def drop(self, key: str) -> None:
        self.statements.append(("DELETE FROM manifest WHERE key = ?", (key,)))

    def drop_vector(self, key: str) -> None:
        self.statements.append(("DELETE FROM vectors WHERE key = ?", (key,)))

    def put(self, key: str, mtime: int, size: int) -> None:
        self.statements.append(("INSERT OR REPLACE INTO manifest VALUES (?, ?, ?)", (key, mtime, size)))

    def put_vectors(self, rows: Iterable[Row]) -> None:
        import numpy as np

        for row in rows:
            blob = row.vec.astype(np.float16).tobytes()  # half the disk; cosine barely moves
            args = (row.key, row.type, "\n".join(row.tags), blob)
            self.statements.append(("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", args))


class Manifest:
    """The daemon's connection, shared by the worker threads: every use holds `lock`."""

    def __init__(self, data: Path, fresh: bool, embedder: str):
        """`fresh`: the index was just emptied (a schema change), so is the manifest.
        Vectors made by another embedder (or none) are dropped here and made again in the
        background (the backfill), with progress in the log."""
        self.lock = threading.Lock()
        self._db = sqlite3.connect(str(path_of(data)), check_same_thread=False)
        with self.lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for create in _CREATE:
                self._db.execute(create)
            if fresh:
                self._db.execute("DELETE FROM manifest")
            row = self._db.execute("SELECT v FROM meta WHERE k = 'embedder'").fetchone()
            if fresh or row is None or row[0] != embedder:
                self._db.execute("DELETE FROM vectors")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (embedder,))
                if row is not None and row[0] != embedder:
                    log.info("embedder changed from %s to %s: entries are embedded again", row[0], embedder)
            self._db.commit()

    def close(self) -> None:
        with self.lock:
            self._db.close()

    def known(self, scopes: list[Scope] | None) -> dict[str, tuple[int, int]]:
        """key -> (mtime, size) of what was indexed in these scopes (None: every scope)."""
        with self.lock:
            if scopes is None:
                rows = self._db.execute("SELECT key, mtime, size FROM manifest").fetchall()
            else:
                rows = []
                q = "SELECT key, mtime, size FROM manifest WHERE key >= ? AND key < ?"
                for s in scopes:
                    rows += self._db.execute(q, _scope_range(s)).fetchall()
        return {k: (m, s) for k, m, s in rows}

    def indexed(self, keys: list[str]) -> set[str]:
        """Those of `keys` that are indexed now."""
        q = f"SELECT key FROM manifest WHERE key IN ({','.join('?' * len(keys))})"
        with self.lock:
            return {k for (k,) in self._db.execute(q, keys)}

    def missing_count(self) -> int:
        """How many indexed entries have no vector."""
        with self.lock:
            return self._db.execute(f"SELECT count(*) {_MISSING}").fetchone()[0]

    def missing(self, after: str, limit: int) -> list[str]:
        """Keys of indexed entries without a vector, after `after` in key order."""
        q = f"SELECT m.key {_MISSING} AND m.key > ? ORDER BY m.key LIMIT ?"
        with self.lock:
            return [k for (k,) in self._db.execute(q, (after, limit))]

    def commit(self, batch: Batch) -> None:
        with self.lock:
            try:
                for sql, args in batch.statements:
                    self._db.execute(sql, args)
                self._db.commit()
            except Exception:
                self._db.rollback()
                raise

    def clear(self) -> None:
        """Forget every entry and vector (a rebuild indexes them all again)."""
        with self.lock:
            self._db.execute("DELETE FROM manifest")
            self._db.execute("DELETE FROM vectors")
            self._db.commit()


class VectorRows:
    """A second connection, for loading a scope's vectors: loading a big scope must not
    hold up commits on the daemon's."""

    def __init__(self, path: str):
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def of_scope(self, scope: Scope) -> list[tuple[str, str, tuple[str, ...], np.ndarray]]:
        """(key, type, tags, float16 vector) of a scope's entries, in key order (a scope's
        matrix then builds its sorted keys by appending)."""
        import numpy as np

        with self._lock:
            rows = self._db.execute(
                "SELECT key, type, tags, vec FROM vectors WHERE key >= ? AND key < ? ORDER BY key",
                _scope_range(scope),
            ).fetchall()
        return [
            (key, type_, tuple(tags.split("\n")) if tags else (), np.frombuffer(blob, dtype=np.float16))
            for key, type_, tags, blob in rows
        ]


@dataclass(frozen=True)
class Summary:
    """What memfs doctor compares with the files and the Tantivy indexes."""

    known: dict[str, tuple[int, int]]  # key -> (mtime, size)
    embedder: str  # "none" when no vectors are made (or none were recorded)
    vectors: int
    orphans: int  # vectors of entries no longer indexed


def summary(data: Path) -> Summary:
    """Read only: a mounted daemon may be writing the manifest meanwhile."""
    db = sqlite3.connect(f"file:{path_of(data)}?mode=ro", uri=True)
    try:
        known = {k: (m, s) for k, m, s in db.execute("SELECT key, mtime, size FROM manifest")}
        try:
            row = db.execute("SELECT v FROM meta WHERE k = 'embedder'").fetchone()
            vectors = db.execute("SELECT count(*) FROM vectors").fetchone()[0]
            orphans = db.execute(f"SELECT count(*) {_ORPHAN}").fetchone()[0]
        except sqlite3.Error:  # an index made before semantic search
            row, vectors, orphans = None, 0, 0
    finally:
        db.close()
    return Summary(known, row[0] if row else "none", vectors, orphans)
