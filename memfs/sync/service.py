"""Sync: each scope with a remote (teams.<t>.remote, users.<u>.remote) pushes its history
to it and fetches and applies the others', in the background.

A round for one scope, in a worker thread under the scope's history lock: commit what is
pending, fetch, then fast-forward or merge (see merge.py), write what arrived into the
scope's folder (a temp file and a rename: open handles keep their file), commit the merge
and push. A rejected push (someone pushed first) is fetched and merged again. After the
round, on the loop, the kernel's caches for what changed are dropped and the index told.
The git CLI moves the data (transport.py: the daemon's ssh key and known hosts, one
shared connection per server); pace.py decides when each scope is checked.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pygit2
import trio

from .. import owners
from ..background import NicedPool
from ..config import Config
from ..history import History, purge
from ..history.catalog import PURGED_BLOB, Catalog, arriving
from ..history.gitrepo import BLOB, EXEC, TRACKING, Repo, safe_path
from ..names import conflict_name, host_of, quote_path
from ..policy import Kind, Scope
from . import merge
from .blobs import copy_blob
from .creators import creators
from .pace import Pace
from .refusals import Refusals
from .transport import SERVER_KINDS, SyncError, Transport, explain, is_local, server_of
from .vet import ArrivalGuard, Vet

log = logging.getLogger(__name__)

# test hook: die (as kill -9 would) after writing this many arrived files in one apply
_CRASH_AFTER = int(os.environ.get("MEMFS_SYNC_CRASH_AFTER", "0") or 0)
LOGGED_REFUSALS = 100  # per round: a push of 50,000 refused files is one line per file up to this
SYNC_AUTHOR = "memfs-sync"
# What one round may bring in: a remote's push is anyone's input. Past either, the round
# fails before writing anything (nothing is lost; raise them for a larger first sync).
ROUND_BYTES = 1 << 30
ROUND_FILES = 50_000


@dataclass
class Budget:
    """Room for arrivals this round: the scope's quota, the round's budget, the file cap;
    and the caller's (written, removed) lists, filled as files land."""

    bytes: int
    files: int
    max_file: int
    applied: tuple[list, list] = field(default_factory=lambda: ([], []))

    def refuse(self, size: int, new: bool) -> str | None:
        """Why an arrival of `size` bytes is not written, or None (and it is counted)."""
        if size > self.max_file:
            return f"larger than limits.max_file_bytes ({self.max_file} bytes)"
        if size > self.bytes or (new and self.files < 1):
            return "over the scope's quota"
        self.bytes -= size
        self.files -= new
        return None


def _vetted(budget: Budget, vet: Vet, size: int, new: bool, blob: bytes, path: bytes) -> str | None:
    """The budget's refusal, then the secret guard's verdict (the room given back if it
    refuses); whatever refuses it, a blob refused in a guarded scope is withheld from history."""
    why = budget.refuse(size, new)
    if why is None and (why := vet.why(blob, path)) is not None:
        budget.bytes += size
        budget.files += new
    if why is not None and vet.on:
        vet.refused.setdefault(blob, path)
    return why


@dataclass
class State:
    remote: str
    last_ok: float | None = None  # wall time of the last successful round
    last_error: str | None = None  # "<what broke>: <git's first meaningful line>"
    failures: int = 0
    ahead: int = 0  # commits here the remote lacks (waiting to be pushed)
    behind: int = 0
    moved: dict = field(default_factory=dict)  # what the current round brought
    last_round: dict | None = None  # what the last round did, whatever its outcome


def remotes(cfg: Config) -> dict[Scope, str]:
    out = {Scope(Kind.TEAM, t.name): t.remote for t in cfg.teams.values() if t.remote}
    out |= {Scope(Kind.PRIVATE, u.name): u.remote for u in cfg.users.values() if u.remote}
    return out


GIT_SYSTEM_CONFIG = """# written by memfs: the system config git runs with for sync
[include]
\tpath = /etc/gitconfig
[safe]
\tdirectory = *
"""


def git_config(state: Path) -> Path:
    """A system-level git config for sync's git: the machine's own, plus trust in remotes
    given as local paths. Such a remote belongs to whoever set it up, not to the daemon
    user, and git would refuse it as 'dubious ownership' (git 2.39 reads safe.directory
    only from system or global config). The remotes are the admin's choice."""
    path = state / "gitconfig"
    if not path.exists() or path.read_text() != GIT_SYSTEM_CONFIG:
        path.write_text(GIT_SYSTEM_CONFIG)
    return path


