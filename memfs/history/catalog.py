"""A scope's history catalog (SQLite, inside its git directory): every version by path,
the change log, the folders that have history, and what the branch holds now.

Derived from the commits, like the search index from the files: `catch_up` reads the
commits it has not seen (memfs's own, a remote's, an admin's) and records them, so a lost
catalog is rebuilt from the repository. Listing a path's versions or the latest changes
is one indexed query, whatever the number of commits.

A blob sync refused (a secret a remote pushed, see sync/vet.py) is withheld: no version of
it is recorded, whichever commit holds it. That verdict is not derived from the commits, so
it survives a rebuild of the rest.
"""

from __future__ import annotations

import builtins  # `set` in Catalog's signatures is its method; builtins.set is the type
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2

from ..names import clamp_time, host_of, label, quote_path, unquote_path, version_name, via
from .gitrepo import Repo, blob_id, safe_path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS nodes(
    id INTEGER PRIMARY KEY AUTOINCREMENT, path BLOB UNIQUE NOT NULL,
    parent BLOB NOT NULL, name BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent);
CREATE TABLE IF NOT EXISTS versions(
    id INTEGER PRIMARY KEY AUTOINCREMENT, path BLOB NOT NULL, name BLOB NOT NULL, time INTEGER NOT NULL,
    user TEXT NOT NULL, op TEXT NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS versions_path ON versions(path, name);
CREATE INDEX IF NOT EXISTS versions_time ON versions(time);
CREATE TABLE IF NOT EXISTS log(
    id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, user TEXT NOT NULL, op TEXT NOT NULL,
    path BLOB NOT NULL, new_path BLOB);
CREATE INDEX IF NOT EXISTS log_time ON log(time);
CREATE TABLE IF NOT EXISTS withheld(blob TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS current(
    path BLOB PRIMARY KEY, blob BLOB NOT NULL, mode INTEGER NOT NULL,
    size INTEGER, mtime_ns INTEGER, ino INTEGER) WITHOUT ROWID;
"""

CATALOG_NAME = "memfs-catalog.sqlite"
RENAME_TRAILER = "memfs-rename: "
# A purge (purge.py) leaves this placeholder where each purged blob was, and a record
# commit naming each version purged, '<path> -> <version name>', and each blob id.
PURGED_TEXT = b"memfs: this version was purged from the history (memfs purge)\n"
PURGED_BLOB = blob_id(PURGED_TEXT)
PURGE_TRAILER = "memfs-purged: "
PURGED_BLOB_TRAILER = "memfs-purged-blob: "


def rename_lines(renames: Iterable[tuple[bytes, bytes]], trailer: str = RENAME_TRAILER) -> str:
    return "".join(f"{trailer}{quote_path(a)} -> {quote_path(b)}\n" for a, b in renames)


def parse_renames(message: str, trailer: str = RENAME_TRAILER) -> list[tuple[bytes, bytes]]:
    out = []
    for line in message.splitlines():
        if line.startswith(trailer):
            pair = _split_pair(line[len(trailer) :])
            if pair is not None:
                out.append((unquote_path(pair[0]), unquote_path(pair[1])))
    return out


def _split_pair(text: str) -> tuple[str, str] | None:
    """'<old> -> <new>' where <old> may be quoted (and then hold ' -> ' itself)."""
    if text.startswith('"'):
        i = 1
        while i < len(text) and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        a, rest = text[: i + 1], text[i + 1 :]
        return (a, rest[4:]) if rest.startswith(" -> ") else None
    a, sep, b = text.partition(" -> ")
    return (a, b) if sep else None


@dataclass(frozen=True)
class Version:
    id: int
    path: bytes
    name: bytes
    time: int
    user: str
    op: str
    blob: str
    size: int


@dataclass(frozen=True)
class Change:
    id: int
    time: int
    user: str
    op: str
    path: bytes
    new_path: bytes | None


_VERSION_COLS = "id, path, name, time, user, op, blob, size"


def _create(path: str) -> None:
    """Make a new catalog whole under a temporary name, then link it in: a reader (doctor,
    beside a live daemon) opening the catalog never finds a file without its tables ('no
    such table: versions', CI of stop 34). link, not rename: a catalog another process made
    meanwhile is kept, never replaced by an empty one."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.new"
    try:
        db = sqlite3.connect(tmp)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file's header
            db.executescript(SCHEMA)
            db.commit()
        finally:
            db.close()  # the last connection checkpoints and removes the WAL's files
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def catalog_file(gitdir: Path) -> Path:
    """Where a scope's catalog lives: inside its git directory (git ignores it)."""
    return gitdir / CATALOG_NAME


class Catalog:
    @classmethod
    def of(cls, gitdir: Path) -> Catalog:
        return cls(str(catalog_file(gitdir)))

    @classmethod
    def reading(cls, gitdir: Path) -> Catalog:
        """Read-only, for root's tools (doctor) beside a live daemon: a connection that may
        write would create the WAL's files as root, and the daemon's next write to its own
        catalog failed 'attempt to write a readonly database' (t5_crash, under load)."""
        return cls(str(catalog_file(gitdir)), readonly=True)

    def __init__(self, path: str, readonly: bool = False):
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            if not os.path.exists(path):
                _create(path)
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # the repository is the truth; this is derived
            self.db.executescript(SCHEMA)  # a catalog from an older memfs gains new tables
        self.db.execute("PRAGMA busy_timeout=10000")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta -----------------------------------------------------------------
    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # -- recording commits --------------------------------------------------------
    def catch_up(self, repo: Repo, own: builtins.set[pygit2.Oid] | None = None) -> int:
        """Record every commit on the branch not yet in the catalog; returns how many.
        With `own` (sync, after taking a remote's commits), every commit not in it arrived
        from elsewhere and is attributed as `<author> (via <host>)`."""
        known, head = self.get("head"), repo.head()
        if known and head is not None and str(head) != known and not _contains(repo, head, known):
            self.reset()  # the branch no longer holds what was recorded (rewritten elsewhere)
            known = None
        commits = repo.commits_since(known)
        for c in commits:
            self._record_one(repo, c, own)
        if commits:
            # what the branch holds now: one diff from the last recorded head to this one
            # (not commit by commit: a merge's two lines of history would mix)
            old = repo.get_commit(known).tree_id if known else None
            for path, _before, now in repo.diff(old, head and repo.get_commit(head).tree_id):
                if now is None:
                    self.db.execute("DELETE FROM current WHERE path=?", (path,))
                else:
                    self.db.execute(
                        "INSERT OR REPLACE INTO current(path, blob, mode) VALUES(?,?,?)",
                        (path, now[1], now[0]),
                    )
            self.set("head", str(commits[-1].id) if head is None else str(head))
            self.db.commit()
        return len(commits)

    def reset(self) -> None:
        # not `withheld`: sync's verdicts on arrived blobs, which the commits cannot tell again
        for table in ("nodes", "versions", "log", "current", "meta"):
            self.db.execute(f"DELETE FROM {table}")

    def _record_one(self, repo: Repo, c, own: builtins.set[pygit2.Oid] | None) -> None:
        """Record one commit, or none of it: a commit memfs cannot record (anyone can push
        one) is logged and skipped, and never stops the commits after it."""
        self.db.execute("SAVEPOINT record")
        try:
            self._record(repo, c, own is not None and c.id not in own)
        except Exception as e:  # noqa: BLE001 (a remote's commit is input: whatever it holds)
            self.db.execute("ROLLBACK TO record")
            log.warning("%s: commit %s not recorded: %s", self.path, c.id, str(e)[:200])
        self.db.execute("RELEASE record")

    def _record(self, repo: Repo, c, arrived: bool) -> None:
        parent_tree = c.parents[0].tree_id if c.parents else None
        user, t = self._author(c, arrived)
        changes = _changes(repo, c, parent_tree)
        renames = _renames(c.message, changes)
        for old, new in renames:
            self.db.execute(
                "INSERT INTO log(time, user, op, path, new_path) VALUES(?,?,?,?,?)", (t, user, "R", old, new)
            )
        sources, targets = [old for old, _ in renames], [new for _, new in renames]
        for path, version in parse_renames(c.message, PURGE_TRAILER):  # a purge's record
            self.db.execute(
                "INSERT INTO log(time, user, op, path, new_path) VALUES(?,?,?,?,?)",
                (t, user, "P", path, version),
            )
        seen_nodes: set[bytes] = set()
        added = 0
        for path, old, new in changes:
            if new is not None and self.withheld(new[1]):
                continue  # refused by sync: neither listed nor readable, nor named in the log
            if new is None:
                if not _below_any(path, sources):
                    self._log(t, user, "D", path)
                continue
            came = _below_any(path, targets)
            op = "R" if came else ("A" if old is None else "M")
            if not came:
                self._log(t, user, op, path)
            if new[1] == PURGED_BLOB:
                continue  # a purged version: the change stays in the log, its bytes are gone
            added += self._version(repo, t, user, op, path, new[1])
            self._node(path, seen_nodes)
        self._grow(added)

    def _author(self, c, arrived: bool) -> tuple[str, int]:
        """Who made a commit and when. Names and times in a commit are its author's claim:
        bounded before use."""
        user = label(c.author.raw_name)
        if arrived:
            user = via(user, host_of(c.committer.raw_email))
        t, moved = clamp_time(c.author.time)
        if moved:
            log.warning("%s: commit %s has time %d; kept as %d", self.path, c.id, c.author.time, t)
        return user, t

    def _version(self, repo: Repo, t: int, user: str, op: str, path: bytes, blob: bytes) -> int:
        """Record one version of a path; its size."""
        size = repo.size(pygit2.Oid(raw=blob))
        cur = self.db.execute(
            f"INSERT INTO versions({_VERSION_COLS[4:]}) VALUES(?,?,?,?,?,?,?)",
            (path, b"", t, user, op, blob.hex(), size),
        )
        row = cur.lastrowid
        assert row is not None  # set by the INSERT
        name = version_name(path, t, user, row)
        self.db.execute("UPDATE versions SET name=? WHERE id=?", (name, row))
        return size

    def withhold(self, blobs: Iterable[bytes]) -> None:
        """Never record a version of these blobs (raw ids); committed at once, before the
        branch that holds them moves (a crash in between must not show them)."""
        self.db.executemany("INSERT OR IGNORE INTO withheld(blob) VALUES(?)", ((b.hex(),) for b in blobs))
        self.db.commit()

    def withheld(self, blob: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM withheld WHERE blob=?", (blob.hex(),)).fetchone() is not None

    def version_bytes(self) -> int:
        """Bytes in all versions, kept as a running total: a batch must not scan them all."""
        total = self.get("bytes")
        if total is None:
            total = self.db.execute("SELECT coalesce(sum(size), 0) FROM versions").fetchone()[0]
            self.set("bytes", str(total))
        return int(total)

    def _grow(self, added: int) -> None:
        total = self.get("bytes")
        if total is None:
            self.version_bytes()  # a first count, which sees the rows just added
        elif added:
            self.set("bytes", str(int(total) + added))

    def _log(self, t: int, user: str, op: str, path: bytes) -> None:
        self.db.execute("INSERT INTO log(time, user, op, path) VALUES(?,?,?,?)", (t, user, op, path))

    def _node(self, path: bytes, seen: builtins.set[bytes]) -> None:
        while path and path not in seen:
            seen.add(path)
            parent, _, name = path.rpartition(b"/")
            self.db.execute(
                "INSERT OR IGNORE INTO nodes(path, parent, name) VALUES(?,?,?)", (path, parent, name)
            )
            path = parent

    # -- what the branch holds now (reconcile's stat cache) ----------------------------
    def current(self) -> dict[bytes, tuple[bytes, int, tuple | None]]:
        out = {}
        for path, blob, mode, size, mtime, ino in self.db.execute("SELECT * FROM current"):
            out[path] = (blob, mode, (size, mtime, ino) if size is not None else None)
        return out

    def current_of(self, path: bytes) -> tuple[bytes, int] | None:
        row = self.db.execute("SELECT blob, mode FROM current WHERE path=?", (path,)).fetchone()
        return (row[0], row[1]) if row else None

    def current_under(self, folder: bytes) -> dict[bytes, tuple[bytes, int]]:
        """What the branch holds below a folder: path -> (blob, mode), as current_of."""
        lo, hi = folder + b"/", folder + b"0"  # '0' follows '/': every path below the folder
        rows = self.db.execute("SELECT path, blob, mode FROM current WHERE path>=? AND path<?", (lo, hi))
        return {path: (blob, mode) for path, blob, mode in rows}

    def set_current(self, entries: dict[bytes, tuple[int, bytes] | None]) -> None:
        """What the branch holds for these paths, (mode, raw oid) or None, after a sync."""
        for path, e in entries.items():
            if e is None:
                self.db.execute("DELETE FROM current WHERE path=?", (path,))
            else:
                self.db.execute(
                    "INSERT OR REPLACE INTO current(path, blob, mode) VALUES(?,?,?)", (path, e[1], e[0])
                )
        self.db.commit()

    def holding(self, blobs: builtins.set[bytes]) -> dict[bytes, bytes]:
        """Which of these blobs (raw ids) a file holds now on the branch: blob -> a path."""
        out = {}
        for b in blobs:
            row = self.db.execute("SELECT path FROM current WHERE blob=? LIMIT 1", (b,)).fetchone()
            if row:
                out[b] = row[0]
        return out

    def versions_of(self, blobs: builtins.set[bytes]) -> list[tuple[bytes, bytes]]:
        """(path, version name) of every version holding one of these blobs, oldest first."""
        rows: list[tuple[int, bytes, bytes]] = []
        for b in blobs:
            rows += self.db.execute("SELECT id, path, name FROM versions WHERE blob=?", (b.hex(),)).fetchall()
        return [(path, name) for _, path, name in sorted(rows)]

    def remember_stat(self, rows: Iterable[tuple[bytes, bytes, tuple]]) -> None:
        """Record (path, blob, (size, mtime_ns, ino)) as seen on disk, for the next reconcile."""
        self.db.executemany(
            "UPDATE current SET size=?, mtime_ns=?, ino=? WHERE path=? AND blob=?",
            [(*st, path, blob) for path, blob, st in rows],
        )
        self.db.commit()

    # -- reading ------------------------------------------------------------------
    def node_id(self, path: bytes) -> int | None:
        row = self.db.execute("SELECT id FROM nodes WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    def node_path(self, node_id: int) -> bytes | None:
        row = self.db.execute("SELECT path FROM nodes WHERE id=?", (node_id,)).fetchone()
        return row[0] if row else None

    def children(self, parent: bytes, after: int = 0, limit: int = 256) -> list[tuple[int, bytes]]:
        return self.db.execute(
            "SELECT id, name FROM nodes WHERE parent=? AND id>? ORDER BY id LIMIT ?", (parent, after, limit)
        ).fetchall()

    def version(self, version_id: int) -> Version | None:
        row = self.db.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE id=?", (version_id,)).fetchone()
        return Version(*row) if row else None

    def version_named(self, path: bytes, name: bytes) -> Version | None:
        row = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM versions WHERE path=? AND name=?", (path, name)
        ).fetchone()
        return Version(*row) if row else None

    def versions(self, path: bytes, after: int = 0, limit: int = 256) -> list[Version]:
        rows = self.db.execute(
            f"SELECT {_VERSION_COLS} FROM versions WHERE path=? AND id>? ORDER BY id LIMIT ?",
            (path, after, limit),
        )
        return [Version(*r) for r in rows]

    def by_blob(self) -> Iterable[tuple[str, bytes, bytes]]:
        """(blob hex, path, version name) of every version, grouped by blob (streamed)."""
        return self.db.execute("SELECT blob, path, name FROM versions ORDER BY blob, id")

    def log(self, limit: int) -> list[Change]:
        rows = self.db.execute(
            "SELECT id, time, user, op, path, new_path FROM log ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [Change(*r) for r in rows]

    def stats(self) -> tuple[int, int, int]:
        """(versions, bytes in them, oldest version's time or 0)."""
        n, total, oldest = self.db.execute("SELECT count(*), sum(size), min(time) FROM versions").fetchone()
        return n, total or 0, oldest or 0

    # -- retention ------------------------------------------------------------------
    def cutoff_for_bytes(self, max_bytes: int) -> int | None:
        """The time before which versions must go so that the rest fits in max_bytes.
        Pruning keeps what each file held at the cutoff (its last version before it), so
        the cutoff falls just after the last version that still fits, never after the one
        that overflows: that one would be kept as the base and the budget exceeded."""
        total, last_fit = 0, None
        for t, size in self.db.execute("SELECT time, size FROM versions ORDER BY id DESC"):
            total += size
            if total > max_bytes:
                return (t if last_fit is None else last_fit) + 1
            last_fit = t
        return None

    def prune(self, cutoff: int, base_paths: builtins.set[bytes]) -> int:
        """Forget versions and log lines older than cutoff, except the last version of each
        path the pruned-to root still holds (it is what the file was at the cutoff)."""
        keep = self.db.execute(
            "SELECT max(id), path FROM versions WHERE time<? GROUP BY path", (cutoff,)
        ).fetchall()
        keep_ids = {i for i, p in keep if p in base_paths}
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep(id INTEGER PRIMARY KEY)")
        self.db.execute("DELETE FROM keep")
        self.db.executemany("INSERT INTO keep(id) VALUES(?)", [(i,) for i in keep_ids])
        n = self.db.execute(
            "DELETE FROM versions WHERE time<? AND id NOT IN (SELECT id FROM keep)", (cutoff,)
        ).rowcount
        self.db.execute("DELETE FROM log WHERE time<?", (cutoff,))
        self._drop_orphans()
        self.db.commit()
        return n

    def forget(self, blobs: Iterable[bytes], head: pygit2.Oid) -> int:
        """A purge rewrote the branch to `head` (each commit as it was, with these blobs
        replaced): forget their versions, keep every other row and name. Returns how many
        versions went."""
        n = 0
        for b in blobs:
            n += self.db.execute("DELETE FROM versions WHERE blob=?", (b.hex(),)).rowcount
        self._drop_orphans()
        self.set("head", str(head))
        self.db.commit()
        return n

    def _drop_orphans(self) -> None:
        self.db.execute("DELETE FROM meta WHERE key='bytes'")  # counted again on next need
        # folders (and paths) left without any version below them disappear from the listing
        while True:
            gone = self.db.execute(
                "DELETE FROM nodes WHERE path NOT IN (SELECT path FROM versions)"
                " AND NOT EXISTS (SELECT 1 FROM nodes c WHERE c.parent=nodes.path)"
            ).rowcount
            if not gone:
                break


def _contains(repo: Repo, head, known: str) -> bool:
    try:
        return repo.r.descendant_of(head, known)
    except (KeyError, ValueError, pygit2.GitError):
        return False


def arriving(repo: Repo, theirs: pygit2.Oid, ours: pygit2.Oid | None) -> Iterator[tuple[bytes, bytes]]:
    """(path, raw blob id) of every version catch_up would record from the commits `theirs`
    holds and `ours` does not, oldest first (the same walk and the same changes)."""
    walker = repo.r.walk(theirs, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    if ours is not None:
        walker.hide(ours)
    for c in walker:
        for path, _old, new in _changes(repo, c, c.parents[0].tree_id if c.parents else None):
            if new is not None:
                yield path, new[1]


def _changes(repo: Repo, c, parent_tree) -> list:
    """(path, before, now) of what a commit changed, safe paths only."""
    changes = [ch for ch in repo.diff(parent_tree, c.tree_id) if safe_path(ch[0])]
    if len(c.parents) > 1:  # a merge: what came from the other side was recorded with its commits
        other = c.parents[1].tree_id
        changes = [ch for ch in changes if ch[2] is None or repo.lookup(other, ch[0]) != ch[2]]
    return changes


def _renames(message: str, changes: list) -> list[tuple[bytes, bytes]]:
    """The renames a commit message names, (old, new), whose old side left this commit."""
    removed = {p for p, old, new in changes if new is None}
    renames = []
    for old, new in parse_renames(message):
        if old in removed or any(p.startswith(old + b"/") for p in removed):
            renames.append((old, new))
    return renames


def _below_any(path: bytes, tops: list[bytes]) -> bool:
    """Is `path` one of `tops` or below one of them?"""
    return any(path == top or path.startswith(top + b"/") for top in tops)
