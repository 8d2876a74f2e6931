"""What the spool holds, on disk: versions kept by a daemon that died before committing them.

A kept version's bytes are in the spool (DATA/state/kept/) before the call that destroys
them proceeds, but what they are (scope, path, author, mode, when, where in the spool) was
only in the daemon's memory: SIGKILL lost every version kept since the last batch. Each is
now also appended to the daemon's journal, one JSON line (a write, no fsync: like the
spool's bytes it outlives the daemon, not a power cut). At the next mount the journals of
the daemon before are read back (recover) and their versions committed before reconcile
commits the files as they are (service.ready). A journal is emptied whenever nothing it
lists is still waiting, and rewritten with only what waits once it passes COMPACT_AT.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ..confine import bad_component
from ..policy import Scope
from .committer import Kept

log = logging.getLogger(__name__)

SUFFIX = ".journal"
COMPACT_AT = 4 << 20  # bytes of journal before it is rewritten with only what still waits


@functools.lru_cache(maxsize=1024)
def _head(scope: Scope, user: str) -> str:
    """The JSON of a line's first two fields (a scope has few writers): json.dumps of the
    whole line was most of a journal write, i.e. of an rm's history cost (measured). Keyed
    by the scope itself: scopes are interned, so a hit hashes no string."""
    return json.dumps([str(scope), user])[:-1]


def _line(scope: Scope, k: Kept) -> bytes:
    # The rest is JSON as json.dumps writes it: hex, an int, a file name of the spool's
    # own making (ASCII, no quote) and ints; `when` in whole seconds, all a commit keeps
    # of it (a float's repr was a third of the line's cost).
    spool = k.spool.rpartition("/")[2]
    tail = f', "{k.path.hex()}", {k.mode}, "{spool}", {k.offset}, {k.size}, {int(k.when)}]\n'
    return (_head(scope, k.user) + tail).encode()


class Journal:
    def __init__(self, spool: Path, stem: str):
        self.path = spool / f"{stem}{SUFFIX}"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = 0

    def record(self, scope: Scope, k: Kept) -> None:
        line = _line(scope, k)
        try:
            os.write(self._fd, line)
            self.size += len(line)
        except OSError as e:  # a full disk: the version is kept, only a kill would lose it
            log.warning("cannot record a kept version in %s: %s", self.path, e)

    def settle(self, waiting: Iterable[tuple[Scope, Kept]]) -> None:
        """After a commit round: keep only what still waits (empty if nothing does)."""
        waiting = list(waiting)
        if not waiting:
            if self.size:
                os.ftruncate(self._fd, 0)
                self.size = 0
            return
        if self.size < COMPACT_AT:
            return
        tmp = self.path.with_suffix(".tmp")
        body = b"".join(_line(s, k) for s, k in waiting)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.size = len(body)

    def close(self) -> None:
        """Unmounted with everything committed: the journal goes."""
        os.close(self._fd)
        with contextlib.suppress(OSError):
            self.path.unlink()


def recover(spool: Path) -> dict[Scope, list[Kept]]:
    """The versions the journals in `spool` list whose bytes are still there, by scope, in
    the order they were kept. The spool is the daemon's own, but its lines are checked as
    if they were anyone's: a path that would leave its scope or a spool name that would
    leave the spool is skipped."""
    found: dict[Scope, list[Kept]] = {}
    seen: set[tuple[str, int]] = set()
    for journal in sorted(spool.glob(f"*{SUFFIX}")):
        try:
            lines = journal.read_bytes().splitlines()
        except OSError as e:
            log.warning("cannot read %s: %s", journal, e)
            continue
        for raw in lines:
            try:
                scope_name, user, path_hex, mode, name, offset, size, when = json.loads(raw)
                scope, path = Scope.parse(scope_name), bytes.fromhex(path_hex)
                k = Kept(str(user), path, int(mode), "", int(offset), int(size), float(when))
            except (ValueError, TypeError):
                continue  # the line a kill cut short
            outside = name and ("/" in name or bad_component(name.encode()) is not None)
            if bad_component(path) is not None or outside:
                continue  # a path out of its scope, a spool name out of the spool
            if name:
                if (name, k.offset) in seen or not (spool / name).is_file():
                    continue  # committed already (its spool file went with its batch)
                seen.add((name, k.offset))
                k = Kept(k.user, k.path, k.mode, str(spool / name), k.offset, k.size, k.when)
            found.setdefault(scope, []).append(k)
    return found


def clear(spool: Path, keep: str) -> None:
    """Remove what earlier daemons left in the spool (files not starting with `keep`)."""
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in spool.iterdir():
        if not f.name.startswith(keep):
            with contextlib.suppress(OSError):
                f.unlink()
