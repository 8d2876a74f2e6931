"""Worker threads for background work (history commits, retention, sync rounds), at a
lower CPU priority for good.

Linux nices threads one by one. trio's own worker threads are reused for callers' work
(searches, agent files), so a thread niced for a commit would serve the next search niced
too, and a daemon without root cannot raise its priority back (RLIMIT_NICE is 0 in most
sandboxes). These threads are background work's alone: niced once, never given back.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")
NICE = 10  # compressing a caller's gigabyte into history must not slow others' requests


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except OSError:
        pass  # a platform without per-thread priorities: only slower for the others


class NicedPool:
    def __init__(self, workers: int, name: str):
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=_lower_priority
        )

    async def run(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in one of the pool's threads. Like trio.to_thread.run_sync, it is not
        abandoned when cancelled: background work that started finishes (a commit half
        made would be redone, a sync round half applied would be worse)."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        fut = self._pool.submit(fn, *args)
        fut.add_done_callback(lambda _f: token.run_sync_soon(done.set))
        with trio.CancelScope(shield=True):
            await done.wait()
        return fut.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
