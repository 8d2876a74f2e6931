"""History's writing side: commits, reconcile and retention for one scope at a time.

It runs in a process of its own (memfs.background.NicedProcess): hashing, compressing and
committing a burst's versions in a thread of the daemon held the GIL the callers' requests
need (the commit after a burst showed in the next phase's reads). Everything it is given
and returns pickles: scopes, events, kept versions, flags. The daemon side (service.py)
records changes, holds each scope's lock while a call runs, and schedules the calls.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pygit2

from .. import layout
from ..config import HistoryConf, Limits
from ..names import quote_path
from ..policy import Kind, Scope
from ..store import Store, walk_tree
from . import purge as purging
from .catalog import PURGED_BLOB, PURGED_TEXT, Catalog, Version, rename_lines
from .gitrepo import BLOB, EXEC, TRACKING, Change, FastImport, Repo, Who, blob_id

log = logging.getLogger(__name__)

RECONCILE_AUTHOR = "memfs-reconcile"  # changes found at mount: made outside memfs, or a crash
MAX_VERSION_BYTES = 64 << 20  # an admin's bigger file in DATA/ is not copied into history
MAX_RENAME_LINES = 10_000
GC_EVERY = 200  # commits per scope between `git gc --auto` checks
LOW_WATER = 0.75  # a scope past its budget is pruned to this share of it: the next prune waits for growth
WORKER_CACHE = 16 << 20  # libgit2's object cache in the worker, bytes
SKIP = object()  # a file whose state cannot be known now (EACCES, EMFILE): leave it as is


# Event and Kept are named tuples, immutable and picklable to the worker: a frozen
# dataclass took 0.6-0.8 us more to build, once or twice on every write, rename and rm.
class Event(NamedTuple):
    user: str
    path: bytes
    new_path: bytes | None = None  # a rename's destination
    is_dir: bool = False


KEEP_MIN_COST = 512  # bytes a kept version counts at least: its record's memory


class Kept(NamedTuple):
    """A file's content as it was just before a caller destroyed it, still to be committed."""

    user: str
    path: bytes
    mode: int
    spool: str  # the file holding its bytes (DATA/state/kept/), removed once committed; "" if empty
    offset: int
    size: int
    when: float
    # Not a content but a rename of committed content (the daemon kept no copy): `path`
    # takes the version `moved_from` holds at this point of the stream, which loses it.
    moved_from: bytes | None = None

    @property
    def cost(self) -> int:
        """What it counts against the scope's spool cap (KEEP_MAX): at least its record, so
        an rm -r of empty files after a flood (every path pending) is bounded in count too."""
        return max(self.size, KEEP_MIN_COST)


