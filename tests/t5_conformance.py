"""POSIX conformance in the categories of pjdfstest: one driver, run natively and on memfs.

DRIVER is a plain Python script (Debian's /usr/bin/python3, run as a non-root uid). Given a
directory, it runs a fixed list of cases, each in a fresh sub-folder of its own, and prints
one JSON line per case: the result ("ok" or the errno name) and what it observed (sizes,
modes, contents, and which of atime/mtime/ctime changed on the file and on its parent).
Each case also declares the result Linux documents for it (`expect(...)`, `@case(...)`).

The driver runs as the same uid once in a folder of a memfs mount and once in a native
folder (ext4 under /tmp, owned by that uid, 0700). The native run must give the documented
results, and memfs must give the native run's output case by case, except for the intended
differences in DIFFERENCES, where memfs must give exactly the listed fields (and the native
run must differ, so that the table stays true). Cases in BUGS show a real memfs bug: strict
xfails until memfs is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import ALICE, DEFAULT_CONFIG, SYS_PYTHON, Mount

# case -> (fields memfs gives instead of the native ones, why). Every other field of the
# case must equal the native run's.
DIFFERENCES: dict[str, tuple[dict, str]] = {
    "link": ({"result": "EPERM", "nlink": 1}, "hard links refused: memory is plain files"),
    "symlink": ({"result": "EPERM"}, "symlinks refused: memory is plain files"),
    "mkfifo": ({"result": "EPERM"}, "fifos refused"),
    "mknod_fifo": ({"result": "EPERM"}, "mknod of anything but a regular file refused"),
    "socket_bind": ({"result": "EPERM"}, "a socket cannot be bound in memory"),
    "create_umask_group_bits": ({"mode": "0o600"}, "group/other bits follow the scope (private: 0600)"),
    "mkdir_umask_group_bits": ({"mode": "0o700"}, "group/other bits follow the scope (private: 0700)"),
    "chmod_file_group_other_bits": ({"mode": "0o700"}, "chmod keeps only the owner bits"),
    "chmod_dir_group_other_bits": ({"mode": "0o700"}, "chmod keeps only the owner bits"),
    "chmod_setuid": ({"mode": "0o700"}, "chmod keeps only the owner rwx bits"),
    "chmod_dir_sticky": ({"mode": "0o700"}, "chmod keeps only the owner rwx bits"),
    "rename_exchange": ({"result": "EINVAL", "a": "A", "b": "B"}, "renameat2(RENAME_EXCHANGE) refused"),
    "fallocate_extends": (
        {"result": "ENOTSUP", "size": 0},
        "pyfuse3 3.5 has no fallocate handler: the kernel answers EOPNOTSUPP (posix_fallocate falls back)",
    ),
    "setxattr": ({"result": "ENOTSUP"}, "extended attributes not supported"),
    "getxattr_missing": ({"result": "ENOTSUP"}, "extended attributes not supported"),
    "listxattr": ({"result": "ENOTSUP", "names": None}, "extended attributes not supported"),
    "removexattr_missing": ({"result": "ENOTSUP"}, "extended attributes not supported"),
    "o_tmpfile": (
        {"result": "ENOTSUP"},
        "O_TMPFILE unsupported (EOPNOTSUPP; callers fall back): such a file could only be linked in",
    ),
    "rename_whiteout": (
        {"result": "EINVAL", "listing": ["a"], "a_is_chardev": False},
        "a whiteout is a device node: refused like RENAME_EXCHANGE",
    ),
}

# case -> diagnosis: real memfs bugs this suite found (strict xfails until fixed). The eleven
# it found first (directory owner bits, truncate(2) of a 0400 file, chown's ctime, mkdir's
# mode, RENAME_WHITEOUT) are fixed.
BUGS: dict[str, str] = {}

DRIVER = r'''
"""Conformance driver: `python3 -c DRIVER DIR` runs every case in DIR/<case>/, in order,
and prints one JSON line per case. Loaded without running, it only defines CASES/EXPECT."""
import ctypes, errno, fcntl, json, mmap, os, socket, stat, sys, time
from os import O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY

TICK = 0.01  # only so that two steps get distinct timestamps (the kernel clock ticks every 4 ms)
N256 = "n" * 256
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
libc = ctypes.CDLL(None, use_errno=True)
CASES = []  # the case functions, in order
EXPECT = {}  # case -> the result Linux documents for it: "ok" or an errno name


def case(expected="ok"):
    def register(fn):
        CASES.append(fn)
        EXPECT[fn.__name__] = expected
        return fn

    return register


def attempt(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"


def result(fn, *args):
    return {"result": attempt(fn, *args)}


def make(spec):
    """Space-separated 'path[:mode]': a trailing / makes a folder, else a file holding 'x';
    a path that exists already gets the mode (chmod)."""
    for item in spec.split():
        path, _, m = item.partition(":")
        name = path.rstrip("/")
        if not os.path.lexists(name):
            if path.endswith("/"):
                os.mkdir(name, 0o700)
            else:
                put(name, b"x", int(m or "600", 8))
                continue
        if m:
            os.chmod(name, int(m, 8))


def expect(name, expected, setup, fn, *args):
    """The plain case: make `setup`, call fn(*args), report its errno (pjdfstest's `expect`)."""

    def run():
        make(setup)
        return result(fn, *args)

    run.__name__ = name
    case(expected)(run)


def checked(ret):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(src, dst, flags):
    checked(libc.renameat2(AT_FDCWD, src.encode(), AT_FDCWD, dst.encode(), ctypes.c_uint(flags)))


class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


def utimensat(path, atime, mtime):
    """atime, mtime: (sec, nsec); nsec may be UTIME_NOW or UTIME_OMIT."""
    ts = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    checked(libc.utimensat(AT_FDCWD, path.encode(), ts, 0))


def put(path, data=b"", mode=0o600):
    fd = os.open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)


