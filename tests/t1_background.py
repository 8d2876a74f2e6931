"""The niced worker process starts light: what it imports is paid once per mount."""

from __future__ import annotations

import sys

from memfs.background import NicedProcess


def _ready() -> None:
    """The worker's initializer (a real one, like history's committer.start, loads its job)."""


def _loaded(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in sys.modules]


def test_the_worker_process_loads_no_trio() -> None:
    # trio was 0.1 of the history worker's 0.3 CPU-s start: it needs only _start_niced.
    worker = NicedProcess(_ready, (), "memfs-test")
    try:
        assert worker.call(_loaded, ("trio", "memfs.background")) == ["memfs.background"]
    finally:
        worker.close()


def _grow(mib: int) -> int:
    """Hold `mib` MiB in the worker for good (as libgit2's caches and malloc's arenas do)."""
    import os

    _held.append(bytearray(os.urandom(1)) * (mib << 20))
    return os.getpid()


_held: list[bytearray] = []


def test_a_worker_past_its_memory_cap_is_replaced_after_its_call() -> None:
    worker = NicedProcess(_ready, (), "memfs-test")
    worker.max_rss = 96 << 20
    try:
        small = worker.call(_grow, 1)
        assert worker.call(_grow, 1) == small  # under the cap: the same process
        big = worker.call(_grow, 120)  # this call still runs where it started...
        assert big == small
        assert worker.call(_grow, 1) != big  # ...and the next one in a fresh worker
    finally:
        worker.close()
