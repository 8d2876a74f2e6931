"""Fair shares: open handles per uid (EMFILE) and bytes and files per scope (EDQUOT).

Usage of a scope is counted from its folder the first time it is needed after mount
(off the loop), then kept up to date by the handlers; a remount counts again, so drift
from changes made behind memfs's back does not last.
"""

from __future__ import annotations

import errno
import logging
import stat
from collections import Counter
from dataclasses import dataclass

import trio
from pyfuse3 import FUSEError

from .config import Limits
from .policy import Kind, Scope
from .store import Store, walk_tree

log = logging.getLogger(__name__)


@dataclass
class Usage:
    bytes: int = 0
    files: int = 0  # files and folders


def count_tree(root_fd: int, top: bytes = b"") -> Usage:
    """Bytes (apparent size) and entries below a folder; what vanishes meanwhile is skipped."""
    u = Usage()
    for _rel, st in walk_tree(root_fd, top):
        u.files += 1
        if not stat.S_ISDIR(st.st_mode):
            u.bytes += st.st_size
    return u


class Quotas:
    def __init__(self, store: Store, limits: Limits):
        self.store = store
        self.limits = limits
        # A scope's caps by its kind, made once (Limits is frozen): need() and write()
        # read them per call. Shared: callers only read them.
        self._caps = {
            Kind.PRIVATE: Usage(limits.user_bytes, limits.user_files),
            Kind.TEAM: Usage(limits.team_bytes, limits.team_files),
        }
        self._usage: dict[Scope, Usage] = {}
        self._counting: dict[Scope, trio.Event] = {}

    def count(self, scope: Scope, top: bytes) -> Usage:
        """Count a folder of a scope (in a worker thread)."""
        with self.store.at(scope) as root:
            return count_tree(root, top)

    def caps(self, scope: Scope) -> Usage:
        return self._caps[scope.kind]

    async def usage(self, scope: Scope) -> Usage:
        """The scope's usage, counted off the loop on first need (one count at a time per scope)."""
        u = self._usage.get(scope)
        while u is None:
            done = self._counting.get(scope)
            if done is not None:
                await done.wait()
            else:
                done = self._counting[scope] = trio.Event()
                try:
                    self._usage[scope] = await trio.to_thread.run_sync(self.count, scope, b"")
                finally:
                    del self._counting[scope]
                    done.set()
            u = self._usage.get(scope)
        return u

    async def need(self, scope: Scope, nbytes: int = 0, files: int = 0) -> None:
        """EDQUOT unless the scope has room for this much more."""
        if not self.fits(scope, nbytes, files):
            await self.usage(scope)
            self.fits(scope, nbytes, files)  # counted now: True, or EDQUOT

    def fits(self, scope: Scope, nbytes: int = 0, files: int = 0) -> bool:
        """need() without waiting: EDQUOT as need, or True; False when the scope's usage is
        not counted yet (then await need). A create asks this first: no coroutine."""
        u = self._usage.get(scope)
        if u is None:
            return False
        cap = self._caps[scope.kind]
        if (files > 0 and u.files + files > cap.files) or (nbytes > 0 and u.bytes + nbytes > cap.bytes):
            log.info(
                "%s: quota reached (%d/%d bytes, %d/%d files)", scope, u.bytes, cap.bytes, u.files, cap.files
            )
            raise FUSEError(errno.EDQUOT)
        return True

    def room(self, scope: Scope) -> int:
        """Bytes the scope may still grow by (its usage is known: it was needed at open)."""
        u = self._usage.get(scope)
        cap = self._caps[scope.kind].bytes
        return cap - u.bytes if u is not None else cap

    def known(self) -> dict[Scope, Usage]:
        """The usage of every scope counted so far (never counts): for metrics."""
        return dict(self._usage)

    def forget(self, scope: Scope) -> None:
        """Files changed behind memfs's back (sync): count the scope again on next need."""
        if scope not in self._counting:
            self._usage.pop(scope, None)

    def add(self, scope: Scope, nbytes: int = 0, files: int = 0) -> None:
        u = self._usage.get(scope)
        if u is not None:  # unknown: the first count will see the change on disk
            u.bytes = max(0, u.bytes + nbytes)
            u.files = max(0, u.files + files)


class OpenCounts:
    """Handles held open per uid: one uid cannot take every file descriptor of the daemon."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._files: Counter[int] = Counter()
        self._control: Counter[int] = Counter()  # of those, .memfs handles

    def take(self, uid: int, control: bool = False) -> None:
        # .get, not [uid]: a uid holding nothing has no entry, and Counter's __missing__
        # is Python code (two calls per open of such a uid).
        held = self._files.get(uid, 0)
        if held >= self.limits.open_files:
            log.info("uid %d: %d handles open, the limit (EMFILE)", uid, held)
            raise FUSEError(errno.EMFILE)
        if control:
            queries = self._control.get(uid, 0)
            if queries >= self.limits.open_queries:
                log.info("uid %d: %d .memfs handles open, the limit (EMFILE)", uid, queries)
                raise FUSEError(errno.EMFILE)
            self._control[uid] = queries + 1
        self._files[uid] = held + 1

    def give(self, uid: int, control: bool = False) -> None:
        for counts in (self._files, self._control) if control else (self._files,):
            left = counts[uid] - 1
            if left > 0:
                counts[uid] = left
            else:
                counts.pop(uid, None)  # a uid holding nothing takes no room (Counter's del is Python code)

    def held(self, uid: int) -> tuple[int, int]:
        return self._files[uid], self._control[uid]

    def by_uid(self) -> dict[int, int]:
        """Handles held open, per uid holding any."""
        return dict(self._files)