def write_fd(path, data, flags=O_WRONLY):
    fd = os.open(path, flags)
    os.write(fd, data)
    os.close(fd)


def read_fd(path):
    fd = os.open(path, O_RDONLY)
    data = os.read(fd, 100)
    os.close(fd)
    return data


def content(path):
    with open(path, "rb") as f:
        return f.read().decode("latin-1")


def mode(path):
    return oct(stat.S_IMODE(os.stat(path).st_mode))


def size(path):
    return os.stat(path).st_size


def nlink(path):
    return os.stat(path).st_nlink


def mine(path):
    st = os.stat(path)
    return [st.st_uid == os.getuid(), st.st_gid == os.getgid()]


def times(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def changed(before, after):
    """Which of atime, mtime, ctime differ ('mc'), '-' for none."""
    if before is None or after is None:
        return "absent" if before is None and after is None else "new" if before is None else "gone"
    return "".join(k for k, b, a in zip("amc", before, after, strict=True) if b != a) or "-"


def watch(op, *paths, after=None):
    """Snapshot paths, wait one tick, run op: its result and, per path, which times changed.
    after: where to look afterwards (a renamed file under its new name)."""
    before = [times(p) for p in paths]
    time.sleep(TICK)
    out = {"result": attempt(op)}
    for p, q, b in zip(paths, after or paths, before, strict=True):
        out["times " + p] = changed(b, times(q))
    return out


def old_times(path):
    """Times far in the past, then one tick: any later change shows."""
    os.utime(path, ns=(10**18, 10**18))
    time.sleep(TICK)


def listing():
    return sorted(os.listdir("."))


# -- open(2) ---------------------------------------------------------------------------
expect("open_creat_excl_existing", "EEXIST", "f", os.open, "f", O_WRONLY | O_CREAT | O_EXCL, 0o600)
expect("open_creat_excl_dir", "EEXIST", "d/", os.open, "d", O_WRONLY | O_CREAT | O_EXCL, 0o600)
expect("open_missing", "ENOENT", "", os.open, "nope", O_RDONLY)
expect("open_creat_missing_parent", "ENOENT", "", os.open, "nodir/f", O_WRONLY | O_CREAT, 0o600)
expect("open_directory_flag_on_file", "ENOTDIR", "f", os.open, "f", O_RDONLY | O_DIRECTORY)
expect("open_directory_flag_on_dir", "ok", "d/", os.open, "d", O_RDONLY | O_DIRECTORY)
expect("open_dir_wronly", "EISDIR", "d/", os.open, "d", O_WRONLY)
expect("open_dir_rdwr", "EISDIR", "d/", os.open, "d", O_RDWR)
expect("open_dir_rdonly", "ok", "d/", os.open, "d", O_RDONLY)
expect("open_creat_on_dir", "EISDIR", "d/", os.open, "d", O_RDONLY | O_CREAT, 0o600)
expect("open_through_file", "ENOTDIR", "a.md", os.open, "a.md/x", O_RDONLY)
expect("open_creat_through_file", "ENOTDIR", "a.md", os.open, "a.md/x", O_WRONLY | O_CREAT, 0o600)
expect("open_name_256_creat", "ENAMETOOLONG", "", os.open, N256, O_WRONLY | O_CREAT, 0o600)
expect("open_name_256_rdonly", "ENAMETOOLONG", "", os.open, N256, O_RDONLY)
expect("open_nofollow_file", "ok", "f", os.open, "f", O_RDONLY | O_NOFOLLOW)
expect("read_on_wronly_fd", "EBADF", "f", lambda: os.read(os.open("f", O_WRONLY), 1))
expect("write_on_rdonly_fd", "EBADF", "f", lambda: os.write(os.open("f", O_RDONLY), b"y"))


@case("EISDIR")
def open_creat_trailing_slash():
    r = result(os.open, "new/", O_WRONLY | O_CREAT, 0o600)
    r["listing"] = listing()
    return r


@case()
def open_name_255():
    r = result(put, "n" * 255)
    r["listing"] = [len(n) for n in listing()]
    return r


@case()
def open_creat_existing_keeps_content():
    put("f", b"abc")
    r = watch(lambda: os.close(os.open("f", O_WRONLY | O_CREAT, 0o600)), "f", ".")
    r["content"] = content("f")
    return r


@case()
def open_trunc():
    put("f", b"hello")
    r = watch(lambda: os.close(os.open("f", O_WRONLY | O_TRUNC)), "f", ".")
    r["size"] = size("f")
    return r


@case()
def open_trunc_empty():
    put("f")
    r = watch(lambda: os.close(os.open("f", O_WRONLY | O_TRUNC)), "f", ".")
    r["size"] = size("f")
    return r


@case()
def open_append():
    put("f", b"abc")
    fd = os.open("f", O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"XY")
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    os.pwrite(fd, b"Z", 0)  # Linux: with O_APPEND, pwrite appends too
    os.close(fd)
    return {"result": "ok", "pos": pos, "content": content("f")}


@case()
def open_creat_readonly_mode_fd_writable():
    fd = os.open("f", O_RDWR | O_CREAT | O_EXCL, 0o400)
    n = os.write(fd, b"ok")
    data = os.pread(fd, 10, 0)
    os.close(fd)
    return {"result": "ok", "written": n, "read": data.decode(), "mode": mode("f")}


# -- creating, stat ------------------------------------------------------------------
@case()
def create_times():
    links = nlink(".")
    r = watch(lambda: put("f"), ".", "f")
    st = os.stat("f")
    r.update(
        same_times=st.st_atime_ns == st.st_mtime_ns == st.st_ctime_ns,
        nlink=st.st_nlink,
        size=st.st_size,
        mode=mode("f"),
        mine=mine("f"),
        parent_nlink_delta=nlink(".") - links,
    )
    return r


@case()
def create_umask_group_bits():
    os.umask(0o022)
    try:
        put("f", mode=0o644)
    finally:
        os.umask(0o077)
    return {"result": "ok", "mode": mode("f")}


@case()
def stat_new_dir():
    os.mkdir("d")
    isdir = stat.S_ISDIR(os.stat("d").st_mode)
    return {"result": "ok", "nlink": nlink("d"), "mode": mode("d"), "isdir": isdir, "mine": mine("d")}


@case()
def stat_dotdot_of_subdir():
    os.mkdir("d")
    return {"result": "ok", "same": os.stat("d/..").st_ino == os.stat(".").st_ino}


# -- write(2), read(2) ---------------------------------------------------------------
@case()
def write_times():
    put("f", b"abc")
    r = watch(lambda: write_fd("f", b"xy"), "f", ".")
    r["content"] = content("f")
    return r


@case()
def write_past_end():
    put("f")
    fd = os.open("f", O_WRONLY)
    os.pwrite(fd, b"x", 100)
    os.close(fd)
    data = content("f")
    return {"result": "ok", "size": size("f"), "zeros": data.count("\0"), "last": data[-1]}


@case()
def write_large_read_back():
    data = bytes(range(256)) * 4096 + b"tail"
    with open("f", "wb") as f:
        f.write(data)
    with open("f", "rb") as f:
        back = f.read()
    return {"result": "ok", "size": size("f"), "same": back == data}


@case()
def read_times():
    put("f", b"abc")
    return watch(lambda: read_fd("f"), "f", ".")


@case()
def read_again_times():
    put("f", b"abc")
    time.sleep(TICK)
    read_fd("f")  # atime now after mtime: relatime leaves it until the file changes
    return watch(lambda: read_fd("f"), "f", ".")


@case()
def read_after_rewrite_times():
    put("f", b"abc")
    time.sleep(TICK)
    read_fd("f")
    time.sleep(TICK)
    write_fd("f", b"xy")  # mtime after atime again: relatime updates atime on the next read
    r = watch(lambda: read_fd("f"), "f")
    r["content"] = content("f")
    return r


@case()
def read_past_end():
    put("f", b"abc")
    fd = os.open("f", O_RDONLY)
    data = os.pread(fd, 10, 100)
    os.close(fd)
    return {"result": "ok", "read": len(data)}


@case()
def seek_end():
    put("f", b"abcdef")
    fd = os.open("f", O_RDONLY)
    end = os.lseek(fd, 0, os.SEEK_END)
    os.close(fd)
    return {"result": "ok", "end": end}


# -- rename(2) -----------------------------------------------------------------------
expect("rename_file_over_dir", "EISDIR", "f d/", os.rename, "f", "d")
expect("rename_dir_over_file", "ENOTDIR", "f d/", os.rename, "d", "f")
expect("rename_dir_over_nonempty_dir", "ENOTEMPTY", "a/ b/ b/c/", os.rename, "a", "b")
expect("rename_dir_into_own_subdir", "EINVAL", "a/ a/sub/", os.rename, "a", "a/sub/a")
expect("rename_missing_source", "ENOENT", "", os.rename, "nope", "x")
expect("rename_into_missing_dir", "ENOENT", "f", os.rename, "f", "nodir/f")
expect("rename_dst_through_file", "ENOTDIR", "f g", os.rename, "f", "g/x")
expect("rename_dot", "EBUSY", "d/", os.rename, "d/.", "e")
expect("rename_name_256", "ENAMETOOLONG", "f", os.rename, "f", N256)


@case()
def rename_file_new_name():
    put("a", b"A")
    r = watch(lambda: os.rename("a", "b"), "a", ".", after=["b", "."])
    r.update(listing=listing(), b=content("b"))
    return r


@case()
def rename_file_over_file():
    put("a", b"A")
    put("b", b"BB")
    r = watch(lambda: os.rename("a", "b"), "a", ".", after=["b", "."])
    r.update(listing=listing(), b=content("b"))
    return r


@case()
def rename_over_open_file():
    put("a", b"A")
    put("b", b"BB")
    fd = os.open("b", O_RDONLY)
    r = result(os.rename, "a", "b")
    r.update(old_nlink=os.fstat(fd).st_nlink, old_read=os.pread(fd, 10, 0).decode(), b=content("b"))
    os.close(fd)
    return r


@case()
def rename_file_across_dirs():
    os.mkdir("d1")
    os.mkdir("d2")
    put("d1/f", b"F")
    r = watch(lambda: os.rename("d1/f", "d2/g"), "d1/f", "d1", "d2", ".", after=["d2/g", "d1", "d2", "."])
    r.update(d1=os.listdir("d1"), d2=os.listdir("d2"), g=content("d2/g"))
    return r


@case()
def rename_dir_across_dirs():
    os.makedirs("d1/sub")
    os.mkdir("d2")
    put("d1/sub/f", b"F")
    links = nlink("d1"), nlink("d2")
    r = watch(lambda: os.rename("d1/sub", "d2/sub"), "d1/sub", "d1", "d2", after=["d2/sub", "d1", "d2"])
    r.update(
        nlink_delta=[nlink("d1") - links[0], nlink("d2") - links[1]],
        f=content("d2/sub/f"),
        dotdot=os.stat("d2/sub/..").st_ino == os.stat("d2").st_ino,
    )
    return r


@case()
def rename_dir_over_empty_dir():
    make("a/ b/")
    put("a/f", b"F")
    links = nlink(".")
    r = result(os.rename, "a", "b")
    r.update(listing=listing(), f=content("b/f"), parent_nlink_delta=nlink(".") - links)
    return r


@case()
def rename_onto_itself():
    put("f", b"F")
    r = watch(lambda: os.rename("f", "f"), "f", ".")
    r["f"] = content("f")
    return r


@case("EEXIST")
def rename_noreplace_existing():
    put("a", b"A")
    put("b", b"B")
    r = result(renameat2, "a", "b", RENAME_NOREPLACE)
    r.update(a=content("a"), b=content("b"))
    return r


@case()
def rename_noreplace_new():
    put("a", b"A")
    r = result(renameat2, "a", "b", RENAME_NOREPLACE)
    r.update(listing=listing(), b=content("b"))
    return r


@case()
def o_direct_aligned_io():
    buf = mmap.mmap(-1, 8192)
    buf.write(b"d" * 8192)
    fd = os.open("f", O_RDWR | O_CREAT | os.O_DIRECT, 0o600)
    try:
        written = os.pwrite(fd, buf, 0)
        back = mmap.mmap(-1, 4096)
        read = os.preadv(fd, [back], 4096)
    finally:
        os.close(fd)
    same = back[:] == buf[4096:]
    return {"result": "ok", "written": written, "read": read, "same": same, "size": size("f")}


def fallocate(path, mode_, offset, length):
    fd = os.open(path, O_WRONLY)
    try:
        checked(libc.fallocate(fd, mode_, ctypes.c_long(offset), ctypes.c_long(length)))
    finally:
        os.close(fd)


@case()
def fallocate_extends():
    put("f")
    r = result(fallocate, "f", 0, 0, 1 << 20)
    r["size"] = size("f")
    return r


@case()
def path_max_relative():
    top = "/".join(["d" * 250] * 15 + ["e" * 200])
    os.makedirs(top)
    name = top + "/" + "f" * 120
    r = result(put, name, b"deep")
    r["length"] = len(name)
    r["content"] = content(name)
    os.rename(name, top + "/g")
    r["renamed"] = os.listdir(top)
    return r


@case()
def st_ino_stable_over_rename_and_refusal():
    make("a/ b/")
    put("a/x", b"x")
    put("b/y", b"y")
    ino = os.stat("a/x").st_ino
    os.chmod("a", 0o500)
    refused = attempt(os.rename, "b/y", "a/x")
    os.chmod("a", 0o700)
    os.rename("a/x", "a/z")
    return {"result": "ok", "refused": refused, "same": os.stat("a/z").st_ino == ino}


@case()
def rename_exchange():
    put("a", b"A")
    put("b", b"B")
    r = result(renameat2, "a", "b", RENAME_EXCHANGE)
    r.update(a=content("a"), b=content("b"))
    return r


@case()
def rename_whiteout():
    put("a")
    r = result(renameat2, "a", "b", RENAME_WHITEOUT)
    r["listing"] = listing()
    r["a_is_chardev"] = os.path.lexists("a") and stat.S_ISCHR(os.lstat("a").st_mode)
    return r


# -- unlink(2) -----------------------------------------------------------------------
expect("unlink_missing", "ENOENT", "", os.unlink, "nope")
expect("unlink_dir", "EISDIR", "d/", os.unlink, "d")
expect("unlink_through_file", "ENOTDIR", "f", os.unlink, "f/x")
expect("unlink_name_256", "ENAMETOOLONG", "", os.unlink, N256)


@case()
def unlink_times():
    put("f")
    r = watch(lambda: os.unlink("f"), ".")
    r["listing"] = listing()
    return r


@case()
def unlink_open_file():
    put("f", b"abc")
    fd = os.open("f", O_RDWR)
    os.unlink("f")
    os.pwrite(fd, b"XY", 3)
    st = os.fstat(fd)
    data = os.pread(fd, 10, 0).decode()
    os.close(fd)
    return {"result": "ok", "nlink": st.st_nlink, "size": st.st_size, "read": data, "listing": listing()}


# -- mkdir(2) ------------------------------------------------------------------------
expect("mkdir_existing_dir", "EEXIST", "d/", os.mkdir, "d")
expect("mkdir_existing_file", "EEXIST", "f", os.mkdir, "f")
expect("mkdir_missing_parent", "ENOENT", "", os.mkdir, "nodir/d")
expect("mkdir_through_file", "ENOTDIR", "f", os.mkdir, "f/d")
expect("mkdir_name_256", "ENAMETOOLONG", "", os.mkdir, N256)


@case()
def mkdir_times():
    links = nlink(".")
    r = watch(lambda: os.mkdir("d"), ".")
    st = os.stat("d")
    same = st.st_atime_ns == st.st_mtime_ns == st.st_ctime_ns
    r.update(parent_nlink_delta=nlink(".") - links, nlink=st.st_nlink, same_times=same)
    return r


@case()
def mkdir_mode_0500():
    os.mkdir("d", 0o500)
    return {"result": "ok", "mode": mode("d")}


@case()
def mkdir_umask_group_bits():
    os.umask(0o022)
    try:
        os.mkdir("d", 0o755)
    finally:
        os.umask(0o077)
    return {"result": "ok", "mode": mode("d")}


# -- rmdir(2) ------------------------------------------------------------------------
expect("rmdir_nonempty", "ENOTEMPTY", "d/ d/f", os.rmdir, "d")
expect("rmdir_file", "ENOTDIR", "f", os.rmdir, "f")
expect("rmdir_missing", "ENOENT", "", os.rmdir, "nope")
expect("rmdir_dot", "EINVAL", "d/", os.rmdir, "d/.")
expect("rmdir_dotdot", "ENOTEMPTY", "d/ d/e/", os.rmdir, "d/e/..")
expect("rmdir_through_file", "ENOTDIR", "f", os.rmdir, "f/x")


@case()
def rmdir_times():
    os.mkdir("d")
    links = nlink(".")
    r = watch(lambda: os.rmdir("d"), ".")
    r.update(parent_nlink_delta=nlink(".") - links, listing=listing())
    return r


# -- truncate(2), ftruncate(2), posix_fallocate(3) -------------------------------------
expect("truncate_dir", "EISDIR", "d/", os.truncate, "d", 0)
expect("truncate_missing", "ENOENT", "", os.truncate, "nope", 0)
expect("ftruncate_negative", "EINVAL", "f", lambda: os.ftruncate(os.open("f", O_WRONLY), -1))


def truncated(name, new_size, via_fd=False, watch_parent=True):
    """A case: 'abc' cut or grown to new_size by path or by fd; times and content after."""

    def run():
        put("f", b"abc")
        fd = os.open("f", O_WRONLY) if via_fd else None
        op = (lambda: os.ftruncate(fd, new_size)) if via_fd else (lambda: os.truncate("f", new_size))
        r = watch(op, "f", *(["."] if watch_parent else []))
        if via_fd:
            os.close(fd)
        r["content"] = content("f")
        return r

    run.__name__ = name
    case()(run)


truncated("truncate_grow", 10)
truncated("truncate_shrink", 1)
truncated("truncate_same_size", 3, watch_parent=False)
truncated("ftruncate_grow", 8, via_fd=True)
truncated("ftruncate_shrink", 2, via_fd=True)
truncated("ftruncate_same_size", 3, via_fd=True, watch_parent=False)


@case("EINVAL")
def truncate_negative():
    put("f", b"abc")
    r = result(os.truncate, "f", -1)
    r["size"] = size("f")
    return r


@case("EINVAL")  # ftruncate(2): "EBADF or EINVAL: fd is not open for writing"; Linux says EINVAL
def ftruncate_rdonly_fd():
    put("f", b"abc")
    fd = os.open("f", O_RDONLY)
    r = result(os.ftruncate, fd, 0)
    os.close(fd)
    r["size"] = size("f")
    return r


@case()
def posix_fallocate():
    put("f", b"abc")
    fd = os.open("f", O_RDWR)
    r = result(os.posix_fallocate, fd, 0, 8192)
    os.close(fd)
    r.update(size=size("f"), head=content("f")[:4])
    return r


# -- chmod(2) ------------------------------------------------------------------------
expect("chmod_missing", "ENOENT", "", os.chmod, "nope", 0o600)


def chmodded(name, setup, path, new_mode):
    """A case: chmod path to new_mode; the mode read back."""

    def run():
        make(setup)
        r = result(os.chmod, path, new_mode)
        r["mode"] = mode(path)
        return r

    run.__name__ = name
    case()(run)


chmodded("chmod_file_group_other_bits", "f", "f", 0o754)
chmodded("chmod_dir_group_other_bits", "d/", "d", 0o751)
chmodded("chmod_setuid", "f", "f", 0o4700)
chmodded("chmod_dir_sticky", "d/", "d", 0o1700)
chmodded("chmod_user_exec_kept", "f", "f", 0o700)


@case()
def chmod_file_0400():
    put("f", b"x")
    r = watch(lambda: os.chmod("f", 0o400), "f", ".")
    r["mode"] = mode("f")
    return r


@case()
def chmod_dir_times():
    os.mkdir("d")
    r = watch(lambda: os.chmod("d", 0o700), "d", ".")
    r["mode"] = mode("d")
    return r


@case()
def fchmod():
    put("f")
    fd = os.open("f", O_RDONLY)
    r = watch(lambda: os.chmod(fd, 0o400), "f")
    os.close(fd)
    r["mode"] = mode("f")
    return r


# -- chown(2) ------------------------------------------------------------------------
expect("chown_other_uid", "EPERM", "f", os.chown, "f", 0, -1)
expect("chown_other_gid", "EPERM", "f", os.chown, "f", -1, 0)


@case()
def chown_to_self():
    put("f")
    r = watch(lambda: os.chown("f", os.getuid(), os.getgid()), "f")
    r["mine"] = mine("f")
    return r


@case()
def chown_minus_one():
    put("f")
    return watch(lambda: os.chown("f", -1, -1), "f")


# -- utimensat(2) --------------------------------------------------------------------
expect("utime_invalid_nsec", "EINVAL", "f", utimensat, "f", (0, 10**9), (0, 0))
expect("utime_missing", "ENOENT", "", os.utime, "nope")


def utimed(name, setup, op, path="f", past=False):
    """A case: op sets times on path; which times changed, and atime/mtime read back."""

    def run():
        make(setup)
        if past:
            old_times(path)
        r = watch(op, path)
        st = os.stat(path)
        r.update(atime=st.st_atime_ns, mtime=st.st_mtime_ns)
        return r

    run.__name__ = name
    case()(run)


utimed("utime_explicit", "f", lambda: os.utime("f", ns=(1234567890123456789, 1300000000987654321)))
utimed("utime_dir", "d/", lambda: os.utime("d", ns=(7 * 10**17, 8 * 10**17)), path="d")
utimed("utime_pre_epoch", "f", lambda: os.utime("f", ns=(-86400 * 10**9 + 7, -500_000_000)))
utimed("utime_far_future", "f", lambda: os.utime("f", ns=(2**33 * 10**9 + 1, 2**33 * 10**9 + 2)))
utimed("utime_omit_atime", "f", lambda: utimensat("f", (0, UTIME_OMIT), (5, 6)), past=True)
utimed("utime_omit_both", "f", lambda: utimensat("f", (0, UTIME_OMIT), (0, UTIME_OMIT)), past=True)
utimed("futimens", "f", lambda: os.utime(os.open("f", O_RDONLY), ns=(2 * 10**18, 3 * 10**18)))


@case()
def utime_now():
    put("f")
    old_times("f")
    r = watch(lambda: os.utime("f"), "f")
    st = os.stat("f")
    r["a_is_m"] = st.st_atime_ns == st.st_mtime_ns
    return r


@case()
def utime_omit_mtime():
    put("f")
    old_times("f")
    r = watch(lambda: utimensat("f", (0, UTIME_NOW), (0, UTIME_OMIT)), "f")
    r["mtime"] = os.stat("f").st_mtime_ns
    return r


# -- link, symlink, mknod, mkfifo, sockets -------------------------------------------
expect("symlink", "ok", "f", os.symlink, "f", "l")
expect("mkfifo", "ok", "", os.mkfifo, "p", 0o600)
expect("mknod_fifo", "ok", "", os.mknod, "p", 0o600 | stat.S_IFIFO)
expect("mknod_chardev", "EPERM", "", os.mknod, "c", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
expect("readlink_regular", "EINVAL", "f", os.readlink, "f")


@case()
def link():
    put("f")
    r = result(os.link, "f", "g")
    r["nlink"] = nlink("f")
    return r


@case()
def mknod_regular():
    r = result(os.mknod, "f", 0o600 | stat.S_IFREG)
    st = os.stat("f")
    r.update(mode=mode("f"), size=st.st_size, reg=stat.S_ISREG(st.st_mode))
    return r


@case()
def socket_bind():
    s = socket.socket(socket.AF_UNIX)
    r = result(s.bind, "s")
    s.close()
    return r


# -- statfs(2) -----------------------------------------------------------------------
expect("statvfs_missing", "ENOENT", "", os.statvfs, "nope")


@case()
def statvfs_dir():
    v = os.statvfs(".")
    return {"result": "ok", "namemax": v.f_namemax, "sane": v.f_bsize > 0 and v.f_blocks > 0}


@case()
def fstatvfs_file():
    put("f")
    fd = os.open("f", O_RDONLY)
    v = os.fstatvfs(fd)
    os.close(fd)
    return {"result": "ok", "namemax": v.f_namemax}


# -- extended attributes -------------------------------------------------------------
expect("setxattr", "ok", "f", os.setxattr, "f", "user.k", b"v")
expect("getxattr_missing", "ENODATA", "f", os.getxattr, "f", "user.k")
expect("removexattr_missing", "ENODATA", "f", os.removexattr, "f", "user.k")


@case()
def listxattr():
    put("f")
    names = []
    r = result(lambda: names.extend(os.listxattr("f")))
    r["names"] = names if r["result"] == "ok" else None
    return r


# -- permissions: the owner's bits, as a non-root uid ---------------------------------
expect("perm_open_0400_wronly", "EACCES", "f:400", os.open, "f", O_WRONLY)
expect("perm_open_0400_rdwr", "EACCES", "f:400", os.open, "f", O_RDWR)
expect("perm_open_0400_rdonly", "ok", "f:400", os.open, "f", O_RDONLY)
expect("perm_open_0200_rdonly", "EACCES", "f:200", os.open, "f", O_RDONLY)
expect("perm_open_0200_wronly", "ok", "f:200", os.open, "f", O_WRONLY)
expect("perm_chmod_back_and_write", "ok", "f:400 f:600", write_fd, "f", b"y")
expect("perm_utime_now_0400", "ok", "f:400", os.utime, "f")
expect("perm_mkdir_in_0500_dir", "EACCES", "d/:500", os.mkdir, "d/e")
expect("perm_unlink_in_0500_dir", "EACCES", "d/ d/f d/:500", os.unlink, "d/f")
expect("perm_rename_out_of_0500_dir", "EACCES", "d/ d/f d/:500", os.rename, "d/f", "g")
expect("perm_stat_in_0600_dir", "EACCES", "d/ d/f d/:600", os.stat, "d/f")
expect("perm_open_in_0600_dir", "EACCES", "d/ d/f d/:600", os.open, "d/f", O_RDONLY)
expect("perm_chdir_0600_dir", "EACCES", "d/:600", os.chdir, "d")
expect("perm_listdir_0300_dir", "EACCES", "d/ d/f d/:300", os.listdir, "d")


@case("EACCES")
def perm_open_0400_rdonly_trunc():
    make("f:400")
    r = result(os.open, "f", O_RDONLY | O_TRUNC)
    r["size"] = size("f")
    return r


@case("EACCES")
def perm_truncate_0400():
    make("f:400")
    r = result(os.truncate, "f", 0)
    r["size"] = size("f")
    return r


@case("EACCES")
def perm_create_in_0500_dir():
    make("d/:500")
    r = result(put, "d/f")
    r["listing"] = os.listdir("d")
    return r


@case()
def perm_fd_outlives_chmod_0400():
    put("f", b"abc")
    fd = os.open("f", O_WRONLY)
    os.chmod("f", 0o400)
    r = {"write": attempt(os.write, fd, b"x"), "ftruncate": attempt(os.ftruncate, fd, 2)}
    os.close(fd)
    return {"result": "ok", **r, "content": content("f")}


@case()
def perm_access():
    make("r:400 w:200 x:700")
    bits = (os.R_OK, os.W_OK, os.X_OK)
    return {"result": "ok", **{p: [os.access(p, b) for b in bits] for p in ("r", "w", "x")}}


# -- directories, fsync, mmap, locks, copies -----------------------------------------
@case()
def readdir_listing():
    make("a b c/")
    with os.scandir(".") as it:
        entries = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_file()) for e in it)
    return {"result": "ok", "entries": entries}


