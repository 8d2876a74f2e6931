"""The last overview kept, so the memory-at-a-glance page answers at once at any size.

Building it means the daemon lists every entry and checks every index line (about a
second at 10k entries on these machines: see README, "memfs ui"). A page older than
MAX_AGE is still shown, and a new one is built in the background for the next request;
a change made from this page drops it, so its author never sees the page from before."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
MAX_AGE = 5.0  # seconds a snapshot is shown without a rebuild starting


class Snapshot(Generic[T]):
    def __init__(self, build: Callable[[], T], max_age: float = MAX_AGE, clock=time.monotonic):
        self._build = build
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._taken = 0.0
        self._building = False
        self._running: Future | None = None
        self._generation = 0  # a build started before a drop() must not store its result
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memfs-ui-snapshot")

    def get(self) -> tuple[T, float]:
        """(the value, when it was taken by time.time()); builds in the caller's thread
        when there is none, else starts a background rebuild when it is old."""
        with self._lock:
            value, taken, gen, running = self._value, self._taken, self._generation, self._running
            if value is not None and self._clock() - taken > self._max_age and not self._building:
                self._start(gen)
        if value is None and running is not None and not running.done():
            running.result()  # the one being built (at start) lands sooner than a second one
            with self._lock:
                value, taken = (self._value, self._taken) if gen == self._generation else (None, 0.0)
        if value is None:
            return self._store(gen, self._build())
        return value, time.time() - (self._clock() - taken)

    def _start(self, gen: int) -> None:
        self._building = True
        self._running = self._pool.submit(self._rebuild, gen)

    def start(self) -> None:
        """Build one in the background now (at start: the first visit finds it ready)."""
        with self._lock:
            self._start(self._generation)

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` s for the build start() began (a failed one included)."""
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                running.exception(timeout=timeout)

    def drop(self) -> None:
        with self._lock:
            self._value = None
            self._generation += 1

    def _rebuild(self, gen: int) -> None:
        try:
            self._store(gen, self._build())
        except Exception:  # the next request builds in its own thread and shows the error
            pass
        finally:
            with self._lock:
                self._building = False

    def _store(self, gen: int, value: T) -> tuple[T, float]:
        with self._lock:
            if gen == self._generation:
                self._value, self._taken = value, self._clock()
        return value, time.time()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
