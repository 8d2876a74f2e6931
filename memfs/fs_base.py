"""What the handler classes share: the state fs.Operations sets up, declared here so the
mixins (file_ops, dir_ops) and Operations type-check against one definition, and the
helpers every handler calls (who is calling, where a name leads, attributes, the change
hooks). No handler lives here."""

from __future__ import annotations

import errno
import logging
import os
import stat
from typing import TYPE_CHECKING

import trio
from pyfuse3 import EntryAttributes, FUSEError, RequestContext

from . import owners, policy
from .inodes import CACHE_TIMEOUT, VIEW_TIMEOUT, Node, removed_stat
from .numbers import ROOT_INODE
from .policy import Access, Kind, Principal, Scope, home

if TYPE_CHECKING:
    from .after_reply import AfterReply
    from .changes import Changes
    from .control import Control
    from .handles import DirHandle, OpenFiles
    from .history import History
    from .identity import Identities
    from .index import Index
    from .inodes import InodeTable
    from .numbers import Counter
    from .quota import OpenCounts, Quotas
    from .secrets.service import SecretGuard
    from .store import Store

log = logging.getLogger("memfs.fs")  # the handlers' logger: these lines are theirs

Invalidation = tuple[str, int, bool | bytes]


class FsBase:
    """The state of fs.Operations (set in its __init__) and the helpers its handlers share."""

    store: Store
    ids: Identities
    index: Index | None
    history: History | None
    inodes: InodeTable
    control: Control
    quotas: Quotas
    changes: Changes
    after: AfterReply  # bookkeeping that waits for the reply (after_reply.py)
    opens: OpenCounts
    secrets: SecretGuard | None  # None: no secret guard (tests that build Operations bare)
    _held: dict[Scope, trio.Event]  # scopes a sync is writing into
    _files: OpenFiles
    _dirs: dict[int, DirHandle]
    _control_uids: dict[int, int]  # control file handle -> the uid holding it
    _next_dh: Counter
    _invalidations: trio.MemorySendChannel[Invalidation]

    # -- kernel cache invalidation (fs.Operations.run_invalidator sends them) ------
    def _invalidate(self, ino: int, attr_only: bool = True) -> None:
        self._invalidations.send_nowait(("inode", ino, attr_only))

    def _invalidate_name(self, parent: int, name: bytes) -> None:
        self._invalidations.send_nowait(("entry", parent, name))

    async def _settle(self, *scopes: Scope) -> None:
        for scope in scopes:
            while (ev := self._held.get(scope)) is not None:
                await ev.wait()

    # -- index and history ------------------------------------------------------------
    def _user(self, uid: int) -> str:
        p = self.ids.mapped.get((uid, uid))  # name_of's answer for a mapped uid, in one lookup
        return p.user if p is not None and p.user is not None else self.ids.name_of(uid)

    def _changed(self, node: Node, uid: int) -> None:
        """A file's content changed (closed after writing, fsynced, truncated)."""
        if not node.unlinked:
            self.changes.written(node.scope, node.path, self._user(uid))

    async def _preserve(self, scope: Scope, path: bytes, removing: bool = False) -> None:
        """About to destroy a file's content (rm, truncate, a rename over it, an open for
        writing): if history has not yet kept what was last written to it, keep it now.
        Costs one read only when the path changed since the last batch; no commit."""
        if self.history is not None:
            await self.history.keep(scope, path, self._writer(self.history, scope, path), removing)

    def _writer(self, history: History, scope: Scope, path: bytes) -> str:
        """Who the content about to be destroyed is kept as. A handle that wrote to the
        file and is not yet released (the caller closed it, its release is not here yet)
        names its writer, and history is told of that change first."""
        node = self.inodes.find(scope, path, False)
        for fd in node.open_fds if node is not None else ():
            h = self._files.get(fd)
            if h is not None and h.dirty:
                self.changes.written(scope, path, h.user)
                return h.user
        return history.last_writer(scope, path)

    # -- helpers: who, where, attributes ---------------------------------------
    def _principal(self, ctx: RequestContext) -> Principal:
        """The caller, refused (EACCES) when its uid maps to no memory user. The hottest
        handlers first try `self.ids.mapped.get((ctx.uid, ctx.gid))`, a dict lookup with
        no Python frame, and call this only when it misses."""
        p = self.ids.known.get((ctx.uid, ctx.gid)) or self.ids.principal(ctx.uid, ctx.gid)
        if p.user is None:
            log.info("uid %d is not mapped to a memory user (unknown_uids: deny)", ctx.uid)
            raise FUSEError(errno.EACCES)
        return p

    def _node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise FUSEError(errno.ESTALE)
        return node

    def _allowed(self, ino: int, p: Principal, need: Access) -> Node:
        """The node of `ino` if the caller may use it as `need` (else ESTALE, EACCES or
        EROFS): _node and the scope's check in one call, as most requests begin."""
        node = self.inodes.get(ino)
        if node is None:
            raise FUSEError(errno.ESTALE)
        if node.scope is not p.private or node.view:  # the caller's own files: all allowed
            self._check_access(node, p, need)
        return node

    @staticmethod
    def _check_access(node: Node, p: Principal, need: Access) -> None:
        """EACCES or EROFS unless the caller may use the node as `need`: asked only for a
        node outside the caller's private scope (scopes are interned: `is` compares them)."""
        have = policy.access(p, node.scope, node.view)
        if have < need:
            raise FUSEError(policy.denied_errno(have))

    @staticmethod
    def _dir_allows(mode: int, need: Access) -> None:
        # The directory's own owner bits apply as on any filesystem: x to pass, w to change.
        if not stat.S_ISDIR(mode):
            raise FUSEError(errno.ENOTDIR)
        if not policy.owner_bits_allow(mode, False, need >= Access.WRITE, True):
            raise FUSEError(errno.EACCES)

    def _attrs(self, node: Node, st: os.stat_result, timeout: float = CACHE_TIMEOUT) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = min(timeout, VIEW_TIMEOUT) if node.view else timeout
        a.attr_timeout = VIEW_TIMEOUT if node.view else CACHE_TIMEOUT
        scope = node.scope
        if scope.kind is Kind.TEAM:
            a.st_uid, a.st_gid, has_group = self._owner(node, st)
        else:  # a private scope shows its user (a dict lookup once shown_owner has run)
            a.st_uid, a.st_gid, has_group = self.ids.owners.get(scope) or self.ids.shown_owner(scope)
        a.st_mode = policy.shown_mode(scope.kind, st.st_mode, has_group)
        a.st_nlink = st.st_nlink
        a.st_rdev = 0
        a.st_size = st.st_size
        a.st_blksize = st.st_blksize
        a.st_blocks = st.st_blocks
        a.st_atime_ns = st.st_atime_ns
        a.st_mtime_ns = st.st_mtime_ns
        a.st_ctime_ns = st.st_ctime_ns
        return a

    def _owner(self, node: Node, st: os.stat_result) -> tuple[int, int, bool]:
        """(uid, gid, team_has_group) shown for a file. A team file or folder shows its
        creator (owners.py) as on a shared disk, read once per backing file and kept on
        its node: the same for every caller, as the kernel caches it per inode."""
        uid, gid, has_group = self.ids.shown_owner(node.scope)
        if node.scope.kind is not Kind.TEAM or not node.path:
            return uid, gid, has_group
        known = node.creator
        if known is None or known[0] != st.st_ino:
            user = self._recorded_owner(node)
            known = node.creator = (st.st_ino, self.ids.uid_of(user) if user is not None else uid)
        return known[1], gid, has_group

    def _recorded_owner(self, node: Node) -> str | None:
        if node.open_fds:
            return owners.read_fd(next(iter(node.open_fds)))
        if node.unlinked:
            return None
        return self.store.owner(node.scope, node.path)

    def _stat(self, node: Node) -> os.stat_result:
        # An open file is stat'ed through one of its fds: the file itself, whether it was
        # unlinked or not (a name replaced or removed marks its node unlinked), and no
        # confined walk of its path. Readers fstat what they opened (Python's read(), cat,
        # grep): the kernel asks getattr while the file is open.
        if node.open_fds:
            st = os.fstat(next(iter(node.open_fds)))
            # a removed file has no name left to callers, whatever still links it in DATA/
            # (history's spool keeps removed content by a hard link)
            return removed_stat(st) if node.unlinked and st.st_nlink else st
        if node.unlinked:
            if node.gone is not None:  # a removed folder still held (a cwd)
                return node.gone
            raise FUSEError(errno.ENOENT)
        return self.store.lstat(node.scope, node.path)

    def _root_attrs(self, p: Principal, ctx: RequestContext) -> EntryAttributes:
        st = self.store.lstat(home(p), b"")
        a = EntryAttributes()
        a.st_ino = ROOT_INODE
        a.entry_timeout = a.attr_timeout = 0  # the root is a different directory per caller
        a.st_mode = stat.S_IFDIR | 0o700
        a.st_nlink = st.st_nlink
        a.st_uid, a.st_gid = ctx.uid, ctx.gid
        a.st_size = st.st_size
        a.st_blksize = st.st_blksize
        a.st_blocks = st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    def entry(self, scope: Scope, path: bytes, timeout: float, view: bool = False) -> EntryAttributes:
        """Look up a live backing file, hand the kernel a reference to its node."""
        return self._entry_of(scope, path, self.store.lstat(scope, path), timeout, view)

    def _entry_of(
        self, scope: Scope, path: bytes, st: os.stat_result, timeout: float, view: bool = False
    ) -> EntryAttributes:
        if policy.refused_file_type(st.st_mode):
            raise FUSEError(errno.ENOENT)  # an admin's symlink or fifo in DATA/ is not served
        return self._attrs(self.inodes.looked_up(scope, path, view, st.st_ino), st, timeout)

    def _root_special(self, p: Principal, name: bytes) -> bool:
        """Does this reserved root name exist for this caller?"""
        return name == policy.CONTROL_NAME or (name == policy.TEAM_NAME and p.team is not None)

    def _target(self, p: Principal, parent: int, name: bytes, creating: bool) -> tuple[Scope, bytes]:
        """(scope, path) of `name` in directory `parent`, for a call that changes it."""
        if len(name) > policy.NAME_MAX:
            raise FUSEError(errno.ENAMETOOLONG)
        node = self.inodes.get(parent)
        if node is None:  # the root or .memfs/: never in the table (numbers.py's ranges)
            if self.control.owns(parent):
                raise FUSEError(self.control.refusal(parent))
            if parent != ROOT_INODE:
                raise FUSEError(errno.ESTALE)
            if name in policy.RESERVED_ROOT_NAMES:
                raise FUSEError(policy.reserved_name_errno(self._root_special(p, name), creating))
            return home(p), name
        # A folder the caller may change: its scope, still there, its own bits (every
        # create, rm and mkdir, so checked here without a helper's frame).
        if node.scope is not p.private or node.view:
            self._check_access(node, p, Access.WRITE)
        if node.unlinked:
            raise FUSEError(errno.ENOENT)
        mode = self.store.folder_mode(node.scope, node.path)
        if mode & policy.CHANGEABLE_FOLDER_MASK != policy.CHANGEABLE_FOLDER:
            self._dir_allows(mode, Access.WRITE)
        path = node.path
        return node.scope, path + b"/" + name if path else name  # store.child_path, inline
