"""A file's type and mode without reading its times (statx asking for nothing else).

Linux 6.13+ gives a file fine-grained times once someone has read them (multigrain
timestamps): a folder whose times were read gets a fine-grained mtime at its next change,
and that moves the clock every later change reads. memfs reads a folder's mode before
each create in it (and in the lookup before that), and a create in `team/` then records
its maker on the new file (an xattr, which sets the file's ctime): with the folder's times
read first, the ctime moved in every such create (1500 of 1500 here) and a `utime` and a
second `fstat` had to set the three times equal again; asking statx for the mode alone, it
moved in 4-6 of 1500. The call goes through ctypes, ~0.15 us dearer than an fstat in a
loop and more through a mount: memfs uses it for team folders only.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading

_AT_EMPTY_PATH, _AT_SYMLINK_NOFOLLOW = 0x1000, 0x100
_STATX_TYPE_MODE = 0x1 | 0x2
_MODE_OFFSET = 0x1C  # struct statx: u32 mask, u32 blksize, u64 attributes, u32 nlink, uid, gid; u16 mode
# PyDLL: the call keeps the GIL (as confine.py's openat2: a microsecond, no thread switch).
_statx = getattr(ctypes.PyDLL(None, use_errno=True), "statx", None)  # glibc 2.28+
_mode = struct.Struct("=H")
_local = threading.local()  # a buffer per thread, made once: ~0.4 us less than one per call


def mode_at(name: bytes, dir_fd: int) -> int:
    """st_mode of `name` in `dir_fd` (itself when `name` is empty), never followed."""
    if _statx is None:  # not glibc: a plain stat (and fine-grained times after it)
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False) if name else os.fstat(dir_fd)
        return st.st_mode
    try:
        buf = _local.buf
    except AttributeError:
        buf = _local.buf = ctypes.create_string_buffer(256)
    flags = _AT_SYMLINK_NOFOLLOW | (0 if name else _AT_EMPTY_PATH)
    if _statx(dir_fd, name, flags, _STATX_TYPE_MODE, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(name))
    return _mode.unpack_from(buf, _MODE_OFFSET)[0]
