"""mount(8) and fstab: `memfs SOURCE MOUNTPOINT -o OPTIONS` -> `memfs mount ...`.

`mount -t fuse.memfs /var/lib/memfs /mnt/memory -o config=/etc/memfs/config.yaml` (or the
same line in /etc/fstab) makes fuse3's mount.fuse3 run `memfs SOURCE MOUNTPOINT -o OPTS`,
as it does for sshfs. SOURCE is the data directory. Options are memfs's own (`config=`,
`debug`) or the generic ones mount(8) and fstab add, which mean nothing to memfs.
"""

from __future__ import annotations

import os

# What mount(8), fstab and systemd put in OPTS on their own; memfs decides every access
# itself and always mounts read-write with nodev/nosuid semantics of its own.
IGNORED = {
    "rw", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail",
    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "async", "sync",
    "atime", "noatime", "relatime", "strictatime", "nodiratime", "diratime", "lazytime",
    "allow_other", "default_permissions", "owner", "group", "dirsync", "silent", "loud",
    "symfollow", "nosymfollow", "iversion", "noiversion", "mand", "nomand",
}  # fmt: skip
IGNORED_PREFIXES = ("x-systemd.", "x-", "comment=", "fsname=", "subtype=")


TAKES = " (memfs takes config=FILE and debug, and ignores mount(8)'s generic options)"


class HelperError(ValueError):
    """A mount(8) option memfs cannot honour; the message names it."""


def is_helper_call(argv: list[str], commands: set[str]) -> bool:
    """`memfs SOURCE MOUNTPOINT [-o OPTS]`: two paths where a command would be (mount(8)
    passes the mountpoint absolute; a mistyped command is not taken for a mount)."""
    return (
        len(argv) >= 2
        and argv[0] not in commands
        and "/" in argv[0]
        and argv[1].startswith("/")
        and not argv[0].startswith("-")
    )


def _options(rest: list[str]) -> list[str]:
    """The -o options among mount(8)'s helper arguments."""
    opts: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "-o" and i + 1 < len(rest):
            opts += [o for o in rest[i + 1].split(",") if o]
            i += 2
        elif arg.startswith("-o") and len(arg) > 2:
            opts += [o for o in arg[2:].split(",") if o]
            i += 1
        elif arg in ("-n", "-s", "-f", "-v"):  # mount(8)'s own flags, passed through to helpers
            i += 1
        else:
            raise HelperError(f"unexpected argument {arg!r} (usage: memfs SOURCE MOUNTPOINT -o OPTIONS)")
    return opts


def _one(opt: str) -> list[str] | str:
    """The `memfs mount` arguments for one option, or why it is refused."""
    key, eq, value = opt.partition("=")
    if key == "config" and eq and value:
        return ["--config", os.path.abspath(value)]
    if opt == "debug":
        return ["--debug"]
    if opt == "ro":
        return "'ro' (memfs mounts read-write only: access is per caller)"
    if opt in IGNORED or opt.startswith(IGNORED_PREFIXES):
        return []
    return repr(opt)


def translate(argv: list[str]) -> list[str]:
    """The `memfs mount` arguments for a mount(8) helper call."""
    source, mountpoint, rest = argv[0], argv[1], argv[2:]
    # Paths relative to where mount(8) ran would mean something else to the daemon.
    out = ["mount", os.path.abspath(mountpoint), "--data", os.path.abspath(source)]
    bad: list[str] = []
    for opt in _options(rest):
        got = _one(opt)
        if isinstance(got, str):
            bad.append(got)
        else:
            out += got
    if bad:  # every one at once: an fstab line is fixed in one edit, not one reboot per option
        raise HelperError(f"unknown mount option{'s' if len(bad) > 1 else ''} {', '.join(bad)}" + TAKES)
    return out