class Committer:
    def __init__(self, data: Path, store: Store, conf: HistoryConf, limits: Limits, hostname: str):
        self.data = data
        self.store = store
        self.conf = conf
        self.limits = limits
        self.hostname = hostname
        self._commits: dict[Scope, int] = {}  # commits made per scope, for gc's cadence

    @contextmanager
    def _open(self, scope: Scope):
        path = layout.history_dir(self.data, scope)
        repo = Repo(path)
        cat = Catalog.of(path)
        try:
            yield repo, cat
        finally:
            cat.close()

    def _sig(self, user: str, when: int) -> pygit2.Signature:
        email = self.conf.email.format(user=user, hostname=self.hostname)
        return pygit2.Signature(user, email, when, 0)

    def _read(self, scope: Scope, path: bytes):
        return read_file(self.store, scope, path)

    def _walk_files(self, scope: Scope, top: bytes) -> list[bytes]:
        with self.store.at(scope) as root:
            return [p for p, st in walk_tree(root, top, []) if stat.S_ISREG(st.st_mode)]

    def commit(self, scope: Scope, events: list[Event]) -> bool:
        """One batch of a scope, under the scope's lock. True: the scope is past its budget."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)  # commits made behind memfs's back (an admin's git) come first
            examine: dict[bytes, str] = {}
            renames: dict[str, list[tuple[bytes, bytes]]] = {}
            for ev in events:
                if ev.new_path is not None and (
                    cat.current_of(ev.path) is not None or (ev.is_dir and cat.current_under(ev.path))
                ):
                    renames.setdefault(ev.user, []).append((ev.path, ev.new_path))
                for path in (ev.path, ev.new_path):
                    if path is None:
                        continue
                    examine[path] = ev.user
                    if ev.is_dir:  # a folder moved away, or in (from another scope, or a rename)
                        for p in cat.current_under(path):
                            examine[p] = ev.user
                        for p in self._walk_files(scope, path):
                            examine[p] = ev.user
            return self._write(repo, cat, scope, examine, renames, time.time())

    def commit_kept(self, scope: Scope, kept: list[Kept], spools: list[str]) -> bool:
        """Versions kept before callers destroyed them, committed in the order they were
        kept, as of when they were kept: a version equal to what history holds skipped, one
        commit per run of one user's versions of distinct paths. Before the batch's own
        commit. `spools`: the spool files to remove once committed (the batch's last chunk)."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            head: dict[bytes, tuple[bytes, int] | None] = {}
            group: dict[bytes, Change] = {}
            purged = _purged(repo, scope)
            prev: Kept | None = None
            when = 0.0  # the group's latest version's time
            renames: list[tuple[bytes, bytes]] = []
            with repo.fast_import() as fi:
                for k in in_waves(kept):
                    got = _kept_change(cat, fi, head, purged, k)
                    if got is None:
                        continue  # committed already, or by an earlier try that failed later
                    changes, now = got
                    if (
                        group
                        and prev is not None
                        and (k.user != prev.user or any(p in group for p in changes))
                    ):
                        self._commit_group(fi, group, prev.user, int(when), renames[:MAX_RENAME_LINES])
                        renames.clear()
                    group.update(changes)
                    head.update(now)
                    if k.moved_from is not None:
                        renames.append((k.moved_from, k.path))
                    prev, when = k, max(when, k.when)
                if group and prev is not None:
                    self._commit_group(fi, group, prev.user, int(when), renames[:MAX_RENAME_LINES])
            cat.catch_up(repo)
            for spool in spools:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(spool)
            return self._count(repo, cat, scope, fi.made)

    def _who(self, user: str, when: int) -> Who:
        return user, self.conf.email.format(user=user, hostname=self.hostname), when

    def _commit_group(self, fi: FastImport, group: dict, user: str, when: int, renames=()) -> None:
        n = len(group)
        msg = f"memfs: {n} change{'s' if n != 1 else ''} by {user}\n"
        if renames:
            msg += f"\n{rename_lines(renames)}"
        fi.commit(dict(group), self._who(user, when), self._who("memfs", when), msg)
        group.clear()

    def _write(self, repo: Repo, cat: Catalog, scope: Scope, examine: dict[bytes, str], renames, now) -> bool:
        """Commit the examined paths as they are on disk, one commit per user; each file is
        read once and streamed as it is read (a batch of 100k files is never in memory)."""
        by_user: dict[str, dict] = {}
        seen = []
        purged = _purged(repo, scope)
        with repo.fast_import() as fi:
            for path, user in examine.items():
                head = cat.current_of(path)
                disk = self._read(scope, path)
                if disk is SKIP:
                    continue
                if disk is None:
                    if head is not None:
                        by_user.setdefault(user, {})[path] = None
                    continue
                mode, data, st = disk
                oid = blob_id(data)
                if oid in purged:  # a file still holding purged bytes (a host behind): never again
                    data, oid = PURGED_TEXT, PURGED_BLOB
                if head != (oid, mode):
                    by_user.setdefault(user, {})[path] = (mode, fi.blob(data, oid, path))
                seen.append((path, oid, (st.st_size, st.st_mtime_ns, st.st_ino)))
            when = int(now)
            for user, changes in by_user.items():
                self._commit_group(fi, changes, user, when, renames.get(user, [])[:MAX_RENAME_LINES])
        cat.catch_up(repo)
        cat.remember_stat(seen)
        return self._count(repo, cat, scope, fi.made)

    def _count(self, repo: Repo, cat: Catalog, scope: Scope, made: int) -> bool:
        """After commits: gc now and then. True: the scope is past its budget (retention's cue)."""
        if not made:
            return False
        before = self._commits.get(scope, 0)
        self._commits[scope] = before + made
        if before // GC_EVERY != (before + made) // GC_EVERY:
            self._gc(repo, scope, auto=True)
        return cat.version_bytes() > self.budget(scope)

    def _gc(self, repo: Repo, scope: Scope, auto: bool) -> None:
        try:
            repo.gc(auto)
        except Exception as e:  # a missing or failing git CLI costs disk, never history
            log.warning("%s: git gc failed: %s", scope, e)

    def reconcile(self, scope: Scope, skip: set[bytes], author: str = RECONCILE_AUTHOR) -> bool:
        """Commit what differs between the scope's files and its history (except `skip`).
        True: the scope is past its budget."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            cur = cat.current()
            examine: dict[bytes, str] = {}
            unreadable: list[bytes] = []
            on_disk = set()
            with self.store.at(scope) as root:
                for path, st in walk_tree(root, b"", unreadable):
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    on_disk.add(path)
                    row = cur.get(path)
                    if path not in skip and (
                        row is None or row[2] != (st.st_size, st.st_mtime_ns, st.st_ino)
                    ):
                        examine[path] = author
            for path in cur:
                if path not in on_disk and path not in skip and not _under_any(path, unreadable):
                    examine[path] = author
            return bool(examine) and self._write(repo, cat, scope, examine, {}, time.time())

    def purge(
        self, scope: Scope, path: bytes, names: list[bytes] | None, user: str, now: int
    ) -> purging.Purged:
        """Take versions of `path` (`names`, or all) out of the scope's history for good
        (purge.py), under the scope's lock, after its pending changes were committed. The
        content a file holds now is never purged: a named version that is the current
        content of any file is refused (EBUSY); with all versions, it is left out."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            chosen = _chosen(cat, path, names)
            live = cat.holding({bytes.fromhex(v.blob) for v in chosen})
            if names is not None and live:
                raise PurgeRefused(
                    errno.EBUSY, f"it is the current content of {quote_path(min(live.values()))}"
                )
            chosen = [v for v in chosen if bytes.fromhex(v.blob) not in live]
            if not chosen:
                raise PurgeRefused(errno.EBUSY, f"{quote_path(path)} holds its only version now")
            blobs = {bytes.fromhex(v.blob) for v in chosen}
            record = cat.versions_of(blobs)  # the same bytes under other paths go too
            head, made, leased = purging.purge(
                repo, TRACKING, blobs, record, self._sig(user, now), self._sig("memfs", now)
            )
            cat.forget(blobs, head)
            cat.catch_up(repo)  # the record commit: the log's purge lines
            purging.scrub(repo)
            return purging.Purged([v for _, v in record], made, leased, sorted(b.hex() for b in blobs))

    def budget(self, scope: Scope) -> int:
        """Bytes of versions a scope keeps: history.max_bytes, else the scope's quota."""
        if self.conf.max_bytes is not None:
            return self.conf.max_bytes
        return self.limits.team_bytes if scope.kind is Kind.TEAM else self.limits.user_bytes

    def prune(self, scope: Scope, now: float, shared: bool) -> int:
        """Apply retention to one scope (worker thread, under its lock). Returns versions dropped."""
        with self._open(scope) as (repo, cat):
            cat.catch_up(repo)
            cutoff = int(now - self.conf.keep_days * 86400)
            budget = self.budget(scope)
            by_bytes = cat.cutoff_for_bytes(int(budget * LOW_WATER)) if cat.version_bytes() > budget else None
            if by_bytes is not None:
                cutoff = max(cutoff, by_bytes)
            _, _, oldest = cat.stats()
            if not oldest or oldest >= cutoff:
                return 0
            if shared:  # rewriting would fork it from its remote's history
                log.info("%s: synced with a remote: retention leaves its history whole", scope)
                return 0
            repo.rewrite_before(cutoff, self._sig("memfs", int(now)))
            root = next(iter(repo.commits_since(None)), None)
            base = {p for p, _, _ in repo.files(root.tree_id)} if root is not None else set()
            dropped = cat.prune(cutoff, base)
            cat.set("head", str(repo.head()))
            cat.db.commit()
            self._gc(repo, scope, auto=False)
            # logged once the blobs are gone too: the line means the space is free
            log.info(
                "%s: pruned %d versions older than %s",
                scope,
                dropped,
                time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(cutoff)),
            )
            return dropped


