"""One scope's git repository (bare, beside the scope's folder, never inside it): write
blobs, rebuild only the trees above what changed, commit, read versions back, diff trees.

pygit2 (libgit2) writes the objects: measured against the git CLI and dulwich in
scripts/bench_history_engines.py it costs the least per batch. Trees are serialized here
because pygit2's TreeBuilder takes only UTF-8 names and a file name is any bytes. The
git CLI (gc, and later push/fetch) works on the same repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pygit2

from ..confine import bad_component

log = logging.getLogger(__name__)

BRANCH = "refs/heads/main"
TRACKING = "refs/remotes/sync/main"  # the remote's branch as sync last fetched it
TREE = 0o040000
BLOB = 0o100644
EXEC = 0o100755

# The repositories are the daemon user's, under a 0700 DATA/ nobody else can write; root's
# tools (doctor, the tests' checks) read them too, which libgit2 would refuse as 'not owned
# by the current user'.
pygit2.settings.owner_validation = False


def use_home(home: str) -> None:
    """libgit2 read $HOME once, when loaded (as root): point it at the daemon user's."""
    levels = pygit2.enums.ConfigLevel
    pygit2.settings.search_path[levels.GLOBAL] = home
    pygit2.settings.search_path[levels.XDG] = os.path.join(home, ".config", "git")


SAMPLE = 64 << 10  # bytes of a large blob tried before choosing its compression
LARGE = 64 << 10  # blobs from here on are hashed and compressed with the GIL released
# Blobs FastImport holds to hand fast-import in path order (see FastImport.blob).
SORT_BYTES = 8 << 20
HELD_COST = 128  # bytes counted per held blob besides its data and key
Change = tuple[int, bytes] | None  # (mode, raw 20-byte oid) to store, None to remove


def safe_path(path: bytes) -> bool:
    """A path that stays inside its scope: no empty, '.' or '..' component, no NUL. A tree
    from a remote is anyone's input; git itself would refuse these, a crafted push may not."""
    return bad_component(path) is None  # the store's own gate says the same


def blob_id(data: bytes) -> bytes:
    """A blob's raw object id. hashlib lets other threads run while it hashes a large
    file; pygit2.hash holds the GIL throughout (36 ms for 10 MiB, measured)."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.digest()


Who = tuple[str, str, int]  # (name, email, unix time) of an author or committer


def _sig(who: Who) -> pygit2.Signature:
    return pygit2.Signature(who[0], who[1], who[2], 0)


def _tree_key(item: tuple[bytes, tuple[int, bytes]]) -> bytes:
    name, (mode, _) = item
    return name + b"/" if mode == TREE else name  # git's order: a folder sorts as 'name/'


def _level(data: bytes) -> int:
    """zlib level for a large blob: stored as is (0) when a sample does not shrink (random
    or already compressed bytes: level 6 spent ~40 ms per MiB on them for nothing), else
    zlib's default. git gc packs it again later, in a process of its own."""
    sample = data[:SAMPLE]
    return 0 if len(zlib.compress(sample, 1)) > 0.9 * len(sample) else zlib.Z_DEFAULT_COMPRESSION


