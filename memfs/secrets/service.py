"""The secret guard wired to the filesystem: a write or a move into a guarded scope is
scanned (guard.py decides what and where) before it is applied, off the trio loop behind
the caller's own limiter; a refusal is logged without the secret, listed in the writer's
.memfs/status and its bytes kept for the writer alone in DATA/state/quarantine/<user>/.

The handlers (file_ops, dir_ops) only ask this and answer EACCES; what is guarded, the
window maths and what counts as new live in guard.py.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from .. import layout
from ..background import NicedPool, NicedProcess
from ..config import SecretsConf
from ..confine import bad_component, open_beneath
from ..names import label, quote_path, stamp
from ..policy import Principal, Scope
from ..store import Store, walk_tree
from . import guard, worker
from .scanner import Finding, Scanner

log = logging.getLogger("memfs.secrets")

QUARANTINE_FILES = 50  # per user, newest kept
QUARANTINE_BYTES = 1 << 20  # of one refused write's window
MAX_RECORDS = 100  # refusals or flags listed per user
SCOPES_KEPT = 4096  # scopes whose guard answers are cached (a user's and its teams' each)
MAX_PENDING = 10_000  # files closed in flagged scopes waiting for their scan
FLAG_QUIET = 1.0  # seconds without a close in a flagged scope before the flagger scans
FLAG_MAX_WAIT = 10.0  # but no later than this after the first close waiting
# Bytes a scan may take in a daemon thread (~4 ms of GIL at ~0.5 µs a byte); a larger one
# (a big write's window, a big file) runs in the scanner's process (worker.py).
INLINE_SCAN = 8 << 10
FLAG_BATCH = 64  # closed files the flagger sends the idle worker at once
SCAN_WORKERS = 2  # processes: one caller's stream of big scans never queues another's


@dataclass(frozen=True)
class Record:
    """A refusal or a flag as the writer's status shows it: never the secret."""

    scope: Scope
    path: bytes
    line: int
    rule: str
    when: int  # seconds since the epoch
    op: str = ""


@dataclass(frozen=True)
class _Verdict:
    finding: Finding
    line: int  # in the file
    kept: bytes  # what the write would have made of the window


