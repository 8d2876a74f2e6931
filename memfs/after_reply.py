"""Bookkeeping a request leaves for just after its reply (issue 22).

An rm's caller must wait for what it will see: the name gone and, when history has not
committed the content, that version moved into the spool. Telling the node table, the
quota, history's batch and the change feed can follow the reply. Work queued with `later`
runs when the task that queued it next yields (a trio Instrument's after_task_step): after
pyfuse3 has written the reply, and before any other task (another request, the
committer, the index writer, a sync round) takes a step, so none of them ever sees the
state in between; only the caller's next request overlaps it, on the other core, instead
of waiting behind it.

The daemon turns it on (`start`) for its whole run. Built bare (handler tests, the
in-process bench) it runs each piece of work at once, where `later` is called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger(__name__)


class AfterReply(trio.abc.Instrument):
    def __init__(self) -> None:
        self._queue: list[tuple[Callable[..., Any], tuple]] = []
        self._on = False

    def later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) once the current task step ends: after the reply of the request
        that calls this as its last step (it must not fail the request: its errors are
        logged). At once when not started."""
        if self._on:
            self._queue.append((fn, args))
        else:
            fn(*args)

    def start(self) -> None:
        """Defer from now on (inside trio.run): the daemon, for its whole run."""
        trio.lowlevel.add_instrument(self)
        self._on = True

    def stop(self) -> None:
        """Run what waits and defer no more."""
        self._on = False
        self.drain()
        trio.lowlevel.remove_instrument(self)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._queue:
            self.drain()

    def drain(self) -> None:
        # Never raises: an Instrument that raises is removed by trio, and what it would
        # have run later would never run.
        q = self._queue
        while q:
            work, self._queue = q, []
            for fn, args in work:
                try:
                    fn(*args)
                except Exception:
                    log.exception("bookkeeping after a reply failed: %s", getattr(fn, "__qualname__", fn))
            q = self._queue
