"""The one gate between a name and the disk: a path relative to a scope's folder is turned
into (directory fd, last name) that cannot leave that folder, whatever bytes it holds.

Every path memfs builds from data (a caller's names, a remote's tree, conflict copies,
version names, temp files, import targets) reaches the disk through `beneath`:
- each component is checked before any syscall: no empty, '.', '..' or NUL component and
  no leading '/' (so a name made from a commit's e-mail cannot climb out);
- the folder holding the last name is opened with openat2(RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): the kernel itself refuses to leave the
  scope's folder, and follows no symlink an admin or a bug may have left inside it;
- the last name is used by the *at() call with O_NOFOLLOW (or a call that never follows).
"""

from __future__ import annotations

import ctypes
import errno
import os

LONG_PATH = 3072  # longer relative paths are reached by hops (a syscall takes < 4096 bytes)

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added in 5.6)
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
_FOLDER = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


# PyDLL: the call keeps the GIL. openat2 of a short path takes microseconds; CDLL would
# release the GIL around it and the FUSE loop would wait up to a switch interval (0.5 ms)
# behind busy worker threads to get it back (measured: reads 2x slower).
_libc = ctypes.PyDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_HOW_SIZE = ctypes.sizeof(_OpenHow)
_FOLDER_HOW = _OpenHow(_FOLDER, 0, _RESOLVE)
_HOWS: dict[tuple[int, int], _OpenHow] = {}  # (flags, mode) -> its struct, built once each
_have_openat2 = True


def bad_component(path: bytes) -> bytes | None:
    """The first component of `path` that could leave its folder or name nothing ('', '.',
    '..', or one holding NUL); None when every component is an ordinary name."""
    if not path:
        return b""
    # The common case, decided without splitting: '.' and '..' are the only bad names that
    # start with a dot, so a path with no component starting with one ('e1.md') is fine
    # once it has no empty component and no NUL ('/' is 47, '.' 46).
    if (
        path[0] not in (46, 47)
        and path[-1] != 47
        and b"/." not in path
        and b"//" not in path
        and b"\0" not in path
    ):
        return None
    for c in path.split(b"/"):
        if c in (b"", b".", b"..") or b"\0" in c:
            return c
    return None


def check(path: bytes) -> None:
    """Raise EINVAL for a path that is not a plain relative path of ordinary names."""
    bad = bad_component(path)
    if bad is not None:
        raise OSError(errno.EINVAL, f"unsafe path component {bad!r}", os.fsdecode(path))


def _openat2(dir_fd: int, rel: bytes, how: _OpenHow) -> int | None:
    """openat2(2) confined below dir_fd; None when the kernel has no openat2 (< 5.6)."""
    global _have_openat2
    if not _have_openat2:
        return None
    fd = _syscall(_SYS_OPENAT2, dir_fd, rel, ctypes.byref(how), _HOW_SIZE)
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        _have_openat2 = False
        return None
    # EXDEV: the lookup would have left the folder; ELOOP: a symlink on the way.
    raise OSError(err, os.strerror(err), os.fsdecode(rel))


def open_beneath(dir_fd: int, rel: bytes, flags: int, mode: int = 0) -> int:
    """open(2) of `rel` below dir_fd in one confined syscall (O_NOFOLLOW implied)."""
    if not rel:
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    check(rel)
    if len(rel) < LONG_PATH:
        key = (flags, mode if flags & os.O_CREAT else 0)
        how = _HOWS.get(key)
        if how is None:
            how = _HOWS[key] = _OpenHow(flags | os.O_NOFOLLOW | os.O_CLOEXEC, key[1], _RESOLVE)
        fd = _openat2(dir_fd, rel, how)
        if fd is not None:
            return fd
    with beneath(dir_fd, rel) as (where, name):
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=where)


def open_folder(dir_fd: int, rel: bytes) -> int:
    """An O_PATH fd of the folder `rel` below `dir_fd`, by the kernel's confined lookup."""
    fd = _openat2(dir_fd, rel, _FOLDER_HOW)
    if fd is not None:
        return fd
    fd = os.dup(dir_fd)  # a kernel older than 5.6: this walk does the same
    try:
        for c in rel.split(b"/"):
            nxt = os.open(c, _FOLDER, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


class beneath:  # used as a function: `with beneath(fd, rel) as (where, name):`
    """(fd, name) for an *at() call on `rel` below `dir_fd`, confined to `dir_fd`'s folder.
    An empty `rel` is the folder itself ('.'). The caller's *at() call must not follow a
    symlink in `name` (O_NOFOLLOW, follow_symlinks=False, or a call that never does).

    A class rather than a @contextmanager generator: every unlink, mkdir and rename goes
    through here, and the generator's machinery cost more than the openat2 it wraps."""

    __slots__ = ("_dir_fd", "_rel", "_held")

    def __init__(self, dir_fd: int, rel: bytes) -> None:
        self._dir_fd, self._rel = dir_fd, rel
        self._held: list[int] | None = None

    def __enter__(self) -> tuple[int, bytes]:
        dir_fd, rel = self._dir_fd, self._rel
        if not rel:
            return dir_fd, b"."
        check(rel)
        folder, _, name = rel.rpartition(b"/")
        if not folder:
            return dir_fd, name
        held = self._held = []
        try:
            # A caller's path is bounded by PATH_MAX from its own cwd, not from the scope's
            # root: a longer one is opened a few thousand bytes at a time.
            while len(folder) >= LONG_PATH:
                cut = folder.rfind(b"/", 0, LONG_PATH)
                if cut <= 0:
                    raise OSError(errno.ENAMETOOLONG, "File name too long")
                dir_fd = open_folder(dir_fd, folder[:cut])
                held.append(dir_fd)
                folder = folder[cut + 1 :]
            held.append(open_folder(dir_fd, folder))
        except BaseException:
            self._close()
            raise
        return held[-1], name

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        held, self._held = self._held, None
        for fd in held or ():
            os.close(fd)


def _xattr_path(dir_fd: int, name: bytes) -> bytes:
    # The xattr calls take no directory fd: the name is reached through /proc's link to the
    # confined folder fd; `name` is one checked component and is never followed (l*xattr).
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def getxattr_at(dir_fd: int, name: bytes, attr: bytes) -> bytes:
    """An extended attribute of `name` in the folder `dir_fd` (one component, from beneath)."""
    if name == b".":
        return os.getxattr(b"/proc/self/fd/%d" % dir_fd, attr)
    return os.getxattr(_xattr_path(dir_fd, name), attr, follow_symlinks=False)


def setxattr_at(dir_fd: int, name: bytes, attr: bytes, value: bytes) -> None:
    if name == b".":
        os.setxattr(b"/proc/self/fd/%d" % dir_fd, attr, value)
    else:
        os.setxattr(_xattr_path(dir_fd, name), attr, value, follow_symlinks=False)