def _create(path: Path) -> pygit2.Repository:
    """A new bare repository at `path`, made whole beside it then renamed into place: a
    process killed half-way through init (a daemon's SIGKILL reaches its worker too) left
    a folder with no HEAD and a stale config.lock that every later open tried, and failed,
    to finish. Such a folder is moved aside (`<name>.broken-<ns>`, logged), never removed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}-{time.monotonic_ns()}")
    r = pygit2.init_repository(str(tmp), bare=True, initial_head="main")
    r.config["core.logAllRefUpdates"] = False  # no reflog: retention must free old blobs
    r.config["gc.autoDetach"] = False
    del r
    try:
        os.rename(tmp, path)
    except OSError:  # something is there: made meanwhile by another process, or half-made
        try:
            found = pygit2.Repository(str(path))
        except pygit2.GitError:
            if (path / "HEAD").exists():
                shutil.rmtree(tmp, ignore_errors=True)
                raise  # a repository that does not open for another reason: not ours to move
            aside = path.with_name(f"{path.name}.broken-{time.time_ns()}")
            log.info("history: %s was never finished (a killed init): moved to %s", path, aside.name)
            os.rename(path, aside)
            os.rename(tmp, path)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            return found
    return pygit2.Repository(str(path))


class Repo:
    def __init__(self, path: Path):
        self.path = path
        self._stored: set[bytes] = set()  # small blobs this handle has written
        self._tip: pygit2.Oid | None = None  # commits made but not yet published on the branch
        try:
            self.r = pygit2.Repository(str(path))
        except pygit2.GitError:
            self.r = _create(path)

    # -- reading --------------------------------------------------------------
    def head(self) -> pygit2.Oid | None:
        if self._tip is not None:
            return self._tip
        try:
            return cast(pygit2.Oid, self.r.references[BRANCH].target)  # a direct ref: an Oid
        except KeyError:
            return None

    def head_tree(self) -> pygit2.Oid | None:
        h = self.head()
        return self.get_commit(h).tree_id if h is not None else None

    # pygit2 types r[id] as Object: these say which kind of object the id names.
    def get_commit(self, oid: pygit2.Oid | str) -> pygit2.Commit:
        return cast(pygit2.Commit, self.r[oid])

    def read(self, hexid: pygit2.Oid | str) -> bytes:
        return cast(pygit2.Blob, self.r[hexid]).data

    def size(self, oid: pygit2.Oid) -> int:
        return self.r.odb.read_header(oid)[1]

    def entries(self, tree: pygit2.Oid | None) -> dict[bytes, tuple[int, bytes]]:
        if tree is None:
            return {}
        # pygit2 types raw_name as Optional; an entry read from a tree always has its name
        return {e.raw_name: (e.filemode, e.id.raw) for e in cast(pygit2.Tree, self.r[tree])}  # type: ignore[misc]

    def files(self, tree: pygit2.Oid | None, prefix: bytes = b"") -> Iterator[tuple[bytes, int, bytes]]:
        """(path, mode, raw oid) of every file in a tree. Iterative: a path may be
        thousands of folders deep."""
        stack = [(tree, prefix)]
        while stack:
            oid, at = stack.pop()
            for name, (mode, raw) in self.entries(oid).items():
                if mode == TREE:
                    stack.append((pygit2.Oid(raw=raw), at + name + b"/"))
                else:
                    yield at + name, mode, raw

    def diff(
        self, old: pygit2.Oid | None, new: pygit2.Oid | None
    ) -> Iterator[tuple[bytes, tuple[int, bytes] | None, tuple[int, bytes] | None]]:
        """(path, old file, new file) for every file that differs; equal subtrees are skipped
        by id, so the cost follows the change, not the scope's size."""
        stack = [(old, new, b"")]
        while stack:
            old, new, prefix = stack.pop()
            if old == new:
                continue
            a, b = self.entries(old), self.entries(new)
            for name in sorted(a.keys() | b.keys(), reverse=True):
                x, y = a.get(name), b.get(name)
                if x == y:
                    continue
                path = prefix + name
                xt = x is not None and x[0] == TREE
                yt = y is not None and y[0] == TREE
                if not xt or not yt:
                    fx, fy = (None if xt else x), (None if yt else y)
                    if fx != fy:
                        yield path, fx, fy
                if xt or yt:
                    sub_old = pygit2.Oid(raw=x[1]) if x is not None and xt else None
                    sub_new = pygit2.Oid(raw=y[1]) if y is not None and yt else None
                    stack.append((sub_old, sub_new, path + b"/"))

    # -- writing --------------------------------------------------------------
    def blob(self, data: bytes, oid: bytes | None = None) -> bytes:
        """Store a blob; its raw id. A large one is written here as a loose object (git's
        format: zlib of 'blob <size>\\0' + bytes, named by its SHA-1): zlib and hashlib release
        the GIL, libgit2's create_blob holds it for the whole blob (240 ms for 10 MiB, measured),
        which would stall every caller's request on the loop. `oid`: its id, if known."""
        oid = oid or blob_id(data)
        if len(data) < LARGE:
            # A batch often repeats a blob (empty files, copies): libgit2 would re-check
            # and freshen the object each time, holding the GIL.
            if oid not in self._stored:
                self.r.create_blob(data)
                self._stored.add(oid)
            return oid
        hexid = oid.hex()
        folder = self.path / "objects" / hexid[:2]
        target = folder / hexid[2:]
        if target.exists() or self.r.odb.exists(hexid):
            return oid
        z = zlib.compressobj(_level(data))
        packed = z.compress(b"blob %d\0" % len(data)) + z.compress(data) + z.flush()
        folder.mkdir(exist_ok=True)
        tmp = folder / f".tmp-{os.getpid()}-{hexid[2:10]}"
        with open(tmp, "wb") as f:
            f.write(packed)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
        return oid

    def write_tree(self, entries: dict[bytes, tuple[int, bytes]]) -> bytes:
        body = b"".join(
            b"%o %s\0%s" % (mode, name, raw) for name, (mode, raw) in sorted(entries.items(), key=_tree_key)
        )
        return self.r.odb.write(pygit2.GIT_OBJECT_TREE, body).raw

    def _apply(self, base: pygit2.Oid | None, changes: dict[bytes, Change]) -> bytes | None:
        """The root tree after `changes`: only the folders above a change are rewritten,
        deepest first (iterative: a path may be thousands of folders deep)."""
        dirs = {b""}
        for path in changes:
            d = path.rpartition(b"/")[0]
            while d not in dirs:
                dirs.add(d)
                d = d.rpartition(b"/")[0]
        order = sorted(dirs, key=lambda d: d.count(b"/") + bool(d))  # parents before children
        old: dict[bytes, pygit2.Oid | None] = {b"": base}
        entries: dict[bytes, dict] = {}
        for d in order:
            if d:
                parent, _, name = d.rpartition(b"/")
                e = entries[parent].get(name)
                old[d] = pygit2.Oid(raw=e[1]) if e is not None and e[0] == TREE else None
            entries[d] = self.entries(old[d])
        for path, change in changes.items():
            if change is None:
                parent, _, name = path.rpartition(b"/")
                entries[parent].pop(name, None)
        for path, change in changes.items():
            if change is not None:
                parent, _, name = path.rpartition(b"/")
                entries[parent][name] = change
        for d in reversed(order):
            if not d or changes.get(d) is not None:
                continue  # the root, or a folder a file replaced: the file wins
            parent, _, name = d.rpartition(b"/")
            if entries[d]:
                entries[parent][name] = (TREE, self.write_tree(entries[d]))
            elif (e := entries[parent].get(name)) is not None and e[0] == TREE:
                del entries[parent][name]
        return self.write_tree(entries[b""]) if entries[b""] else None

    def tree_with(self, base: pygit2.Oid | None, changes: dict[bytes, Change]) -> pygit2.Oid:
        new = self._apply(base, changes)
        return pygit2.Oid(raw=new) if new is not None else self.r.odb.write(pygit2.GIT_OBJECT_TREE, b"")

    def lookup(self, tree: pygit2.Oid | None, path: bytes) -> tuple[int, bytes] | None:
        """(mode, raw oid) of a file in a tree, or None."""
        *dirs, leaf = path.split(b"/")
        for d in dirs:
            e = self.entries(tree).get(d)
            if e is None or e[0] != TREE:
                return None
            tree = pygit2.Oid(raw=e[1])
        e = self.entries(tree).get(leaf)
        return e if e is not None and e[0] != TREE else None

    def commit(
        self,
        changes: dict[bytes, Change],
        author: pygit2.Signature,
        committer: pygit2.Signature,
        message: str,
        publish: bool = True,
    ) -> pygit2.Oid | None:
        """Apply changes on top of the branch as one commit; None if the tree is unchanged.
        publish=False: the branch moves at publish(), once for a chain of commits (moving a
        ref locks, writes and renames a file: most of a small commit's cost, measured)."""
        parent = self.head()
        base = self.get_commit(parent).tree_id if parent is not None else None
        tree = self.tree_with(base, changes)
        if tree == base:
            return None
        oid = self.r.create_commit(None, author, committer, message, tree, [parent] if parent else [])
        self._tip = oid
        if publish:
            self.publish()
        return oid

    def fast_import(self) -> FastImport:
        return FastImport(self)

    def forget_tip(self) -> None:
        """Drop commits made with publish=False: the branch stays where it was."""
        self._tip = None

    def publish(self) -> None:
        if self._tip is not None:
            self.r.references.create(BRANCH, self._tip, force=True)
            self._tip = None

    def commits_since(self, known: str | None) -> list[pygit2.Commit]:
        """Commits on the branch that `known` does not contain, oldest first."""
        head = self.head()
        if head is None:
            return []
        walker = self.r.walk(head, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
        if known:
            try:
                walker.hide(known)
            except (KeyError, ValueError, pygit2.GitError):
                pass  # rewritten (retention) or lost: the caller starts over
        return list(walker)

    def rewrite_before(self, cutoff: int, committer: pygit2.Signature) -> int:
        """Drop the history older than `cutoff` (unix seconds): the newest commit before it
        becomes a new root holding its tree, and the later commits are replayed on top.
        Returns how many commits were folded into the root."""
        head = self.head()
        chain = []
        c = self.get_commit(head) if head is not None else None
        while c is not None and c.commit_time >= cutoff:
            chain.append(c)
            c = c.parents[0] if c.parents else None
        if c is None or not c.parents:
            return 0  # nothing older than the cutoff, or only the root
        folded = sum(1 for _ in self.r.walk(c.id))
        note = "memfs: history before this commit was pruned (retention)\n"
        parent = self.r.create_commit(None, c.author, committer, note, c.tree_id, [])
        for old in reversed(chain):
            parent = self.r.create_commit(None, old.author, old.committer, old.message, old.tree_id, [parent])
        self.r.references.create(BRANCH, parent, force=True)
        return folded

    def gc(self, auto: bool) -> None:
        """auto: pack loose objects and merge small packs geometrically (each pack at least
        twice the size of the ones it absorbs: a repack costs in proportion to what is new,
        amortised; `git gc --auto` rewrote every pack once 50 had piled up, which a scope
        written fast paid again and again). Without auto, also drop what nothing reaches any
        more (retention). Needs the git CLI; skipped without it."""
        git = shutil.which("git")
        if git is None:
            return
        if auto:
            cmd = [git, "--git-dir", str(self.path), "repack", "-d", "-q", "--geometric=2"]
        else:
            cmd = [git, "--git-dir", str(self.path), "gc", "--quiet", "--prune=now"]
        subprocess.run(cmd, capture_output=True, timeout=3600, check=True)


class FastImport:
    """Blobs streamed through `git fast-import` into one pack, then commits that name them
    on top of the branch. Writing blobs one by one made 2-3 new loose-object files per
    version (creating a file took 0.3-0.7 ms on a busy ext4, measured): most of the
    committer's time, and 100k files at once took minutes. Trees and commits are not left
    to fast-import: it finds a path's entry by a linear scan of its folder, so a batch in a
    folder of n files cost O(n) per change (100k files created, then removed, in one folder:
    15 minutes of fast-import at nice 10 behind a loaded machine's unmount, measured).
    Repo.commit rebuilds each touched folder once per commit from a dict. Without the git
    CLI, blobs go one by one through libgit2. The branch moves at close(), if nothing failed,
    once the pack holding the blobs is complete.

    fast-import stores each blob as a delta against the blob before it when that is
    smaller. Versions of one file differ little, but a batch holds them in the order they
    were kept, several files' interleaved: blobs are held (up to SORT_BYTES) and handed on
    by path. An agent's save loop (4 files of 48 KiB, each rewritten, patched, cut; 1,200
    versions): 0.65 -> 0.15 ms of fast-import's CPU a version, its pack 5.3 -> 0.68 MB."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self.made = 0
        self._held: list[tuple[bytes, int, bytes]] = []  # (key, arrival, data)
        self._held_bytes = 0
        git = shutil.which("git")
        self._proc = None
        if git is not None:
            cmd = [git, "--git-dir", str(repo.path), "fast-import", "--quiet", "--done"]
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )

    def __enter__(self) -> FastImport:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
            return
        self.repo.forget_tip()  # commits naming blobs that may never be stored
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def blob(self, data: bytes, oid: bytes, key: bytes = b"") -> bytes:
        """Store a blob; its raw id, what commit() takes to name it. `key` (its path):
        blobs of one key reach fast-import one after another, each a delta of the last."""
        if self._proc is None or len(data) >= LARGE:
            return self.repo.blob(data, oid)  # a large one is compressed here, GIL released
        self._held.append((key, len(self._held), data))
        # What holding it costs, not only its bytes: a flood of empty versions (each one a
        # tuple and a path of up to 4 KiB) is handed on in bounded chunks too.
        self._held_bytes += len(data) + len(key) + HELD_COST
        if self._held_bytes >= SORT_BYTES:
            self._hand_on()
        return oid

    def _hand_on(self) -> None:
        """The held blobs to fast-import, by key, in arrival order within a key."""
        assert self._proc is not None and self._proc.stdin is not None
        write = self._proc.stdin.write
        for _key, _n, data in sorted(self._held, key=lambda held: held[:2]):
            write(b"blob\ndata %d\n" % len(data))
            write(data)
            write(b"\n")
        self._held.clear()
        self._held_bytes = 0

    def commit(
        self, changes: dict[bytes, tuple[int, bytes] | None], author: Who, committer: Who, message: str
    ) -> None:
        """One commit: {path: (mode, what blob() returned)} to store, None to remove."""
        if self.repo.commit(changes, _sig(author), _sig(committer), message, publish=False) is not None:
            self.made += 1

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None and self._proc.stderr is not None
            try:
                self._hand_on()
                self._proc.stdin.write(b"done\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            err = self._proc.stderr.read()
            if self._proc.wait() != 0:
                self.repo.forget_tip()
                raise OSError(f"git fast-import failed: {err.decode(errors='replace').strip()[-500:]}")
        self.repo.publish()
