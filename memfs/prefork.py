"""Worker processes forked from a seed: a copy of the daemon made before it serves.

A spawned worker is a new interpreter that imports what it runs (pygit2 and the catalog
for history, the secret rules and their regexes for the flagger): 0.2-0.25 CPU-s each,
two or three per mount, and a mount's whole life cost ~1.2 CPU-s (2026-12-02, a mount that
writes one entry). multiprocessing's fork server forks workers from a server that has
imported them once, but starts that server as a new interpreter too. Here the server is a
fork of the daemon itself, made while it is still one thread with no FUSE session, after
its imports: each worker is one fork with nothing left to import (a mount's life 0.85
CPU-s, measured the same way).

The seed holds no root (it drops it for good before serving), no fd of the daemon's but
its own two, is niced like the workers, and dies with the daemon (PR_SET_PDEATHSIG, and
multiprocessing's "alive" pipe). If it cannot be made, or dies, workers are spawned as
before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
NAME = "memfs-seed"

_seed: int | None = None  # the seed's pid, in the daemon


def start(drop: Callable[[], None], nice: int, address: Path) -> bool:
    """Fork the seed (from the daemon, before trio and FUSE start); True if it runs.
    `drop` takes root away for good in the seed; `address`: its socket's path, in a
    folder only the daemon's uid may enter (whoever reaches the socket has code run as
    the daemon user: never an abstract socket, which any local uid could reach)."""
    global _seed
    if _seed is not None:
        return True
    if threading.active_count() != 1:  # a fork copies one thread: another's locks would stay held
        log.debug("workers are spawned: %d threads before serving", threading.active_count())
        return False
    server: Any = forkserver._forkserver  # its private state: checked for, else spawn
    try:
        if server._forkserver_pid is not None:  # a fork server already (not ours)
            return False
    except AttributeError as e:  # another Python's multiprocessing: spawn
        log.debug("workers are spawned: %s", e)
        return False
    path = str(address)
    listener = socket.socket(socket.AF_UNIX)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a killed daemon's
        listener.bind(path)  # OSError past 107 bytes: spawned, then
        os.chmod(path, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()
    except OSError as e:
        listener.close()
        log.info("workers are spawned, not forked: no socket at %s: %s", path, e)
        return False
    daemon = os.getpid()
    pid = os.fork()
    if pid == 0:  # the seed: never returns
        code = 1
        try:
            os.close(alive_w)
            _become_seed(daemon, drop, nice, keep=(listener.fileno(), alive_r))
            forkserver.main(listener.fileno(), alive_r, [])
            code = 0
        except SystemExit:  # the daemon and every worker are gone
            code = 0
        finally:
            os._exit(code)  # not the daemon's exit handlers: they are the daemon's
    os.close(alive_r)
    listener.close()
    server._forkserver_address = path
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    # Never a fork server of multiprocessing's own in its place: a pool whose seed died
    # breaks, and the next one is spawned (context()).
    server.ensure_running = _ensure_seed
    _seed = pid
    return True


def stop() -> None:
    """The daemon is done: its socket goes (the seed itself ends with the daemon, by its
    parent-death signal, before it could remove it)."""
    global _seed
    if _seed is None:
        return
    _seed = None
    with contextlib.suppress(OSError, AttributeError):
        os.unlink(forkserver._forkserver._forkserver_address)  # type: ignore[attr-defined]


def give_up_seed(error: BaseException) -> None:
    """A worker could not be started from the seed (its socket refused or closed): it is
    going or gone, whatever waitid says yet (a process's sockets close before it is seen
    to exit). Workers are spawned from now on."""
    global _seed
    if _seed is not None:
        log.warning("the worker seed (pid %d) is gone (%s): workers are spawned from now on", _seed, error)
        _seed = None


def _alive(pid: int) -> bool:
    """Without reaping it (multiprocessing's own checks may still wait for it)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _ensure_seed() -> None:
    resource_tracker.ensure_running()
    if _seed is None or not _alive(_seed):
        raise OSError(errno.ECHILD, "the worker seed is gone")


def _become_seed(daemon: int, drop: Callable[[], None], nice: int, keep: tuple[int, ...]) -> None:
    drop()
    # After drop(): a change of credentials clears the parent-death signal (commit_creds),
    # and a seed that outlived the daemon would keep its workers, and they it, for good.
    die_with(daemon)
    name_process(NAME)
    # Only its listener and alive pipe: not the daemon's log, pid file or the pipe that
    # tells `memfs mount` the mount is ready (its reader would wait for this process).
    for fd in _open_fds():
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    logging.root.handlers = [logging.NullHandler()]  # theirs wrote to closed fds
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    # Every object made so far stays out of the collector: a worker's collection would
    # otherwise write to each one and copy the seed's whole heap into every worker.
    gc.freeze()


def die_with(parent: int) -> None:
    """Ask the kernel to kill this process when `parent` goes (kill -9 included); gone
    already, before the request took effect: exit now. Call it after any change of ids."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def name_process(name: str) -> None:
    """This process's name in ps and top (its comm; a fork's command line is its parent's)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _open_fds() -> list[int]:
    return [int(n) for n in os.listdir("/proc/self/fd")]


def context() -> tuple[BaseContext, int]:
    """The context a new pool of workers starts with, and the pid that will be their
    parent: the seed's fork server while the seed lives, else spawn from the daemon."""
    global _seed
    if _seed is not None:
        if _alive(_seed):
            return multiprocessing.get_context("forkserver"), _seed
        log.warning("the worker seed (pid %d) is gone: workers are spawned from now on", _seed)
        _seed = None
    return multiprocessing.get_context("spawn"), os.getpid()