def _check_round(repo: Repo, p: merge.Plan, max_file: int) -> None:
    """Refuse a round larger than ROUND_FILES / ROUND_BYTES before anything is written
    (sizes from the objects' headers: nothing is inflated to count it). Files over the
    file cap do not count: each is refused on its own and the rest goes on."""
    sizes = [repo.size(pygit2.Oid(raw=e[1])) for e in p.changes.values() if e is not None]
    sizes = [n for n in sizes if n <= max_file]
    if len(sizes) > ROUND_FILES:
        raise SyncError(f"the remote's change has {len(sizes)} files; one round takes {ROUND_FILES}")
    if sum(sizes) > ROUND_BYTES:
        raise SyncError(f"the remote's change is over {ROUND_BYTES} bytes, more than one round takes")


def _writable(scope: Scope, path: bytes, entry) -> bool:
    """A remote's tree is anyone's input: '..', a symlink or a submodule is not written."""
    if safe_path(path) and (entry is None or entry[0] in (BLOB, EXEC)):
        return True
    log.warning(
        "%s: not applying %s (mode %s) from the remote", scope, quote_path(path), entry and oct(entry[0])
    )
    return False


def _owner_of(store, scope: Scope, path: bytes, creator: Callable[[bytes], str | None]) -> str | None:
    """Who an arrival is recorded as made by: the file's owner here if it has one, else who
    added it (creators.py)."""
    return store.owner(scope, path) or creator(path)


def _round(started: float, moved: dict) -> dict:
    """What a round did, for .memfs/sync and `memfs sync`: when, how long, what moved."""
    return {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
        "pushed": moved.get("pushed", 0),
        "fetched": bool(moved.get("fetched")),
        **{k: v for k, v in moved.items() if k not in ("pushed", "fetched")},
    }


class Pushes:
    """Synced scopes committed to since their last round (each one at first): history
    tells it of each commit (History's on_commit), the sync loop wakes and pushes them."""

    def __init__(self, scopes: Iterable[Scope]) -> None:
        self.scopes = frozenset(scopes)
        self.wanted: set[Scope] = set(self.scopes)
        self.wake = trio.Event()

    def committed(self, scope: Scope) -> None:
        if scope in self.scopes:
            self.wanted.add(scope)
            self.wake.set()

    def reset(self) -> None:
        self.wake = trio.Event()


class SyncHost(Protocol):
    """What a sync round needs of the filesystem, given to run() and sync_scope()."""

    def hold(self, scope: Scope) -> AbstractAsyncContextManager: ...
    def busy(self, scope: Scope) -> set[bytes]: ...
    async def room(self, scope: Scope) -> tuple[int, int]: ...
    def open_dirty(self, scopes: list[Scope]) -> list[tuple[Scope, bytes, str]]: ...
    def synced(self, scope: Scope, written: list[bytes], removed: list[bytes]) -> None: ...


