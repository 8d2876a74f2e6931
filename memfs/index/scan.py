"""Finding the entries on disk: every *.md file below a scope's folder, no symlinks."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import layout
from ..policy import Scope
from .schema import doc_key, is_entry


def walk_entries(root: bytes, top: bytes = b"", unreadable: list | None = None) -> Iterator:
    """(path relative to root, stat) of every *.md file at or below root/top.

    A folder that vanishes while walking is skipped. One that cannot be read (EACCES,
    EMFILE, EIO) is added to `unreadable` (or raises without it): the entries below it
    are unknown, not gone."""
    stack = [top]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(root + b"/" + rel if rel else root)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            if unreadable is None:
                raise
            unreadable.append(rel)
            continue
        with it:
            for e in it:
                child = rel + b"/" + e.name if rel else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(child)
                    elif is_entry(e.name) and e.is_file(follow_symlinks=False):
                        yield child, e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue


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
        bad: list[bytes] = []
        for child, st in walk_entries(os.fsencode(layout.scope_dir(data, scope)), b"", bad):
            scan.found[doc_key(scope, child)] = (scope, child, st.st_mtime_ns, st.st_size)
        if bad:
            scan.unreadable[scope] = bad
    return scan
