"""Worker threads for background work (history commits, retention, sync rounds), at a
lower CPU priority for good.

Linux nices threads one by one. trio's own worker threads are reused for callers' work
(searches, agent files), so a thread niced for a commit would serve the next search niced
too, and a daemon without root cannot raise its priority back (RLIMIT_NICE is 0 in most
sandboxes). These threads are background work's alone: niced once, never given back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import logging.handlers
import multiprocessing
import os
import resource
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TypeVar

from . import prefork

log = logging.getLogger(__name__)

T = TypeVar("T")
NICE = 10  # compressing a caller's gigabyte into history must not slow others' requests


def _lower_priority() -> None:
    _lower_priority_of(threading.get_native_id())  # Linux nices a thread id like a process


class NicedPool:
    def __init__(self, workers: int, name: str):
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=_lower_priority
        )

    async def run(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in one of the pool's threads. Like trio.to_thread.run_sync, it is not
        abandoned when cancelled: background work that started finishes (a commit half
        made would be redone, a sync round half applied would be worse)."""
        fut = self._pool.submit(fn, *args)
        await _finished(fut)
        return fut.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


async def _finished(fut: concurrent.futures.Future) -> None:
    """Wait on the loop until fut is done, shielded from cancellation."""
    # Imported here: worker processes import this module for _start_niced and need no trio
    # (its import was 0.1 of a worker's 0.3 CPU-s start, once per mount).
    import trio

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    fut.add_done_callback(lambda _f: token.run_sync_soon(done.set))
    with trio.CancelScope(shield=True):
        await done.wait()


def _resident(pid: int) -> int:
    """A process's resident set in bytes, shared pages included (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _own_memory(pid: int) -> int:
    """The bytes a process holds of its own (0 if it is gone): its private resident pages
    and swap. Not the whole resident set: a worker forked from the seed (prefork.py) shares
    the seed's pages, which are nobody's growth."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Swap:")):
            total += int(line.split()[1]) << 10
    return total


def _lower_priority_of(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, NICE)  # absolute: done twice, still NICE
    except OSError:
        pass


def _set_policy(pid: int, policy: int) -> None:
    try:
        os.sched_setscheduler(pid, policy, os.sched_param(0))
    except OSError:  # a kernel or sandbox without it: the worker stays niced
        pass


def allow_priority_back() -> None:
    """While still root: let the daemon give its niced workers normal priority back at
    unmount (RLIMIT_NICE 20 allows nice 0 at best; an unprivileged daemon cannot
    otherwise lower a nice value). Best effort: without it they finish niced."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NICE)
        if soft < 20:
            resource.setrlimit(resource.RLIMIT_NICE, (20, max(hard, 20)))
    except (OSError, ValueError):
        pass


def _start_niced(
    initializer: Callable[..., None], args: tuple, logs, level: int, parent: int, name: str
) -> None:
    # A pool's worker holds both ends of its own task pipe: it would never see the daemon
    # (or the seed it was forked from) gone without this.
    prefork.die_with(parent)
    prefork.name_process(name)
    _lower_priority_of(0)
    # its log lines go to the daemon's log, through the daemon (one writer for the file)
    logging.basicConfig(level=level, handlers=[logging.handlers.QueueHandler(logs)], force=True)
    initializer(*args)


class _Relay(logging.Handler):
    """In the daemon: a worker's record, handled as if it were logged here."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


# Every NicedProcess of this process, for stop_idle_workers.
_ALL: weakref.WeakSet[NicedProcess] = weakref.WeakSet()


def stop_idle_workers(seconds: float) -> int:
    """Stop the worker of every NicedProcess idle for `seconds`; how many were stopped."""
    return sum(w.stop_if_idle(seconds) for w in list(_ALL))


