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
