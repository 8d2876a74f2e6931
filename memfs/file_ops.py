"""File handlers: open, create, read, write, fsync, release (a mixin of fs.Operations)."""

from __future__ import annotations

import errno
import os
import stat

import trio
from pyfuse3 import (
    EntryAttributes,
    FileHandleT,
    FileInfo,
    FileNameT,
    FlagT,
    FUSEError,
    InodeT,
    ModeT,
    RequestContext,
)

from . import owners, policy
from .fs_base import FsBase
from .guard import guarded
from .handles import FileHandle
from .inodes import Node, entry_timeout
from .numbers import CONTROL_HANDLE_BASE
from .policy import Access, Kind, Principal

# A regular file its owner may read: the common open, judged in one comparison.
_KIND_AND_READ = stat.S_IFMT(0o177777) | stat.S_IRUSR
_READABLE_FILE = stat.S_IFREG | stat.S_IRUSR


class FileOps(FsBase):
    """The state and helpers it uses: fs_base.FsBase (set up by fs.Operations)."""

    # -- files ----------------------------------------------------------------
    def _open_handle(
        self, node: Node, fd: int, flags: int, uid: int, user: str, st: os.stat_result
    ) -> FileInfo:
        """Keep the handle; `user` is the caller's memory user, `st` the fstat of `fd`, taken
        once by the caller."""
        acc = flags & os.O_ACCMODE
        writable = acc != os.O_RDONLY
        # An O_TRUNC open changed the file even if nothing is written after it.
        dirty = bool(flags & os.O_TRUNC)
        handle = FileHandle(node, fd, uid, user, writable, bool(flags & os.O_APPEND), dirty=dirty)
        self._files[fd] = handle
        node.open_fds.add(fd)  # InodeTable.opened, without its frame: every open
        sig = (st.st_mtime_ns, st.st_size)
        # Keep the kernel's page cache only if nothing changed the file behind its back.
        keep = node.sig == sig
        node.sig = sig
        return FileInfo(fh=fd, keep_cache=keep)

    @guarded
    async def open(self, inode: InodeT, flags: FlagT, ctx: RequestContext) -> FileInfo:
        p = self.ids.mapped.get((ctx.uid, ctx.gid)) or self._principal(ctx)
        node = self.inodes.get(inode)
        if node is None:  # .memfs/ is never in the table (numbers.py's ranges)
            if self.control.owns(inode):
                return await self._open_control(inode, flags, p, ctx.uid)
            raise FUSEError(errno.ESTALE)
        reading, writing = policy.open_wants(flags)
        if node.scope is not p.private or node.view:  # as _allowed, without its frame
            self._check_access(node, p, Access.WRITE if writing else Access.READ)
        # The kernel opens by the node its cached name gave; a sync (or an admin) may have
        # removed or replaced that file since. ESTALE, not ENOENT: the kernel looks the
        # name up again and retries, so open(O_CREAT) creates the file as natively,
        # instead of failing with "No such file or directory".
        if node.unlinked:
            raise FUSEError(errno.ESTALE)
        try:
            assert p.user is not None  # _principal let p through
            if not writing:  # most opens: no await, no coroutine of their own
                return self._open_to_read(node, flags, ctx.uid, p.user)
            return await self._open_to_write(node, flags, ctx.uid, p.user, reading)
        except FileNotFoundError:
            raise FUSEError(errno.ESTALE) from None

    async def _open_control(self, inode: int, flags: int, p: Principal, uid: int) -> FileInfo:
        self.opens.take(uid, control=True)
        try:
            info = await self.control.open(inode, flags, p)
        except BaseException:
            self.opens.give(uid, control=True)
            raise
        self._control_uids[info.fh] = uid
        return info

    async def _open_to_write(self, node: Node, flags: int, uid: int, user: str, reading: bool) -> FileInfo:
        st = self._openable(node, reading, True)
        await self.quotas.usage(node.scope)  # counted now, so write() can check it on the loop
        await self._preserve(node.scope, node.path)
        await self._settle(node.scope)  # the last await: a sync sees this handle as busy
        if node.unlinked:  # removed by a sync while this call waited
            raise FUSEError(errno.ESTALE)
        self.opens.take(uid)
        try:
            fd = self.store.open(node.scope, node.path, flags & ~os.O_EXCL)
        except BaseException:
            self.opens.give(uid)
            raise
        if flags & os.O_TRUNC:
            self.quotas.add(node.scope, -st.st_size)
        return self._open_handle(node, fd, flags, uid, user, os.fstat(fd))

    def _openable(
        self, node: Node, reading: bool, writing: bool, st: os.stat_result | None = None
    ) -> os.stat_result:
        """EISDIR or EACCES (the owner bits) for opening this file; else its stat."""
        if st is None:
            st = self.store.lstat(node.scope, node.path)
        if stat.S_ISDIR(st.st_mode):
            raise FUSEError(errno.EISDIR)
        if not policy.owner_bits_allow(st.st_mode, reading, writing):
            raise FUSEError(errno.EACCES)
        return st

    def _open_to_read(self, node: Node, flags: int, uid: int, user: str) -> FileInfo:
        """An open that changes nothing (no write, no O_TRUNC) is made first and judged by
        the fstat of what it opened: one confined lookup of the path instead of two."""
        try:
            fd = self.store.open(node.scope, node.path, flags & ~os.O_EXCL)
        except OSError:
            self._openable(node, True, False)  # the errno the checks give comes first, as before
            raise
        try:
            st = os.fstat(fd)
            if st.st_mode & _KIND_AND_READ != _READABLE_FILE:  # else _openable has nothing to say
                self._openable(node, True, False, st)
            self.opens.take(uid)
        except BaseException:
            os.close(fd)
            raise
        return self._open_handle(node, fd, flags, uid, user, st)

    @guarded
    async def create(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, flags: FlagT, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        p = self.ids.mapped.get((ctx.uid, ctx.gid)) or self._principal(ctx)
        scope, path = self._target(p, parent_inode, name, creating=True)
        if not self.quotas.fits(scope, 0, 1):
            await self.quotas.need(scope, files=1)
        if self._held:
            await self._settle(scope)
        self.opens.take(ctx.uid)
        try:
            fd, made = self.store.create(scope, path, flags, mode & ~ctx.umask & policy.STORED_MODE_BITS)
        except BaseException:
            self.opens.give(ctx.uid)
            raise
        assert p.user is not None  # policy.user_of, without its frame: _principal let p through
        if made:
            self.quotas.add(scope, files=1)
        recorded = False
        if made and scope.kind is Kind.TEAM:  # a private file's maker is its scope's user (owners.py)
            st, recorded = owners.record_creator(fd, p.user)
        else:
            st = os.fstat(fd)
        node = self.inodes.looked_up(scope, path, False, st.st_ino)
        if recorded:  # the owner it shows is known: not read back (fs_base._owner)
            node.creator = (st.st_ino, self.ids.uid_of(p.user))
        info = self._open_handle(node, fd, flags, ctx.uid, p.user, st)
        self._files[fd].dirty = True
        return info, self._attrs(node, st, entry_timeout(parent_inode))

    @guarded
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        # A control handle is one at or above CONTROL_HANDLE_BASE (numbers.py): compared
        # here, not through a call, on every read, write, fsync and release.
        if fh >= CONTROL_HANDLE_BASE:
            return await self.control.read(fh, off, size)
        return os.pread(self._files[fh].fd, size, off)

    @guarded
    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        if fh >= CONTROL_HANDLE_BASE:
            return self.control.write(fh, off, buf)
        h = self._files[fh]
        if not h.writable:
            raise FUSEError(errno.EBADF)
        if self.secrets is not None and self.secrets.refuses(h.node.scope):
            # Judged before anything is stored: close() cannot report (flush is ENOSYS).
            p = self.ids.principal(h.uid, h.uid)
            node = h.node
            if await self.secrets.check_write(p, node.scope, node.path, h.fd, off, buf, h.append):
                raise FUSEError(errno.EACCES)
        size = os.fstat(h.fd).st_size
        start = size if h.append else off
        room = self.store.room(start)
        if room <= 0:
            raise FUSEError(errno.EFBIG)
        # Growth past the end counts against the scope's quota; rewriting in place does not.
        quota_room = self.quotas.room(h.node.scope) + max(0, size - start)
        if quota_room <= 0 and start + len(buf) > size:
            raise FUSEError(errno.EDQUOT)
        room = min(room, max(quota_room, 0)) if start + len(buf) > size else room
        # Like RLIMIT_FSIZE: store what fits below the cap, report a short write, and the
        # next write gets EFBIG (or EDQUOT). The kernel splits writes at page boundaries anyway.
        n = os.pwrite(h.fd, buf[:room] if len(buf) > room else buf, off)
        self.quotas.add(h.node.scope, max(0, start + n - size))
        h.dirty = True
        return n

    async def flush(self, fh: FileHandleT) -> None:
        # Writes go straight to the backing file, so close() has nothing left to report.
        # ENOSYS tells the kernel to stop sending flush at all: one round trip less per
        # close (measured ~20% on create+write+close), no error reporting lost.
        raise FUSEError(errno.ENOSYS)

    @guarded
    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        h = self._files.get(fh)
        if h is None or fh >= CONTROL_HANDLE_BASE:
            return
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, h.fd)
        if h.dirty:
            self._changed(h.node, h.uid)

    @guarded
    async def release(self, fh: FileHandleT) -> None:
        if fh >= CONTROL_HANDLE_BASE:
            self.opens.give(self._control_uids.pop(fh, -1), control=True)
            self.control.release(fh)
            return
        h = self._files.pop(fh)
        try:
            last_of_unlinked = h.node.unlinked and h.node.open_fds == {h.fd}
            if h.dirty or last_of_unlinked:  # else nothing to learn: no fstat
                st = os.fstat(h.fd)
                if h.dirty:
                    h.node.sig = (st.st_mtime_ns, st.st_size)
                    if not h.node.unlinked:  # _changed, its writer known since open: no lookup
                        self.changes.written(h.node.scope, h.node.path, h.user)
                    if self.secrets is not None and self.secrets.flags(h.node.scope):
                        p = self.ids.mapped.get((h.uid, h.uid)) or self.ids.principal(h.uid, h.uid)
                        self.secrets.closed(p, h.node.scope, h.node.path, st.st_size)
                if last_of_unlinked:
                    self.quotas.add(h.node.scope, -st.st_size)  # its blocks are freed only now
        finally:
            os.close(h.fd)
            self.inodes.closed(h.node, h.fd)
            self.opens.give(h.uid)
