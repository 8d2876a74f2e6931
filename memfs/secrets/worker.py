"""The scanner in a worker process of its own (background.NicedProcess): a scan of a large
write or file holds the GIL for its whole length (the regexes are Python's `re`: ~0.5 s per
MiB of prose), which in a daemon thread would stall every other caller's requests. Small
scans of a caller's write stay in the daemon's threads (service.INLINE_SCAN): the writer
waits, and a process round trip costs more than they do. The background flags of private
memory all run in a process (history's worker when history is on: no process of its own).
Module-level functions: what NicedProcess sends must pickle."""

from __future__ import annotations

from . import guard
from .scanner import Finding, Scanner

_scanners: dict[tuple[str, ...], Scanner] = {}


def start(allow: tuple[str, ...]) -> None:
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
