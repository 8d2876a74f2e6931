"""What an operator sees across every user and team of a mount: usage against each limit,
history, index and embedding state, sync state and open handles. One snapshot, taken on
the loop (reads of in-memory state) with the slow parts (first counts, history sizes,
the embedding backlog) in worker threads; `memfs status --all` and /metrics both show it."""

from __future__ import annotations

import grp
import os
import pwd
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from . import layout
from .config import Config
from .history import History
from .index import Index
from .policy import Kind, Principal, Scope
from .quota import OpenCounts, Quotas, Usage
from .store import walk_tree
from .sync import Sync

SIZE_TTL = 60.0  # seconds a history repository's measured size is reused (a walk of its files)


class Names(Protocol):
    def name_of(self, uid: int) -> str: ...


@dataclass
class ScopeState:
    scope: str  # "private:alice", "team:eng"
    bytes: int
    files: int
    max_bytes: int
    max_files: int
    history_bytes: int | None = None  # the scope's repository on disk
    history_waiting: int = 0  # changes not yet committed
    history_lag: float = 0.0  # seconds the oldest of them has waited
    history_failures: int = 0  # failed commits in a row
    index_waiting: int = 0
    index_lag: float = 0.0
    sync: dict | None = None  # remote's state, for a synced scope


@dataclass
class Snapshot:
    taken: float
    scopes: list[ScopeState] = field(default_factory=list)
    open_handles: dict[str, int] = field(default_factory=dict)  # user (uid-N) -> handles held
    embedding_backlog: int = 0
    rss_bytes: int = 0
    threads: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _proc_status() -> tuple[int, int]:
    """(resident bytes, threads) of this process, from /proc/self/status."""
    rss = threads = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def _tree_bytes(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return sum(st.st_size for _rel, st in walk_tree(fd, b""))
    finally:
        os.close(fd)


class Fleet:
    def __init__(
        self,
        *,
        cfg: Config,
        data: Path,
        quotas: Quotas,
        opens: OpenCounts,
        names: Names,
        index: Index | None,
        history: History | None,
        sync: Sync | None,
    ) -> None:
        self.cfg, self.data, self.quotas, self.opens, self.names = cfg, data, quotas, opens, names
        self.index, self.history, self.sync = index, history, sync
        self._sizes: dict[Scope, tuple[float, int]] = {}
        self._sizes_lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(1)  # one snapshot's slow parts at a time
        self._admins = self._admin_group()

    def _admin_group(self) -> tuple[int, frozenset[str]] | None:
        """(gid, member names) of daemon.admin_group, read at mount like teams' groups."""
        if self.cfg.admin_group is None:
            return None
        try:
            g = grp.getgrnam(self.cfg.admin_group)
        except KeyError:
            return None  # config.parse cannot see the group database; doctor reports it
        return g.gr_gid, frozenset(g.gr_mem)

    def is_admin(self, p: Principal) -> bool:
        """Root, or a member of daemon.admin_group (primary or supplementary, by passwd)."""
        if p.uid == 0:
            return True
        if self._admins is None:
            return False
        gid, members = self._admins
        try:
            pw = pwd.getpwuid(p.uid)
        except KeyError:
            return p.gid == gid
        return p.gid == gid or pw.pw_gid == gid or pw.pw_name in members

    def _scopes(self) -> list[Scope]:
        try:
            found = set(layout.scopes_in(self.data))
        except OSError:
            found = set()
        return sorted(found | {Scope(Kind.TEAM, t) for t in self.cfg.teams}, key=str)

    def _history_bytes(self, scope: Scope) -> int:
        """The repository's size, measured at most every SIZE_TTL seconds (worker thread)."""
        assert self.history is not None
        with self._sizes_lock:
            cached = self._sizes.get(scope)
        if cached is not None and time.monotonic() - cached[0] < SIZE_TTL:
            return cached[1]
        size = _tree_bytes(self.history.repo_dir(scope))
        with self._sizes_lock:
            self._sizes[scope] = (time.monotonic(), size)
        return size

    async def snapshot(self, count: bool = True) -> Snapshot:
        """Everything, now. `count`: count a scope's usage not counted yet (a walk of its
        folder, once per mount); without it such a scope shows what is known (0)."""
        snap = Snapshot(taken=time.time())
        known = self.quotas.known()
        for scope in self._scopes():
            u = await self.quotas.usage(scope) if count else known.get(scope, Usage())
            cap = self.quotas.caps(scope)
            s = ScopeState(str(scope), u.bytes, u.files, cap.bytes, cap.files)
            if self.history is not None:
                s.history_waiting, s.history_lag, s.history_failures = self.history.state(scope)
                s.history_bytes = await trio.to_thread.run_sync(
                    self._history_bytes, scope, limiter=self._limiter
                )
            if self.index is not None:
                s.index_waiting, s.index_lag = self.index.queue_state(scope)
            if self.sync is not None and scope in self.sync.state:
                st = self.sync.state[scope]
                s.sync = {
                    "last_ok": st.last_ok,
                    "failures": st.failures,
                    "commits_waiting": st.ahead,
                    "error": self.sync.error_of(scope, st),
                }
            snap.scopes.append(s)
        for uid, n in sorted(self.opens.by_uid().items()):  # several uids may act as one user
            user = self.names.name_of(uid)
            snap.open_handles[user] = snap.open_handles.get(user, 0) + n
        if self.index is not None:
            snap.embedding_backlog = await self.index.embedding_backlog()
        snap.rss_bytes, snap.threads = _proc_status()
        return snap
