"""The composition root of one mount: builds every component with keyword arguments,
runs their background tasks beside pyfuse3.main, and owns their teardown in one
AsyncExitStack (undone in the reverse order of building: unmounted first, then what
is pending committed and flushed, then workers and files closed)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyfuse3
import trio

from . import config as config_mod
from . import context as ctx_mod
from . import guard, layout, pauses, privilege, space
from .background import NicedProcess, stop_idle_workers
from .fleet import Fleet
from .fs import Operations
from .handles import OpenFiles
from .history import History
from .history.view import HistoryView
from .identity import Identities
from .index import Index, IndexBusy, IndexUnavailable, embed
from .index.standby import Standby
from .own_numbers import OwnNumbers
from .quota import OpenCounts, Quotas
from .secrets.service import SecretGuard
from .store import Store
from .sync import Pushes, Sync, remotes

if TYPE_CHECKING:  # imported when metrics.listen is set: prometheus_client and wsgiref are ~0.03 CPU-s
    from .metrics import Exporter

log = logging.getLogger("memfs")

# After IDLE_RELEASE seconds without a call a worker process ends and an index writer is
# closed, checked every TRIM_EVERY seconds, when freed heap is also given back: memory
# returns to the system after a burst, without a remount (scripts/bench --soak). Both can
# be shortened for tests (the environment).
IDLE_RELEASE = float(os.environ.get("MEMFS_TEST_IDLE_RELEASE", 60.0))
TRIM_EVERY = float(os.environ.get("MEMFS_TEST_TRIM_EVERY", 30.0))
# The daemon's query model is read back in a search's thread, holding the GIL for much of
# ~0.17 CPU-s: let go only after a long quiet spell, so a caller searching once a minute
# cannot make every other caller wait behind that once a minute.
MODEL_IDLE = 10 * IDLE_RELEASE


class BuildError(Exception):
    """A component could not be built; the message is one line for a person."""


@dataclass
class Parts:
    store: Store
    ops: Operations
    index: Index | None
    history: History | None
    sync: Sync | None
    fleet: Fleet
    exporter: Exporter | None = None
    embedder: embed.Embedder | None = None  # the daemon's own: it embeds queries


def build(cfg: config_mod.Config, ids: Identities, data: Path, mountpoint: Path, stack) -> Parts:
    """Every component of the mount, each closed by `stack` (an AsyncExitStack)."""
    store = Store(data, cfg.limits.max_file_bytes, keep_folders=True)  # every change goes through it
    stack.callback(store.close)
    index = embedder = None
    if cfg.index.enabled:
        try:
            embedder = embed.load(cfg.search)
        except embed.EmbedderError as e:
            raise BuildError(str(e)) from None
        # SCHED_IDLE: embedding a burst took the 2 cores' share a client and the daemon
        # needed (first reads after it ~1.2-1.35x); a caller's flush lifts it (boosted)
        worker = (
            NicedProcess(embed.start_worker, (cfg.search,), "memfs-embed", idle=True) if embedder else None
        )
        index = _open_index(data, store, cfg, embedder, worker)
        stack.callback(index.close)
    history = view = sync = None
    files = OpenFiles()
    synced = remotes(cfg)
    pushes = Pushes(synced) if synced and cfg.history.enabled else None
    if cfg.history.enabled:
        history = History(
            data=data,
            store=store,
            conf=cfg.history,
            limits=cfg.limits,
            shared=synced,
            on_commit=pushes.committed if pushes is not None else None,
        )
        stack.callback(history.background.close)
        view = HistoryView(history, ids, time.time_ns(), files.open_dirty)
        stack.callback(view.close)
    # the background flag scans share history's worker process, when there is one
    background = history.background if history is not None else None
    secrets = SecretGuard(conf=cfg.secrets, remotes=synced, data=data, store=store, background=background)
    stack.callback(secrets.close)
    if history is not None and pushes is not None:
        sync = Sync(history=history, cfg=cfg, pushes=pushes, secrets=secrets)
        stack.callback(sync.background.close)
        stack.callback(sync.close)
    quotas, opens = Quotas(store, cfg.limits), OpenCounts(cfg.limits)
    own_numbers = OwnNumbers(layout.own_numbers_file(data), layout.legacy_own_numbers_file(data))
    stack.callback(own_numbers.close)
    fleet = Fleet(
        cfg=cfg, data=data, quotas=quotas, opens=opens, names=ids, index=index, history=history, sync=sync
    )
    ops = Operations(
        store=store,
        ids=ids,
        files=files,
        index=index,
        history=history,
        history_view=view,
        sync=sync,
        limits=cfg.limits,
        context=ctx_mod.ContextLimits(cfg.context.max_lines, cfg.context.max_bytes, cfg.context.stale_days),
        mountpoint=str(mountpoint),
        secrets=secrets,
        quotas=quotas,
        opens=opens,
        fleet=fleet,
        own_numbers=own_numbers,
    )
    parts = Parts(store, ops, index, history, sync, fleet, embedder=embedder)
    if cfg.metrics.listen is not None:
        parts.exporter = _exporter(cfg.metrics.listen, fleet, stack)
    return parts


def _exporter(listen: str, fleet: Fleet, stack) -> Exporter:
    """/metrics: requests counted from now on; each scrape reads a snapshot the loop takes."""
    from .metrics import SCRAPE_TIMEOUT, Exporter, RequestStats

    stats = RequestStats()
    token = trio.lowlevel.current_trio_token()

    async def both():
        with trio.fail_after(SCRAPE_TIMEOUT):
            return stats.copy(), await fleet.snapshot()

    try:
        exporter = Exporter(listen, lambda: trio.from_thread.run(both, trio_token=token))
    except OSError as e:
        raise BuildError(f"cannot serve metrics on {listen}: {e.strerror or e}") from None
    guard.enable_stats(stats)
    stack.callback(guard.enable_stats, None)
    stack.callback(exporter.close)
    return exporter


def _open_index(data: Path, store: Store, cfg: config_mod.Config, embedder, worker) -> Index:
    """The index, or on a full disk a Standby that serves the old one and opens it once
    there is room (a full disk must not keep every user's memory unmounted)."""

    def opener() -> Index:
        return Index(data, store, cfg.memory.types, embedder, worker)

    def close_worker() -> None:
        if worker is not None:
            worker.close()

    try:
        return opener()
    except Exception as e:  # tantivy: locked by another daemon, unreadable files; sqlite: no room
        if isinstance(e, IndexBusy) or not space.full(data):
            close_worker()
            raise BuildError(f"cannot open the index in {data / 'index'}: {e}") from None
        log.warning("index: cannot open while DATA/ is full (%s): serving the index as it was", e)
        return Standby(data, opener, close_worker)


async def supervised(name: str, task, *args) -> None:
    """Run a background task like a handler is run: an unexpected exception is logged and
    the task restarted after a backoff, never allowed to end pyfuse3.main for everyone."""
    delay = 0.1
    while True:
        started = trio.current_time()
        try:
            await task(*args)
            return
        except Exception:
            log.exception("%s: failed; restarting in %.1f s", name, delay)
        if trio.current_time() - started > 60:
            delay = 0.1  # it had been running fine: this is a new failure, not a loop
        await trio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def trim_memory(embedder: embed.Embedder | None, index: Index | Standby | None) -> None:
    """glibc keeps freed heap (a burst's buffers, an index commit's) instead of returning
    it: RSS stayed ~36 MiB above the working set after a soak (scripts/bench --soak), until
    malloc_trim. Every TRIM_EVERY seconds, in a thread (it walks the heap), after idle
    workers are stopped and idle index writers closed (IDLE_RELEASE), and an idle query
    model let go (MODEL_IDLE)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        trim = None  # not glibc
    while True:
        await trio.sleep(TRIM_EVERY)
        stop_idle_workers(IDLE_RELEASE)
        if embedder is not None:
            embedder.release_if_idle(MODEL_IDLE)
        if index is not None:
            await index.release_idle(IDLE_RELEASE)
        if trim is not None:
            await trio.to_thread.run_sync(trim, 0)


async def _on_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
        async for sig in sigs:
            log.info("received %s: unmounting", signal.Signals(sig).name)
            pyfuse3.terminate()
            return


async def _flush_index(index: Index) -> None:
    """Unmounted: apply what is still queued, so the index matches the files."""
    try:
        await index.flush()
    except IndexUnavailable:
        log.warning("index: queued updates not applied; the next mount reconciles them")


def _start_tasks(nursery, parts: Parts) -> None:
    index, history, sync = parts.index, parts.history, parts.sync
    nursery.start_soon(_on_signal, name="signals")
    nursery.start_soon(supervised, "invalidator", parts.ops.run_invalidator, name="invalidator")
    nursery.start_soon(supervised, "memory trim", trim_memory, parts.embedder, parts.index, name="trim")
    if parts.ops.secrets is not None and parts.ops.secrets.policy.on:
        nursery.start_soon(supervised, "secrets flagger", parts.ops.secrets.run_flagger, name="flagger")
    if index is not None:
        if isinstance(index, Standby):
            nursery.start_soon(supervised, "index opener", index.run_opener, name="index opener")
        nursery.start_soon(supervised, "index committer", index.run_committer, name="committer")
        nursery.start_soon(supervised, "index reconcile", index.reconcile, name="reconcile")
        nursery.start_soon(supervised, "index embedding", index.run_backfill, name="embedding")
    if history is not None:

        async def history_reconcile():
            # Searches wait for the index's start-up reconcile; history's does not block
            # anyone (a reader reconciles its scope first), so it takes the cores after.
            if index is not None:
                await index.reconciled()
            await history.reconcile()
            pauses.started()  # the mount's start-up state: never walked by the collector again

        nursery.start_soon(supervised, "history committer", history.run_committer, name="history")
        nursery.start_soon(supervised, "history reconcile", history_reconcile, name="history reconcile")
        nursery.start_soon(supervised, "history retention", history.run_retention, name="retention")
    if sync is not None:
        nursery.start_soon(supervised, "sync", sync.run, parts.ops, name="sync")


async def run(
    cfg: config_mod.Config,
    ids: Identities,
    where: tuple[Path, Path, Path | None],
    options: set[str],
    user,
    pid_path: Path,
    report: Callable[[str], None],
    mounted: Callable[[], None],
) -> int:
    """Build, mount, serve until unmounted or signalled, tear down. `report` tells the
    parent ("ok" or "error: ..."); `mounted` runs once the mount is up. `where`: (data,
    mountpoint, the config file given)."""
    data, mountpoint, config = where
    pauses.tune()
    async with contextlib.AsyncExitStack() as stack:
        try:
            parts = build(cfg, ids, data, mountpoint, stack)
        except BuildError as e:
            log.error("%s", e)
            report(f"error: {e}")
            return 1
        with privilege.raised(user):
            try:
                pyfuse3.init(parts.ops, str(mountpoint), options)
            except Exception as e:  # pyfuse3 raises RuntimeError with libfuse's reason
                log.error("cannot mount %s: %s", mountpoint, e)
                report(f"error: cannot mount {mountpoint}: {e}")
                return 1
            stack.callback(log.info, "unmounted %s", mountpoint)
            stack.callback(pyfuse3.close, unmount=True)
            stack.enter_context(_pid_file(pid_path, mountpoint, data, config, user))
        # what is pending is committed and applied before the unmount (LIFO: history first)
        if parts.index is not None:
            stack.push_async_callback(_flush_index, parts.index)
        if parts.history is not None:  # a crash instead: the next reconcile commits it
            stack.push_async_callback(parts.history.close)
        if parts.exporter is not None:
            parts.exporter.start()
        # Bookkeeping after replies (after_reply.py), from the first request on; stopped,
        # i.e. run, before the index and history flush (the exit stack is LIFO).
        parts.ops.after.start()
        stack.callback(parts.ops.after.stop)
        mounted()
        report("ok")
        async with trio.open_nursery() as nursery:
            _start_tasks(nursery, parts)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()
    return 0


@contextlib.contextmanager
def _pid_file(path: Path, mountpoint: Path, data: Path, config: Path | None, user):
    """The pid file `memfs umount` and `memfs status` find the daemon by; the daemon
    removes it itself at unmount (it runs as the daemon user by then)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n{mountpoint}\n{data}\n{config}\n")
        if user is not None:
            os.chown(path.parent, user.uid, user.gid)
            os.chown(path, user.uid, user.gid)
    except OSError as e:
        log.warning("cannot write pid file %s: %s", path, e)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