class PurgeRefused(Exception):
    """A purge that cannot be done: errno and one line for the caller."""

    def __init__(self, code: int, why: str):
        super().__init__(code, why)
        self.errno, self.why = code, why


def _chosen(cat: Catalog, path: bytes, names: list[bytes] | None) -> list[Version]:
    """The versions of `path` a purge names (all of them for None); ENOENT for a name that
    is not one of them."""
    found, after = [], 0
    while page := cat.versions(path, after):
        found += page
        after = page[-1].id
    if names is None:
        if not found:
            raise PurgeRefused(errno.ENOENT, f"{quote_path(path)} has no versions")
        return found
    by_name = {v.name: v for v in found}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PurgeRefused(errno.ENOENT, f"{quote_path(path)} has no version {quote_path(missing[0])}")
    return [by_name[n] for n in names]


def read_file(store: Store, scope: Scope, path: bytes):
    """(mode, bytes, stat) of a file as it is now; None if it is not a file (any more),
    SKIP if its state cannot be known now."""
    opened = open_file(store, scope, path)
    if opened is None or opened is SKIP:
        return opened
    return read_opened(scope, path, *opened)


def open_file(store: Store, scope: Scope, path: bytes):
    """(fd, stat) of a regular file to read a version from; None or SKIP as read_file."""
    try:
        # O_NOATIME: keeping a version must not show as a read of the file
        fd = store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOATIME)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        return SKIP
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return SKIP
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def read_opened(scope: Scope, path: bytes, fd: int, st: os.stat_result):
    """(mode, bytes, stat) from open_file's fd, which it closes; SKIP past MAX_VERSION_BYTES."""
    try:
        if st.st_size > MAX_VERSION_BYTES:
            log.warning(
                "%s: %s is %d bytes, over %d: not versioned",
                scope,
                quote_path(path),
                st.st_size,
                MAX_VERSION_BYTES,
            )
            return SKIP
        chunks, pos = [], 0
        while pos <= MAX_VERSION_BYTES and (chunk := os.pread(fd, 1 << 20, pos)):
            chunks.append(chunk)
            pos += len(chunk)
        return (EXEC if st.st_mode & 0o100 else BLOB), b"".join(chunks), st
    except OSError:
        return SKIP
    finally:
        os.close(fd)


