"""Who may do what on which scope. Pure functions; imports nothing of memfs."""

from __future__ import annotations

import enum
import errno
import functools
import os
import stat
import threading
import weakref
from dataclasses import dataclass, field

# Names in the private root that belong to memfs, never to a private file.
TEAM_NAME = b"team"
CONTROL_NAME = b".memfs"
RESERVED_ROOT_NAMES = frozenset({TEAM_NAME, CONTROL_NAME})

NAME_MAX = 255  # longer is ENAMETOOLONG (the kernel hands FUSE names split on '/', no NUL)


class Kind(enum.Enum):
    PRIVATE = "private"
    TEAM = "team"

    # Members are singletons compared by identity: hash them as objects too (C), not by
    # Enum's Python __hash__ of their name (a frame on every quota check of a write).
    __hash__ = object.__hash__


class Scope:
    """A private or team scope. One object per (kind, name) alive: scopes key the store's
    folder fds, the inode table, the quotas and the shown owners, several dict lookups per
    request, so a scope hashes and compares as the object it is (C), not by a Python
    __hash__/__eq__ (25 such calls per unlink, measured). Immutable."""

    __slots__ = ("kind", "name", "__weakref__")
    kind: Kind
    name: str

    # Alive scopes by (kind, name); weak, so names a caller makes up (a grant view's
    # owner) do not pile up. The lock keeps two threads from making two of one scope.
    _alive: weakref.WeakValueDictionary[tuple[Kind, str], Scope] = weakref.WeakValueDictionary()
    _making = threading.Lock()

    def __new__(cls, kind: Kind, name: str) -> Scope:
        key = (kind, name)
        with cls._making:
            scope = cls._alive.get(key)
            if scope is None:
                scope = object.__new__(cls)
                object.__setattr__(scope, "kind", kind)
                object.__setattr__(scope, "name", name)
                cls._alive[key] = scope
        return scope

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Scope is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Scope is immutable: cannot delete {name}")

    def __reduce__(self):
        return (Scope, (self.kind, self.name))  # unpickled (a worker) or copied: the one alive

    def __repr__(self) -> str:
        return f"Scope(kind={self.kind!r}, name={self.name!r})"

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Scope:
        """The inverse of str(): "private:alice" -> Scope(PRIVATE, "alice")."""
        kind, _, name = text.partition(":")
        return cls(Kind(kind), name)


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller as memfs sees it. `user` is None when the uid cannot be mapped."""

    uid: int
    gid: int
    user: str | None
    team: str | None = None
    readable: frozenset[str] = frozenset()  # owners whose private scope a grant lets us read
    # Made once (a principal is cached per uid): handlers ask for them on every request.
    private: Scope | None = field(init=False, repr=False, compare=False)
    team_scope: Scope | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "private", Scope(Kind.PRIVATE, self.user) if self.user else None)
        object.__setattr__(self, "team_scope", Scope(Kind.TEAM, self.team) if self.team else None)


# A caller fs._principal let through is mapped: its user and its private scope are set.
# These say so to the type checker (a Principal holds None for an unmapped uid).
def home(p: Principal) -> Scope:
    assert p.private is not None, "unmapped callers are refused first"
    return p.private


def user_of(p: Principal) -> str:
    assert p.user is not None, "unmapped callers are refused first"
    return p.user


class Access(enum.IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


def access(p: Principal, scope: Scope, view: bool = False) -> Access:
    """The most a principal may do in a scope; through a grant view (.memfs/users/<owner>/)
    at most read, whoever looks."""
    if view:
        return min(access(p, scope), Access.READ)
    if p.user is None:
        return Access.NONE
    if scope.kind is Kind.PRIVATE:
        if scope.name == p.user:
            return Access.WRITE
        if scope.name in p.readable:
            return Access.READ
        return Access.NONE
    if scope.kind is Kind.TEAM and scope.name == p.team:
        return Access.WRITE
    return Access.NONE


def readable_scopes(p: Principal) -> list[Scope]:
    """Every scope a principal may read: its own, its team's, and its grants' owners'."""
    if p.user is None:
        return []
    scopes = [home(p)]
    if p.team_scope is not None:
        scopes.append(p.team_scope)
    return scopes + [Scope(Kind.PRIVATE, o) for o in sorted(p.readable)]


def may_move(p: Principal, src: Scope, dst: Scope) -> bool:
    """A rename needs write access on both sides; that is how a note is promoted to the team."""
    return access(p, src) >= Access.WRITE and access(p, dst) >= Access.WRITE


