"""Who made a file that arrives by sync (issue 26): the author of the commit that added
it, among the commits the round brings. git keeps authors, not owners; a local memfs
commits each user's changes as that user, so on a host that knows the name the file
shows the same owner as where it was made (owners.py), and root where it does not."""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from ..history.gitrepo import Repo
from ..names import label

# A first fetch may bring a scope's whole history: a tree diff per commit, at most this
# many (about 1 ms each); files added further back show root.
MAX_COMMITS = 2000


def creators(repo: Repo, ours: pygit2.Oid | None, theirs: pygit2.Oid) -> Callable[[bytes], str | None]:
    """path -> its creator's name (a label), read from the commits on first use."""
    found: dict[bytes, str] | None = None

    def creator(path: bytes) -> str | None:
        nonlocal found
        if found is None:
            found = _added_by(repo, ours, theirs)
        return found.get(path)

    return creator


def _added_by(repo: Repo, ours: pygit2.Oid | None, theirs: pygit2.Oid) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    walker = repo.r.walk(theirs, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    if ours is not None:
        walker.hide(ours)
    for i, commit in enumerate(walker):
        if i >= MAX_COMMITS:
            break
        if commit.parents:
            diff = commit.parents[0].tree.diff_to_tree(commit.tree)
        else:
            diff = commit.tree.diff_to_tree(swap=True)
        who = label(commit.author.raw_name)
        for delta in diff.deltas:
            if delta.status == pygit2.enums.DeltaStatus.ADDED:
                out.setdefault(delta.new_file.raw_path, who)
    return out
