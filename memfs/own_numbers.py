"""Numbers of their own: a file whose backing inode number was still held by an older node
(a removed file the kernel still knows) gets OWN_BASE + n instead, and keeps it for its life,
across remounts (st_ino never changes while a file exists).

The table is kept in memory both ways (backing key -> own number, own number -> key), so
giving a number and taking it back cost O(1), and saved as an append-only log,
DATA/state/inode-numbers.log: one short line per change ("key own", or "key -" when the
file is gone), written by a thread of its own, so a handler never waits for the disk and
never writes a size the table's. The log is rewritten from a snapshot once it holds more
than twice the lines it needs. Not fsynced: after a power cut a number may change, once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from .numbers import HISTORY_BASE, OWN_BASE

log = logging.getLogger(__name__)

MAX_OWN = 100_000  # own numbers remembered; past it the oldest go (that file's st_ino would change)
COMPACT_SLACK = 10_000  # log lines past twice the live ones before a rewrite


def _valid(key: int, own: int) -> bool:
    return key > 0 and OWN_BASE < own < HISTORY_BASE


def _parse(lines: list[bytes], into: dict[int, int]) -> None:
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            continue  # a line cut short by a kill: the rest stands
        try:
            key = int(parts[0])
            if parts[1] == b"-":
                into.pop(key, None)
            elif _valid(key, own := int(parts[1])):
                into[key] = own
        except ValueError:
            continue


def load(path: Path, legacy: Path | None = None) -> dict[int, int]:
    """The saved table ({} if none or unreadable: numbers may change, once). `legacy`: the
    JSON file older versions rewrote whole at every change, read when there is no log yet."""
    table: dict[int, int] = {}
    try:
        _parse(path.read_bytes().splitlines(), table)
        return table
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot read %s (%s): files numbered by memfs may show a new st_ino", path, e)
        return table
    if legacy is not None:
        import json

        try:
            raw = json.loads(legacy.read_text())
            for k, v in raw.items():
                if _valid(int(k), int(v)):
                    table[int(k)] = int(v)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, TypeError) as e:
            log.warning("cannot read %s (%s): files numbered by memfs may show a new st_ino", legacy, e)
    return table


class _Writer:
    """The log's one writer: lines and snapshots in the order the table made them."""

    def __init__(self, path: Path, legacy: Path | None):
        self._path = path
        self._legacy = legacy
        self._queue: queue.SimpleQueue[tuple[str, object] | None] = queue.SimpleQueue()
        self._fd = -1
        self._thread = threading.Thread(target=self._run, name="memfs-own-numbers", daemon=True)
        self._thread.start()

    def line(self, text: bytes) -> None:
        self._queue.put(("line", text))

    def snapshot(self, table: dict[int, int]) -> None:
        self._queue.put(("snapshot", table))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[bytes] = []
            while item is not None:
                kind, what = item
                if kind == "snapshot":
                    self._write(batch)
                    batch = []
                    self._rewrite(what)  # type: ignore[arg-type]
                else:
                    batch.append(what)  # type: ignore[arg-type]
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            if item is None:
                if self._fd >= 0:
                    os.close(self._fd)
                return

    def _write(self, batch: list[bytes]) -> None:
        if not batch or self._fd < 0:
            return
        try:
            os.write(self._fd, b"".join(batch))
        except OSError as e:
            log.warning("cannot write %s: %s", self._path, e)

    def _rewrite(self, table: dict[int, int]) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        body = b"".join(b"%d %d\n" % kv for kv in table.items())
        try:
            tmp.write_bytes(body)
            os.replace(tmp, self._path)
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            if self._legacy is not None:
                self._legacy.unlink(missing_ok=True)
                self._legacy = None
        except OSError as e:
            log.warning("cannot save %s: %s", self._path, e)


class OwnNumbers:
    """backing key <-> own number; `path` None keeps it in memory only (tests)."""

    def __init__(self, path: Path | None = None, legacy: Path | None = None, cap: int = MAX_OWN):
        self._by_key = load(path, legacy) if path is not None else {}
        self._key_of = {own: key for key, own in self._by_key.items()}
        # key -> its own number, or None: asked for every new node, so the dict's own get
        # (a C call, no Python frame). _by_key is never rebound.
        self.get: Callable[[int], int | None] = self._by_key.get
        self._cap = cap
        self._path, self._legacy = path, legacy
        self._lines = len(self._by_key)
        # Started at the first change, by a handler: the daemon has left root by then, so
        # the log is its user's (the table is read at start-up, as root).
        self._writer: _Writer | None = None

    def __len__(self) -> int:
        return len(self._by_key)

    def last(self) -> int | None:
        """The highest number handed out so far (new ones go above it)."""
        return max(self._key_of, default=None)

    def give(self, key: int, own: int) -> None:
        old = self._by_key.get(key)
        if old is not None:
            self._key_of.pop(old, None)
        self._by_key[key] = own
        self._key_of[own] = key
        self._log(b"%d %d\n" % (key, own))
        while len(self._by_key) > self._cap:
            oldest = next(iter(self._by_key))
            self._key_of.pop(self._by_key.pop(oldest), None)
            self._log(b"%d -\n" % oldest)

    def release(self, own: int) -> None:
        """The file numbered `own` is gone: the number is no longer its backing key's."""
        key = self._key_of.pop(own, None)
        if key is None:
            return
        if self._by_key.get(key) == own:
            del self._by_key[key]
        self._log(b"%d -\n" % key)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _log(self, line: bytes) -> None:
        if self._path is None:
            return
        self._lines += 1
        if self._writer is None:  # the first change: the log starts from a snapshot
            self._writer = _Writer(self._path, self._legacy)
            self._lines = len(self._by_key)
            self._writer.snapshot(dict(self._by_key))
        elif self._lines > 2 * len(self._by_key) + COMPACT_SLACK:
            self._lines = len(self._by_key)
            self._writer.snapshot(dict(self._by_key))
        else:
            self._writer.line(line)
