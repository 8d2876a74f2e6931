"""The .memfs/ control tree: read-only files whose content depends on the caller.

The same inode serves different bytes to different callers, so these files are opened
with direct_io (no page cache) and answered with timeouts 0 (no attribute cache).
"""

from __future__ import annotations

import errno
import os
import stat
import time

import yaml
from pyfuse3 import EntryAttributes, FileInfo, FUSEError

from .identity import Identities
from .policy import Kind, Principal, Scope
from .store import Store

CONTROL_ROOT = 2
WHOAMI = 3
USERS = 4

_FIRST_HANDLE = 1 << 40  # far above any fd, which the files' handles use


class Control:
    def __init__(self, ids: Identities, store: Store, mountpoint: str = ""):
        self.ids = ids
        self.store = store
        self.mountpoint = mountpoint
        self._handles: dict[int, bytes] = {}
        self._next = _FIRST_HANDLE
        self._started = time.time_ns()
        self._files = {WHOAMI: self.whoami}
        self._names = {CONTROL_ROOT: {b"whoami": WHOAMI, b"users": USERS}}

    # -- what fs.py asks ------------------------------------------------------
    def owns(self, ino: int) -> bool:
        return 1 < ino < 1000

    def owns_handle(self, fh: int) -> bool:
        return fh >= _FIRST_HANDLE

    def _attrs(self, ino: int, mode: int, size: int = 0) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = ino
        a.entry_timeout = a.attr_timeout = 0  # per-caller content
        a.st_mode = mode
        a.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        a.st_size = size
        a.st_blksize = 4096
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._started
        return a

    def _owned(self, a: EntryAttributes, p: Principal) -> EntryAttributes:
        a.st_uid, a.st_gid = p.uid, p.gid
        return a

    def root_attrs(self, p: Principal) -> EntryAttributes:
        return self.getattr(CONTROL_ROOT, p)

    def getattr(self, ino: int, p: Principal) -> EntryAttributes:
        if ino in self._names or ino == USERS:
            return self._owned(self._attrs(ino, stat.S_IFDIR | 0o500), p)
        if ino in self._files:
            size = len(self._files[ino](p))
            return self._owned(self._attrs(ino, stat.S_IFREG | 0o400, size), p)
        raise FUSEError(errno.ENOENT)

    def lookup(self, parent: int, name: bytes, p: Principal, fs) -> EntryAttributes:
        if parent == USERS:
            owner = os.fsdecode(name)
            if owner not in p.readable:
                raise FUSEError(errno.ENOENT)
            # A granted owner's private root: an ordinary scope inode, read-only by policy.
            return fs._entry(Scope(Kind.PRIVATE, owner), b"", 0)
        ino = self._names.get(parent, {}).get(name)
        if ino is None:
            raise FUSEError(errno.ENOENT)
        return self.getattr(ino, p)

    def listing(self, ino: int, p: Principal) -> list:
        if ino == USERS:
            return []  # grants are reachable by name (see whoami), not enumerated
        names = self._names.get(ino)
        if names is None:
            raise FUSEError(errno.ENOTDIR)
        return [(n, self.getattr(i, p)) for n, i in names.items()]

    def open(self, ino: int, flags: int, p: Principal) -> FileInfo:
        if ino not in self._files:
            raise FUSEError(errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise FUSEError(errno.EACCES)
        fh = self._next
        self._next += 1
        self._handles[fh] = self._files[ino](p)
        return FileInfo(fh=fh, direct_io=True, keep_cache=False)

    def read(self, fh: int, off: int, size: int) -> bytes:
        return self._handles[fh][off : off + size]

    def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    # -- the files ------------------------------------------------------------
    def whoami(self, p: Principal) -> bytes:
        mnt = self.mountpoint.rstrip("/")
        info = {
            "user": p.user,
            "uid": p.uid,
            "team": p.team,
            "private_path": mnt or "/",
            "team_path": f"{mnt}/team" if p.team else None,
            "grants": [
                {"owner": o, "access": "read", "path": f"{mnt}/.memfs/users/{o}"} for o in sorted(p.readable)
            ],
        }
        return yaml.safe_dump(info, sort_keys=False).encode()
