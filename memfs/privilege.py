"""Least privilege: root mounts, the daemon user serves.

`memfs mount` starts as root (it must: mount(2) and allow_other), but nothing that reads
callers' names, file content or a remote's commits runs as root:
1. as root: DATA/ is handed to the daemon user (`own_data`: everything the first time,
   then what root-run tools may have left: state/, index/, the repositories' own files);
2. `lower`: the real and effective ids become the daemon user's, root kept only as the
   saved uid, so every file the daemon makes is the daemon user's;
3. `raised` for pyfuse3.init alone (the kernel records the daemon user as the mount's
   owner, so the daemon can unmount itself later through fusermount3) and the pid file;
4. `drop`: the saved uid goes too. From here the process cannot become root again.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OWNER_MARK = "owner"  # DATA/state/: "uid:gid" DATA/ was last handed to


class PrivilegeError(Exception):
    """The daemon user cannot be had; the message says what to do."""


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    home: str


def service_user(name: str) -> ServiceUser | None:
    """The user the daemon serves as; None when there is nothing to drop (not root, or
    configured to stay root)."""
    if os.geteuid() != 0 or name == "root":
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            f"daemon user {name!r} does not exist: create it (useradd --system --user-group "
            f"--no-create-home {name}; scripts/install does) or set daemon: {{user: root}}"
        ) from None
    if pw.pw_uid == 0:
        return None
    return ServiceUser(name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def _chown_tree(top: Path, uid: int, gid: int, recurse: bool = True) -> int:
    """lchown what below `top` is not uid:gid yet (never following a link). Returns how many."""
    changed = 0
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.lchown(e.path, uid, gid)
                    changed += 1
                if recurse and stat.S_ISDIR(st.st_mode):
                    stack.append(Path(e.path))
    return changed


def own_data(data: Path, user: ServiceUser, whole: bool = False) -> int:
    """Hand DATA/ to the daemon user (as root, before lowering). The whole tree when it was
    last someone else's (a DATA/ written by an older root daemon: migrated here); else
    the parts root-run tools (doctor, reindex, import) may have touched since."""
    uid, gid = user.uid, user.gid
    mark = data / "state" / OWNER_MARK
    whole = whole or data.stat().st_uid != uid
    try:
        whole = whole or mark.read_text().strip() != f"{uid}:{gid}"
    except OSError:
        whole = True
    os.lchown(data, uid, gid)
    if whole:
        changed = _chown_tree(data, uid, gid)
        mark.write_text(f"{uid}:{gid}\n")
        os.lchown(mark, uid, gid)
        return changed
    changed = _chown_tree(data, uid, gid, recurse=False)
    # the files (an admin's edit behind memfs's back), state/ and index/ (doctor, reindex)
    for sub in ("private", "teams", "state", "index"):
        changed += _chown_tree(data / sub, uid, gid)
    for kind in (data / "history").glob("*"):
        changed += _chown_tree(kind, uid, gid, recurse=False)
        for repo in kind.glob("*.git"):
            changed += _chown_tree(repo, uid, gid, recurse=False)
    return changed


def hand_over(data: Path, name: str, whole: bool) -> None:
    """After a root-run tool wrote into DATA/ (import: users' files, reindex: the index):
    give what it made to the daemon user, who must manage it."""
    user = service_user(name)
    if user is not None and data.exists():
        own_data(data, user, whole)


def lower(user: ServiceUser, data: Path) -> None:
    """Act as the daemon user; root stays only as the saved uid, for `raised`."""
    os.setgroups([])
    os.setresgid(user.gid, user.gid, 0)
    os.setresuid(user.uid, user.uid, 0)
    try:
        os.listdir(data / "state")
    except PermissionError:
        raise PrivilegeError(
            f"the daemon user {user.name} cannot reach {data}: a folder above it is closed to "
            f"others (each needs o+x, e.g. chmod o+x {data.parent})"
        ) from None
    os.environ["HOME"] = user.home  # git's own config and credentials: the daemon user's
    os.environ["USER"] = os.environ["LOGNAME"] = user.name


@contextmanager
def raised(user: ServiceUser | None) -> Iterator[None]:
    """Root for the block (mount, pid file), the real uid staying the daemon user's: the
    kernel records it as the mount's owner."""
    if user is None:
        yield
        return
    os.setresuid(-1, 0, -1)
    try:
        yield
    finally:
        os.setresuid(-1, user.uid, -1)


def drop(user: ServiceUser | None) -> None:
    """No way back to root: the saved ids go too."""
    if user is None:
        return
    with raised(user):  # the saved gid changes only as root
        os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise PrivilegeError("could not drop root")
