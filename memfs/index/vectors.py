"""Each entry's vector, kept beside its manifest row, and searched one scope at a time.

Vectors live in the manifest's sqlite (table `vectors`), written in the same transaction
as the manifest rows of a commit, so a crash leaves both as they were. Searching reads a
scope's vectors into one float32 matrix, cached per scope (LRU by bytes) and patched in
place by each commit: a busy team scope is never reloaded per search.

A scope's matrix holds only that scope's entries: a caller's semantic search runs over
the scopes it may read and nothing else, with type:/tag:/path: applied before ranking.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..policy import Scope
from .manifest import VectorRows

if TYPE_CHECKING:  # imported where used: only a mount with an embedder needs numpy
    import numpy as np

CACHE_BYTES = 256 << 20  # scopes' matrices kept in memory (the scope being searched always fits)


@dataclass(frozen=True)
class Row:
    """What a commit stores for one entry."""

    key: str
    type: str
    tags: tuple[str, ...]
    vec: np.ndarray  # float32, unit length


@dataclass(frozen=True)
class Filter:
    """A semantic search's type:/tag:/path: filters, with the keyword side's rules: every
    type and every tag must match; a key must be one of `prefixes` or lie below one."""

    types: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] | None = None  # None: anywhere in the scope


class ScopeVectors:
    """One scope's vectors as a matrix; rows are swapped out on delete (order is not kept).

    Beside the rows it keeps what filters need without a Python call per row: each row's
    type as a small integer, the keys of each tag, and the keys in sorted order (a folder's
    entries are one slice of it)."""

    def __init__(self, dim: int):
        import numpy as np

        self.dim = dim
        self.keys: list[str] = []
        self.pos: dict[str, int] = {}
        self.tags: list[tuple[str, ...]] = []
        self.mat = np.zeros((16, dim), dtype=np.float32)
        self.type_of = np.zeros(16, dtype=np.int32)  # row -> code in self.codes
        self.codes: dict[str, int] = {}
        self.by_tag: dict[str, set[str]] = {}
        self.sorted_keys: list[str] = []
        self.lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self.mat.nbytes + 200 * len(self.keys)

    def put(self, key: str, type_: str, tags: tuple[str, ...], vec: np.ndarray) -> None:
        import numpy as np

        i = self.pos.get(key)
        if i is None:
            i = len(self.keys)
            if i == len(self.mat):
                grown = np.zeros((2 * len(self.mat), self.dim), dtype=np.float32)
                grown[:i] = self.mat[:i]
                self.mat = grown
                self.type_of = np.resize(self.type_of, 2 * len(self.type_of))
            self.pos[key] = i
            self.keys.append(key)
            self.tags.append(tags)
            bisect.insort(self.sorted_keys, key)
        else:
            self._untag(key, self.tags[i])
            self.tags[i] = tags
        for t in tags:
            self.by_tag.setdefault(t, set()).add(key)
        self.type_of[i] = self.codes.setdefault(type_, len(self.codes))
        self.mat[i] = vec

    def _untag(self, key: str, tags: tuple[str, ...]) -> None:
        for t in tags:
            keys = self.by_tag.get(t)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_tag[t]

    def drop(self, key: str) -> None:
        i = self.pos.pop(key, None)
        if i is None:
            return
        self._untag(key, self.tags[i])
        del self.sorted_keys[bisect.bisect_left(self.sorted_keys, key)]
        last = len(self.keys) - 1
        if i != last:  # move the last row into the hole
            moved = self.keys[last]
            self.keys[i], self.tags[i] = moved, self.tags[last]
            self.mat[i] = self.mat[last]
            self.type_of[i] = self.type_of[last]
            self.pos[moved] = i
        self.keys.pop()
        self.tags.pop()

    def _starting(self, prefix: str) -> list[str]:
        """The keys below a folder (`prefix` ends with '/'): one slice of the sorted keys."""
        lo = bisect.bisect_left(self.sorted_keys, prefix)
        hi = bisect.bisect_left(self.sorted_keys, prefix[:-1] + "0", lo)  # '0' follows '/'
        return self.sorted_keys[lo:hi]

    def drop_under(self, prefix: str) -> None:
        for key in self._starting(prefix):
            self.drop(key)

    def _rows(self, keys, n: int) -> np.ndarray:
        import numpy as np

        mask = np.zeros(n, dtype=bool)
        mask[np.fromiter((self.pos[k] for k in keys), dtype=np.intp, count=len(keys))] = True
        return mask

    def mask(self, flt: Filter) -> np.ndarray:
        """The rows `flt` lets through: numpy over the type codes, Python only over the
        keys a tag or folder names."""
        import numpy as np

        n = len(self.keys)
        if len(flt.types) > 1:
            return np.zeros(n, dtype=bool)
        mask = np.ones(n, dtype=bool)
        if flt.types:
            code = self.codes.get(next(iter(flt.types)))
            mask &= self.type_of[:n] == (-1 if code is None else code)
        if flt.tags:
            tagged = set.intersection(*(self.by_tag.get(t, set()) for t in flt.tags))
            mask &= self._rows(tagged, n)
        if flt.prefixes is not None:
            inside = {k for p in flt.prefixes for k in self._starting(p + "/")}
            inside.update(p for p in flt.prefixes if p in self.pos)
            mask &= self._rows(inside, n)
        return mask

    def top(
        self, query: np.ndarray, k: int, flt: Filter | None, minimum: float
    ) -> tuple[list[tuple[float, str]], int]:
        """The k best (cosine, key) among the rows `flt` lets through (None: all), and how
        many of those reach `minimum`."""
        import numpy as np

        n = len(self.keys)
        if not n:
            return [], 0
        scores = self.mat[:n] @ query
        if flt is not None:
            scores = np.where(self.mask(flt), scores, -np.inf)
        passed = int(np.count_nonzero(scores >= minimum))
        k = min(k, int(np.count_nonzero(scores > -np.inf)))
        if not k:
            return [], 0
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(float(scores[i]), self.keys[i]) for i in best], passed


class Vectors:
    """The vectors of every scope: sqlite rows plus the per-scope matrix cache."""

    def __init__(self, db_path: str, dim: int, cache_bytes: int = CACHE_BYTES):
        self.dim = dim
        self.cache_bytes = cache_bytes
        self._stored = VectorRows(db_path)
        self._cache: OrderedDict[Scope, ScopeVectors] = OrderedDict()
        self._gen: dict[Scope, int] = {}  # commits patched per scope (see scope())
        self._lock = threading.Lock()

    def close(self) -> None:
        self._stored.close()

    def _load(self, scope: Scope) -> ScopeVectors:
        import numpy as np

        sv = ScopeVectors(self.dim)
        for key, type_, tags, vec in self._stored.of_scope(scope):
            if len(vec) == self.dim:
                sv.put(key, type_, tags, vec.astype(np.float32))
        return sv

    def scope(self, scope: Scope) -> ScopeVectors:
        """A scope's matrix, loaded on first use. A commit landing during the load would
        be missed by both (its patch finds nothing cached): then the load is redone."""
        for _attempt in range(3):
            with self._lock:
                sv = self._cache.get(scope)
                if sv is not None:
                    self._cache.move_to_end(scope)
                    return sv
                gen = self._gen.get(scope, 0)
            loaded = self._load(scope)
            with self._lock:
                if self._gen.get(scope, 0) != gen:
                    continue
                self._cache[scope] = loaded
                total = sum(v.nbytes for v in self._cache.values())
                while total > self.cache_bytes and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    total -= old.nbytes
                return loaded
        return loaded  # a scope committing nonstop: this snapshot serves this search, uncached

    def patch(self, scope: Scope, put: Iterable[Row], drop: Iterable[str], drop_under: Iterable[str]) -> None:
        """Bring a cached scope in line with a commit that just landed (after the sqlite
        commit, under the scope's lock; a load racing it is redone: see scope())."""
        with self._lock:
            self._gen[scope] = self._gen.get(scope, 0) + 1
            sv = self._cache.get(scope)
        if sv is None:
            return  # loaded from sqlite when next searched
        with sv.lock:
            for prefix in drop_under:
                sv.drop_under(prefix)
            for key in drop:
                sv.drop(key)
            for row in put:
                sv.put(row.key, row.type, row.tags, row.vec)

    def forget(self) -> None:
        """Drop every cached matrix (after a rebuild emptied the table)."""
        with self._lock:
            for s in list(self._cache):
                self._gen[s] = self._gen.get(s, 0) + 1
            self._cache.clear()

    def search(self, scope: Scope, query: np.ndarray, k: int, flt: Filter | None, minimum: float):
        sv = self.scope(scope)
        with sv.lock:
            return sv.top(query, k, flt, minimum)
