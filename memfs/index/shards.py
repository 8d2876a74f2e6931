"""One Tantivy index per scope (DATA/index/<private|teams>/<name>/).

Per-scope indexes keep BM25's statistics (document frequencies, counts, lengths) to the
documents of one scope, so a caller's scores depend only on what it may read. Indexes
are opened on demand and kept in a bounded LRU; writers (one thread and one lock each)
in a smaller one, closed when evicted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Literal, overload

import tantivy

from .. import layout
from ..policy import Scope
from .schema import STEM_TOKENIZER, stem_analyzer

log = logging.getLogger(__name__)

WRITER_HEAP = 20_000_000  # bytes; Tantivy's minimum is 15 MB per thread
MAX_OPEN = 64  # each open index keeps a thread polling its meta.json (tantivy-py 0.27)
MAX_WRITERS = 8
# Tantivy's writer keeps every delete operation it was given (~1.2 KB each) until it is
# closed: 100k deletes grew a process by 120 MB. A writer is closed after this many.
RECYCLE_AFTER_DELETES = 20_000


class Shard:
    def __init__(self, scope: Scope, path: Path, schema: tantivy.Schema):
        self.scope = scope
        self.path = path
        self.index = tantivy.Index(schema, path=str(path), reuse=True)
        self.index.register_tokenizer(STEM_TOKENIZER, stem_analyzer())
        # Only this process writes, and it reloads after each commit itself.
        self.index.config_reader(reload_policy="Manual", num_warmers=0)
        self.writer: tantivy.IndexWriter | None = None
        self.busy = 0  # threads applying changes with the writer now: it is not evicted
        self.deletes = 0  # delete operations given to the current writer
        self.generation = 0  # bumped at every reload: what a reader cached of it is stale
        self.listing: tuple[int, tuple] | None = None  # (generation, its entries): Searcher.entries
        self.used = 0.0  # time.monotonic() when its writer was last asked for

    def reload(self) -> None:
        self.index.reload()
        self.generation += 1


class Shards:
    def __init__(self, data: Path, schema: tantivy.Schema):
        self.data = data
        self.schema = schema
        self._open: OrderedDict[Scope, Shard] = OrderedDict()
        self._writers: OrderedDict[Scope, Shard] = OrderedDict()
        self._lock = threading.Lock()  # searches (worker threads) and the committer share the cache

    @overload
    def get(self, scope: Scope, create: Literal[True]) -> Shard: ...
    @overload
    def get(self, scope: Scope, create: bool = False) -> Shard | None: ...
    def get(self, scope: Scope, create: bool = False) -> Shard | None:
        """The scope's index; None if it has none yet and `create` is false."""
        with self._lock:
            shard = self._open.get(scope)
            if shard is not None:
                self._open.move_to_end(scope)
                return shard
            path = layout.index_dir(self.data, scope)
            if not (path / "meta.json").exists():
                if not create:
                    return None
                path.mkdir(parents=True, exist_ok=True, mode=0o700)
            shard = Shard(scope, path, self.schema)
            self._open[scope] = shard
            while len(self._open) > MAX_OPEN:
                old_scope, old = next(iter(self._open.items()))
                if old.writer is not None:  # the writer's LRU decides; keep it open meanwhile
                    self._open.move_to_end(old_scope)
                    break
                del self._open[old_scope]
            return shard

    def writer(self, shard: Shard) -> tantivy.IndexWriter:
        """The shard's writer, opened on demand; give it back with release(). One thread
        per scope at a time (the scope's lock); several scopes may write at once."""
        with self._lock:
            if shard.writer is None:
                shard.writer = shard.index.writer(heap_size=WRITER_HEAP, num_threads=1)
            shard.busy += 1
            shard.used = time.monotonic()
            self._writers[shard.scope] = shard
            self._writers.move_to_end(shard.scope)
            evict = [old for old in self._writers.values() if not old.busy]
            evict = evict[: max(0, len(self._writers) - MAX_WRITERS)]
            for old in evict:
                del self._writers[old.scope]
        for old in evict:
            self._close_writer(old)
        return shard.writer

    def release(self, shard: Shard) -> None:
        with self._lock:
            shard.busy -= 1

    def recycle(self, shard: Shard) -> None:
        """Close the writer once it has held enough deletes (a new one opens on demand)."""
        with self._lock:
            if shard.busy or shard.writer is None or shard.deletes < RECYCLE_AFTER_DELETES:
                return
            self._writers.pop(shard.scope, None)
        self._close_writer(shard)

    def idle_writers(self, seconds: float) -> list[Scope]:
        """Scopes whose writer nobody has asked for in `seconds`."""
        now = time.monotonic()
        with self._lock:
            return [s.scope for s in self._writers.values() if not s.busy and now - s.used > seconds]

    def close_writer(self, scope: Scope) -> None:
        """Close the scope's writer unless a thread is using it (the caller holds the
        scope's lock, so no batch asks for it meanwhile): a writer keeps its arena and
        seven threads until closed (+20 MiB after a burst of folder renames, measured)."""
        with self._lock:
            shard = self._writers.get(scope)
            if shard is None or shard.busy:
                return
            del self._writers[scope]
        self._close_writer(shard)

    def drop_writer(self, shard: Shard) -> None:
        """Forget a writer that failed: dropping it releases its lock, so a new one can open."""
        with self._lock:
            self._writers.pop(shard.scope, None)
            shard.writer = None

    def _close_writer(self, shard: Shard) -> None:
        w, shard.writer, shard.deletes = shard.writer, None, 0
        if w is not None:
            try:
                w.wait_merging_threads()
            except Exception as e:  # it is gone after this either way
                log.warning("closing the writer of %s: %s", shard.scope, e)

    def close(self) -> None:
        with self._lock:
            shards = list(self._writers.values())
            self._writers.clear()
        for shard in shards:
            self._close_writer(shard)

    def clear(self) -> None:
        """Close every writer and forget every open index (a rebuild removes their folders)."""
        self.close()
        with self._lock:
            self._open.clear()

    def scopes(self) -> list[Scope]:
        return layout.scopes_in(layout.index_root(self.data))
