"""The backing directory: where each scope's files live, and the disk calls on them.

Paths are bytes relative to a scope root, built from FUSE names that the kernel already
split on '/' (no NUL, never '.' or '..'); fs checks their length. Nothing here knows FUSE.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .layout import KIND_OF_DIR, SCOPE_DIRS, TOP_DIRS
from .policy import Scope

# Never follow a symlink an admin may have left in DATA/: memfs does not create them.
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
# The kernel already bypasses its page cache for a caller's O_DIRECT, but hands memfs
# unaligned buffers: a backing fd opened O_DIRECT would answer them with EINVAL.
_NOT_PASSED = os.O_DIRECT


class Store:
    def __init__(self, data: Path, max_file_bytes: int):
        self.data = data
        self.max_file_bytes = max_file_bytes
        self._root = os.fsencode(data)
        self._scope_roots: dict[Scope, bytes] = {}

    # -- layout ---------------------------------------------------------------
    @staticmethod
    def init_layout(data: Path) -> None:
        """Create DATA/ and its top folders, private to root (0700): only memfs hands out access."""
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        for sub in TOP_DIRS:
            (data / sub).mkdir(mode=0o700, exist_ok=True)

    def scope_root(self, scope: Scope) -> bytes:
        root = self._scope_roots.get(scope)
        if root is None:
            root = b"/".join((self._root, SCOPE_DIRS[scope.kind], os.fsencode(scope.name)))
            # A scope's folder is created on first use, so new users need no set-up.
            os.makedirs(root, mode=0o700, exist_ok=True)
            self._scope_roots[scope] = root
        return root

    def path(self, scope: Scope, rel: bytes) -> bytes:
        root = self.scope_root(scope)
        return root + b"/" + rel if rel else root

    def locate(self, backing: bytes) -> tuple[Scope, bytes] | None:
        """A backing path under DATA/ -> (scope, relative path), or None."""
        prefix = self._root + b"/"
        if not backing.startswith(prefix):
            return None
        parts = backing[len(prefix) :].split(b"/", 2)
        kinds = KIND_OF_DIR
        if len(parts) < 3 or parts[0] not in kinds or not parts[1] or not parts[2]:
            return None
        if any(c in (b"", b".", b"..") for c in parts[2].split(b"/")):
            return None
        return Scope(kinds[parts[0]], os.fsdecode(parts[1])), parts[2]

    # -- metadata -------------------------------------------------------------
    def lstat(self, scope: Scope, rel: bytes) -> os.stat_result:
        return os.lstat(self.path(scope, rel))

    def iterdir(self, scope: Scope, rel: bytes):
        """(name, stat) of the files and folders in a folder, read as they are asked for:
        a listing of any size costs one directory fd and a few entries of memory."""
        with os.scandir(self.path(scope, rel)) as it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed between readdir and stat
                if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                    yield e.name, st

    def statvfs(self) -> os.statvfs_result:
        return os.statvfs(self._root)

    # -- files ----------------------------------------------------------------
    def open(self, scope: Scope, rel: bytes, flags: int) -> int:
        return os.open(self.path(scope, rel), (flags & ~(os.O_CREAT | _NOT_PASSED)) | _NOFOLLOW)

    def create(self, scope: Scope, rel: bytes, flags: int, mode: int) -> int:
        return os.open(self.path(scope, rel), (flags & ~_NOT_PASSED) | os.O_CREAT | _NOFOLLOW, mode)

    def mkdir(self, scope: Scope, rel: bytes, mode: int) -> None:
        os.mkdir(self.path(scope, rel), mode)

    def unlink(self, scope: Scope, rel: bytes) -> None:
        os.unlink(self.path(scope, rel))

    def rmdir(self, scope: Scope, rel: bytes) -> None:
        os.rmdir(self.path(scope, rel))

    def rename(self, src: Scope, src_rel: bytes, dst: Scope, dst_rel: bytes) -> None:
        os.rename(self.path(src, src_rel), self.path(dst, dst_rel))

    def check_size(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise OSError(errno.EFBIG, "file size cap reached")

    def truncate(self, scope: Scope, rel: bytes, size: int) -> None:
        self.check_size(size)
        fd = self.open(scope, rel, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def chmod(self, scope: Scope, rel: bytes, mode: int) -> None:
        os.chmod(self.path(scope, rel), mode, follow_symlinks=False)

    def touch_ctime(self, scope: Scope, rel: bytes) -> None:
        os.chown(self.path(scope, rel), -1, -1, follow_symlinks=False)

    def utime(self, scope: Scope, rel: bytes, atime_ns: int | None, mtime_ns: int | None) -> None:
        path = self.path(scope, rel)
        if atime_ns is None or mtime_ns is None:
            st = os.lstat(path)
            atime_ns = st.st_atime_ns if atime_ns is None else atime_ns
            mtime_ns = st.st_mtime_ns if mtime_ns is None else mtime_ns
        os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)
