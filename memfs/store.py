"""The backing directory: where each scope's files live, and the disk calls on them.

Paths are bytes relative to a scope root. Every call reaches the disk through
confine.beneath, which cannot leave the scope's folder whatever the bytes (a FUSE name, a
remote's tree, a name memfs composed). Nothing here knows FUSE.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import owners
from .confine import (
    LONG_PATH,
    bad_component,
    beneath,
    check,
    getxattr_at,
    open_folder,
    setxattr_at,
)
from .layout import KIND_OF_DIR, SCOPE_DIRS, TOP_DIRS
from .modestat import mode_at
from .policy import Kind, Scope

# Never follow a symlink an admin may have left in DATA/: memfs does not create them.
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
# The kernel already bypasses its page cache for a caller's O_DIRECT, but hands memfs
# unaligned buffers: a backing fd opened O_DIRECT would answer them with EINVAL.
_NOT_PASSED = os.O_DIRECT
MAX_ROOT_FDS = 256
# Folders below a scope's root kept open (O_PATH, opened by the confined lookup): a file's
# stat or open is then one fstatat/openat of one checked name, not openat2 + fstat + close.
MAX_FOLDER_FDS = 256


# A partial, not a def: called as call(name, dir_fd=fd) by Store._at with no Python frame
# of its own (a stat is most requests' one disk call).
_lstat = functools.partial(os.stat, follow_symlinks=False)


def _lstat_in(name: bytes, team: bool, dir_fd: int) -> tuple[int, os.stat_result | None]:
    # A team's folder's mode is read without its times (modestat.py), so that a create
    # after this lookup leaves the new file's times equal. Through a mount the statx
    # (ctypes) costs ~2 us more than an fstat: only where creates record a maker.
    folder = mode_at(b"", dir_fd) if team else os.fstat(dir_fd).st_mode
    try:
        return folder, _lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return folder, None


def _lstat_or_none(name: bytes, dir_fd: int) -> os.stat_result | None:
    try:
        return _lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _create(name: bytes, flags: int, mode: int, dir_fd: int) -> tuple[int, bool]:
    flags = (flags & ~_NOT_PASSED) | _NOFOLLOW
    while True:
        try:
            return os.open(name, flags | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd), True
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
        try:
            return os.open(name, flags & ~os.O_CREAT, dir_fd=dir_fd), False
        except FileNotFoundError:
            continue  # removed again in between: create it after all


def _unlink(name: bytes, dir_fd: int) -> os.stat_result:
    st = _lstat(name, dir_fd=dir_fd)
    os.unlink(name, dir_fd=dir_fd)
    return st


def _move_out(name: bytes, dst: str, dir_fd: int) -> None:
    os.rename(name, dst, src_dir_fd=dir_fd)


def child_path(path: bytes, name: bytes) -> bytes:
    """A name in a folder of a scope, as a path relative to the scope's root."""
    return path + b"/" + name if path else name


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk_tree(root_fd: int, top: bytes = b"", unreadable: list | None = None) -> Iterator:
    """(path relative to root_fd, stat) of every file and folder below root/top; paths are
    opened relative to root_fd, so their length counts from the scope, not from /.

    A folder that vanishes while walking is skipped. One that cannot be read (EACCES,
    EMFILE, EIO) is added to `unreadable` (or raises without it): the entries below it
    are unknown, not gone."""
    stack = [top]
    while stack:
        rel = stack.pop()
        try:
            with beneath(root_fd, rel) as (where, name):
                fd = os.open(name, _DIR, dir_fd=where)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            if unreadable is None:
                raise
            unreadable.append(rel)
            continue
        try:
            with os.scandir(fd) as it:
                for found in it:
                    child = child_path(rel, os.fsencode(found.name))
                    try:
                        st = found.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(child)
                    yield child, st
        finally:
            os.close(fd)


class _Where:
    """`with _Where(store, scope, rel) as (dir_fd, name)`: the scope's root and `name` for
    a name in it; else a kept fd of the folder holding `name` (Store._hold_folder); a folder
    path of LONG_PATH or more is opened by confine.beneath for this call. A class, not a
    @contextmanager generator: most handlers go through here (see confine.beneath)."""

    __slots__ = ("_store", "_scope", "_rel", "_root", "_folder", "_long")

    def __init__(self, store: Store, scope: Scope, rel: bytes) -> None:
        self._store, self._scope, self._rel = store, scope, rel
        self._root: list[int] | None = None
        self._folder: list[int] | None = None
        self._long: beneath | None = None

    def __enter__(self) -> tuple[int, bytes]:
        store, rel = self._store, self._rel
        folder, _, name = rel.rpartition(b"/")
        if folder and len(folder) < LONG_PATH:  # the common case: no root fd needed
            check(rel)
            self._folder = store._hold_folder(self._scope, folder)
            return self._folder[0], name
        root = self._root = store._hold(self._scope)
        try:
            if not rel:
                return root[0], b"."
            check(rel)
            if not folder:
                return root[0], name
            self._long = beneath(root[0], rel)
            return self._long.__enter__()
        except BaseException:
            self._release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._long is not None:
            self._long.__exit__()
            self._long = None
        if self._folder is not None:
            self._store._let_go_folder(self._folder)
            self._folder = None
        if self._root is not None:
            self._store._let_go(self._root)
            self._root = None