def spool_copy(fd: int, size: int, out: int, offset: int) -> int:
    """Copy an open file (open_file's fd, closed here) into a spool file at offset, in the
    kernel (copy_file_range: no bytes through Python; a reflink where the filesystem can).
    Returns the bytes copied; -1 if it could not be (that version is then lost, as in a
    crash before the batch)."""
    try:
        done = 0
        while done < size and (n := os.copy_file_range(fd, out, size - done, done, offset + done)):
            done += n
        return done
    except OSError as e:
        log.warning("cannot keep a version in the spool: %s", e)
        return -1
    finally:
        os.close(fd)


def spool_file(path: Path, fd: int, size: int) -> int:
    """A spool file of its own for one big version (in a worker thread): spool_copy's result."""
    try:
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        os.close(fd)
        log.warning("cannot keep a version in %s: %s", path.parent, e)
        return -1
    try:
        return spool_copy(fd, size, out, 0)
    finally:
        os.close(out)


def _moved(cat: Catalog, head: dict, src: bytes, dst: bytes) -> list[tuple[bytes, bytes, tuple[bytes, int]]]:
    """(old path, new path, (blob, mode)) of what a rename of committed content moves: a
    file, or what history holds below a folder; `head` is what paths hold at this point of
    the kept stream, before the catalog learns of it."""
    if src not in head:
        head[src] = cat.current_of(src)
    if head[src] is not None:
        held = {src: head[src]}
    else:  # the branch's files below it, as this stream left them
        under = src + b"/"
        held = cat.current_under(src)
        held.update((p, was) for p, was in head.items() if p.startswith(under))
    return [(p, dst + p[len(src) :], was) for p, was in sorted(held.items()) if was is not None]


