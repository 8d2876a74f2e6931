"""The scanner in a worker process of its own (background.NicedProcess): a scan of a large
write or file holds the GIL for its whole length (the regexes are Python's `re`: ~0.5 s per
MiB of prose), which in a daemon thread would stall every other caller's requests. Small
scans stay in the daemon's threads (service.INLINE_SCAN): a process round trip costs more
than they do. Module-level functions: what NicedProcess sends must pickle."""

from __future__ import annotations

from . import guard
from .scanner import Finding, Scanner

_scanner: Scanner | None = None


def start(allow: tuple[str, ...]) -> None:
    global _scanner
    _scanner = Scanner(allow=allow)


def _get() -> Scanner:
    assert _scanner is not None, "secrets worker not started"
    return _scanner


def judge(before: bytes, after: bytes) -> Finding | None:
    """The first finding `after` holds that `before` did not (both scanned here, so their
    fingerprints compare: they are keyed per process)."""
    found = _get().scan(after)
    if not found:
        return None
    new = guard.new_findings(_get().scan(before) if before else [], found)
    return new[0] if new else None


def first(data: bytes) -> Finding | None:
    found = _get().scan(data)
    return found[0] if found else None