@case()
def dir_nlink_counts_subdirs():
    make("d/ d/a/ d/b/ d/f")
    return {"result": "ok", "nlink": nlink("d")}


@case()
def fsync_file_and_dir():
    put("f", b"x")
    fd = os.open("f", O_RDWR)
    r = {"file": attempt(os.fsync, fd), "fdatasync": attempt(os.fdatasync, fd)}
    os.close(fd)
    dfd = os.open(".", O_RDONLY | O_DIRECTORY)
    r["dir"] = attempt(os.fsync, dfd)
    os.close(dfd)
    return {"result": "ok", **r}


@case()
def open_dir_follows_its_renames():
    """A directory's fd is the directory, not its name: it lists and fsyncs what moved,
    lists nothing once removed, and fsync on it still succeeds (t5_model, seed 33)."""
    make("a/ a/x")
    dfd = os.open("a", O_RDONLY | O_DIRECTORY)
    try:
        os.rename("a", "b")
        os.mkdir("a")  # another folder at the old name: not the one held open
        put("a/other")
        r = {"moved": sorted(os.listdir(dfd)), "fsync moved": attempt(os.fsync, dfd)}
        os.unlink("b/x")
        os.rmdir("b")
        r.update({"removed": sorted(os.listdir(dfd)), "fsync removed": attempt(os.fsync, dfd)})
    finally:
        os.close(dfd)
    return {"result": "ok", **r}


