"""Waiting for quiet cores before a timed phase (scripts/bench.py, scripts/bench_ui.py)."""

from __future__ import annotations

import time

QUIET_BUSY = 0.10  # share of all cores busy below which the machine counts as quiet
QUIET_MAX = 30.0  # seconds waited for it at most


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]  # all, idle + iowait


def wait_quiet(limit: float = QUIET_MAX) -> float:
    """Until the cores are idle, at most `limit` s; the seconds waited. What a target left
    running (history's commits, the secret flagger's scans, a first mount's embedding) would
    otherwise be charged to what is timed next: in scripts/bench the rounds' fixed order made
    one column pay it every run."""
    t_start = time.monotonic()
    while time.monotonic() - t_start < limit:
        t0, i0 = _cpu_times()
        time.sleep(0.3)
        t1, i1 = _cpu_times()
        if t1 > t0 and 1 - (i1 - i0) / (t1 - t0) < QUIET_BUSY:
            break
    return time.monotonic() - t_start
