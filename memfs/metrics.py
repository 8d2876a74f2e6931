"""Metrics in the Prometheus exposition format (the official client library), served at
/metrics on `metrics.listen` (HOST:PORT or a unix socket path; off by default).

Per FUSE request the loop only adds to plain counters (RequestStats.record: a bisect and
two increments); everything else is read at scrape time, in the server's thread, from
a fleet snapshot taken on the loop. No label carries a file name or a query: ops, errno
names, scopes ("team:eng") and user names only."""

from __future__ import annotations

import bisect
import errno
import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .fleet import Snapshot

log = logging.getLogger("memfs.metrics")

# Latency buckets (seconds): a request is ~50 µs to a few ms; a search or a view, tens of ms.
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
SCRAPE_TIMEOUT = 10.0  # seconds a scrape waits for the loop's snapshot


class RequestStats:
    """Requests, errors by errno and latency per FUSE op: plain ints, on the loop."""

    def __init__(self) -> None:
        self.errors: dict[tuple[str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}  # per op: counts per bucket (not cumulative), +Inf last
        self.seconds: dict[str, float] = {}

    def record(self, op: str, seconds: float, code: int) -> None:
        b = self.buckets.get(op)
        if b is None:
            b = self.buckets[op] = [0] * (len(BUCKETS) + 1)
            self.seconds[op] = 0.0
        b[bisect.bisect_left(BUCKETS, seconds)] += 1  # the op's count is the buckets' sum
        self.seconds[op] += seconds
        if code:
            key = (op, errno.errorcode.get(code, str(code)))
            self.errors[key] = self.errors.get(key, 0) + 1

    def copy(self) -> RequestStats:
        """A consistent copy (made on the loop): the scrape thread reads this, not the live dicts."""
        c = RequestStats()
        c.errors, c.seconds = dict(self.errors), dict(self.seconds)
        c.buckets = {op: list(b) for op, b in self.buckets.items()}
        return c


class _MemfsCollector(Collector):
    def __init__(self, read: Callable[[], tuple[RequestStats, Snapshot]]) -> None:
        self._read = read

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("memfs_up", "1 if the daemon answered this scrape")
        try:
            stats, snap = self._read()
        except Exception as e:  # the loop is gone (unmounting) or too busy: say so, not a 500
            log.info("metrics: no snapshot: %s", e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _requests(stats)
        yield from _fleet(snap)


def _requests(stats: RequestStats) -> Iterator:
    req = CounterMetricFamily("memfs_requests", "FUSE requests answered, per op", labels=["op"])
    err = CounterMetricFamily(
        "memfs_request_errors", "FUSE requests answered with an error", labels=["op", "errno"]
    )
    lat = HistogramMetricFamily("memfs_request_seconds", "time to answer a FUSE request", labels=["op"])
    for op in sorted(stats.buckets):
        req.add_metric([op], sum(stats.buckets[op]))
        cumulative, acc = [], 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), stats.buckets[op], strict=True):
            acc += n
            cumulative.append((bound, acc))
        lat.add_metric([op], cumulative, stats.seconds[op])
    for (op, name), n in sorted(stats.errors.items()):
        err.add_metric([op, name], n)
    yield from (req, err, lat)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def _fleet(snap: Snapshot) -> Iterator:
    g = {
        "bytes": _gauge("memfs_scope_bytes", "bytes a scope holds", ["scope"]),
        "files": _gauge("memfs_scope_files", "files and folders a scope holds", ["scope"]),
        "max_bytes": _gauge("memfs_scope_max_bytes", "a scope's byte quota", ["scope"]),
        "max_files": _gauge("memfs_scope_max_files", "a scope's file quota", ["scope"]),
        "history_bytes": _gauge("memfs_history_bytes", "a scope's history repository on disk", ["scope"]),
        "history_waiting": _gauge("memfs_history_waiting", "changes not yet committed to history", ["scope"]),
        "history_lag": _gauge("memfs_history_lag_seconds", "age of the oldest uncommitted change", ["scope"]),
        "history_failures": _gauge("memfs_history_failures", "failed history commits in a row", ["scope"]),
        "index_waiting": _gauge("memfs_index_queue", "changes queued for the search index", ["scope"]),
        "index_lag": _gauge("memfs_index_lag_seconds", "age of the oldest change not yet indexed", ["scope"]),
    }
    sync_ok = _gauge("memfs_sync_last_success_timestamp", "wall time of the last good sync round", ["scope"])
    sync_fail = _gauge("memfs_sync_failures", "failed sync rounds in a row", ["scope"])
    sync_wait = _gauge("memfs_sync_commits_waiting", "local commits the remote lacks", ["scope"])
    for s in snap.scopes:
        for key, fam in g.items():
            value = getattr(s, key)
            if value is not None:
                fam.add_metric([s.scope], value)
        if s.sync is not None:
            if s.sync["last_ok"]:
                sync_ok.add_metric([s.scope], s.sync["last_ok"])
            sync_fail.add_metric([s.scope], s.sync["failures"])
            sync_wait.add_metric([s.scope], s.sync["commits_waiting"])
    yield from g.values()
    yield from (sync_ok, sync_fail, sync_wait)
    handles = _gauge("memfs_open_handles", "handles held open, per user", ["user"])
    for user, n in snap.open_handles.items():
        handles.add_metric([user], n)
    yield handles
    backlog = _gauge("memfs_embedding_backlog", "indexed entries waiting for their vectors")
    backlog.add_metric([], snap.embedding_backlog)
    rss = _gauge("memfs_daemon_resident_bytes", "the daemon's resident memory")
    rss.add_metric([], snap.rss_bytes)
    threads = _gauge("memfs_daemon_threads", "the daemon's threads")
    threads.add_metric([], snap.threads)
    yield from (backlog, rss, threads)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # a scrape every 15 s is not worth a log line


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _UnixWSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's wants (host, port)
        self.server_name, self.server_port = "localhost", 0
        self.setup_environ()

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)  # wsgiref reads client_address[0] (a unix peer has none)


def _remove_stale_socket(path: str) -> None:
    """A socket left by a daemon that died is replaced; anything else there is an error."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


class Exporter:
    """The /metrics server: a thread of its own, started and stopped by the daemon."""

    def __init__(self, listen: str, read: Callable[[], tuple[RequestStats, Snapshot]]) -> None:
        self.listen = listen
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_MemfsCollector(read))
        app = make_wsgi_app(registry)
        self.server: WSGIServer
        if listen.startswith("/"):
            _remove_stale_socket(listen)
            self.server = _UnixWSGIServer(listen, _QuietHandler)  # type: ignore[arg-type]
            self.server.set_app(app)
            os.chmod(listen, 0o660)  # the daemon's user and group scrape it
        else:
            host, _, port = listen.rpartition(":")
            host = host.strip("[]")
            cls = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
            self.server = make_server(host, int(port), app, cls, _QuietHandler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="memfs-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics: serving /metrics on %s", self.listen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.listen.startswith("/"):
            _remove_stale_socket(self.listen)
