"""The guard around every handler: an exception escaping one would end pyfuse3.main for
every caller, so each is mapped to an errno and logged with the op, the caller, the path
as the caller sees it and the errno. Also the --debug trace, one line per call."""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from typing import Protocol

from pyfuse3 import EntryAttributes, FUSEError

log = logging.getLogger("memfs.fs")

_FAULT_NAME = os.environb.get(b"MEMFS_FAULT_NAME")  # test hook: a call naming it fails inside

# errnos that are a normal answer, not an event worth a log line above debug
_QUIET = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTEMPTY,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENODATA,
    errno.ENAMETOOLONG,  # the caller's name or path: an answer, not an event
    errno.EFBIG,  # past the size cap, as the caller asked
    errno.EDQUOT,
}


# A lookup's answer for no such name: node 0, cached for no time. The kernel treats it
# exactly as ENOENT (a negative dentry invalidated at once: fs/fuse/dir.c, fuse_lookup),
# without an exception raised through the handler and this guard (a missing name is the
# lookup before every create). Counted as ENOENT.
MISSING = EntryAttributes()
MISSING.st_ino = 0
MISSING.entry_timeout = MISSING.attr_timeout = 0

_TRACE = [False]  # set by enable_trace(): one debug line per handler call


def enable_trace(on: bool = True) -> None:
    _TRACE[0] = on


class Stats(Protocol):
    def record(self, op: str, seconds: float, code: int) -> None: ...


_STATS: list[Stats | None] = [None]  # set by enable_stats(): requests, errnos, latency per op


def enable_stats(stats: Stats | None) -> None:
    _STATS[0] = stats


def _name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def guarded(fn):
    """Map whatever escapes a handler to an errno; log it as `op caller path: errno`.
    `self.describe(op, args)` names the caller and the path (fs.Operations knows both)."""
    op = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self, *args):
        if _TRACE[0]:
            log.debug("%s %s", op, self.describe(op, args))
        stats = _STATS[0]
        t0 = time.perf_counter() if stats is not None else 0.0
        code = 0
        try:
            if _FAULT_NAME is not None and _FAULT_NAME in args:
                raise RuntimeError("injected fault (MEMFS_FAULT_NAME)")
            answer = await fn(self, *args)
            if answer is MISSING:
                code = errno.ENOENT
            return answer
        except FUSEError as e:
            code = e.errno
            if code not in _QUIET and log.isEnabledFor(logging.INFO):
                log.info("%s %s: %s (%s)", op, self.describe(op, args), os.strerror(code), _name(code))
            raise
        except OSError as e:
            code = e.errno or errno.EIO
            level = logging.DEBUG if code in _QUIET else logging.WARNING
            # Every lookup of a name about to be created ends here (ENOENT, logged at
            # debug): describe() costs ~5 us, so the line is built only when it is written.
            if log.isEnabledFor(level):
                where = self.describe(op, args)
                log.log(level, "%s %s: backing store: %s (%s)", op, where, e.strerror, _name(code))
            raise FUSEError(code) from None
        except Exception:
            code = errno.EIO
            log.exception("%s %s: internal error, answered EIO", op, self.describe(op, args))
            raise FUSEError(errno.EIO) from None
        finally:
            if stats is not None:  # metrics on: a bisect and two increments
                stats.record(op, time.perf_counter() - t0, code)

    return wrapper