def in_waves(kept: list[Kept]) -> list[Kept]:
    """The kept versions in the order they are committed: within a stretch of one user's
    versions of content (a rename or another user's version ends it), each path's first
    version, then each path's second, and so on. Every path's versions keep their order and
    a commit holds one version of a path, so a stretch takes a commit per wave, not one each
    time a path comes back: an agent saving 4 files 3 times each took 8-9 commits (each a
    tree and a commit object, ~0.2-0.9 ms apiece to write on a busy disk) for 12 versions,
    and takes 3."""
    out: list[Kept] = []
    stretch: list[Kept] = []

    def end_stretch() -> None:
        waves: list[list[Kept]] = []
        seen: dict[bytes, int] = {}
        for k in stretch:
            n = seen[k.path] = seen.get(k.path, -1) + 1
            if n == len(waves):
                waves.append([])
            waves[n].append(k)
        for wave in waves:
            out.extend(wave)
        stretch.clear()

    for k in kept:
        if k.moved_from is not None or (stretch and k.user != stretch[-1].user):
            end_stretch()
        (out if k.moved_from is not None else stretch).append(k)
    end_stretch()
    return out


def _kept_change(cat: Catalog, fi: FastImport, head: dict, purged: set, k: Kept) -> tuple[dict, dict] | None:
    """What committing kept version `k` changes ({path: Change}) and what those paths then
    hold ({path: (blob, mode) or None}), as of `head`; None if nothing (it equals what
    history holds, or its spool file went with an earlier try that failed later)."""
    if k.moved_from is not None:
        pairs = _moved(cat, head, k.moved_from, k.path)
        if not pairs:
            return None
        changes: dict[bytes, Change] = dict.fromkeys((a for a, _, _ in pairs), None)
        now: dict[bytes, tuple[bytes, int] | None] = dict.fromkeys(changes, None)
        for _, b, (blob, mode) in pairs:
            changes[b], now[b] = (mode, blob), (blob, mode)
        return changes, now
    try:
        data = b""  # an empty file is kept without a spool file
        if k.spool:
            with open(k.spool, "rb") as f:
                data = os.pread(f.fileno(), k.size, k.offset)
    except FileNotFoundError:
        return None
    oid = blob_id(data)
    if oid in purged:  # never again: the placeholder stands for it
        data, oid = PURGED_TEXT, PURGED_BLOB
    if k.path not in head:
        head[k.path] = cat.current_of(k.path)
    if head[k.path] == (oid, k.mode):
        return None
    return {k.path: (k.mode, fi.blob(data, oid, k.path))}, {k.path: (oid, k.mode)}


def _under_any(path: bytes, folders: list[bytes]) -> bool:
    return any(f == b"" or path == f or path.startswith(f + b"/") for f in folders)


# -- the process ------------------------------------------------------------------------
_committer: Committer | None = None


def start(data: Path, max_file_bytes: int, conf: HistoryConf, limits: Limits, hostname: str) -> None:
    """The worker process's initializer: its own store over the same DATA/."""
    global _committer
    # libgit2 caches up to 256 MiB of objects by default; a worker re-reads few of them
    pygit2.settings.cache_max_size(WORKER_CACHE)
    _committer = Committer(data, Store(data, max_file_bytes), conf, limits, hostname)


# Test hook: a commit waits while this file exists (a test holds a batch in flight).
_HOLD = os.environ.get("MEMFS_TEST_HOLD_COMMITS")


def call(method: str, *args):
    assert _committer is not None, "history worker not started"
    if _HOLD is not None and method == "commit" and os.path.exists(_HOLD):
        with open(_HOLD + ".waiting", "w"):
            pass
        while os.path.exists(_HOLD):
            time.sleep(0.01)
    return getattr(_committer, method)(*args)


def _purged(repo: Repo, scope: Scope) -> set[bytes]:
    """Blob ids purged from this scope: a commit records the placeholder in their place, so
    a file that still holds one (on a host that synced after the purge, or restored from
    elsewhere) never brings it back into history, nor to a remote."""
    ids = purging.purged_ids(Path(repo.path))
    if ids:
        log.debug("%s: %d purged blob ids are never committed", scope, len(ids))
    return ids
