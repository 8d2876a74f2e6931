"""What got in before: a scope's current files and every version in its history scanned for
secrets (`memfs doctor --secrets`), reported by path, version, line and rule, never the
secret. Memory stays bounded: one file or blob at a time, each read up to SCAN_BYTES (the
scanner looks at its first MAX_SCAN_CHARS anyway), and each blob scanned once however
many versions share it. Reads DATA/ directly (root, like doctor's other checks), files
through the store's gate, blobs from the repository.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2

from .. import layout
from ..names import quote_path
from ..policy import Scope
from ..store import Store, walk_tree
from .scanner import MAX_SCAN_CHARS, Scanner

SCAN_BYTES = 4 * MAX_SCAN_CHARS  # UTF-8: at most 4 bytes a character


@dataclass(frozen=True)
class Found:
    scope: Scope
    path: bytes
    version: bytes | None  # None: the file as it is now
    line: int
    rule: str

    def __str__(self) -> str:
        where = f"version {quote_path(self.version)}" if self.version is not None else "(current file)"
        return f"{self.scope} {quote_path(self.path)} {where} line {self.line}: {self.rule}"


@dataclass
class Tally:
    files: int = 0
    versions: int = 0
    blobs: int = 0


def _head(fd: int) -> bytes:
    try:
        return os.read(fd, SCAN_BYTES)
    finally:
        os.close(fd)


def current_files(store: Store, scope: Scope, scanner: Scanner, tally: Tally) -> Iterator[Found]:
    with store.at(scope) as root:
        paths = [p for p, st in walk_tree(root, b"", []) if stat.S_ISREG(st.st_mode)]
    for path in paths:
        try:
            data = _head(store.open(scope, path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            continue  # gone since listed
        tally.files += 1
        for f in scanner.scan(data):
            yield Found(scope, path, None, f.line, f.rule)


def _blob(gitdir: Path, repo: pygit2.Repository, hexid: str) -> bytes | None:
    """A blob's first SCAN_BYTES: libgit2 reads an object whole, so a larger one is read
    through `git cat-file` and cut."""
    try:
        size = repo.odb.read_header(hexid)[1]
    except (KeyError, ValueError, pygit2.GitError):
        return None  # pruned meanwhile
    if size <= SCAN_BYTES:
        return repo[hexid].read_raw()
    cmd = ["git", "--git-dir", str(gitdir), "cat-file", "blob", hexid]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        head = proc.stdout.read(SCAN_BYTES)
        proc.kill()
    return head


def history(data: Path, scope: Scope, scanner: Scanner, tally: Tally) -> Iterator[Found]:
    """Every version of every path in the scope's history: each distinct blob scanned once."""
    from ..history.catalog import Catalog, catalog_file

    gitdir = layout.history_dir(data, scope)
    if not catalog_file(gitdir).exists():
        return
    repo = pygit2.Repository(str(gitdir))
    with Catalog.reading(gitdir) as cat:
        last, found = None, []
        for hexid, path, name in cat.by_blob():
            tally.versions += 1
            if hexid != last:
                last, data_ = hexid, _blob(gitdir, repo, hexid)
                tally.blobs += 1
                found = scanner.scan(data_) if data_ else []
            for f in found:
                yield Found(scope, path, name, f.line, f.rule)