class NicedProcess:
    """One worker process for background work that would otherwise hold the GIL the
    callers' requests need (history's hashing, compression and commits). `run` takes a
    module-level function and picklable arguments. A worker that dies (killed, out of
    memory) is replaced on the next call; the call that was running raises, and its
    caller puts the work back. Recycled after RECYCLE calls, and after a call that left
    it above max_rss, so what libgit2 and malloc keep in it (caches, arenas) cannot grow
    for the mount's life. The calls are counted here, not by the pool's
    max_tasks_per_child: in Python 3.11 a pool whose worker ended at that limit with calls
    queued could be left with no worker, and every later call waited forever (CPython
    gh-115634; a 100k-entry mount's unmount hung on its last history commit)."""

    RECYCLE = 2000

    def __init__(
        self,
        initializer: Callable[..., None],
        args: tuple,
        name: str,
        workers: int = 1,
        idle: bool = False,
        max_rss: int | None = None,
    ):
        """idle: its workers run only when a core is otherwise idle (SCHED_IDLE), for work
        nobody waits for; a niced worker still took CPU from callers on a busy machine.
        max_rss: bytes a worker may hold after a call before it is replaced (None: no cap,
        for a worker whose size is its job, as the embedder's model)."""
        self.max_rss = max_rss
        self._initializer, self._args, self.name, self._workers = initializer, args, name, workers
        self._idle = idle
        self._boosts = 0  # callers waiting on this worker's work now (boosted())
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._ctx = multiprocessing.get_context("spawn")  # the log queue's; each pool's: prefork
        self._logs: multiprocessing.Queue[logging.LogRecord] | None = None
        self._relay: logging.handlers.QueueListener | None = None
        self._niced: set[int] = set()  # worker pids niced from here
        self._inflight = 0  # calls handed to the pool and not yet returned
        self._served = 0  # calls the pool's worker has returned (RECYCLE)
        self._last_call = time.monotonic()  # when a call last returned
        self._lock = threading.Lock()
        _ALL.add(self)

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._relay is None:
            self._logs = logs = self._ctx.Queue()
            self._relay = logging.handlers.QueueListener(logs, _Relay())
            self._relay.start()
        if self._pool is None:
            # Forked from the daemon's seed (prefork.py), else spawned: never forked from
            # the daemon itself (a process with threads and a FUSE session). Either way
            # it holds the daemon's uid, and no root.
            ctx, parent = prefork.context()
            level = logging.getLogger().getEffectiveLevel()
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=ctx,
                initializer=_start_niced,
                initargs=(self._initializer, self._args, self._logs, level, parent, self.name),
            )
            self._served = 0
        return self._pool

    def _submit(self, fn: Callable[..., T], *args) -> concurrent.futures.Future:
        with self._lock:  # index threads call at once: one pool, made once
            for attempt in range(3):
                try:
                    fut = self._executor().submit(fn, *args)
                    break
                except (concurrent.futures.BrokenExecutor, OSError, EOFError) as e:
                    # Broken (its worker died), or it cannot start a worker: a pool of the
                    # seed's fork server once the seed is gone (ECHILD, EOF or a refused
                    # connection on its socket) never can again, so a new pool is made and
                    # the call retried. A seed that could not start one is given up on
                    # (spawned from now on, prefork.context): a killed seed's socket refuses
                    # before the seed is seen to exit, and a retry in between failed with
                    # ECONNREFUSED (t4_privilege, once in a suite run).
                    broken, self._pool = self._pool, None
                    if broken is not None:
                        broken.shutdown(wait=False, cancel_futures=True)
                    if attempt == 2:
                        raise
                    if not isinstance(e, concurrent.futures.BrokenExecutor):
                        prefork.give_up_seed(e)
            # A new worker is niced from here at once: its own initializer runs only after
            # its imports (a second of start-up at the callers' priority otherwise).
            for pid in self._pids():
                if pid not in self._niced:
                    self._niced.add(pid)
                    _lower_priority_of(pid)
                    if self._idle and not self._boosts:
                        _set_policy(pid, os.SCHED_IDLE)
            self._inflight += 1  # given back by _done, once the caller has the result
            return fut

    async def run(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in the worker; not abandoned when cancelled (see NicedPool.run)."""
        fut = self._submit(fn, *args)
        await _finished(fut)
        try:
            return fut.result()
        except concurrent.futures.BrokenExecutor:
            self._pool = None  # the next call starts a new worker
            raise
        finally:
            self._done()

    def call(self, fn: Callable[..., T], *args) -> T:
        """fn(*args) in the worker, from a worker thread (blocking it, not the loop)."""
        fut = self._submit(fn, *args)
        try:
            return fut.result()
        except concurrent.futures.BrokenExecutor:
            self._pool = None
            raise
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._inflight -= 1
            self._served += 1
            self._last_call = time.monotonic()
        self._recycle_if_due()

    def stop_if_idle(self, seconds: float) -> bool:
        """End the worker if no call has come for `seconds`: what it holds (a model,
        libgit2's caches, the heap of its last batch) goes back to the system, and the next
        call forks a new one from the seed. True if one was stopped."""
        with self._lock:
            pool = self._pool
            if pool is None or self._inflight or time.monotonic() - self._last_call < seconds:
                return False
            self._pool = None
        log.debug("%s: idle %.0f s: worker stopped", self.name, seconds)
        pool.shutdown(wait=False)
        return True

    def _recycle_if_due(self) -> None:
        """A worker that has served RECYCLE calls, or is past max_rss, ends when no call is
        left in it (two workers never work on one repository at once); the next call
        starts a fresh one. One read of /proc per call: calls are batches, seconds apart."""
        with self._lock:
            pool = self._pool
            if pool is None or self._inflight:  # another call is queued or running there: it checks after
                return
            worn = self._worn_out()
            if worn is None:
                return
            self._pool = None
        level, why = worn
        log.log(level, "%s: worker %s: recycled", self.name, why)
        pool.shutdown(wait=False)

    def _worn_out(self) -> tuple[int, str] | None:
        """(log level, why) the worker should end now, or None: its RECYCLE calls are
        routine (debug), a worker past its memory cap is news (info)."""
        if self._served >= self.RECYCLE:
            return logging.DEBUG, f"served {self._served} calls"
        cap = self.max_rss
        if cap is None:
            return None
        # The resident set first (one short read): what a worker holds of its own is never
        # more, and reading that (smaps_rollup, ~1 ms: the kernel walks every mapping)
        # here, on the loop, after every call cost the callers' requests.
        for pid in self._pids():
            if _resident(pid) > cap and (own := _own_memory(pid)) > cap:
                return logging.INFO, f"at {own >> 20} MiB, past {cap >> 20} MiB"
        return None

    @contextlib.contextmanager
    def boosted(self) -> Iterator[None]:
        """A caller waits on what this idle-class worker does (a search on the vectors of
        its own writes): meanwhile it runs niced, not only on otherwise idle cores, so
        the wait ends on a busy machine too. Background work is left at SCHED_IDLE."""
        if not self._idle:
            yield
            return
        self._set_boost(+1)
        try:
            yield
        finally:
            self._set_boost(-1)

    def _set_boost(self, step: int) -> None:
        with self._lock:
            self._boosts += step
            if self._boosts == (1 if step > 0 else 0):  # the first caller lifts, the last lowers
                policy = os.SCHED_OTHER if self._boosts else os.SCHED_IDLE
                for pid in self._pids():
                    _set_policy(pid, policy)

    def _pids(self) -> list[int]:
        """The pool's worker processes now (none without a pool)."""
        return list(getattr(self._pool, "_processes", None) or ())

    def hurry(self) -> None:
        """Unmounted: no caller is left to protect, so the worker finishes what is pending
        at normal priority (niced under a loaded machine, the commit after an rm -r of
        100k files took minutes and outlasted `memfs umount`'s wait)."""
        for pid in self._pids():
            if self._idle:
                _set_policy(pid, os.SCHED_OTHER)
            try:
                os.setpriority(os.PRIO_PROCESS, pid, 0)
            except OSError:
                pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
