"""Purge: versions taken out of a scope's history for good (a secret that got in).

Every tree that holds a purged blob gets, in its place, one fixed placeholder blob
(catalog.PURGED_TEXT) under the same name and mode; the commits above are re-made with their
authors, times and messages, and the branch moves. A placeholder, not a removal: the
rewrite is then a function of each tree alone (memoized per subtree, so a commit costs
what it changed), no change appears or vanishes in the log, and two hosts that rewrite
the same commits with the same blobs make the same new commits, byte for byte. That is
what lets another host adopt a purge: it finds the purged blob ids in the purge record
(a commit on top naming the versions and blob ids; never the content), rewrites its own history
the same way, and its branch then shares the purging host's commits instead of bringing
the old ones back in a merge.

Objects left unreachable are dropped from disk at once (reflogs expired, FETCH_HEAD
removed, `git gc --prune=now`). The ids purged in a scope are kept in its git directory
(PURGED_FILE), so a later fetch of a remote's old history is rewritten before it is
merged; until the rewritten branch has replaced the remote's, the remote's head as last
fetched is the lease (LEASE_FILE) that sync pushes against with --force-with-lease.

Runs in the history worker process (a local purge) or a sync worker thread (adopting
one), always under the scope's history lock.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pygit2

from ..names import quote_path
from .catalog import PURGE_TRAILER, PURGED_BLOB, PURGED_BLOB_TRAILER, PURGED_TEXT, rename_lines
from .gitrepo import BRANCH, TREE, Repo

log = logging.getLogger(__name__)

PURGED_FILE = "memfs-purged"  # in the git directory: every blob id purged there, one a line
LEASE_FILE = "memfs-purge-lease"  # the remote's head the rewritten branch must replace
MAX_LEARNED = 10_000  # purged ids taken from one fetch: a remote's messages are anyone's input
GIT_TIMEOUT = 3600


@dataclass(frozen=True)
class Purged:
    """What a local purge did, for the caller's answer and the daemon's log."""

    versions: list[bytes]  # names of the versions purged
    commits: int  # commits re-made
    leased: bool  # a remote still holds them: the next sync replaces its branch
    blobs: list[str]  # their ids (hex): what `git cat-file -e` no longer finds


class TreeFix:
    """A tree with every purged blob replaced by the placeholder; memoized per tree id, so
    a subtree shared by many commits is rewritten once. Iterative: a path may be
    thousands of folders deep."""

    def __init__(self, repo: Repo, blobs: Iterable[bytes]):
        self.repo = repo
        self.blobs = frozenset(blobs)
        self._memo: dict[bytes, bytes] = {}
        self._placeholder = False

    def _replacement(self) -> bytes:
        if not self._placeholder:
            self.repo.r.create_blob(PURGED_TEXT)
            self._placeholder = True
        return PURGED_BLOB

    def __call__(self, root: bytes) -> bytes:
        stack = [(root, False)]
        while stack:
            oid, expanded = stack.pop()
            if oid in self._memo:
                continue
            entries = self.repo.entries(pygit2.Oid(raw=oid))
            subs = [raw for mode, raw in entries.values() if mode == TREE and raw not in self._memo]
            if subs and not expanded:
                stack.append((oid, True))
                stack.extend((s, False) for s in subs)
                continue
            new = {}
            for name, (mode, raw) in entries.items():
                if mode == TREE:
                    raw2 = self._memo[raw]
                else:
                    raw2 = self._replacement() if raw in self.blobs else raw
                new[name] = (mode, raw2)
            self._memo[oid] = self.repo.write_tree(new) if new != entries else oid
        return self._memo[root]


Rewritten = dict[pygit2.Oid, pygit2.Oid]  # old commit id -> new (itself if unchanged)


def rewrite(repo: Repo, tip: pygit2.Oid, fix: TreeFix, done: Rewritten, hide: pygit2.Oid | None = None):
    """`tip` with every commit above `hide` re-made on fixed trees (parents first); `done`
    maps old commit ids to new ones across calls. A commit whose tree and parents did not
    change keeps its id."""
    walker = repo.r.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    if hide is not None:
        walker.hide(hide)
    for c in walker:
        if c.id in done:
            continue
        parents = [done.get(p, p) for p in c.parent_ids]
        tree = pygit2.Oid(raw=fix(c.tree_id.raw))
        if tree == c.tree_id and parents == c.parent_ids:
            done[c.id] = c.id
        else:
            # no encoding header unless the commit had one: a rewrite changes trees only
            extra = [c.message_encoding] if c.message_encoding else []
            done[c.id] = repo.r.create_commit(
                None, c.author, c.committer, c.raw_message, tree, parents, *extra
            )
    return done.get(tip, tip)


# -- the scope's purge state (files in its git directory) ------------------------------
def purged_ids(gitdir: Path) -> set[bytes]:
    try:
        text = (gitdir / PURGED_FILE).read_text()
    except FileNotFoundError:
        return set()
    return {bytes.fromhex(h) for h in text.split() if len(h) == 40}


def _remember(gitdir: Path, blobs: Iterable[bytes]) -> None:
    known = purged_ids(gitdir)
    with open(gitdir / PURGED_FILE, "a") as f:
        f.writelines(b.hex() + "\n" for b in sorted(set(blobs) - known))


def lease(gitdir: Path) -> str | None:
    """The remote head a purge's rewritten branch must replace, or None."""
    try:
        return (gitdir / LEASE_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _set_lease(gitdir: Path, remote_head: str) -> None:
    (gitdir / LEASE_FILE).write_text(remote_head + "\n")


def pushed(gitdir: Path, remote: str | None) -> None:
    """The rewritten branch replaced the remote's: no lease any more; a remote that is a
    local path is pruned too, so the purged blobs leave its disk (a hosting service keeps
    unreachable objects until its own gc)."""
    with contextlib.suppress(FileNotFoundError):
        (gitdir / LEASE_FILE).unlink()
    if remote is not None:
        git = shutil.which("git")
        res = subprocess.run(
            [git or "git", "--git-dir", remote, "gc", "--quiet", "--prune=now"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
        )
        if res.returncode != 0:
            log.warning("cannot prune the remote %s after a purge: %s", remote, res.stderr.strip()[-200:])


def scrub(repo: Repo) -> None:
    """Drop every object nothing reaches any more, at once: no reflog, no FETCH_HEAD."""
    for name in ("FETCH_HEAD", "ORIG_HEAD"):
        with contextlib.suppress(FileNotFoundError):
            (repo.path / name).unlink()
    git = shutil.which("git")
    if git is None:
        raise OSError("the git CLI is missing: purged objects cannot be pruned")
    base = [git, "--git-dir", str(repo.path)]
    subprocess.run([*base, "reflog", "expire", "--expire=now", "--all"], capture_output=True, check=True)
    subprocess.run(
        [*base, "gc", "--quiet", "--prune=now"], capture_output=True, check=True, timeout=GIT_TIMEOUT
    )


def parse_blobs(message: str) -> set[bytes]:
    out = set()
    for line in message.splitlines():
        if line.startswith(PURGED_BLOB_TRAILER):
            h = line[len(PURGED_BLOB_TRAILER) :].strip()
            if len(h) == 40:
                with contextlib.suppress(ValueError):
                    out.add(bytes.fromhex(h))
    return out


# -- a local purge -----------------------------------------------------------------------
def purge(
    repo: Repo,
    tracking: str,
    blobs: set[bytes],
    record: list[tuple[bytes, bytes]],
    author: pygit2.Signature,
    committer: pygit2.Signature,
) -> tuple[pygit2.Oid, int, bool]:
    """Rewrite the branch (and the remote's tracking ref) without `blobs`, then commit the
    record on top: `record` is the (path, version name) pairs purged. Returns (the branch's
    rewritten head before the record, commits re-made, whether a remote still holds them).
    The caller updates the catalog, then scrub()s."""
    head = repo.head()
    assert head is not None, "a purge of a version needs a history"
    fix, done = TreeFix(repo, blobs | purged_ids(repo.path)), Rewritten()
    new_head = rewrite(repo, head, fix, done)
    made = sum(1 for old, new in done.items() if old != new)
    paths = ", ".join(quote_path(p) for p in sorted({p for p, _ in record}))
    msg = f"memfs: purged {len(record)} version{'s' if len(record) != 1 else ''} of {paths}\n\n"
    msg += rename_lines(record, PURGE_TRAILER)
    msg += "".join(f"{PURGED_BLOB_TRAILER}{b.hex()}\n" for b in sorted(blobs))
    tree = repo.get_commit(new_head).tree_id
    rec = repo.r.create_commit(None, author, committer, msg, tree, [new_head])
    repo.r.references.create(BRANCH, rec, force=True)
    _remember(repo.path, blobs)
    leased = _fix_tracking(repo, tracking, fix, done, fetched=False)
    return new_head, made, leased


def _fix_tracking(repo: Repo, tracking: str, fix: TreeFix, done: Rewritten, fetched: bool, hide=None) -> bool:
    """Rewrite the remote's tracking ref like the branch; if that changed it, the remote
    still holds purged blobs: lease against its real head. `fetched`: the ref is what a
    fetch just brought (else a lease already set is older, and still the remote's head).
    Returns whether a lease is set."""
    ref = repo.r.references.get(tracking)
    if ref is None:
        return lease(repo.path) is not None
    theirs = cast(pygit2.Oid, ref.target)  # a direct ref
    fixed = rewrite(repo, theirs, fix, done, hide)
    if fixed != theirs:
        repo.r.references.create(tracking, fixed, force=True)
        if fetched or lease(repo.path) is None:
            _set_lease(repo.path, str(theirs))
    elif fetched:  # the remote holds none of them (another host pushed its purge first)
        with contextlib.suppress(FileNotFoundError):
            (repo.path / LEASE_FILE).unlink()
    return lease(repo.path) is not None


# -- adopting another host's purge (sync, after a fetch) --------------------------------
def adopt(repo: Repo, tracking: str) -> set[bytes]:
    """After a fetch into `tracking`: purges the remote's new commits record are applied
    here (our branch rewritten the same way), and, if this scope ever purged, what was
    fetched is rewritten too before anything merges it. Returns the blob ids newly
    learned (our branch was rewritten without them: the caller updates the catalog)."""
    ref = repo.r.references.get(tracking)
    if ref is None:
        return set()
    ours = repo.head()
    walker = repo.r.walk(ref.target, pygit2.enums.SortMode.TOPOLOGICAL)
    if ours is not None:
        walker.hide(ours)
    learned: set[bytes] = set()
    for c in walker:
        learned |= parse_blobs(c.message)
        if len(learned) >= MAX_LEARNED:
            break
    known = purged_ids(repo.path)
    new = learned - known
    if not known and not new:
        return set()
    fix, done = TreeFix(repo, known | new), Rewritten()
    if new and ours is not None:
        fixed = rewrite(repo, ours, fix, done)
        if fixed != ours:
            repo.r.references.create(BRANCH, fixed, force=True)
        ours = fixed
    if new:
        _remember(repo.path, new)
    before = ref.target
    _fix_tracking(repo, tracking, fix, done, fetched=True, hide=ours)
    if new or repo.r.references[tracking].target != before:
        scrub(repo)
    return new
