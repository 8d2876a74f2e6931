"""Who made a file: the memory user recorded on its backing file (issue 26).

The daemon runs as one user (`memfs`) and cannot chown, so a file's creator is kept in an
extended attribute of the backing file, `user.memfs.owner` (ext4 and tmpfs keep user.*
attributes). It goes with the file: across renames and remounts, but not into git (sync
and history carry content, not owners). Team files show it as their owner, as on a shared
disk; private files always show their scope's user. Reading it costs one getxattr (16-35
µs measured here on ext4), paid once per file and mount: the shown owner is cached on the node.

A file created in a private scope records none: its maker is that scope's user, the owner
it shows. Recording it there cost every create an xattr and a utime: 9-11 µs of the
create request's 26-31 above the bare floor's (scripts/bench --probes --inside). A private file or
folder moving into a team gets it then (dir_ops._promoted, Store.claim_owners for what a
folder holds). Folders, sync arrivals and imports record it in any scope, as before.
"""

from __future__ import annotations

import errno
import logging
import os

log = logging.getLogger(__name__)

ATTR = b"user.memfs.owner"
MAX_NAME = 64  # a recorded name longer than a memory user name is not one
_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)
_told = False


def _unsupported(e: OSError) -> bool:
    """The disk under DATA/ keeps no user.* attributes: said once, then owners show root."""
    global _told
    if e.errno not in _UNSUPPORTED:
        return False
    if not _told:
        _told = True
        log.info("the disk under DATA/ keeps no user xattrs (%s): team files show root as owner", e)
    return True


def encode(user: str) -> bytes:
    return user.encode()


def decode(raw: bytes) -> str | None:
    """A recorded name, or None for bytes no memfs wrote (an admin's, a damaged one)."""
    if not raw or len(raw) > MAX_NAME:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def unwritable(e: OSError) -> None:
    """Recording failed: the file still works, it shows root (unknown) as owner."""
    if not _unsupported(e):
        log.info("cannot record a file's owner: %s", e)


def unreadable(e: OSError) -> None:
    """Reading failed: ENODATA is a file with no record (made before memfs kept them, or
    by an admin); the rest says so once."""
    if e.errno not in (errno.ENODATA, errno.ENOENT):
        _unsupported(e)


def record_creator(fd: int, user: str) -> tuple[os.stat_result, bool]:
    """Record the creator of a new team file: its stat after, and whether it was recorded.
    Setting the attribute moves the file's ctime, so a new file would not show atime =
    mtime = ctime, as natively: the times are set to now together then, unless the ctime
    stayed where the create put it. It stays in nearly every create now that memfs reads
    only the folder's mode before it (modestat.py): a utime in 19 of 4,000 team creates
    through a mount, against 1,898 of 4,000 when the folder's whole stat was read."""
    recorded = record_fd(fd, user)
    st = os.fstat(fd)
    if st.st_ctime_ns != st.st_mtime_ns or st.st_atime_ns != st.st_mtime_ns:
        os.utime(fd)
        st = os.fstat(fd)
    return st, recorded


def record_fd(fd: int, user: str) -> bool:
    """Record `user` as the creator of the file open at `fd` (best effort: False if not)."""
    try:
        os.setxattr(fd, ATTR, encode(user))
    except OSError as e:
        unwritable(e)
        return False
    return True


def read_fd(fd: int) -> str | None:
    try:
        return decode(os.getxattr(fd, ATTR))
    except OSError as e:
        unreadable(e)
        return None
