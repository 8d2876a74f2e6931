"""The secret guard's rules (issue 24), pure: which scopes refuse a credential, the window
a write is judged in, and whether a write brings a finding the bytes before it did not.

memfs answers FLUSH with ENOSYS, so close() cannot report a refusal: a write to a guarded
scope is judged before it is applied. The file's bytes around it (WINDOW each side, cut
to whole lines at the edges) are taken as they are and with the write applied; the write
is refused if the second holds a finding the first does not. A secret split across two
writes is refused at the one that completes it; a finding already in the file (imported
another way) does not block every later write near it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..config import SecretsConf
from ..policy import Kind, Scope
from .scanner import MAX_SCAN_CHARS, Finding

# Bytes of context each side of a write. A new finding overlaps the write, and every shape
# the scanner finds is smaller: a token or URL password (< 1 KB), a JWT (a few KB), a PEM
# key's BEGIN line (caught alone: PrivateKeyDetector), a wrapped base64 run of a whole PEM
# file (~4.5 KB for RSA 4096). 64 KiB was 4x the scan: an append to a big team file cost
# ~12 ms each in the scanner's process on a loaded machine (scripts/bench_guard.py).
WINDOW = 16 * 1024
# A whole file (a rename into a guarded scope) is scanned in pieces the scanner takes
# whole, overlapping by WINDOW so a secret across a boundary is seen whole in one.
CHUNK = MAX_SCAN_CHARS // 2


class Policy:
    """Which scopes refuse a write with a new finding, and which are only flagged
    (scanned when closed, reported to the writer, never refused)."""

    def __init__(self, *, conf: SecretsConf, remotes: Iterable[Scope]) -> None:
        self._conf = conf
        self._remotes = frozenset(remotes)
        self._on = bool(conf.guard)

    @property
    def on(self) -> bool:
        return self._on

    def refuses(self, scope: Scope) -> bool:
        guard = self._conf.guard
        if "all" in guard:
            return True
        if scope.kind is Kind.TEAM and "team" in guard:
            return True
        if scope in self._remotes and "synced" in guard:
            return True
        return self._on and scope.kind is Kind.PRIVATE and self._conf.private == "refuse"

    def flags(self, scope: Scope) -> bool:
        return self._on and not self.refuses(scope)


def window(off: int, length: int, size: int, w: int = WINDOW) -> tuple[int, int]:
    """[start, end) of the file's current bytes to read for a write of `length` at `off`
    into a file of `size` bytes."""
    return max(0, min(off, size) - w), min(size, off + length + w)


@dataclass(frozen=True)
class Applied:
    before: bytes  # the window as the file holds it
    after: bytes  # the same window with the write applied
    origin: int  # the file offset both start at (for line numbers)


def apply(old: bytes, start: int, size: int, off: int, buf: bytes) -> Applied:
    """`old` = file[start:start+len(old)] (window()'s range); the write of `buf` at `off`
    applied to it. Partial lines at an edge the window cut (not the file's own start or
    end, not inside the write) are dropped from both, so neither judges half a line."""
    rel = off - start
    end = start + len(old)
    head = 0
    if start > 0:
        nl = old.find(b"\n", 0, max(0, min(rel, len(old))))
        head = nl + 1 if nl >= 0 else 0
    suffix = old[rel + len(buf) :] if rel + len(buf) < len(old) else b""
    tail = 0
    if end < size:
        nl = suffix.rfind(b"\n")
        tail = len(suffix) - (nl + 1) if nl >= 0 else 0
    pad = b"\0" * max(0, rel - len(old))  # a write past the end leaves a hole of zeros
    kept = suffix[: len(suffix) - tail]
    after = old[head:rel] + pad + buf + kept
    before = old[head : len(old) - tail]
    return Applied(before, after, start + head)


def new_findings(before: Iterable[Finding], after: Iterable[Finding]) -> list[Finding]:
    """Findings of `after` that `before` does not hold (the same rule and secret, counted:
    a second copy of a secret already there is new)."""
    seen = Counter((f.rule, f.fingerprint) for f in before)
    out = []
    for f in after:
        key = (f.rule, f.fingerprint)
        if seen[key] > 0:
            seen[key] -= 1
        else:
            out.append(f)
    return out


def chunks(size: int, chunk: int = CHUNK, overlap: int = WINDOW) -> Iterator[tuple[int, int]]:
    """[start, end) pieces that cover a file of `size` bytes, each overlapping the next."""
    start = 0
    while True:
        end = min(size, start + chunk)
        yield start, end
        if end >= size:
            return
        start = end - overlap
