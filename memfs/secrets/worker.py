"""The scanner in a worker process of its own (background.NicedProcess): a scan of a large
write or file holds the GIL for its whole length (the regexes are Python's `re`: ~0.5 s per
MiB of prose), which in a daemon thread would stall every other caller's requests. Small
scans of a caller's write stay in the daemon's threads (service.INLINE_SCAN): the writer
waits, and a process round trip costs more than they do. The background flags of private
memory all run in a process (history's worker when history is on: no process of its own).
Module-level functions: what NicedProcess sends must pickle."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..policy import Scope
from ..store import Store
from . import guard
from .scanner import Finding, Scanner

_scanners: dict[tuple[str, ...], Scanner] = {}
_store: Store | None = None  # the flag worker's: it opens the files it scans itself


def start(allow: tuple[str, ...], data: Path | None = None, max_file_bytes: int = 0) -> None:
    """`data`: a flag worker, which reads the files it is named (flag_files)."""
    global _store
    if data is not None:
        _store = Store(data, max_file_bytes)
    _get(allow)  # its rules compile on its first scan (Scanner._compiled), not here


def _get(allow: tuple[str, ...]) -> Scanner:
    """The scanner for these allow patterns, made on first use: another worker process
    (history's, for the background flags) runs these functions too."""
    s = _scanners.get(allow)
    if s is None:
        s = _scanners[allow] = Scanner(allow=allow)
    return s


def judge(allow: tuple[str, ...], before: bytes, after: bytes) -> Finding | None:
    return judge_with(_get(allow), before, after)


def first(allow: tuple[str, ...], data: bytes) -> Finding | None:
    return first_with(_get(allow), data)


def judge_with(scanner: Scanner, before: bytes, after: bytes) -> Finding | None:
    """The first finding `after` holds that `before` did not (both scanned by one scanner in
    one process, so their fingerprints compare: they are keyed per process). `before` is
    scanned only when `after` holds something: the common case is one scan."""
    found = scanner.scan(after)
    if not found:
        return None
    new = guard.new_findings(scanner.scan(before) if before else [], found)
    return new[0] if new else None


def first_with(scanner: Scanner, data: bytes) -> Finding | None:
    found = scanner.scan(data)
    return found[0] if found else None


def lines_before(fd: int, offset: int) -> int:
    """Newlines in the file before `offset`: only counted when a finding names a line."""
    n, pos = 0, 0
    while pos < offset and fd >= 0:
        chunk = os.pread(fd, min(1 << 20, offset - pos), pos)
        if not chunk:
            break
        n += chunk.count(b"\n")
        pos += len(chunk)
    return n


def flag_files(allow: tuple[str, ...], keys: list[tuple[Scope, bytes]]) -> list[tuple[int, str] | None]:
    """(line, rule) of the first finding in each file, None for none (or a file gone or
    unreadable since: nothing to flag). The flagger sends a batch of closed files at once:
    one round trip, and the daemon neither reads nor pickles their bytes."""
    assert _store is not None, "not a flag worker"
    scanner = _get(allow)
    out: list[tuple[int, str] | None] = []
    for scope, path in keys:
        try:
            fd = _store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            out.append(None)
            continue
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            out.append(first_in_file(fd, lambda data: first_with(scanner, data)) if regular else None)
        except OSError:
            out.append(None)
        finally:
            os.close(fd)
    return out


def first_in_file(fd: int, first: Callable[[bytes], Finding | None]) -> tuple[int, str] | None:
    """(line, rule) of the first finding in an open file, read in overlapping pieces, each
    judged by `first` (here, or in a worker process: service.judge_file)."""
    for start, end in guard.chunks(os.fstat(fd).st_size):
        found = first(os.pread(fd, end - start, start))
        if found is not None:
            return lines_before(fd, start) + found.line, found.rule
    return None
