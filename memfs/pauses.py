"""Python's cyclic garbage collector, set for a long-running server.

The daemon keeps ~10^5-10^6 long-lived objects (inodes, each scope's listed entries, the
index's and history's state) and `memfs ui` a 10k-entry overview; with Python's default
thresholds (700, 10, 10) a full collection walked all of them every few hundred requests:
30-70 ms stalls in the middle of a request (memfs ui's activity page at 10k entries, 1-2
requests in 80 at 80-105 ms against a p50 of 30 ms; with this, the worst of 240 was 38 ms,
measured). Young collections are rarer, full ones much rarer, and what exists once start-up
is done is left out of every later collection (gc.freeze: it stays, as it would anyway).
"""

from __future__ import annotations

import gc

YOUNG = 20_000  # allocations between young collections (Python's default: 700)
MIDDLE = 20  # young collections per middle one (default 10)
FULL = 100  # middle collections per full one at most (default 10)


def tune() -> None:
    """At start: collect less often."""
    gc.set_threshold(YOUNG, MIDDLE, FULL)


def started() -> None:
    """Start-up is done: what is alive now is never walked again (no collection first: a
    full one here would stall the loop once, for the little garbage start-up leaves)."""
    gc.freeze()
