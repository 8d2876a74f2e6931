"""pyfuse3.Operations: each FUSE call becomes identity -> policy -> store.

No policy lives here. The rules that shape this file (measured kernel behaviour):
- The root (inode 1) is per caller: its names, listing and attributes are answered
  with timeouts 0, and a missing name is never a cached negative entry (ENOENT, or node
  0 cached for no time: the same to the kernel).
- Every other inode belongs to one (scope, path), so its attributes and page cache
  may be kept; every call that carries a ctx still checks the caller.
- read/write/readdir carry no caller: the decision is made at open/create/opendir
  and kept in the handle.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import stat
from collections.abc import Sequence

import pyfuse3
import trio
from pyfuse3 import (
    EntryAttributes,
    FileHandleT,
    FileNameT,
    FUSEError,
    InodeT,
    ModeT,
    RequestContext,
    SetattrFields,
    StatvfsData,
)

from . import context as ctx_mod
from . import logline, policy
from .after_reply import AfterReply
from .changes import Changes
from .config import Limits
from .control import Control, FleetView
from .dir_ops import DirOps
from .file_ops import FileOps
from .guard import MISSING, guarded
from .handles import DirHandle, FileHandle, OpenFiles
from .history import History
from .history.view import HistoryView
from .identity import Identities
from .index import Index
from .inodes import CACHE_TIMEOUT, InodeTable, Node
from .names import quote_path
from .numbers import CONTROL_HANDLE_BASE, DIR_HANDLE_BASE, ROOT_INODE, Counter, Handle, handle_kind
from .own_numbers import OwnNumbers
from .policy import Access, Kind, Principal, Scope, home
from .quota import OpenCounts, Quotas
from .secrets.service import SecretGuard
from .store import Store
from .sync import Sync

log = logging.getLogger(__name__)


def _chown_request(attr, fields) -> tuple[int | None, int | None]:
    return (attr.st_uid if fields.update_uid else None, attr.st_gid if fields.update_gid else None)


def _times_request(attr, fields) -> tuple[int | None, int | None]:
    return (
        attr.st_atime_ns if fields.update_atime else None,
        attr.st_mtime_ns if fields.update_mtime else None,
    )


class Operations(FileOps, DirOps, pyfuse3.Operations):
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        *,
        store: Store,
        ids: Identities,
        files: OpenFiles | None = None,
        index: Index | None = None,
        history: History | None = None,
        history_view: HistoryView | None = None,
        sync: Sync | None = None,
        limits: Limits | None = None,
        context: ctx_mod.ContextLimits | None = None,
        mountpoint: str = "",
        secrets: SecretGuard | None = None,
        quotas: Quotas | None = None,
        opens: OpenCounts | None = None,
        fleet: FleetView | None = None,
        own_numbers: OwnNumbers | None = None,
    ):
        """Built by daemon.build (the composition root); tests build it bare."""
        super().__init__()
        self.store = store
        self.ids = ids
        self.index = index
        self.history = history
        self.secrets = secrets
        self.inodes = InodeTable(own_numbers)
        # The control files get what they need of this class through FsHost: a part of
        # this layer, not a peer component.
        self.control = Control(
            ids=ids,
            store=store,
            mountpoint=mountpoint,
            index=index,
            limits=context,
            host=self,
            history_view=history_view,
            sync=sync,
            secrets=secrets,
            fleet=fleet,
        )
        self._held: dict[Scope, trio.Event] = {}  # scopes a sync is writing into
        self._sync = sync
        limits = limits or Limits(max_file_bytes=store.max_file_bytes)
        self.quotas = quotas if quotas is not None else Quotas(store, limits)
        self.changes = Changes(index, history, self.quotas)
        self.after = AfterReply()  # the daemon starts it; built bare, work runs at once
        self.opens = opens if opens is not None else OpenCounts(limits)
        self._files = files if files is not None else OpenFiles()
        self._dirs: dict[int, DirHandle] = {}
        self._control_uids: dict[int, int] = {}  # control file handle -> the uid holding it
        self._next_dh = Counter(DIR_HANDLE_BASE, CONTROL_HANDLE_BASE)
        self._invalidations, self._invalidation_queue = trio.open_memory_channel(math.inf)

    # -- kernel cache invalidation ---------------------------------------------
    async def run_invalidator(self) -> None:
        """Tell the kernel to drop what it cached, from outside any handler: the calls
        block and can deadlock when made inside a related request. A name in the root is
        dropped after a rename brings it there: the kernel moved the old folder's dentry,
        with that folder's long timeout, and would show it to every caller."""
        async for what, ino, arg in self._invalidation_queue:
            try:
                if what == "inode":
                    await trio.to_thread.run_sync(pyfuse3.invalidate_inode, ino, arg)
                else:
                    await trio.to_thread.run_sync(pyfuse3.invalidate_entry, ino, arg)
            except OSError:
                pass  # the kernel no longer knows it: nothing cached to drop
            except Exception:  # never let one odd reply end the task (and the mount)
                log.exception("invalidate %s %r: failed", what, ino)

    def refresh(self, paths: list[bytes]) -> None:
        """Backing files changed behind the kernel's back (memfs import): drop what the
        kernel cached of them and re-index them."""
        by_scope: dict[Scope, list[bytes]] = {}
        for path in paths:
            found = self.store.locate(path)
            if found is None:
                log.warning("refresh: %s is not a file under %s", quote_path(path), self.store.data)
                continue
            scope, rel = found
            for view in (False, True):
                node = self.inodes.find(scope, rel, view)
                if node is not None:
                    node.sig = None  # next open drops the page cache
                    self._invalidate(node.ino, attr_only=False)
            by_scope.setdefault(scope, []).append(rel)
        # folders may have moved behind it too: the kept folder fds are opened again
        self.store.forget_folders(*by_scope)
        for scope, rels in by_scope.items():
            self.changes.imported(scope, rels)

    @contextlib.asynccontextmanager
    async def hold(self, scope: Scope):
        """While a sync writes another host's changes into a scope, calls that change it wait."""
        while (ev := self._held.get(scope)) is not None:
            await ev.wait()
        ev = self._held[scope] = trio.Event()
        try:
            yield
        finally:
            del self._held[scope]
            ev.set()

    def busy(self, scope: Scope) -> set[bytes]:
        return self._files.busy(scope)

    async def room(self, scope: Scope) -> tuple[int, int]:
        """(bytes, files) a scope may still grow by: what a sync round may bring in."""
        u, cap = await self.quotas.usage(scope), self.quotas.caps(scope)
        return max(0, cap.bytes - u.bytes), max(0, cap.files - u.files)

    def synced(self, scope: Scope, written: list[bytes], removed: list[bytes]) -> None:
        """Another host's changes were written into a scope's folder: drop what the kernel
        cached of those names and files, and re-index them."""
        for path in written + removed:
            parent_path, _, name = path.rpartition(b"/")
            # a file replaced (by rename) or removed: its old node lives on for open
            # handles, reachable by number only; the name gets a new node on next lookup
            for node in self.inodes.unlinked(scope, path):
                self._invalidate(node.ino, attr_only=False)
            for view in (False, True):
                parent = (
                    self.inodes.find(scope, parent_path, view)
                    if parent_path or scope.kind.name == "TEAM"
                    else None
                )
                if parent is not None:
                    self._invalidate_name(parent.ino, name)
        self.changes.arrived(scope, written, removed)

    def open_dirty(self, scopes: list[Scope]) -> list[tuple[Scope, bytes, str]]:
        return self._files.open_dirty(scopes)

    def dirty_paths(self, scopes: list[Scope]) -> list[tuple[Scope, bytes]]:
        return self._files.dirty_paths(scopes)

    async def usage(self, p: Principal) -> dict:
        """The caller's usage against its limits, for .memfs/whoami."""
        held, control = self.opens.held(p.uid)
        lim = self.opens.limits
        out = {"open_files": held, "open_files_limit": lim.open_files}
        out |= {"open_queries": control, "open_queries_limit": lim.open_queries}
        for label, scope in (("private", p.private), ("team", p.team_scope)):
            if scope is not None:
                u, cap = await self.quotas.usage(scope), self.quotas.caps(scope)
                out |= {f"{label}_bytes": u.bytes, f"{label}_bytes_limit": cap.bytes}
                out |= {f"{label}_files": u.files, f"{label}_files_limit": cap.files}
        return out

    # -- log lines -----------------------------------------------------------------
    _BY_HANDLE = frozenset({"read", "write", "fsync", "release", "readdir", "releasedir", "fsyncdir"})

    def describe(self, op: str, args: tuple) -> str:
        """`uid=1001(alice) notes/x.md` for a log line: the caller and the path its request
        names, as that caller sees it (a handle's owner for calls that carry no caller)."""
        ctx = next((a for a in args if hasattr(a, "uid") and hasattr(a, "umask")), None)
        uid, node, name = (ctx.uid if ctx is not None else None), None, None
        first = args[0] if args and isinstance(args[0], int) else None
        if first is not None and op in self._BY_HANDLE:
            kind = handle_kind(first)
            if kind is Handle.FILE and (f := self._files.get(first)) is not None:
                uid, node = f.uid, f.node
            elif kind is Handle.DIR and (d := self._dirs.get(first)) is not None:
                uid, node = d.uid, self.inodes.find(d.scope, d.path, d.view) if d.scope is not None else None
        elif first is not None:
            node = self.inodes.get(first)
            name = args[1] if len(args) > 1 and isinstance(args[1], bytes) else None
        p = self.ids.principal(uid, uid) if uid is not None else None
        return logline.subject(p, uid, node, name, first)

    def reached(self, scope: Scope) -> None:
        """A caller reached a scope through the root: a synced scope not checked lately is
        checked now, so a host that was idle shows what others wrote within a round."""
        if self._sync is not None:
            self._sync.opened(scope)

    # -- lookup and attributes ------------------------------------------------
    @guarded
    async def lookup(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> EntryAttributes:
        if len(name) > policy.NAME_MAX:
            raise FUSEError(errno.ENAMETOOLONG)
        p = self.ids.mapped.get((ctx.uid, ctx.gid)) or self._principal(ctx)
        parent = self.inodes.get(parent_inode)
        if parent is None:  # the root or .memfs/: never in the table (numbers.py's ranges)
            if parent_inode == ROOT_INODE:
                return self._lookup_root(name, p, ctx)
            if self.control.owns(parent_inode):
                return await self.control.lookup(parent_inode, name, p)
            raise FUSEError(errno.ESTALE)
        # A name in a folder, the commonest lookup (every path walk below the root): the
        # folder's scope and that it is still there, checked without a helper's frame.
        if parent.scope is not p.private or parent.view:
            self._check_access(parent, p, Access.READ)
        if parent.unlinked:
            raise FUSEError(errno.ENOENT)
        scope, path, view = parent.scope, parent.path, parent.view
        if name in (b".", b"..") or (view and not path and name == policy.CONTROL_NAME):
            self._dir_allows(self.store.lstat(scope, path).st_mode, Access.READ)
            if name == b".":
                return self.entry(scope, path, CACHE_TIMEOUT, view)
            if name == b"..":
                raise FUSEError(errno.ENOENT)  # only NFS export asks; the kernel resolves '..'
            return await self.control.grant_ctl(scope, p)  # the owner's history, read-only
        # The folder's mode and the name, read in one walk (Store.lstat_in).
        path = path + b"/" + name if path else name  # store.child_path, inline
        folder, st = self.store.lstat_in(scope, path, scope.kind is Kind.TEAM)
        if folder & policy.PASSABLE_FOLDER_MASK != policy.PASSABLE_FOLDER:
            self._dir_allows(folder, Access.READ)
        if st is None:
            return MISSING  # ENOENT, without raising it through the guard
        return self._entry_of(scope, path, st, CACHE_TIMEOUT, view)

    def _lookup_root(self, name: bytes, p: Principal, ctx: RequestContext) -> EntryAttributes:
        """A name in the caller's root: its own private scope, team/ or .memfs/."""
        if name == policy.CONTROL_NAME:
            return self.control.root_attrs(p)
        if name == policy.TEAM_NAME:
            if p.team_scope is None:
                raise FUSEError(errno.ENOENT)
            self.reached(p.team_scope)
            return self.entry(p.team_scope, b"", 0)
        if name in (b".", b".."):
            return self._root_attrs(p, ctx)
        scope = home(p)
        self.reached(scope)
        st = self.store.find(scope, name)
        return MISSING if st is None else self._entry_of(scope, name, st, 0)

    @guarded
    async def getattr(self, inode: InodeT, ctx: RequestContext) -> EntryAttributes:
        p = self.ids.mapped.get((ctx.uid, ctx.gid)) or self._principal(ctx)
        node = self.inodes.get(inode)
        if node is None:  # the root and .memfs/ are never in the table (numbers.py's ranges)
            if inode == ROOT_INODE:
                return self._root_attrs(p, ctx)
            if self.control.owns(inode):
                return self.control.getattr(inode, p)
            raise FUSEError(errno.ESTALE)
        if node.scope is not p.private or node.view:  # as _allowed, without its frame
            self._check_access(node, p, Access.READ)
        return self._attrs(node, self._stat(node))

    @guarded
    async def setattr(
        self,
        inode: InodeT,
        attr: EntryAttributes,
        fields: SetattrFields,
        fh: FileHandleT | None,
        ctx: RequestContext,
    ) -> EntryAttributes:
        p = self._principal(ctx)
        if self.control.owns(inode):
            raise FUSEError(errno.EROFS if self.control.refusal(inode) == errno.EROFS else errno.EPERM)
        if inode == ROOT_INODE:
            return self._setattr_root(p, attr, fields, ctx)
        node = self._allowed(inode, p, Access.WRITE)
        await self._settle(node.scope)
        handle = self._files.get(fh) if fh is not None else None
        target = self._change_target(node, handle)
        st = self._stat(node)
        uid, gid, _ = self._owner(node, st)
        if not self._chown_allowed((uid, gid), attr, fields, ctx):
            raise FUSEError(errno.EPERM)
        if fields.update_mode and not policy.chmod_allowed(uid, ctx.uid, st.st_mode, attr.st_mode):
            raise FUSEError(errno.EPERM)
        if not (fields.update_size or fields.update_mode or fields.update_atime or fields.update_mtime):
            target.touch_ctime()  # chown to the shown owner (or -1): only the change time moves
        if fields.update_size:
            mid_session = handle is not None and handle.dirty
            await self._resize(node, target, attr.st_size, handle is not None, ctx.uid, mid_session)
        if fields.update_mode:
            target.chmod(policy.stored_mode(attr.st_mode))
        if fields.update_atime or fields.update_mtime:
            target.utime(*_times_request(attr, fields))
        st = self._stat(node)
        if (fields.update_mode or fields.update_mtime) and stat.S_ISREG(st.st_mode):
            # cp -p, rsync -t, tar x, touch -d set times after close: the index shows them
            # ("updated"), history keeps the mode (u+x)
            self._changed(node, ctx.uid)
        return self._attrs(node, st)

    @staticmethod
    def _chown_allowed(shown: tuple[int, int], attr, fields, ctx: RequestContext) -> bool:
        uid, gid = _chown_request(attr, fields)
        groups: frozenset[int] = frozenset()
        if gid is not None and gid != shown[1]:  # rare: only then ask for the caller's groups
            try:
                groups = frozenset((ctx.gid, *pyfuse3.get_sup_groups(ctx.pid)))
            except OSError:  # the caller is gone
                groups = frozenset((ctx.gid,))
        return policy.chown_allowed(shown, uid, gid, ctx.uid, groups)

    def _change_target(self, node: Node, handle: FileHandle | None):
        """What setattr changes: the caller's handle if it gave one, an open fd of an
        unlinked file, else the file by name."""
        fd = handle.fd if handle is not None else None
        if fd is None and node.unlinked:
            fd = next(iter(node.open_fds), None)
            if fd is None:
                raise FUSEError(errno.ENOENT)
        return self.store.target(node.scope, node.path, fd)

    async def _resize(
        self, node: Node, target, size: int, checked_at_open: bool, uid: int, mid_session: bool = False
    ) -> None:
        # mid_session: an ftruncate through a handle that has written and is still open
        # (fsx, a database): what it cuts was never closed, so it is no version to keep
        if not node.unlinked and not mid_session:
            await self._preserve(node.scope, node.path)
        st = self._stat(node)
        if not checked_at_open and not policy.owner_bits_allow(st.st_mode, False, True):
            raise FUSEError(errno.EACCES)  # truncate(2) needs w; ftruncate had it checked at open
        self.store.check_size(size)
        grow = size - st.st_size
        if grow > 0:
            await self.quotas.need(node.scope, grow)
        await self._settle(node.scope)
        target.truncate(size)
        self.quotas.add(node.scope, grow)
        self._changed(node, uid)

    def _setattr_root(self, p: Principal, attr, fields, ctx) -> EntryAttributes:
        """The caller owns its root: times apply; it stays rwx for its owner only."""
        if not policy.chown_allowed((ctx.uid, ctx.gid), *_chown_request(attr, fields)):
            raise FUSEError(errno.EPERM)
        if fields.update_size:
            raise FUSEError(errno.EISDIR)
        if fields.update_atime or fields.update_mtime:
            self.store.utime(
                home(p),
                b"",
                *_times_request(attr, fields),
            )
        return self._root_attrs(p, ctx)

    @guarded
    async def access(self, inode: InodeT, mode: ModeT, ctx: RequestContext) -> bool:
        p = self._principal(ctx)
        if inode == ROOT_INODE:
            return True
        if self.control.owns(inode):
            return not mode & os.W_OK
        node = self._node(inode)
        need = Access.WRITE if mode & os.W_OK else Access.READ
        if policy.access(p, node.scope, node.view) < need:
            return False
        st = self._stat(node)
        return policy.owner_bits_allow(
            st.st_mode, bool(mode & os.R_OK), bool(mode & os.W_OK), bool(mode & os.X_OK)
        )

    @guarded
    async def statfs(self, ctx: RequestContext) -> StatvfsData:
        self._principal(ctx)
        v = self.store.statvfs()
        s = pyfuse3.StatvfsData()
        s.f_bsize, s.f_frsize = v.f_bsize, v.f_frsize
        s.f_blocks, s.f_bfree, s.f_bavail = v.f_blocks, v.f_bfree, v.f_bavail
        s.f_files, s.f_ffree, s.f_favail = v.f_files, v.f_ffree, v.f_favail
        s.f_namemax = policy.NAME_MAX
        return s

    # pyfuse3's stub declares forget async; its C callback accepts a plain function (below)
    def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:  # type: ignore[override]
        # pyfuse3 calls this from its C callback and awaits what it returns, if anything: a
        # plain function has updated the table before the next request. No ctx; must not raise.
        try:
            for ino, count in inode_list:
                if ino != ROOT_INODE and not self.control.owns(ino):
                    self.inodes.forget(ino, count)
        except Exception:
            log.exception("forget: internal error")
