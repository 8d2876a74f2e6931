"""Name and folder handlers: mkdir, unlink, rmdir, rename, opendir, readdir (a mixin of
fs.Operations)."""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import trio
from pyfuse3 import (
    EntryAttributes,
    FileHandleT,
    FileNameT,
    FlagT,
    FUSEError,
    InodeT,
    ModeT,
    ReaddirToken,
    RequestContext,
)

from . import owners, policy
from .fs_base import FsBase
from .guard import guarded
from .handles import DirHandle
from .inodes import CACHE_TIMEOUT, Node, entry_timeout, removed_stat
from .numbers import ROOT_INODE
from .policy import Access, Kind, Principal, Scope, home, user_of
from .quota import Usage
from .store import child_path


class DirOps(FsBase):
    """The state and helpers it uses: fs_base.FsBase (set up by fs.Operations)."""

    # -- directories ----------------------------------------------------------
    @guarded
    async def mkdir(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, ctx: RequestContext
    ) -> EntryAttributes:
        p = self._principal(ctx)
        scope, path = self._target(p, parent_inode, name, creating=True)
        await self.quotas.need(scope, files=1)
        self.store.mkdir(scope, path, policy.stored_mode(mode & ~ctx.umask))
        self.quotas.add(scope, files=1)
        self.store.record_owner(scope, path, user_of(p), made_now=True)  # kept if it moves into team/
        return self.entry(scope, path, entry_timeout(parent_inode))

    @guarded
    async def mknod(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, rdev: int, ctx: RequestContext
    ) -> EntryAttributes:
        p = self._principal(ctx)
        if policy.refused_file_type(mode):
            raise FUSEError(errno.EPERM)
        scope, path = self._target(p, parent_inode, name, creating=True)
        await self.quotas.need(scope, files=1)
        await self._settle(scope)  # the last await: a sync cannot start before the change
        fd, _ = self.store.create(scope, path, os.O_WRONLY | os.O_EXCL, policy.stored_mode(mode))
        if scope.kind is Kind.TEAM:  # as create: a private file's maker is its scope's user
            owners.record_creator(fd, user_of(p))
        os.close(fd)
        self.quotas.add(scope, files=1)
        attrs = self.entry(scope, path, entry_timeout(parent_inode))
        node = self.inodes.get(attrs.st_ino)
        if node is not None:  # a new (empty) file: the index and history hear of it like a close
            self._changed(node, ctx.uid)
        return attrs

    async def symlink(
        self, parent_inode: InodeT, name: FileNameT, target: FileNameT, ctx: RequestContext
    ) -> EntryAttributes:
        raise FUSEError(errno.EPERM)  # memory holds plain files; git and editors fall back

    async def link(
        self, inode: InodeT, new_parent_inode: InodeT, new_name: FileNameT, ctx: RequestContext
    ) -> EntryAttributes:
        raise FUSEError(errno.EPERM)

    @guarded
    async def unlink(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> None:
        p = self.ids.mapped.get((ctx.uid, ctx.gid)) or self._principal(ctx)
        scope, path = self._target(p, parent_inode, name, creating=False)
        h, keep, waited = self.history, False, False
        if h is not None and h.is_pending(scope, path):  # content history has not committed
            keep = True  # it moves into the spool
            if h.crowded(scope):  # wait for the committer, or give up (commits failing)
                waited = True
                keep = await h.room(scope, path)
        if self._held:  # no await after it: a sync round sees the file or not at all
            waited = True
            await self._settle(scope)
        spool = h.remove_kept(scope, path, waited) if keep and h is not None else None
        st = self.store.unlink(scope, path) if spool is None else None
        assert p.user is not None  # policy.user_of, without its frame: _principal let p through
        # The name is gone and its version kept: the caller may have its answer now.
        self.after.later(self._unlinked, scope, path, st, p.user, spool)

    def _unlinked(
        self, scope: Scope, path: bytes, st: os.stat_result | None, user: str, spool: str | None
    ) -> None:
        """After an rm's reply (after_reply.py): history records the version it moved into
        its spool, as its writer's, and the node table, the quota and the change feed hear
        that the name went. Nothing ran since the rm: its node and handles are as they were."""
        h = self.history
        if spool is not None and h is not None:
            st = h.removed(scope, path, self._writer(h, scope, path), spool)
        if st is None:
            return  # a folder, put back (History.removed): nothing was removed
        self._gone(scope, self.inodes.unlinked(scope, path), st)
        self.changes.removed(scope, path, user)

    def _gone(self, scope: Scope, nodes: list[Node], st: os.stat_result) -> None:
        """A name was removed (unlink, rmdir, renamed over): give its quota back. A file
        still open keeps its bytes charged until its last close."""
        still_open = False
        for n in nodes:  # most often none (the kernel forgot the file) or one
            if n.open_fds:
                still_open = True
        self.quotas.add(scope, 0 if still_open or stat.S_ISDIR(st.st_mode) else -st.st_size, -1)
        if stat.S_ISDIR(st.st_mode):  # held as a cwd or open: fstat still answers, as natively
            for n in nodes:
                n.gone = removed_stat(st)

    @guarded
    async def rmdir(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> None:
        p = self._principal(ctx)
        scope, path = self._target(p, parent_inode, name, creating=False)
        await self._settle(scope)
        st = self.store.lstat(scope, path)
        self.store.rmdir(scope, path)
        self.after.later(self._rmdired, scope, path, st)

    def _rmdired(self, scope: Scope, path: bytes, st: os.stat_result) -> None:
        """After an rmdir's reply: the node table and the quota hear of it."""
        self._gone(scope, self.inodes.unlinked(scope, path), st)

    @guarded
    async def rename(
        self,
        parent_inode_old: InodeT,
        name_old: FileNameT,
        parent_inode_new: InodeT,
        name_new: FileNameT,
        flags: FlagT,
        ctx: RequestContext,
    ) -> None:
        p = self._principal(ctx)
        if not policy.rename_flags_supported(flags):
            raise FUSEError(errno.EINVAL)  # RENAME_EXCHANGE, RENAME_WHITEOUT: not supported
        src, src_path = self._target(p, parent_inode_old, name_old, creating=False)
        dst, dst_path = self._target(p, parent_inode_new, name_new, creating=True)
        if not policy.may_move(p, src, dst):
            raise FUSEError(errno.EACCES)
        st = self.store.lstat(src, src_path)
        if (src, src_path) == (dst, dst_path):
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise FUSEError(errno.EEXIST)
            return  # rename onto itself: nothing to do (POSIX)
        is_dir = stat.S_ISDIR(st.st_mode)
        if src != dst and self.secrets is not None and self.secrets.refuses(dst):
            # Into a scope that never holds a secret: the source stays where it was.
            if await self.secrets.check_move(p, src, src_path, dst, dst_path):
                raise FUSEError(errno.EACCES)
        carried = None
        if src != dst:
            carried = await self._to_scope(p, src, src_path, dst, st)
        await self._preserve(dst, dst_path, removing=True)  # what a rename over it would destroy
        await self._settle(src, dst)
        # No await from here to the rename: no other handler runs in between.
        over = [n for v in (False, True) if (n := self.inodes.find(dst, dst_path, v)) is not None]
        # What it replaces (EEXIST with RENAME_NOREPLACE) is read in the rename's own walk.
        noreplace = bool(flags & pyfuse3.RENAME_NOREPLACE)
        replaced = self.store.rename(src, src_path, dst, dst_path, noreplace=noreplace)
        # The name has moved: the caller may have its answer now (after_reply.py).
        self.after.later(
            self._renamed, src, src_path, dst, dst_path, is_dir, over, replaced, carried, user_of(p)
        )
        if parent_inode_new == ROOT_INODE and parent_inode_old != ROOT_INODE:
            self._invalidate_name(ROOT_INODE, name_new)

    def _renamed(
        self,
        src: Scope,
        src_path: bytes,
        dst: Scope,
        dst_path: bytes,
        is_dir: bool,
        over: list[Node],
        replaced: os.stat_result | None,
        carried: Usage | None,
        user: str,
    ) -> None:
        """After a rename's reply: the quotas, the node table and the change feed hear of it,
        and what moved into another scope shows that scope's owner, group and mode."""
        if replaced is not None:
            self._gone(dst, over, replaced)
        if carried is not None:
            self.quotas.add(src, -carried.bytes, -carried.files)
            self.quotas.add(dst, carried.bytes, carried.files)
        moved = self.inodes.moved(src, src_path, dst, dst_path, is_dir)
        self.changes.moved(src, src_path, dst, dst_path, is_dir, user)
        if src != dst:  # owner, group and mode shown follow the scope: drop the cached ones
            self._promoted(src, dst, dst_path, user)
            for node in moved:
                self._invalidate(node.ino)

    async def _to_scope(
        self, p: Principal, src: Scope, src_path: bytes, dst: Scope, st: os.stat_result
    ) -> Usage:
        """Before a move to another scope: what moves counts against that scope's quota (its
        usage, returned), and a private folder going into a team has its files' maker
        recorded, so they arrive with it (the folder itself: _promoted). A folder is walked
        in the caller's own worker threads (control's per-caller limiter)."""
        walks = self.control.limiter(p)
        carried = await self._tree_usage(src, src_path, st, walks)
        await self.quotas.usage(src)
        await self.quotas.need(dst, carried.bytes, carried.files)
        if stat.S_ISDIR(st.st_mode) and src.kind is Kind.PRIVATE and dst.kind is Kind.TEAM:
            await trio.to_thread.run_sync(self.store.claim_owners, src, src_path, src.name, limiter=walks)
        return carried

    def _promoted(self, src: Scope, dst: Scope, dst_path: bytes, mover: str) -> None:
        """A file or folder moved into a team keeps its recorded creator; one with none
        (made in a private scope, where none is recorded, or before memfs recorded them)
        is its private scope's user's, as natively (else the mover's)."""
        if dst.kind is Kind.TEAM and self.store.owner(dst, dst_path) is None:
            self.store.record_owner(dst, dst_path, src.name if src.kind is Kind.PRIVATE else mover)

    async def _tree_usage(
        self, scope: Scope, path: bytes, st: os.stat_result, limiter: trio.CapacityLimiter
    ) -> Usage:
        if not stat.S_ISDIR(st.st_mode):
            return Usage(st.st_size, 1)
        u = await trio.to_thread.run_sync(self.quotas.count, scope, path, limiter=limiter)
        return Usage(u.bytes, u.files + 1)

    @guarded
    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        p = self.ids.mapped.get((ctx.uid, ctx.gid)) or self._principal(ctx)
        view = False
        if self.control.owns(inode):
            start = await self.control.opendir(inode, p)
            scope, path, is_root = None, b"", False
        elif inode == ROOT_INODE:
            own = home(p)
            scope, path, is_root = own, b"", True
            here = self._root_attrs(p, ctx)
            team = p.team_scope

            def start():
                yield b".", here
                yield b"..", here
                for n, st in self.store.iterdir(own, b""):
                    if n not in policy.RESERVED_ROOT_NAMES:
                        yield n, st
                if team is not None:
                    yield policy.TEAM_NAME, None
        else:
            node = self._allowed(inode, p, Access.READ)
            if node.unlinked:
                raise FUSEError(errno.ENOENT)
            st = self.store.lstat(node.scope, node.path)
            if not policy.owner_bits_allow(st.st_mode, True, False):
                raise FUSEError(errno.EACCES)
            scope, path, is_root, view = node.scope, node.path, False, node.view
            here = self._attrs(node, st)
            # '..' only needs to look like a directory: the kernel resolves '..' itself.
            parent = self.inodes.find(scope, path.rpartition(b"/")[0], view) if path else None
            up = self._attrs(parent, st) if parent is not None else here
            if parent is None:
                up.st_ino = ROOT_INODE

            def start():
                yield b".", here
                yield b"..", up
                # where the folder is now: readdir asked DirHandle.where, with no await since
                yield from self.store.iterdir(scope, node.path)

        self.opens.take(ctx.uid)
        fh = self._next_dh()
        # The caller was checked here; readdir carries no ctx and trusts this handle.
        d = DirHandle(ctx.uid, scope, path, start, is_root, view, p.team_scope)
        if not is_root and scope is not None:
            d.node = node
        self._dirs[fh] = d
        return fh

    @guarded
    async def readdir(self, fh: FileHandleT, start_id: int, token: ReaddirToken) -> None:
        d = self._dirs[fh]
        now = d.where()
        if now is None:
            return  # removed (or moved out of the scope) since: nothing to list, as natively
        d.seek(start_id)
        while (item := d.next()) is not None:
            name, st = item
            if isinstance(st, EntryAttributes):  # '.', '..' and control entries: no lookup count
                if not pyfuse3.readdir_reply(token, name, st, d.pos):
                    d.back = item
                    return
                continue
            if d.is_root and name == policy.TEAM_NAME:
                scope, path = d.team_scope, b""
            else:
                scope, path = now[0], child_path(now[1], name)
            # control listings yield only EntryAttributes; the team's name only with a team
            assert scope is not None
            if st is None:
                try:
                    st = self.store.lstat(scope, path)
                except FileNotFoundError:
                    continue
            node = self.inodes.node_for(scope, path, d.view, st.st_ino)
            attrs = self._attrs(node, st, 0 if d.is_root else CACHE_TIMEOUT)
            if not pyfuse3.readdir_reply(token, name, attrs, d.pos):
                self.inodes.drop_if_unused(node)
                d.back = item
                return
            self.inodes.remember(node)

    @guarded
    async def releasedir(self, fh: FileHandleT) -> None:
        d = self._dirs.pop(fh, None)
        if d is not None:
            d.close()
            self.opens.give(d.uid)

    @guarded
    async def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        d = self._dirs.get(fh)
        now = d.where() if d is not None else None
        if now is None or now[0] is None:  # gone (fsync of a removed folder succeeds), or control
            return
        fd = self.store.open_dir(now[0], now[1])
        try:
            await trio.to_thread.run_sync(os.fsync, fd)
        finally:
            os.close(fd)
