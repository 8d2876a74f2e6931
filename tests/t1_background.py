"""The niced worker process starts light: what it imports is paid once per mount."""

from __future__ import annotations

import concurrent.futures
import errno
import multiprocessing.context
import os
import sys
import time

from memfs import prefork
from memfs.background import NicedProcess, stop_idle_workers


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


def _pid() -> int:
    return os.getpid()


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_calls_past_the_recycle_count_all_finish_in_fresh_workers() -> None:
    """After RECYCLE calls the worker is replaced, once the calls in it are done. With
    calls queued when it ended, Python 3.11's own recycling (max_tasks_per_child) left the
    pool with no worker and every later call waiting forever (CPython gh-115634): a
    100k-entry mount's unmount hung on its last history commit."""
    worker = NicedProcess(_ready, (), "memfs-test")
    worker.RECYCLE = 3
    pids: list[int] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as threads:  # as the index's threads call
            for _burst in range(10):  # 4 at once: the 3rd ends a worker while the 4th waits
                calls = [threads.submit(worker.call, _pid_after, 0.02) for _ in range(4)]
                pids += [c.result(timeout=60) for c in calls]
        assert len(set(pids)) == 10, pids  # a fresh worker for every burst
        assert os.getpid() not in pids
        assert worker.call(_pid) not in (pids[-1], os.getpid())  # and the next call is served
    finally:
        worker.close()


def test_an_idle_worker_ends_and_the_next_call_starts_another() -> None:
    """What a worker holds goes back to the system after a quiet spell (the daemon asks
    every TRIM_EVERY seconds), and work goes on in a new one."""
    worker = NicedProcess(_ready, (), "memfs-test")
    try:
        first = worker.call(_pid)
        assert not worker.stop_if_idle(3600)  # used just now: kept
        assert worker.call(_pid) == first
        assert stop_idle_workers(0) >= 1  # every worker of this process, this one among them
        for _ in range(500):  # the pool's shutdown does not wait for the process to exit
            try:
                os.kill(first, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"idle worker {first} still running")
        assert worker.call(_pid) not in (first, os.getpid())
        assert not worker.stop_if_idle(3600)
    finally:
        worker.close()


def test_a_waiting_caller_lifts_an_idle_worker_and_the_last_one_puts_it_back() -> None:
    """An idle-class worker (the embedder's) runs only on idle cores, except while a caller
    waits on its work (a search flushing its own writes): then it is niced, as others."""
    worker = NicedProcess(_ready, (), "memfs-test", idle=True)
    try:
        pid = worker.call(_pid)
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        with worker.boosted():
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
            with worker.boosted():
                assert worker.call(_pid) == pid
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER  # the first caller still waits
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        with worker.boosted():  # a worker started while a caller waits starts lifted
            assert worker.stop_if_idle(0)
            fresh = worker.call(_pid)
            assert fresh != pid and os.sched_getscheduler(fresh) == os.SCHED_OTHER
        assert os.sched_getscheduler(fresh) == os.SCHED_IDLE
    finally:
        worker.close()


def _seed_that_fails(error: OSError) -> multiprocessing.context.SpawnContext:
    """A fork server's context whose seed cannot start a worker: each start raises `error`."""

    class Failing(multiprocessing.context.SpawnProcess):
        def start(self) -> None:
            raise error

    class Seed(multiprocessing.context.SpawnContext):
        Process = Failing

    return Seed()


def test_a_pool_that_can_start_no_worker_is_replaced(monkeypatch) -> None:
    """The seed killed while a pool of its fork server lives (CI saw it: the index's commits
    failed for good with ECHILD): the next call makes a new pool, and runs."""
    real = prefork.context
    made: list[str] = []

    def context():
        if not made:
            made.append("dead")
            return _seed_that_fails(OSError(errno.ECHILD, "the worker seed is gone")), os.getpid()
        made.append("fresh")
        return real()

    monkeypatch.setattr(prefork, "context", context)
    worker = NicedProcess(_ready, (), "memfs-test")
    try:
        assert worker.call(_pid) != os.getpid()
        assert made == ["dead", "fresh"]
    finally:
        worker.close()


def test_a_seed_that_refuses_is_given_up_on_before_it_is_seen_to_exit(monkeypatch, checklogs) -> None:
    """While waitid still says the killed seed lives, a new pool of its fork server gets
    ECONNREFUSED: the call must not fail with it (an index commit did, once, in a suite run
    of t4_privilege), the seed is given up on and the worker spawned."""
    checklogs.expect(r"the worker seed \(pid \d+\) is gone \(\[Errno 111\]", 1)
    real = prefork.context
    monkeypatch.setattr(prefork, "_seed", 2**22 + 1)  # a pid waitid would still call alive

    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    def context():  # a killed seed's fork server: its socket refuses before it is seen to exit
        return (_seed_that_fails(refused), prefork._seed) if prefork._seed is not None else real()

    monkeypatch.setattr(prefork, "context", context)
    worker = NicedProcess(_ready, (), "memfs-test")
    try:
        assert worker.call(_pid) != os.getpid()
        assert prefork._seed is None  # spawned from now on
    finally:
        worker.close()