@case()
def mmap_shared_write():
    put("f", b"abcdefgh")
    fd = os.open("f", O_RDWR)
    m = mmap.mmap(fd, 8)
    m[0:3] = b"XYZ"
    m.flush()
    m.close()
    os.close(fd)
    return {"result": "ok", "content": content("f")}


@case()
def posix_locks():
    put("f", b"x")
    fd = os.open("f", O_RDWR)
    r = {"lockf": attempt(fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)}
    r["flock"] = attempt(fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    return {"result": "ok", **r}


@case()
def copy_file_range():
    put("a", b"0123456789")
    put("b")
    src, dst = os.open("a", O_RDONLY), os.open("b", O_WRONLY)
    r = result(os.copy_file_range, src, dst, 10)
    os.close(src)
    os.close(dst)
    r["b"] = content("b")
    return r


@case()
def o_tmpfile():
    r = result(lambda: os.close(os.open(".", os.O_TMPFILE | O_WRONLY, 0o600)))
    r["listing"] = listing()
    return r


def main(root):
    os.umask(0o077)  # what memfs shows anyway for private files: 0600, folders 0700
    for fn in CASES:
        here = os.path.join(root, fn.__name__)
        os.mkdir(here)
        os.chdir(here)
        try:
            rec = fn()
        except Exception as e:
            rec = {"crash": f"{type(e).__name__}: {e}".replace(root, "<dir>")}
        print(json.dumps({"case": fn.__name__, **rec}, sort_keys=True), flush=True)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
'''

_driver: dict = {"__name__": "conformance_driver"}
exec(compile(DRIVER, "conformance_driver", "exec"), _driver)  # defines the cases, runs none
CASES: list[str] = [fn.__name__ for fn in _driver["CASES"]]
EXPECT: dict[str, str] = _driver["EXPECT"]


def drive(m: Mount, where: Path) -> dict[str, dict]:
    res = m.run(ALICE, [SYS_PYTHON, "-c", DRIVER, str(where)], cwd=where)
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r.pop("case") for r in records] == CASES, res.stderr
    return dict(zip(CASES, records, strict=True))


@pytest.fixture(scope="module")
def runs():
    """The driver once per module, as alice, in a folder of memfs and in a native folder of
    hers. (base_dir/make_mount are per test; this makes its base the same way.)"""
    base = Path(tempfile.mkdtemp(prefix="memfs-test-", dir="/tmp"))
    os.chmod(base, 0o755)  # alice must reach the mountpoint and her native folder below it
    (base / "m").mkdir(mode=0o755)
    m = Mount(base / "m", DEFAULT_CONFIG)
    try:
        m.start()
        m.sh(ALICE, "mkdir conf")
        native = base / "native"
        native.mkdir()
        os.chown(native, ALICE, ALICE)
        os.chmod(native, 0o700)
        yield {"memfs": drive(m, m.mnt / "conf"), "native": drive(m, native)}
        m.stop()
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def _param(case: str):
    marks = [pytest.mark.xfail(strict=True, reason=BUGS[case])] if case in BUGS else []
    return pytest.param(case, id=case, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(runs, case):
    """memfs gives what the native run gives, or exactly the intended difference."""
    native, memfs = runs["native"][case], runs["memfs"][case]
    expected = dict(native)
    if case in DIFFERENCES:
        override, why = DIFFERENCES[case]
        expected.update(override)
        assert native != expected, f"listed as a difference ({why}), but the native run gives it too"
    assert memfs == expected


def test_native_run_gives_the_documented_results(runs):
    """The reference itself: natively every case gives what Linux documents, and no case crashed."""
    assert {c: r.get("crash", r["result"]) for c, r in runs["native"].items()} == EXPECT


def test_tables_name_real_cases():
    assert len(CASES) == len(set(CASES))
    assert not (set(DIFFERENCES) | set(BUGS)) - set(CASES)
