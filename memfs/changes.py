"""The one feed of changes to memory files. A handler, a sync round or an import says
once what happened to a path; the index, history and the quota counts each learn it
from here, so no call site can tell one of them and forget another."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .policy import Scope


class IndexListener(Protocol):
    def touch(self, scope: Scope, path: bytes) -> None: ...
    def remove(self, scope: Scope, path: bytes) -> None: ...
    def moved(self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool) -> None: ...


class HistoryListener(Protocol):
    def touch(self, scope: Scope, path: bytes, user: str) -> None: ...
    def remove(self, scope: Scope, path: bytes, user: str) -> None: ...
    def moved(
        self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool, user: str
    ) -> None: ...
    def imported(self, scope: Scope, paths: list[bytes]) -> None: ...


class QuotaListener(Protocol):
    def forget(self, scope: Scope) -> None: ...


class Changes:
    """Fans each change out to whichever of index and history the mount has."""

    def __init__(self, index: IndexListener | None, history: HistoryListener | None, quotas: QuotaListener):
        self.index = index
        self.history = history
        self.quotas = quotas

    def written(self, scope: Scope, path: bytes, user: str) -> None:
        """A file's content, mode or times changed through memfs (closed after writing,
        fsynced, truncated, chmod, touch -d, a mknod)."""
        if self.index is not None:
            self.index.touch(scope, path)
        if self.history is not None:
            self.history.touch(scope, path, user)

    def removed(self, scope: Scope, path: bytes, user: str) -> None:
        if self.index is not None:
            self.index.remove(scope, path)
        if self.history is not None:
            self.history.remove(scope, path, user)

    def moved(
        self, src: Scope, src_path: bytes, dst: Scope, dst_path: bytes, is_dir: bool, user: str
    ) -> None:
        if self.index is not None:
            self.index.moved(src, src_path, dst, dst_path, is_dir)
        if self.history is not None:
            self.history.moved(src, src_path, dst, dst_path, is_dir, user)

    def arrived(self, scope: Scope, written: Iterable[bytes], removed: Iterable[bytes]) -> None:
        """Another host's changes were written into the scope's folder by a sync round:
        history has them already (they came as its commits); the index and the quota's
        counts learn them here."""
        self.quotas.forget(scope)
        if self.index is not None:
            for path in written:
                self.index.touch(scope, path)
            for path in removed:
                self.index.remove(scope, path)

    def imported(self, scope: Scope, paths: list[bytes]) -> None:
        """Files written into the scope's folder behind memfs's back (memfs import)."""
        self.quotas.forget(scope)
        if self.index is not None:
            for path in paths:
                self.index.touch(scope, path)
        if self.history is not None:
            self.history.imported(scope, paths)