@contextlib.contextmanager
def _readable(fd: int) -> Iterator[int]:
    """fd itself if it can be read; else the same file opened again for reading (a
    write-only handle: O_WRONLY is how most programs write), by its /proc magic link,
    which reaches the open file even after a rename or an unlink; -1 if neither can."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_WRONLY:
        yield fd
        return
    try:
        rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # a file its owner made write-only (chmod 200): judge the write alone
        yield -1
        return
    try:
        yield rfd
    finally:
        os.close(rfd)


class SecretGuard:
    """Built by daemon.build; handed to fs.Operations and control.Control."""

    def __init__(
        self,
        *,
        conf: SecretsConf,
        remotes: Iterable[Scope],
        data: Path,
        store: Store,
        background: NicedProcess | None = None,
    ) -> None:
        """`background`: a niced worker process the background flag scans may share
        (history's); without it they use this guard's own scanner process."""
        self.policy = guard.Policy(conf=conf, remotes=remotes)
        # The policy's answers per scope, kept: they depend on the scope and the config alone.
        self.refuses: Callable[[Scope], bool] = functools.lru_cache(maxsize=SCOPES_KEPT)(self.policy.refuses)
        self.flags: Callable[[Scope], bool] = functools.lru_cache(maxsize=SCOPES_KEPT)(self.policy.flags)
        self._scanner = Scanner(allow=conf.allow) if self.policy.on else None
        # started on the first big scan (most mounts never need it)
        self._allow = tuple(conf.allow)
        self._proc = NicedProcess(worker.start, (self._allow,), "memfs-secrets", SCAN_WORKERS)
        self._flag_proc = background or self._proc  # scans a caller waits for (settle)
        # the flagger's scans, which nobody waits for: only on otherwise idle cores (a burst
        # of private writes scanned at nice 10 still took ~5% from the next writes, measured)
        args = (self._allow, data, store.max_file_bytes)
        self._idle_proc = NicedProcess(worker.start, args, "memfs-flags", idle=True)
        self._store = store
        self._quarantine = data / "state" / "quarantine"
        self._refused: dict[str, OrderedDict[tuple[Scope, bytes], Record]] = {}
        self._flagged: dict[str, OrderedDict[tuple[Scope, bytes], Record]] = {}
        self._limiters: dict[int, trio.CapacityLimiter] = {}
        self._seq = itertools.count(1)
        # files closed in flagged scopes, waiting for the background scan (run_flagger)
        self._pending: dict[tuple[Scope, bytes], Principal] = {}
        self._wake = trio.Event()
        self._closes = 0  # files closed in flagged scopes so far (run_flagger's debounce)
        self._busy: dict[tuple[Scope, bytes], Principal] | None = None  # the scan in flight
        self._idle = trio.Event()
        self._pool = NicedPool(1, "memfs-secrets")
        self._lock = threading.Lock()  # quarantine folders: written from worker threads

    # -- what the handlers ask ------------------------------------------------------
    # refuses(scope) and flags(scope) are the policy's own answers, cached in __init__: every
    # write and every release of a written file asks, so without a Python frame (a cache hit
    # is C code: two calls fewer per close, one per write).

    def _limiter(self, uid: int) -> trio.CapacityLimiter:
        # A caller's scans queue behind its own, never in front of another caller's.
        lim = self._limiters.get(uid)
        if lim is None:
            lim = self._limiters[uid] = trio.CapacityLimiter(1)
        return lim

    async def check_write(
        self, p: Principal, scope: Scope, path: bytes, fd: int, off: int, buf: bytes, append: bool
    ) -> bool:
        """True: refuse this write (logged, recorded, quarantined); False: apply it."""
        verdict = await trio.to_thread.run_sync(
            self._judge_write, fd, off, buf, append, limiter=self._limiter(p.uid)
        )
        if verdict is None:
            self._clear(self._refused, p, scope, path)
            return False
        f = verdict.finding
        self._refuse(p, "write", scope, path, verdict.line, f.rule)
        await trio.to_thread.run_sync(self._keep, p, path, verdict.kept, limiter=self._limiter(p.uid))
        return True

    async def check_move(
        self, p: Principal, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes
    ) -> bool:
        """True: refuse moving src_path (a file or a folder) into dst, a guarded scope."""
        found = await trio.to_thread.run_sync(self._judge_tree, src, src_path, limiter=self._limiter(p.uid))
        if found is None:
            self._clear(self._refused, p, dst, dst_path)
            return False
        where, line, rule = found
        shown = dst_path + where[len(src_path) :]
        self._refuse(p, "rename", dst, shown, line, rule)
        return True

    def closed(self, p: Principal, scope: Scope, path: bytes, size: int) -> None:
        """A file written in a flagged scope was closed: it is scanned soon, in the
        background (run_flagger), never on the writer's way (a close per file in private
        memory cost ~0.5-0.8 ms more when scanned in release: scripts/bench_guard.py).
        An empty file holds nothing: its flag, if any, goes now, with no scan (`touch`,
        lock files, the 100k empty files of t5_hostile)."""
        if not size:
            self._pending.pop((scope, path), None)
            self._clear(self._flagged, p, scope, path)
            return
        if len(self._pending) < MAX_PENDING or (scope, path) in self._pending:
            self._pending[(scope, path)] = p
            self._closes += 1
            self._wake.set()  # already set while the flagger waits out a burst: no wake-up

    async def run_flagger(self) -> None:
        """Scan the files closed in flagged scopes, in batches, in the idle process."""
        while True:
            await self._wake.wait()
            # After a pause in closes, so a burst (or one file closed often) is scanned once
            # per file and not while its writer waits for the loop; at most FLAG_MAX_WAIT late.
            # The closes are counted, not each woken for: in a burst of creates a wake-up
            # per close cost the loop ~5% of its time (a py-spy of 10k creates).
            deadline = trio.current_time() + FLAG_MAX_WAIT
            while True:
                seen = self._closes
                await trio.sleep(FLAG_QUIET)
                if self._closes == seen or trio.current_time() >= deadline:
                    break
            self._wake = trio.Event()
            while self._pending:
                batch = dict(itertools.islice(self._pending.items(), FLAG_BATCH))
                for key in batch:
                    del self._pending[key]
                await self._flag_batch(batch)

    async def _flag_batch(self, batch: dict[tuple[Scope, bytes], Principal]) -> None:
        """Scan a batch of closed files in the idle worker, which opens them itself."""
        while self._busy is not None:
            await self._idle.wait()
        self._busy, self._idle = batch, trio.Event()
        try:
            found = await self._idle_proc.run(worker.flag_files, self._allow, list(batch))
        except Exception as e:  # a worker that died: these are scanned at the next close
            log.warning("flag scan of %d files failed: %s", len(batch), e)
            return
        finally:
            self._busy = None
            self._idle.set()
        for (key, p), hit in zip(batch.items(), found, strict=True):
            self._flagged_as(key, p, hit)

    async def settle(self, p: Principal) -> None:
        """Before the caller's status is shown: its files still waiting are scanned now, and
        one in flight is waited for, so status shows what the caller just wrote."""
        mine = [k for k, q in self._pending.items() if q.user == p.user]
        for key in mine:
            if (q := self._pending.pop(key, None)) is not None:
                await self._flag(key, q)
        while self._busy is not None and any(q.user == p.user for q in self._busy.values()):
            await self._idle.wait()

    async def _flag(self, key: tuple[Scope, bytes], p: Principal) -> None:
        while self._busy is not None:  # one scan at a time: settle() and the flagger share it
            await self._idle.wait()
        self._busy, self._idle = {key: p}, trio.Event()
        try:
            # in a process (history's worker, or ours): no GIL held here
            found = await self._pool.run(self._judge_path, *key, OSError, self._flag_proc)
        finally:
            self._busy = None
            self._idle.set()
        self._flagged_as(key, p, found)

    def _flagged_as(self, key: tuple[Scope, bytes], p: Principal, found: tuple[int, str] | None) -> None:
        scope, path = key
        if found is None:
            self._clear(self._flagged, p, scope, path)
            return
        line, rule = found
        log.info(
            "secret in %s: line %d (rule %s): flagged, not refused (a scope the guard does not refuse in)",
            self._subject(p, scope, path),
            line,
            rule,
        )
        self._record(self._flagged, p, Record(scope, path, line, rule, int(time.time()), "write"))

    # -- judging (worker threads) ---------------------------------------------------------
    def _local(self) -> Scanner:
        assert self._scanner is not None, "a scan with the guard off"
        return self._scanner

    def _judge_bytes(self, before: bytes, after: bytes) -> Finding | None:
        """The first finding `after` holds that `before` did not (worker threads)."""
        if len(before) + len(after) > INLINE_SCAN:
            return self._proc.call(worker.judge, self._allow, before, after)
        return worker.judge_with(self._local(), before, after)

    def _first(self, data: bytes, proc: NicedProcess | None = None) -> Finding | None:
        """The first finding in `data`: in `proc` if given, else here when it is small."""
        if proc is None and len(data) > INLINE_SCAN:
            proc = self._proc
        if proc is not None:
            return proc.call(worker.first, self._allow, data)
        return worker.first_with(self._local(), data)

    def _judge_write(self, fd: int, off: int, buf: bytes, append: bool) -> _Verdict | None:
        size = os.fstat(fd).st_size
        if append:
            off = size
        start, end = guard.window(off, len(buf), size)
        with _readable(fd) as rfd:
            return self._judge_window(rfd, start, end, size, off, buf)

    def _judge_window(
        self, fd: int, start: int, end: int, size: int, off: int, buf: bytes
    ) -> _Verdict | None:
        old = os.pread(fd, end - start, start) if end > start and fd >= 0 else b""
        w = guard.apply(old, start, size, off, buf)
        new = self._judge_bytes(w.before, w.after)
        if new is None:
            return None
        return _Verdict(new, worker.lines_before(fd, w.origin) + new.line, w.after)

    def _judge_path(
        self, scope: Scope, path: bytes, gone: type[OSError] = OSError, proc: NicedProcess | None = None
    ) -> tuple[int, str] | None:
        """(line, rule) of the first finding in a regular file; None if none, or if opening
        it fails with `gone` (a flag: gone or unreadable since, nothing to flag; a move:
        only a file gone since is skipped, any other failure refuses the move)."""
        try:
            fd = self._store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK)
        except gone:
            return None
        try:
            return self.judge_file(fd, proc) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        finally:
            os.close(fd)

    def judge_file(self, fd: int, proc: NicedProcess | None = None) -> tuple[int, str] | None:
        """(line, rule) of the first finding in an open file, read in overlapping pieces (also
        what sync brings: a remote's blob in a memfd, see sync/vet.py); `proc`: the
        process to scan in (see _first)."""
        return worker.first_in_file(fd, lambda data: self._first(data, proc))

    def _judge_tree(self, scope: Scope, top: bytes) -> tuple[bytes, int, str] | None:
        """(path, line, rule) of the first finding in a file or in the files below a folder."""
        st = self._store.lstat(scope, top)
        if stat.S_ISDIR(st.st_mode):
            with self._store.at(scope) as root:
                paths = [rel for rel, s in walk_tree(root, top) if stat.S_ISREG(s.st_mode)]
        else:
            paths = [top] if stat.S_ISREG(st.st_mode) else []
        for path in paths:
            if (found := self._judge_path(scope, path, FileNotFoundError)) is not None:
                return path, *found
        return None

    def close(self) -> None:
        self._idle_proc.hurry()  # unmounting: a scan in flight finishes at normal priority
        self._pool.close()
        self._proc.close()
        self._idle_proc.close()

    # -- what is told and kept ------------------------------------------------------------
    @staticmethod
    def _shown(p: Principal, scope: Scope, path: bytes) -> str:
        """The path as the caller sees it from the mount's root (team/..., a grant's view)."""
        return quote_path(layout.view_path(p, scope, "").encode() + path)

    def _subject(self, p: Principal, scope: Scope, path: bytes) -> str:
        return f"uid={p.uid}({p.user}) {self._shown(p, scope, path)}"

    def _refuse(self, p: Principal, op: str, scope: Scope, path: bytes, line: int, rule: str) -> None:
        # The rule and the line only: never the secret, nor any part of it.
        log.warning(
            "%s %s: refused: a secret at line %d (rule %s), into a guarded scope (EACCES)",
            op,
            self._subject(p, scope, path),
            line,
            rule,
        )
        self._record(self._refused, p, Record(scope, path, line, rule, int(time.time()), op))

    @staticmethod
    def _record(table: dict, p: Principal, rec: Record) -> None:
        mine = table.setdefault(p.user, OrderedDict())
        mine.pop((rec.scope, rec.path), None)
        mine[(rec.scope, rec.path)] = rec
        while len(mine) > MAX_RECORDS:
            mine.popitem(last=False)

    @staticmethod
    def _clear(table: dict, p: Principal, scope: Scope, path: bytes) -> None:
        mine = table.get(p.user)
        if mine:
            mine.pop((scope, path), None)

    def _user_dir(self, user: str, create: bool) -> int | None:
        """A directory fd of the user's quarantine folder (0700, the daemon's own)."""
        folder = self._quarantine / label(user)
        if create:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        try:
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None

    def _keep(self, p: Principal, path: bytes, data: bytes) -> None:
        """The refused window, for its writer alone: the newest QUARANTINE_FILES, each at
        most QUARANTINE_BYTES. Names are memfs's own (time, count, the file's name as a
        label), opened through the confined gate."""
        assert p.user is not None
        name = f"{stamp(int(time.time()))}-{next(self._seq) % (1 << 24):06x}-{label(os.path.basename(path))}"
        try:
            with self._lock:
                dfd = self._user_dir(p.user, create=True)
                assert dfd is not None
                try:
                    fd = open_beneath(dfd, name.encode(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    try:
                        os.write(fd, data[:QUARANTINE_BYTES])
                    finally:
                        os.close(fd)
                    for old in sorted(os.listdir(dfd))[:-QUARANTINE_FILES]:
                        os.unlink(old, dir_fd=dfd)
                finally:
                    os.close(dfd)
        except OSError as e:
            log.warning("secrets: cannot keep a refused write in %s: %s", self._quarantine, e.strerror)

    # -- what the control files show ------------------------------------------------------
    def quarantined(self, user: str) -> list[str]:
        """The names of the user's kept refused writes, newest first."""
        dfd = self._user_dir(user, create=False)
        if dfd is None:
            return []
        try:
            return sorted(os.listdir(dfd), reverse=True)
        finally:
            os.close(dfd)

    def read_quarantined(self, user: str, name: bytes) -> bytes:
        if b"/" in name or bad_component(name) is not None:
            raise FileNotFoundError(errno.ENOENT, "no such quarantined write")
        dfd = self._user_dir(user, create=False)
        if dfd is None:
            raise FileNotFoundError(errno.ENOENT, "no quarantined writes")
        try:
            fd = open_beneath(dfd, name, os.O_RDONLY | os.O_NONBLOCK)
        finally:
            os.close(dfd)
        try:
            return os.read(fd, QUARANTINE_BYTES)
        finally:
            os.close(fd)

    def status_lines(self, p: Principal) -> list[str]:
        """The caller's own refusals and flags (never another user's), for .memfs/status."""
        if p.user is None or not self.policy.on:
            return []
        out = []
        for r in self._refused.get(p.user, {}).values():
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.when))
            shown = self._shown(p, r.scope, r.path)
            out.append(
                f"{shown}:{r.line}: {r.op} refused at {when}: a secret (rule {r.rule}); "
                "team and synced memory never hold one"
            )
        for r in self._flagged.get(p.user, {}).values():
            out.append(
                f"{self._shown(p, r.scope, r.path)}:{r.line}: holds a secret (rule {r.rule}): private, kept; "
                "moving it to a team or synced scope will be refused"
            )
        kept = self.quarantined(p.user)
        if kept:
            out.append(
                f"quarantine: {len(kept)} refused write(s) kept for you alone in .memfs/quarantine/ "
                f"(newest {QUARANTINE_FILES}, up to {QUARANTINE_BYTES >> 20} MiB each)"
            )
        return out