class Store:
    """Every call works relative to a directory fd of its scope's root (openat, renameat,
    ...): a path that fits PATH_MAX for the caller fits for memfs too, wherever DATA/ lives."""

    def __init__(self, data: Path, max_file_bytes: int, keep_folders: bool = False):
        """keep_folders: keep folder fds open between calls. Only for the one Store every
        change of the scopes' folders goes through (the daemon's): another process's Store
        is not told of renames, so it opens each folder per call, as confine.beneath does."""
        self.data = data
        self._keep_folders = keep_folders
        self.max_file_bytes = max_file_bytes
        self._root = os.fsencode(data)
        # scope -> [fd, users]: at most MAX_ROOT_FDS kept open (a thousand users must not
        # hold a thousand fds); one in use by any thread is never closed under it.
        self._roots: OrderedDict[Scope, list[int]] = OrderedDict()
        # (scope, folder) -> [fd, users, kept]: dropped whenever a folder of the scope is
        # renamed or removed (an fd follows its folder, a path must not); `_moves` counts
        # those per scope, so a folder opened across one is not kept.
        self._folders: OrderedDict[tuple[Scope, bytes], list[int]] = OrderedDict()
        self._moves: dict[Scope, int] = {}
        self._lock = threading.Lock()
        # What (nearly) every request asks, bound to _at: a partial is called from C, so
        # each is one Python frame fewer than a method calling _at (~1 us a request
        # through a mount, where a Python call costs ~2.5x what it does in a tight loop).
        # lstat(scope, rel) -> os.stat_result
        self.lstat = functools.partial(self._at, _lstat)
        # find(scope, rel): lstat, or None when there is no such name (a lookup's common
        # answer, without an exception through its callers)
        self.find = functools.partial(self._at, _lstat_or_none)
        # lstat_in(scope, rel, team): (the mode of the folder holding `rel`, `rel`'s own or
        # None when there is no such name), in one walk: a lookup checks the folder and
        # finds the name with one fd; `team`: the scope is a team's (_lstat_in)
        self.lstat_in = functools.partial(self._at, _lstat_in)
        # create(scope, rel, flags, mode) -> (fd, whether this call made the file). The
        # kernel sends create once a lookup found no such name, but another caller may
        # make it in between: without O_EXCL that opens the file as open(2) would, and it
        # is not a new file (no quota, no creator).
        self.create: Callable[[Scope, bytes, int, int], tuple[int, bool]]
        self.create = functools.partial(self._at, _create)
        # unlink(scope, rel): remove a file; returns what it was (its size goes back to
        # the quota), read in the same walk: one fstatat beside the unlinkat, not a second
        # confined lookup
        self.unlink = functools.partial(self._at, _unlink)
        # move_out(scope, rel, dst): rename a scope's file to `dst`, a path of memfs's own
        # outside every scope (history's spool), in place of unlinking it: one renameat, no
        # stat (what it was is read from `dst` after the caller's reply: dir_ops._unlinked)
        self.move_out = functools.partial(self._at, _move_out)

    # -- layout ---------------------------------------------------------------
    @staticmethod
    def init_layout(data: Path) -> None:
        """Create DATA/ and its top folders, private to root (0700): only memfs hands out access."""
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        for sub in TOP_DIRS:
            (data / sub).mkdir(mode=0o700, exist_ok=True)

    def _hold(self, scope: Scope) -> list[int]:
        """The scope's [folder fd, users] with one more user, the folder made on first use
        (new users need no set-up); give it back with `_let_go`. The handlers' calls use
        this pair directly: `at()`, a generator, costs a few microseconds more per call."""
        with self._lock:
            entry = self._roots.get(scope)
            if entry is None:
                name = os.fsencode(scope.name)
                if b"/" in name:
                    raise OSError(errno.EINVAL, "a scope's name is one path component", scope.name)
                check(name)
                root = b"/".join((self._root, SCOPE_DIRS[scope.kind], name))
                os.makedirs(root, mode=0o700, exist_ok=True)
                entry = self._roots[scope] = [os.open(root, _DIR), 0]
            else:
                self._roots.move_to_end(scope)
            entry[1] += 1
            if len(self._roots) > MAX_ROOT_FDS:
                idle = [s for s, e in self._roots.items() if not e[1]][: len(self._roots) - MAX_ROOT_FDS]
                for old in idle:
                    os.close(self._roots.pop(old)[0])
        return entry

    def _let_go(self, entry: list[int]) -> None:
        with self._lock:
            entry[1] -= 1

    def _hold_folder(self, scope: Scope, folder: bytes) -> list[int]:
        """[fd, users, kept] of a folder below the scope's root, one more user; give it
        back with `_let_go_folder`. `folder` is checked and shorter than LONG_PATH."""
        if not self._keep_folders:
            return [self._open_folder(scope, folder), 1, 0]  # used for this call only
        key = (scope, folder)
        with self._lock:
            entry = self._folders.get(key)
            if entry is not None:
                entry[1] += 1
                self._folders.move_to_end(key)
                return entry
            moves = self._moves.get(scope, 0)
            # Its parent kept: one component below that fd, not the whole path from the
            # scope's root (a walk down 2000 nested folders was O(depth) syscall work a step).
            parent, _, last = folder.rpartition(b"/")
            up = self._folders.get((scope, parent)) if parent else None
            if up is not None:
                up[1] += 1
        try:  # outside the lock
            fd = open_folder(up[0], last) if up is not None else self._open_folder(scope, folder)
        finally:
            if up is not None:
                self._let_go_folder(up)
        with self._lock:
            if self._moves.get(scope, 0) != moves:
                return [fd, 1, 0]  # a folder moved meanwhile: used once, not kept
            entry = self._folders.get(key)
            if entry is not None:  # another thread opened it meanwhile
                os.close(fd)
                entry[1] += 1
                return entry
            entry = self._folders[key] = [fd, 1, 1]
            if len(self._folders) > MAX_FOLDER_FDS:
                for old in [k for k, e in self._folders.items() if not e[1]][:16]:
                    os.close(self._folders.pop(old)[0])
            return entry

    def _open_folder(self, scope: Scope, folder: bytes) -> int:
        root = self._hold(scope)
        try:
            return open_folder(root[0], folder)  # the confined lookup (confine.py)
        finally:
            self._let_go(root)

    def _let_go_folder(self, entry: list[int]) -> None:
        with self._lock:
            entry[1] -= 1
            if not entry[1] and not entry[2]:
                os.close(entry[0])

    def forget_folders(self, *scopes: Scope) -> None:
        """Folders of these scopes moved in ways not known here (behind memfs's back, as
        `refresh` says, or a rename that failed half-way): forget all their kept folders."""
        self._forget(set(scopes), lambda _folder: True)

    def forget_below(self, scope: Scope, rel: bytes) -> None:
        """The folder at `rel` was removed, renamed, or renamed over: forget it and the
        kept folders below it; other paths still name the folders they named (an `rm -r`
        of a deep tree kept its parents instead of walking from the root each step)."""
        below = rel + b"/"
        self._forget({scope}, lambda folder: folder == rel or folder.startswith(below))

    def _forget(self, scopes: set[Scope], hit: Callable[[bytes], bool]) -> None:
        with self._lock:
            for scope in scopes:  # a folder being opened meanwhile is not kept
                self._moves[scope] = self._moves.get(scope, 0) + 1
            for key in [k for k in self._folders if k[0] in scopes and hit(k[1])]:
                entry = self._folders.pop(key)
                entry[2] = 0
                if not entry[1]:
                    os.close(entry[0])

    @contextmanager
    def at(self, scope: Scope) -> Iterator[int]:
        """A directory fd of the scope's folder for the duration of the block."""
        entry = self._hold(scope)
        try:
            yield entry[0]
        finally:
            self._let_go(entry)

    def place(self, scope: Scope, rel: bytes) -> _Where:
        """(directory fd, name relative to it) for a path of a scope, for an *at() call."""
        return _Where(self, scope, rel)

    def close(self) -> None:
        with self._lock:
            for fd, _users in self._roots.values():
                os.close(fd)
            self._roots.clear()
            for entry in self._folders.values():
                os.close(entry[0])
            self._folders.clear()

    def locate(self, backing: bytes) -> tuple[Scope, bytes] | None:
        """A backing path under DATA/ -> (scope, relative path), or None."""
        prefix = self._root + b"/"
        if not backing.startswith(prefix):
            return None
        parts = backing[len(prefix) :].split(b"/", 2)
        kinds = KIND_OF_DIR
        if len(parts) < 3 or parts[0] not in kinds or not parts[1] or not parts[2]:
            return None
        if bad_component(parts[2]) is not None:
            return None
        return Scope(kinds[parts[0]], os.fsdecode(parts[1])), parts[2]

    # -- metadata -------------------------------------------------------------
    def _at(self, call: Callable, scope: Scope, rel: bytes, *args: object):
        """`call(name, *args, dir_fd=fd)` for a checked `rel`. In its folder's kept fd with
        the lock held, so that no thread closes that fd meanwhile; else (a folder not kept,
        a long path, a bad name, which _Where refuses) through _Where. Most requests end
        in the first: one lock, no refcount, ~9 Python calls fewer than _Where (~3 us a
        request through a mount, measured). A call that blocks there (an open of a fifo
        an admin left) would block the loop it runs on anyway."""
        if bad_component(rel) is None:
            folder, _, name = rel.rpartition(b"/")
            with self._lock:
                entry = self._folders.get((scope, folder)) if folder else self._roots.get(scope)
                if entry is not None:
                    return call(name, *args, dir_fd=entry[0])
        with _Where(self, scope, rel) as (where, name):
            return call(name, *args, dir_fd=where)

    def folder_mode(self, scope: Scope, rel: bytes) -> int:
        """st_mode of a folder, by its kept fd when it is kept (no name to look up). A
        team's folder's times are not read (_lstat_in says why)."""
        team = scope.kind is Kind.TEAM
        with self._lock:
            entry = self._folders.get((scope, rel)) if rel else self._roots.get(scope)
            if entry is not None:
                return mode_at(b"", entry[0]) if team else os.fstat(entry[0]).st_mode
        return self._at(mode_at, scope, rel)

    def owner(self, scope: Scope, rel: bytes) -> str | None:
        """The creator recorded on a file or folder (owners.py); None when there is none."""
        try:
            with self.place(scope, rel) as (where, name):
                raw = getxattr_at(where, name, owners.ATTR)
        except OSError as e:
            owners.unreadable(e)
            return None
        return owners.decode(raw)

    def record_owner(self, scope: Scope, rel: bytes, user: str, made_now: bool = False) -> None:
        """made_now: a folder just made: setting the attribute moves its ctime, so its times
        are then set together (atime = mtime = ctime, as a native mkdir shows)."""
        try:
            with self.place(scope, rel) as (where, name):
                setxattr_at(where, name, owners.ATTR, owners.encode(user))
                if made_now:
                    os.utime(name, dir_fd=where, follow_symlinks=False)
        except OSError as e:
            owners.unwritable(e)

    def claim_owners(self, scope: Scope, top: bytes, user: str) -> None:
        """Record `user` as the creator of every file and folder below `top` that has none:
        a private folder about to move into a team (its files recorded none, owners.py).
        In a worker thread; what vanishes meanwhile is skipped."""
        with self.at(scope) as root:
            for rel, _st in walk_tree(root, top):
                if self.owner(scope, rel) is None:
                    self.record_owner(scope, rel, user)

    def open_dir(self, scope: Scope, rel: bytes) -> int:
        with _Where(self, scope, rel) as (where, name):  # one checked name in a kept folder
            return os.open(name, _DIR, dir_fd=where)

    def iterdir(self, scope: Scope, rel: bytes):
        """(name, stat) of the files and folders in a folder, read as they are asked for:
        a listing of any size costs one directory fd and a few entries of memory."""
        fd = self.open_dir(scope, rel)
        try:
            with os.scandir(fd) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed between readdir and stat
                    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                        yield os.fsencode(e.name), st
        finally:
            os.close(fd)

    def statvfs(self) -> os.statvfs_result:
        return os.statvfs(self._root)

    # -- files ----------------------------------------------------------------
    def open(self, scope: Scope, rel: bytes, flags: int) -> int:
        flags = (flags & ~(os.O_CREAT | _NOT_PASSED)) | _NOFOLLOW
        return self._at(os.open, scope, rel, flags)

    def mkdir(self, scope: Scope, rel: bytes, mode: int) -> None:
        with self.place(scope, rel) as (where, name):
            os.mkdir(name, mode, dir_fd=where)

    def move_in(self, src: str, scope: Scope, rel: bytes) -> None:
        """Rename `src`, a path of memfs's own outside every scope, back to a scope's `rel`
        (a name move_out took, still free)."""
        with self.place(scope, rel) as (where, name):
            os.rename(src, name, dst_dir_fd=where)

    def link_out(self, scope: Scope, rel: bytes, dst: str) -> None:
        """A hard link to a scope's file at `dst`, a path of memfs's own outside every scope
        (history's spool): the content stays when the name goes."""
        with self.place(scope, rel) as (where, name):
            os.link(name, dst, src_dir_fd=where, follow_symlinks=False)

    def rmdir(self, scope: Scope, rel: bytes) -> None:
        with _Where(self, scope, rel) as (where, name):
            os.rmdir(name, dir_fd=where)
        self.forget_below(scope, rel)

    def rename(
        self, src: Scope, src_rel: bytes, dst: Scope, dst_rel: bytes, noreplace: bool = False
    ) -> os.stat_result | None:
        """Move a file or folder. Returns what was at dst_rel and is replaced (None when
        nothing was), read in the same walk as the renameat: its quota goes back. With
        `noreplace`, an existing dst_rel is EEXIST and nothing moves."""
        moved, done = True, False
        try:
            with _Where(self, src, src_rel) as (a, a_name), _Where(self, dst, dst_rel) as (b, b_name):
                try:
                    replaced = os.stat(b_name, dir_fd=b, follow_symlinks=False)
                except FileNotFoundError:
                    replaced = None
                if replaced is not None and noreplace:
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(dst_rel))
                os.rename(a_name, b_name, src_dir_fd=a, dst_dir_fd=b)
                # a file moved (the common case: a save's temp file) leaves kept folders be
                done = True
                moved = stat.S_ISDIR(os.stat(b_name, dir_fd=b, follow_symlinks=False).st_mode) or (
                    replaced is not None and stat.S_ISDIR(replaced.st_mode)
                )
        finally:
            if moved and done:
                self.forget_below(src, src_rel)
                self.forget_below(dst, dst_rel)
            elif moved:  # it failed somewhere: what moved is not known
                self.forget_folders(src, dst)
        return replaced

    def room(self, offset: int) -> int:
        """Bytes a file may still take from `offset` before the size cap."""
        return self.max_file_bytes - offset

    def check_size(self, size: int) -> None:
        if self.room(size) < 0:
            raise OSError(errno.EFBIG, "file size cap reached")

    def target(self, scope: Scope, rel: bytes, fd: int | None) -> Target:
        return Target(self, scope, rel, fd)

    def truncate(self, scope: Scope, rel: bytes, size: int) -> None:
        self.check_size(size)
        fd = self.open(scope, rel, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def chmod(self, scope: Scope, rel: bytes, mode: int) -> None:
        # Through an fd: Linux has no fchmodat that refuses a symlink.
        fd = self.open(scope, rel, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def touch_ctime(self, scope: Scope, rel: bytes) -> None:
        with self.place(scope, rel) as (where, name):
            os.chown(name, -1, -1, dir_fd=where, follow_symlinks=False)

    def utime(self, scope: Scope, rel: bytes, atime_ns: int | None, mtime_ns: int | None) -> None:
        if atime_ns is None or mtime_ns is None:
            st = self.lstat(scope, rel)
            atime_ns = st.st_atime_ns if atime_ns is None else atime_ns
            mtime_ns = st.st_mtime_ns if mtime_ns is None else mtime_ns
        with self.place(scope, rel) as (where, name):
            os.utime(name, ns=(atime_ns, mtime_ns), dir_fd=where, follow_symlinks=False)


@dataclass(slots=True)
class Target:
    """A file to change (setattr): through an open fd when there is one (the file may be
    unlinked), else by its name."""

    store: Store
    scope: Scope
    rel: bytes
    fd: int | None

    def touch_ctime(self) -> None:
        if self.fd is not None:
            os.fchown(self.fd, -1, -1)
        else:
            self.store.touch_ctime(self.scope, self.rel)

    def truncate(self, size: int) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, size)
        else:
            self.store.truncate(self.scope, self.rel, size)

    def chmod(self, mode: int) -> None:
        if self.fd is not None:
            os.fchmod(self.fd, mode)
        else:
            self.store.chmod(self.scope, self.rel, mode)

    def utime(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        if self.fd is None:
            self.store.utime(self.scope, self.rel, atime_ns, mtime_ns)
            return
        st = os.fstat(self.fd)
        atime_ns = st.st_atime_ns if atime_ns is None else atime_ns
        mtime_ns = st.st_mtime_ns if mtime_ns is None else mtime_ns
        os.utime(self.fd, ns=(atime_ns, mtime_ns))
