"""Finding the entries on disk: every *.md file below a scope's folder, no symlinks."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout
from ..policy import Scope
from ..store import walk_tree
from .schema import doc_key, is_entry


def walk_entries(root_fd: int, top: bytes = b"", unreadable: list | None = None) -> Iterator:
    """(path, stat) of every *.md regular file at or below root/top."""
    for rel, st in walk_tree(root_fd, top, unreadable):
        if stat.S_ISREG(st.st_mode) and is_entry(rel):
            yield rel, st


@dataclass
class Scan:
    found: dict[str, tuple[Scope, bytes, int, int]] = field(
        default_factory=dict
    )  # key -> (scope, path, mtime, size)
    unreadable: dict[Scope, list[bytes]] = field(default_factory=dict)  # folders that could not be read

    def unknown(self, scope: Scope, path: bytes) -> bool:
        """Is this path below a folder the scan could not read (so its absence means nothing)?"""
        for top in self.unreadable.get(scope, ()):
            if not top or path == top or path.startswith(top + b"/"):
                return True
        return False


def scan_entries(data: Path, scopes: list[Scope] | None = None) -> Scan:
    """Every *.md file of these scopes (default: every scope under DATA/)."""
    scan = Scan()
    for scope in layout.scopes_in(data) if scopes is None else scopes:
        try:
            root = os.open(
                layout.scope_dir(data, scope), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except FileNotFoundError:
            continue  # the scope's folder is gone: so are its entries
        bad: list[bytes] = []
        try:
            for child, st in walk_entries(root, b"", bad):
                scan.found[doc_key(scope, child)] = (scope, child, st.st_mtime_ns, st.st_size)
        finally:
            os.close(root)
        if bad:
            scan.unreadable[scope] = bad
    return scan