def reserved_name_errno(exists_for_caller: bool, creating: bool) -> int:
    """A change to `team` or `.memfs` in the root: EEXIST/EPERM to create one (it exists
    for this caller or not), EBUSY/ENOENT to remove or move one, like a mount point."""
    if creating:
        return errno.EEXIST if exists_for_caller else errno.EPERM
    return errno.EBUSY if exists_for_caller else errno.ENOENT


def denied_errno(have: Access) -> int:
    """Refused: EACCES where the caller has no access, EROFS where it may only read."""
    return errno.EACCES if have == Access.NONE else errno.EROFS


@functools.lru_cache(maxsize=4096)  # every open asks; few distinct flags: a hit is C
def open_wants(flags: int) -> tuple[bool, bool]:
    """(reads, writes) of an open: O_TRUNC changes the file even when opened read-only."""
    acc = flags & os.O_ACCMODE
    return acc != os.O_WRONLY, acc != os.O_RDONLY or bool(flags & os.O_TRUNC)


RENAME_NOREPLACE = 1  # renameat2 flags memfs supports; EXCHANGE and WHITEOUT are refused


def rename_flags_supported(flags: int) -> bool:
    return not flags & ~RENAME_NOREPLACE


def may_refresh(p: Principal) -> bool:
    """Only root tells memfs that backing files changed behind its back (memfs import)."""
    return p.uid == 0


def sees_grant(p: Principal, owner: str) -> bool:
    """.memfs/users/<owner>/ exists for a caller only with a grant to read that owner."""
    return owner in p.readable


def chown_allowed(
    shown: tuple[int, int],
    uid: int | None,
    gid: int | None,
    caller: int | None = None,
    groups: frozenset[int] = frozenset(),
) -> bool:
    """chown may only name the owner and group already shown (accepted as a no-op that
    marks ctime); None is 'leave it' (-1). The owner may also name a group it belongs to,
    accepted and ignored: the group shown is the scope's, as in a setgid team folder, and
    cp -a and rsync -a set the source's group (rsync fails the copy when refused)."""
    if uid is not None and uid != shown[0]:
        return False
    return gid is None or gid == shown[1] or (caller == shown[0] and gid in groups)


def chmod_allowed(owner: int, caller: int, old_mode: int, new_mode: int) -> bool:
    """Only the owner changes a file's mode, as natively (a teammate cannot take a team
    file's bits away); a mode that stores as it is changes nothing and is let through."""
    return caller == owner or stored_mode(old_mode) == stored_mode(new_mode)


# The two below run on every getattr and lookup with few distinct arguments: cached, a
# call is lru_cache's C wrapper, with no Python frame (~1 us a request through a mount).
@functools.lru_cache(maxsize=4096)
def refused_file_type(mode: int) -> bool:
    """Only regular files and directories can be made safe; the rest is refused (EPERM)."""
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@functools.lru_cache(maxsize=4096)
def shown_mode(kind: Kind, backing_mode: int, team_has_group: bool = True) -> int:
    """Permission bits that tell the caller truthfully who may access: the owner only for
    private entries, the team's group too for team entries. Only the owner bits are stored.
    A team without a Unix group shows the bits to everyone: only members ever reach it."""
    owner = backing_mode & 0o700
    if kind is Kind.TEAM:
        perm = owner | (owner >> 3) | (0 if team_has_group else owner >> 6)
    else:
        perm = owner
    return stat.S_IFMT(backing_mode) | perm


# The mode bits a new file keeps of what its caller asked for: the owner's (u+x survives);
# group/other come from the scope. A mask, not a function: every create applies it.
STORED_MODE_BITS = 0o700


def stored_mode(mode: int) -> int:
    """The bits a file or folder keeps of `mode` (STORED_MODE_BITS)."""
    return mode & STORED_MODE_BITS


# owner_bits_allow's yes for a folder, as one mask test of its st_mode (every lookup below
# the root, every create and rm): a folder its owner may pass (u+x), and pass and change
# (u+wx). Anything else goes through the full check (fs_base._dir_allows) for its errno.
PASSABLE_FOLDER_MASK = stat.S_IFMT(0o177777) | stat.S_IXUSR
PASSABLE_FOLDER = stat.S_IFDIR | stat.S_IXUSR
CHANGEABLE_FOLDER_MASK = PASSABLE_FOLDER_MASK | stat.S_IWUSR
CHANGEABLE_FOLDER = PASSABLE_FOLDER | stat.S_IWUSR


def owner_bits_allow(mode: int, want_read: bool, want_write: bool, want_exec: bool = False) -> bool:
    """The caller is the owner class (private) or the group class mirroring it (team)."""
    if want_read and not mode & stat.S_IRUSR:
        return False
    if want_write and not mode & stat.S_IWUSR:
        return False
    if want_exec and not mode & stat.S_IXUSR:
        return False
    return True
