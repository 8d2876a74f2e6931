"""A bare pyfuse3 passthrough filesystem: the floor under memfs in scripts/bench.py.

What any pyfuse3 filesystem over a backing directory pays, with none of memfs's identity,
policy, quotas, index or history: modelled on pyfuse3's examples/passthroughfs.py (an
inode <-> path map with kernel lookup counts, `forget` honoured), with what memfs does
that changes the request stream copied, so the two differ only in the work per request:
- the fuse options memfs mounts with (memfs/mount.py): pyfuse3.default_options without
  default_permissions, plus allow_other;
- entry and attribute timeouts of a private file (memfs/inodes.py CACHE_TIMEOUT, 300 s;
  memfs/fs.py `_attrs`), no writeback cache, keep_cache on open;
- flush answered ENOSYS, so the kernel stops sending it (memfs/file_ops.py);
- a directory is listed once per opendir and read from that list (memfs's DirHandle),
  not listed again per readdir call as the example does.

Caveats, as in the example: st_ino is the backing inode number and the FUSE inode; it runs
as root and checks nothing (without default_permissions anyone may do anything); files are
created as root; renaming a directory leaves its children's paths stale. For benchmarks
only. Usage: passthrough.py SOURCE MOUNTPOINT [--debug-fuse]; runs until unmounted.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import signal
import sys

import pyfuse3
import trio
from pyfuse3 import EntryAttributes, FileInfo, FUSEError

TIMEOUT = 300.0  # memfs's CACHE_TIMEOUT (memfs/inodes.py): entry and attr timeout of a private file


def passthrough(fn):
    """A backing-store error becomes the same errno for the caller."""

    @functools.wraps(fn)
    async def wrapper(self, *args):
        try:
            return await fn(self, *args)
        except OSError as e:
            raise FUSEError(e.errno or errno.EIO) from None

    return wrapper


class Bare(pyfuse3.Operations):
    enable_writeback_cache = False  # as memfs (memfs/fs.py)

    def __init__(self, source: bytes):
        super().__init__()
        self._paths: dict[int, bytes] = {pyfuse3.ROOT_INODE: source}
        self._lookups: dict[int, int] = {}
        self._dirs: dict[int, tuple[bytes, list[bytes]]] = {}
        self._next_dh = 1

    def _path(self, inode: int) -> bytes:
        try:
            return self._paths[inode]
        except KeyError:
            raise FUSEError(errno.ENOENT) from None

    def _child(self, parent: int, name: bytes) -> bytes:
        return os.path.join(self._path(parent), name)

    @staticmethod
    def _attrs(st: os.stat_result) -> EntryAttributes:
        a = EntryAttributes()
        a.st_ino = st.st_ino
        a.generation = 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_mode, a.st_nlink, a.st_uid, a.st_gid = st.st_mode, st.st_nlink, st.st_uid, st.st_gid
        a.st_rdev, a.st_size, a.st_blksize, a.st_blocks = 0, st.st_size, st.st_blksize, st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    def _remember(self, path: bytes, st: os.stat_result) -> EntryAttributes:
        """The kernel now holds one more reference to this inode."""
        self._paths[st.st_ino] = path
        self._lookups[st.st_ino] = self._lookups.get(st.st_ino, 0) + 1
        return self._attrs(st)

    async def forget(self, inode_list):
        for inode, count in inode_list:
            left = self._lookups.get(inode, 0) - count
            if left > 0:
                self._lookups[inode] = left
            else:
                self._lookups.pop(inode, None)
                if inode != pyfuse3.ROOT_INODE:
                    self._paths.pop(inode, None)

    @passthrough
    async def lookup(self, parent_inode, name, ctx):
        path = self._child(parent_inode, name)
        return self._remember(path, os.lstat(path))

    @passthrough
    async def getattr(self, inode, ctx):
        return self._attrs(os.lstat(self._path(inode)))

    @passthrough
    async def setattr(self, inode, attr, fields, fh, ctx):
        target = fh if fh is not None else self._path(inode)
        if fields.update_size:
            os.truncate(target, attr.st_size)
        if fields.update_mode:
            os.chmod(target, attr.st_mode & 0o7777)
        if fields.update_atime or fields.update_mtime:
            st = os.stat(target)
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            os.utime(target, ns=(atime, mtime))
        return self._attrs(os.stat(target))

    @passthrough
    async def opendir(self, inode, ctx):
        path = self._path(inode)
        fh = self._next_dh
        self._next_dh += 1
        self._dirs[fh] = (path, os.listdir(path))
        return fh

    @passthrough
    async def readdir(self, fh, start_id, token):
        path, names = self._dirs[fh]
        for i in range(start_id, len(names)):
            child = os.path.join(path, names[i])
            try:
                st = os.lstat(child)
            except FileNotFoundError:
                continue
            if not pyfuse3.readdir_reply(token, names[i], self._attrs(st), i + 1):
                return
            self._remember(child, st)  # readdirplus: an entry the kernel took is a lookup

    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    @passthrough
    async def open(self, inode, flags, ctx):
        return FileInfo(fh=os.open(self._path(inode), flags & ~os.O_CREAT))

    @passthrough
    async def create(self, parent_inode, name, mode, flags, ctx):
        path = self._child(parent_inode, name)
        fd = os.open(path, flags | os.O_CREAT, mode & ~ctx.umask)
        return FileInfo(fh=fd), self._remember(path, os.fstat(fd))

    @passthrough
    async def read(self, fh, off, size):
        return os.pread(fh, size, off)

    @passthrough
    async def write(self, fh, off, buf):
        return os.pwrite(fh, buf, off)

    async def flush(self, fh):
        raise FUSEError(errno.ENOSYS)  # as memfs: the kernel stops sending flush

    @passthrough
    async def release(self, fh):
        os.close(fh)

    @passthrough
    async def unlink(self, parent_inode, name, ctx):
        os.unlink(self._child(parent_inode, name))

    @passthrough
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags:
            raise FUSEError(errno.EINVAL)
        new = self._child(parent_inode_new, name_new)
        os.rename(self._child(parent_inode_old, name_old), new)
        ino = os.lstat(new).st_ino
        if ino in self._paths:
            self._paths[ino] = new

    @passthrough
    async def mkdir(self, parent_inode, name, mode, ctx):
        path = self._child(parent_inode, name)
        os.mkdir(path, mode & ~ctx.umask)
        return self._remember(path, os.lstat(path))

    @passthrough
    async def rmdir(self, parent_inode, name, ctx):
        os.rmdir(self._child(parent_inode, name))

    @passthrough
    async def statfs(self, ctx):
        v = os.statvfs(self._paths[pyfuse3.ROOT_INODE])
        s = pyfuse3.StatvfsData()
        s.f_bsize, s.f_frsize = v.f_bsize, v.f_frsize
        s.f_blocks, s.f_bfree, s.f_bavail = v.f_blocks, v.f_bfree, v.f_bavail
        s.f_files, s.f_ffree, s.f_favail = v.f_files, v.f_ffree, v.f_favail
        s.f_namemax = v.f_namemax
        return s


async def serve() -> None:
    async with trio.open_nursery() as nursery:

        async def on_signal():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                async for _ in sigs:
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signal)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("mountpoint")
    ap.add_argument("--debug-fuse", action="store_true", help="libfuse's -o debug: every request on stderr")
    args = ap.parse_args()
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")  # as memfs/mount.py
    options |= {"fsname=bare", "subtype=bare", "allow_other"}
    if args.debug_fuse:
        options.add("debug")
    pyfuse3.init(Bare(os.fsencode(os.path.abspath(args.source))), args.mountpoint, options)
    try:
        trio.run(serve)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