class Sync:
    def __init__(self, *, history: History, cfg: Config, pushes: Pushes, secrets: ArrivalGuard | None = None):
        self.history = history
        self._secrets = secrets
        self.refusals = Refusals()  # for members' .memfs/status
        self.interval = cfg.sync.interval
        urls = remotes(cfg)
        self.state = {scope: State(url) for scope, url in urls.items()}
        self.pace = Pace(cfg.sync, {scope: server_of(url) for scope, url in urls.items()})
        self.pushes = pushes
        state = history.data / "state"
        self.transport = Transport.make(
            git_config(state), state, cfg.sync.ssh_key, cfg.sync.known_hosts, list(urls.values())
        )
        # rounds parse a remote's data: niced threads of their own (a slow fetch must not hold history's)
        self.background = NicedPool(2, "memfs-sync")

    def close(self) -> None:
        """The shared ssh connections end with the daemon."""
        self.transport.close([st.remote for st in self.state.values()])

    async def run(self, host: SyncHost) -> None:
        await self.history.reconciled.wait()
        while True:
            self.pushes.reset()  # a commit from now on (during the round too) ends the wait below
            due = self.pace.due(trio.current_time(), self.pushes.wanted)
            async with trio.open_nursery() as n:
                for scope in due:
                    n.start_soon(self.sync_scope, scope, host)
            with trio.move_on_after(min(1.0, self.interval / 2)):
                await self.pushes.wake.wait()

    def opened(self, scope: Scope) -> None:
        """A caller reached the scope (a lookup at the root): check it now if it was not
        checked within the interval. Costs a dict lookup; the round runs in the sync task."""
        if self.pace.opened(scope, trio.current_time()):
            self.pushes.wake.set()

    async def sync_scope(self, scope: Scope, host: SyncHost) -> State:
        st = self.state[scope]
        self.pushes.wanted.discard(scope)
        st.moved = {}
        started = time.time()
        # what this round wrote and removed, filled as it happens: told to the index and the
        # kernel as each apply ends, even when it fails midway (those files are on disk)
        written: list[bytes] = []
        removed: list[bytes] = []
        await self.history.ready(scope)  # after a crash: what the last batch missed, first
        await self.history.flush([scope])
        try:
            for _attempt in range(3):
                async with self.history.locked(scope):
                    incoming = await self.background.run(self._fetch, scope, st)
                if incoming:
                    await self._take_in(scope, st, (written, removed), host)
                async with self.history.locked(scope):
                    if await self.background.run(self._push, scope, st):
                        break
            else:
                # Others pushed first three times (a busy fleet): not a fault of the remote,
                # so no backoff; the push is tried again at the next turn of the loop.
                log.info("%s: %s kept moving: pushing again next round", scope, st.remote)
                st.moved["raced"] = True
                st.ahead = await self.background.run(self._waiting, scope)
                self.pushes.wanted.add(scope)
        except Exception as e:
            await self._failed(scope, st, e, started)
            return st
        if st.failures:
            log.info("%s with %s: working again", scope, st.remote)
        st.failures, st.last_error, st.last_ok = 0, None, time.time()
        st.last_round = _round(started, st.moved)
        changed = bool(st.moved.get("pushed") or st.moved.get("fetched"))
        self.pace.done(scope, trio.current_time(), changed)
        return st

    async def _failed(self, scope: Scope, st: State, e: Exception, started: float) -> None:
        kind = e.kind if isinstance(e, SyncError) else "failed"
        st.failures += 1
        st.last_error = str(e) or type(e).__name__
        st.last_round = _round(started, st.moved) | {"failed": kind}
        delay = self.pace.failed(scope, trio.current_time(), st.last_error, kind in SERVER_KINDS)
        try:  # what waits to be pushed, told even while the remote is away
            st.ahead = await self.background.run(self._waiting, scope)
        except (pygit2.GitError, OSError, ValueError):
            pass
        if st.failures == 1 or st.failures % 10 == 0:
            log.warning(
                "%s: syncing with %s failed (%d): %s; retrying in %.1f s",
                scope,
                st.remote,
                st.failures,
                st.last_error,
                delay,
            )

    def _waiting(self, scope: Scope) -> int:
        """Commits here that the remote (as last seen) lacks: a walk bounded by the gap."""
        repo = Repo(self.history.repo_dir(scope))
        ours = repo.head()
        if ours is None:
            return 0
        tracked = repo.r.references.get(TRACKING)
        if tracked is None:
            return sum(1 for _ in repo.r.walk(ours))
        return repo.r.ahead_behind(ours, tracked.target)[0]

    async def _take_in(self, scope: Scope, st: State, applied: tuple[list, list], host: SyncHost) -> None:
        """Apply what arrived. Calls that change the scope wait meanwhile (a few ms); what
        callers wrote is committed first, and a file open for writing is never replaced
        (the arrival becomes a conflict copy beside it)."""
        async with host.hold(scope):
            await self.history.flush([scope], host.open_dirty([scope]))
            busy = host.busy(scope)
            room_bytes, room_files = await host.room(scope)
            budget = Budget(room_bytes, room_files, self.history.store.max_file_bytes, applied)
            try:
                async with self.history.locked(scope):
                    await self.background.run(self._take_fresh, scope, st, busy, budget)
            finally:
                # Before callers go on (still held): the kernel's cached names and nodes of
                # what changed are dropped now, not after the push, so an open through a
                # stale name does not reach a removed file. A partial apply is told too.
                written, removed = applied
                self.refusals.note(scope, st.remote, st.moved.get("refused", []), written)
                if written or removed:
                    host.synced(scope, list(written), list(removed))
                    written.clear()
                    removed.clear()

    # -- the steps (worker threads, under the scope's lock) --------------------------------
    def _fetch(self, scope: Scope, st: State) -> bool:
        """Fetch if the remote moved; whether it holds commits we do not."""
        gitdir = str(self.history.repo_dir(scope))
        repo = Repo(self.history.repo_dir(scope))
        # asked first, always: an idle check is this one call; a fetch runs only if it moved
        # (and after a purge here, a fetch would bring the purged blobs back)
        remote_head = self.transport.head(st.remote, gitdir)
        tracked = repo.r.references.get(TRACKING)
        lease = purge.lease(repo.path)
        if lease is not None and remote_head == lease:
            pass  # the remote is as when this host purged: the push replaces it
        elif remote_head != (str(tracked.target) if tracked else None):
            refs = f"+refs/heads/*:{TRACKING[:-4]}*"
            self.transport.git(["fetch", "--quiet", "--no-tags", st.remote, refs], gitdir)
            st.moved["fetched"] = True
            self._adopt(scope, repo, st)
            tracked = repo.r.references.get(TRACKING)
        theirs, ours = (tracked.target if tracked is not None else None), repo.head()
        return (
            theirs is not None and theirs != ours and (ours is None or not repo.r.descendant_of(ours, theirs))
        )

    def _adopt(self, scope: Scope, repo: Repo, st: State) -> None:
        """A purge in what arrived (or the remote still holding what this host purged):
        rewritten here before anything merges it, so the purged blobs never come back."""
        learned = purge.adopt(repo, TRACKING)
        if learned:
            head = repo.head()
            if head is not None:
                with Catalog.of(repo.path) as cat:
                    cat.forget(learned, head)
            log.info(
                "%s: %d purged blobs taken out of this host's history too (%s)",
                scope,
                len(learned),
                st.remote,
            )

    def _take_fresh(
        self, scope: Scope, st: State, busy: set[bytes], budget: Budget
    ) -> tuple[list[bytes], list[bytes]]:
        repo = Repo(self.history.repo_dir(scope))
        tracked = repo.r.references.get(TRACKING)
        ours = repo.head()
        if tracked is None or tracked.target == ours:
            return [], []
        return self._take(scope, repo, ours, tracked.target, st, busy, budget)

    def _push(self, scope: Scope, st: State) -> bool:
        """Push if we hold commits the remote lacks; False if it moved first (merge again)."""
        gitdir = str(self.history.repo_dir(scope))
        repo = Repo(self.history.repo_dir(scope))
        ours = repo.head()
        tracked = repo.r.references.get(TRACKING)
        theirs = tracked.target if tracked is not None else None
        if ours is not None and ours != theirs:
            if theirs is not None and not repo.r.descendant_of(ours, theirs):
                return False  # not merged yet
            lease = purge.lease(repo.path)  # a purge rewrote what the remote holds: replace it
            force = [f"--force-with-lease=refs/heads/main:{lease}"] if lease else []
            pushing = repo.r.ahead_behind(ours, theirs)[0] if theirs is not None else None
            res = self.transport.git(
                ["push", "--quiet", *force, st.remote, "refs/heads/main:refs/heads/main"], gitdir, check=False
            )
            if res.returncode != 0:
                if (
                    lease and "remote rejected" in res.stderr
                ):  # not raced: refused (denyNonFastForwards, a protected branch)
                    raise SyncError(
                        "the remote refuses the purge's rewritten history: allow force pushes to main there",
                        "rejected",
                    )
                if any(w in res.stderr for w in ("rejected", "fetch first", "non-fast-forward")):
                    return False
                raise explain(res.stderr, "git push failed")
            st.moved["pushed"] = st.moved.get("pushed", 0) + (
                pushing if pushing is not None else sum(1 for _ in repo.r.walk(ours))
            )
            repo.r.references.create(TRACKING, ours, force=True)
            theirs = ours
            if lease:
                purge.pushed(repo.path, st.remote if is_local(st.remote) else None)
        if ours is not None and theirs is not None:
            st.ahead, st.behind = repo.r.ahead_behind(ours, theirs)
        return True

    def _take(self, scope: Scope, repo: Repo, ours, theirs, st: State, busy: set[bytes], budget: Budget):
        """Bring their commits in: fast-forward when we have nothing of our own, else merge."""
        base = repo.r.merge_base(ours, theirs) if ours is not None else None
        ours_tree = repo.get_commit(ours).tree_id if ours is not None else None
        base_tree = repo.get_commit(base).tree_id if base is not None else None
        theirs_c = repo.get_commit(theirs)
        host = host_of(theirs_c.committer.raw_email)  # their claim: a label, never a path
        now = int(time.time())
        own: set[pygit2.Oid] = set()  # commits this round makes here
        p = merge.plan(repo, base_tree, ours_tree, theirs_c.tree_id, host, now)
        _check_round(repo, p, budget.max_file)
        guarded = self._secrets is not None and self._secrets.refuses(scope)
        vet = Vet(self._secrets if guarded else None, repo, budget.max_file, (ROUND_BYTES, ROUND_FILES))
        refused: list[dict] = []
        arrival = (host, now, creators(repo, ours, theirs))
        written, removed = self._apply(scope, repo, ours_tree, p, arrival, busy, budget, refused, vet)
        self._withhold(scope, st, repo, vet, (ours, theirs), refused)  # before the branch moves
        tree = repo.tree_with(ours_tree, p.changes)
        if tree == theirs_c.tree_id and (ours is None or repo.r.descendant_of(theirs, ours)):
            repo.r.references.create("refs/heads/main", theirs, force=True)  # fast-forward
        else:
            # A merge commit, even when the merged tree is theirs: our commits (a file
            # written then removed) must stay in the history, whatever their net change.
            sig = pygit2.Signature(SYNC_AUTHOR, f"memfs@{self.history.hostname}", now, 0)
            committer = pygit2.Signature("memfs", f"memfs@{self.history.hostname}", now, 0)
            msg = f"memfs: sync with {st.remote}\n"
            if p.conflicts:
                msg += "\n" + "".join(f"memfs-conflict: {quote_path(c)}\n" for _, c in p.conflicts)
            parents = [ours, theirs] if ours is not None else [theirs]
            oid = repo.r.create_commit(None, sig, committer, msg, tree, parents)
            repo.r.references.create("refs/heads/main", oid, force=True)
            own.add(oid)
        with Catalog.of(self.history.repo_dir(scope)) as cat:
            cat.catch_up(repo, own)  # the rest arrived: shown as '<author> (via <host>)'
            head_tree = repo.head_tree()
            rows = []
            for path in written:
                try:
                    s = self.history.store.lstat(scope, path)
                except OSError:
                    continue
                e = repo.lookup(head_tree, path)
                if e is not None:
                    rows.append((path, e[1], (s.st_size, s.st_mtime_ns, s.st_ino)))
            cat.remember_stat(rows)
        st.moved |= {
            "files": len(written),
            "removed": len(removed),
            "merged": len(p.merged),
            "conflicts": [quote_path(c) for _, c in p.conflicts],
            "refused": refused,
        }
        if p.conflicts:
            log.info("%s: %d conflicts kept as copies: %s", scope, len(p.conflicts), st.moved["conflicts"])
        return written, removed

    def _apply(
        self,
        scope: Scope,
        repo: Repo,
        ours_tree,
        p: merge.Plan,
        when: tuple[str, int, Callable[[bytes], str | None]],
        busy: set[bytes],
        budget: Budget,
        refused: list[dict],
        vet: Vet,
    ):
        """Write the plan into the scope's folder. A file that differs from our last commit
        (written since, not yet committed) is never overwritten: their version becomes a
        conflict copy instead, and a removal is skipped (the edit wins). An arrival over
        the file cap or the scope's quota, or holding a secret in a guarded scope, is not
        written, and the merge leaves it out (it stays in the remote's history); `refused`
        names it and why. A file written keeps the owner it has here; a new one records who
        added it (`when`: their host, the time, and creators.creators)."""
        host, now, creator = when
        written: list[bytes] = []
        removed: list[bytes] = []
        store = self.history.store
        purged = purge.purged_ids(self.history.repo_dir(scope))
        for path in list(p.changes):
            entry = p.changes[path]
            if not _writable(scope, path, entry):
                del p.changes[path]
                continue
            expected = repo.lookup(ours_tree, path)
            owner = _owner_of(store, scope, path, creator)
            if path in busy or self._edited_here(scope, path, expected, purged):
                del p.changes[path]
                if entry is None:
                    continue
                copy = conflict_name(path, host, now)
                p.changes[copy] = entry
                p.conflicts.append((path, copy))
                path = copy
            if entry is None:
                self._remove(scope, path, removed, budget)
                continue
            oid = pygit2.Oid(raw=entry[1])
            why = _vetted(budget, vet, repo.size(oid), expected is None, entry[1], path)
            if why is not None:
                refused.append({"path": quote_path(path), "reason": why})
                p.changes.pop(path, None)
                p.conflicts = [c for c in p.conflicts if c[1] != path]
                continue
            try:
                self._write(scope, path, repo, oid, 0o700 if entry[0] & 0o100 else 0o600, owner)
                log.debug("%s: wrote %s", scope, quote_path(path))
                written.append(path)
                budget.applied[0].append(path)
                if _CRASH_AFTER and len(written) >= _CRASH_AFTER:
                    os._exit(9)
            except OSError as e:
                log.warning("%s: cannot write %s: %s", scope, quote_path(path), e)
                p.changes.pop(path, None)
        return written, removed

    def _edited_here(self, scope: Scope, path: bytes, expected, purged: set[bytes]) -> bool:
        """Does the file differ from our last commit (written since, not yet committed)?
        Bytes a purge took out of history, where history now holds the placeholder, are
        not an edit: the arrival replaces them (a host that synced the leak, not its fix)."""
        disk = self.history.disk_blob(scope, path)
        if expected is not None and expected[1] == PURGED_BLOB and disk in purged:
            return False
        return disk != (expected[1] if expected is not None else None)

    def _remove(self, scope: Scope, path: bytes, removed: list[bytes], budget: Budget) -> None:
        try:
            self.history.store.unlink(scope, path)
            log.debug("%s: removed %s", scope, quote_path(path))
            removed.append(path)
            budget.applied[1].append(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("%s: cannot remove %s: %s", scope, quote_path(path), e)

    def _withhold(
        self, scope: Scope, st: State, repo: Repo, vet: Vet, sides: tuple, refused: list[dict]
    ) -> None:
        """Judge every version the arriving commits hold (a secret pushed then removed is
        in one, never at the tip); what is refused is withheld from the catalog before the
        branch moves, so no version of it is ever listed or readable. Then log them all."""
        ours, theirs = sides
        if vet.on:
            for path, blob in arriving(repo, theirs, ours):
                if blob not in vet.refused and (why := vet.why(blob, path)) is not None:
                    refused.append({"path": quote_path(path), "reason": f"{why}, in an earlier version"})
            if vet.refused:
                with Catalog.of(self.history.repo_dir(scope)) as cat:
                    cat.withhold(vet.refused)
        for r in refused[:LOGGED_REFUSALS]:
            log.warning(
                "%s: not taking %s from the remote %s: %s (the remote keeps it)",
                scope,
                r["path"],
                st.remote,
                r["reason"],
            )
        if len(refused) > LOGGED_REFUSALS:
            log.warning(
                "%s: %d more arrivals from %s refused", scope, len(refused) - LOGGED_REFUSALS, st.remote
            )

    def _write(
        self, scope: Scope, path: bytes, repo: Repo, oid: pygit2.Oid, mode: int, owner: str | None
    ) -> None:
        """The blob into place: a temp file beside it, then a rename (open handles keep the
        file they opened). A large blob is streamed by `git cat-file`, a MiB at a time:
        memory stays bounded whatever the file cap is set to."""
        store = self.history.store
        folder = path.rpartition(b"/")[0]
        parts = folder.split(b"/") if folder else []
        for i in range(1, len(parts) + 1):
            try:
                store.mkdir(scope, b"/".join(parts[:i]), 0o700)
            except FileExistsError:
                continue
            if owner is not None:  # a folder an arrival needed: its first file's maker's
                store.record_owner(scope, b"/".join(parts[:i]), owner)
        tmp = (folder + b"/" if folder else b"") + b".memfs-sync-" + str(oid)[:12].encode()
        fd, _ = store.create(scope, tmp, os.O_WRONLY | os.O_TRUNC, mode)
        try:
            if owner is not None:
                owners.record_fd(fd, owner)
            copy_blob(repo, oid, fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        store.rename(scope, tmp, scope, path)

    # -- what callers see -----------------------------------------------------------------
    def error_of(self, scope: Scope, st: State) -> str | None:
        """What broke the scope's last round, or its server's while that is down."""
        return self.pace.server_error(scope) if st.last_error is None else st.last_error

    def status(self, scopes: list[Scope]) -> list[dict]:
        out = []
        for scope in scopes:
            st = self.state.get(scope)
            if st is None:
                continue
            out.append(
                {
                    "scope": str(scope),
                    "remote": st.remote,
                    "last_sync": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.last_ok))
                    if st.last_ok
                    else None,
                    "commits_waiting": st.ahead,
                    "error": self.error_of(scope, st),
                    "last_round": st.last_round,
                }
            )
        return out
