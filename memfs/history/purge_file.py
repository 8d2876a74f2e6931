"""The .memfs/purge file: a caller asks the daemon to purge versions of one of its files
(`memfs purge` writes the request and reads the answer on one handle; client.py knows the
format). The daemon judges the request as that caller: who may write a scope may purge its
history (a private scope's owner, a team's members); a grant reader may not, and a path
the caller cannot reach does not exist for it.

Request: the path as the caller sees it, then one version name per line, or `*` for every
version; each token shown as names.quote_path shows paths. Answer: YAML (what went).
A refusal is the read's errno: EACCES (not yours to purge), ENOENT (no such path or
version), EBUSY (a file holds that content now), EINVAL (a request not understood).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass, field

import trio
import yaml
from pyfuse3 import FUSEError

from .. import layout, policy
from ..names import quote_path, unquote_path
from ..policy import Access, Principal, readable_scopes
from .committer import PurgeRefused
from .service import History

log = logging.getLogger("memfs.history")

MAX_REQUEST = 64 << 10
ALL = "*"


@dataclass
class PurgeHandle:
    principal: Principal
    request: bytearray = field(default_factory=bytearray)
    result: bytes | None = None
    pos: int = 0


def parse(request: bytes) -> tuple[bytes, list[bytes] | None]:
    """(path as the caller sees it, version names or None for all); EINVAL if malformed."""
    try:
        lines = [ln for ln in request.decode().splitlines() if ln]
    except UnicodeDecodeError:
        raise FUSEError(errno.EINVAL) from None  # quote_path makes every token ASCII-safe
    if len(lines) < 2 or (ALL in lines[1:] and len(lines) != 2):
        raise FUSEError(errno.EINVAL)
    names = None if lines[1] == ALL else [unquote_path(t) for t in lines[1:]]
    return unquote_path(lines[0]), names


class PurgeFile:
    def __init__(self, history: History):
        self.history = history

    def write(self, h: PurgeHandle, buf: bytes) -> int:
        if h.result is not None:
            raise FUSEError(errno.EBADF)  # one request per handle
        if len(h.request) + len(buf) > MAX_REQUEST:
            raise FUSEError(errno.EFBIG)
        h.request += buf
        return len(buf)

    async def read(self, h: PurgeHandle, size: int) -> bytes:
        if h.result is None:
            h.result = await self._run(h.principal, bytes(h.request))
        chunk = h.result[h.pos : h.pos + size]
        h.pos += len(chunk)
        return chunk

    async def _run(self, p: Principal, request: bytes) -> bytes:
        shown, names = parse(request)
        scope, rel = layout.resolve_view_path(os.fsdecode(shown), readable_scopes(p))
        path = os.fsencode(rel)
        where = f"{p.user} {scope} {quote_path(path)}"
        if scope is None or not path:
            raise FUSEError(errno.ENOENT)  # no scope of the caller's: nothing to name
        if policy.access(p, scope) < Access.WRITE:
            log.info("purge %s: refused: only who may write %s may purge it (EACCES)", where, scope)
            raise FUSEError(errno.EACCES)
        t0 = time.monotonic()
        try:
            with trio.CancelScope(shield=True):  # a rewrite half seen by its caller is still whole
                done = await self.history.purge(scope, path, names, policy.user_of(p))
        except PurgeRefused as e:
            log.info("purge %s: refused: %s (%s)", where, e.why, errno.errorcode.get(e.errno, e.errno))
            raise FUSEError(e.errno) from None
        took = time.monotonic() - t0
        # the record operators read; the scope's log and history hold it too (never the content)
        log.info(
            "purge %s: %d versions purged by %s (%s), %d commits rewritten in %.2f s",
            where,
            len(done.versions),
            p.user,
            ", ".join(quote_path(v) for v in done.versions),
            done.commits,
            took,
        )
        answer = {
            "path": quote_path(shown),
            "scope": str(scope),
            "purged": [quote_path(v) for v in done.versions],
            "blobs": done.blobs,
            "commits_rewritten": done.commits,
            "remote": "replaced at the next sync" if done.leased else None,
            "seconds": round(took, 3),
        }
        return yaml.safe_dump(answer, sort_keys=False).encode()
