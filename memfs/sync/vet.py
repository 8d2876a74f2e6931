"""The secret guard at sync's door (issue 24): every blob a remote brings into a guarded
scope is scanned whole before it is written or shown, with the guard's own scanner.

A remote is anyone's input: whoever can push to it can push a credential, in a new file,
an edit, a folder, in a commit later undone. So, for one round: each distinct blob the
merge would write and each version the catalog would record from the arriving commits is
judged once. A blob is copied (streamed past 1 MiB) into an anonymous memfd, never into the
scope's folder, and the guard scans that in overlapping pieces. The work is bounded: a
round scans at most what a round may bring (sync's ROUND_BYTES and ROUND_FILES); a blob
past that, or past the file cap, is refused unscanned (it can be pushed again).
"""

from __future__ import annotations

import os
from typing import Protocol

import pygit2

from ..history.gitrepo import Repo
from ..policy import Scope
from .blobs import copy_blob


class ArrivalGuard(Protocol):
    """What sync needs of the secret guard (secrets/service.py's SecretGuard)."""

    def refuses(self, scope: Scope) -> bool: ...
    def judge_file(self, fd: int) -> tuple[int, str] | None: ...


class Vet:
    """One round's verdicts on a remote's blobs for one scope; `None` guard: nothing is
    scanned (a scope the guard does not refuse in)."""

    def __init__(self, guard: ArrivalGuard | None, repo: Repo, max_file: int, room: tuple[int, int]) -> None:
        self._guard = guard
        self._repo = repo
        self._max_file = max_file
        self._bytes, self._files = room
        self._verdicts: dict[bytes, str | None] = {}
        self.refused: dict[bytes, bytes] = {}  # raw blob id -> the first path it was refused at

    @property
    def on(self) -> bool:
        return self._guard is not None

    def why(self, blob: bytes, path: bytes) -> str | None:
        """Why the blob (a raw id) must not be written or shown, or None. Never the secret."""
        if self._guard is None:
            return None
        if blob not in self._verdicts:
            self._verdicts[blob] = self._judge(self._guard, pygit2.Oid(raw=blob))
        why = self._verdicts[blob]
        if why is not None:
            self.refused.setdefault(blob, path)
        return why

    def _judge(self, guard: ArrivalGuard, oid: pygit2.Oid) -> str | None:
        size = self._repo.size(oid)
        if size > self._max_file:
            return f"larger than limits.max_file_bytes ({self._max_file} bytes): not scanned for secrets"
        if size > self._bytes or self._files < 1:
            return "not scanned for secrets: this round has scanned all a round may bring"
        self._bytes -= size
        self._files -= 1
        fd = os.memfd_create("memfs-arrival", os.MFD_CLOEXEC)
        try:
            copy_blob(self._repo, oid, fd)
            found = guard.judge_file(fd)
        finally:
            os.close(fd)
        return None if found is None else f"a secret at line {found[0]} (rule {found[1]})"
