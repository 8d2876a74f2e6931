"""A remote's blob into a file descriptor, with bounded memory whatever its size: what
sync writes into a scope and what the secret guard scans both come through here."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pygit2

from ..history.gitrepo import Repo

STREAM_FROM = 1 << 20  # blobs larger than this are streamed, never held whole


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def stream_blob(gitdir: Path, oid: pygit2.Oid, fd: int) -> None:
    """`git cat-file blob` into fd, a MiB at a time (libgit2 reads an object whole)."""
    cmd = ["git", "--git-dir", str(gitdir), "cat-file", "blob", str(oid)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            write_all(fd, chunk)
    if proc.returncode != 0:
        raise OSError(errno.EIO, f"git cat-file blob {oid} failed ({proc.returncode})")


def copy_blob(repo: Repo, oid: pygit2.Oid, fd: int) -> None:
    if repo.size(oid) <= STREAM_FROM:
        write_all(fd, repo.read(oid))
    else:
        stream_blob(repo.path, oid, fd)
