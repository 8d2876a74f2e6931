"""Merging another host's history into ours: what each side changed since their common
commit, decided path by path. Nothing written on either side is lost: a change only one
side made is taken; an edit beats a delete; two edits are merged line by line by git when
they can be, else the other side's version is kept beside ours as a conflict copy."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field

import pygit2

from ..history.gitrepo import Change, Repo
from ..names import conflict_name

MAX_MERGE_BYTES = 1 << 20  # larger or binary files are not merged line by line: both kept


@dataclass
class Plan:
    changes: dict[bytes, Change] = field(default_factory=dict)  # on top of our tree
    conflicts: list[tuple[bytes, bytes]] = field(default_factory=list)  # (path, its copy)
    merged: list[bytes] = field(default_factory=list)  # merged line by line

    def take(self, path: bytes, entry: Change) -> None:
        self.changes[path] = entry


def plan(
    repo: Repo,
    base: pygit2.Oid | None,
    ours: pygit2.Oid | None,
    theirs: pygit2.Oid | None,
    host: str,
    when: int,
) -> Plan:
    mine = {p: new for p, _old, new in repo.diff(base, ours)}
    out = Plan()
    for path, old, new in repo.diff(base, theirs):
        if path not in mine:
            out.take(path, new)  # only they changed it
            continue
        own = mine[path]
        if own == new or new is None:
            continue  # the same change, or they deleted what we edited: the edit wins
        if own is None:
            out.take(path, new)  # we deleted what they edited: their edit wins
            continue
        merged = merge3(repo, old, own, new)
        if merged is not None:
            out.take(path, (own[0], merged))
            out.merged.append(path)
            continue
        copy = conflict_name(path, host, when)
        out.take(copy, new)
        out.conflicts.append((path, copy))
    return out


def merge3(repo: Repo, base: Change, ours: Change, theirs: Change) -> bytes | None:
    """git merge-file on three versions; the merged blob's id, or None on a conflict."""
    sides = (ours, base, theirs)
    if any(e is not None and repo.size(pygit2.Oid(raw=e[1])) > MAX_MERGE_BYTES for e in sides):
        return None  # judged from the object's header: a remote's blob is never read whole to size it
    blobs = [repo.read(pygit2.Oid(raw=e[1])) if e is not None else b"" for e in sides]
    if any(b"\0" in b for b in blobs):
        return None
    with tempfile.TemporaryDirectory(prefix="memfs-merge-") as d:
        names = []
        for label, data in zip(("ours", "base", "theirs"), blobs, strict=True):
            name = os.path.join(d, label)
            with open(name, "wb") as f:
                f.write(data)
            names.append(name)
        res = subprocess.run(["git", "merge-file", "-p", "--quiet", *names], capture_output=True, timeout=60)
    if res.returncode != 0:
        return None
    return repo.blob(res.stdout)
