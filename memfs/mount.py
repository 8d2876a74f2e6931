"""The daemon process: checks, pyfuse3 init/main/close, signals, background start."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import resource
import select
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import mounttable

if TYPE_CHECKING:
    from . import config as config_mod
    from .identity import Identities

log = logging.getLogger("memfs")

RUN_DIR = Path(os.environ.get("MEMFS_RUN_DIR", "/run/memfs"))
MOUNTED_CONFIG = "mounted-config"  # DATA/state/: the config the data was last mounted with
READY_TIMEOUT = 60.0


class MountError(Exception):
    """An expected failure to mount; the message is one line for a person."""


@dataclass
class MountSpec:
    mountpoint: Path
    data: Path
    config: Path | None
    debug: bool = False


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (systemd starts services at 1024):
    every open handle holds a backing fd. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, e)
    return soft


def tune_malloc(arenas: int = 2) -> None:
    """glibc gives threads malloc arenas of their own (up to 8 per core) and rarely returns
    their memory: with Tantivy's writer threads coming and going, RSS settled at twice the
    working set. Two arenas keep it near the working set (measured in scripts/bench --soak).
    Fixed thresholds too: glibc raises its mmap threshold (up to 32 MiB) each time a large
    block is freed, and its trim threshold with it, so after a burst freed heap stayed
    until the next malloc_trim. Blocks of 256 KiB and more are mapped (given back when
    freed), and more than 4 MiB free at the heap's top is given back at once."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    mallopt(-8, arenas)  # M_ARENA_MAX
    mallopt(-3, 256 << 10)  # M_MMAP_THRESHOLD (setting it stops the dynamic raise)
    mallopt(-1, 4 << 20)  # M_TRIM_THRESHOLD


def pidfile(mountpoint: Path) -> Path:
    key = hashlib.sha1(os.fsencode(mountpoint)).hexdigest()[:16]
    return RUN_DIR / f"{key}.pid"


def is_dead_mount(mountpoint: Path) -> bool:
    """A daemon that died leaves 'transport endpoint is not connected'."""
    try:
        os.stat(mountpoint)
        return False
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)


def clear_dead_mount(mountpoint: Path) -> bool:
    """Unmount what a dead daemon left; True if there was one."""
    if not is_dead_mount(mountpoint):
        return False
    log.warning("%s: clearing a dead mount left by a daemon that is gone", mountpoint)
    subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True, timeout=30)
    return True


def check(spec: MountSpec, clear_dead: bool = True) -> tuple[config_mod.Config, Identities]:
    """Everything that can be told to the caller before the daemon starts. A dead mount
    is cleared here only if `clear_dead`; `memfs mount` leaves it to the daemon, whose log
    then tells the unclean restart."""
    from .store import Store

    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        raise MountError(
            "FUSE is not available: install fuse3 (apt-get install fuse3) and load the fuse module"
        )
    mnt = spec.mountpoint
    if clear_dead:
        clear_dead_mount(mnt)
    elif is_dead_mount(mnt):
        return _load(spec)  # the daemon clears it, and says so in its own log
    # From /proc, not stat(): a live memfs with `unknown_uids: deny` refuses root's stat.
    what = mounttable.fstype(mnt)
    if what is not None:
        held = " by memfs" if what == mounttable.MEMFS_TYPE else f" ({what})"
        raise MountError(f"mountpoint {mnt} is busy: it is already mounted{held}")
    try:
        is_dir = stat.S_ISDIR(os.stat(mnt).st_mode)
    except FileNotFoundError:
        is_dir = False
    except OSError as e:
        raise MountError(f"mountpoint {mnt}: {e.strerror}") from None
    if not is_dir:
        raise MountError(f"mountpoint {mnt} does not exist or is not a directory (mkdir -p {mnt})")
    try:
        Store.init_layout(spec.data)
        probe = spec.data / "state" / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MountError(f"data directory {spec.data} is not writable: {e.strerror}") from None
    return _load(spec)


def _load(spec: MountSpec) -> tuple[config_mod.Config, Identities]:
    from . import config as config_mod
    from .identity import Identities

    cfg = config_mod.load(spec.config)
    return cfg, Identities(cfg)


def run(spec: MountSpec, ready_fd: int | None = None) -> int:
    """Mount and serve in this process until unmounted or signalled."""
    # Here, not at the top: `memfs umount`, `status` and the other commands that only
    # talk to a live mount load none of the daemon (~0.2 s of imports each).
    import pyfuse3
    import trio

    from . import background, daemon, guard, layout, mountnotes, prefork, privilege
    from . import config as config_mod
    from .history import gitrepo

    def report(line: str) -> None:
        if ready_fd is not None:
            try:
                os.write(ready_fd, line.encode() + b"\n")
                os.close(ready_fd)
            except OSError:
                pass

    background.allow_priority_back()
    try:
        cfg, ids = check(spec)
        user = privilege.service_user(cfg.daemon_user)
        if user is not None:
            moved = privilege.own_data(spec.data, user)
            if moved:
                log.info("data %s: %d entries handed to the daemon user %s", spec.data, moved, user.name)
            privilege.lower(user, spec.data)  # from here on every file the daemon makes is the daemon user's
            gitrepo.use_home(user.home)
    except (MountError, config_mod.ConfigError, privilege.PrivilegeError) as e:
        log.error("%s", e)
        report(f"error: {e}")
        return 1
    except OSError as e:
        log.error("cannot hand %s to the daemon user: %s", spec.data, e)
        report(f"error: cannot hand {spec.data} to the daemon user {cfg.daemon_user}: {e.strerror}")
        return 1

    if spec.debug:
        guard.enable_trace()
    options = set(pyfuse3.default_options)
    # The daemon decides every access itself; the kernel must not judge from shown modes.
    options.discard("default_permissions")
    options |= {"fsname=memfs", "subtype=memfs", "allow_other"}
    # Worker threads (index, views) hold the GIL between blocking calls; a shorter switch
    # interval bounds how long a handler waits for it behind them.
    sys.setswitchinterval(0.0005)
    tune_malloc()
    # A native stack overflow cannot be caught; deep recursion in C needs a deep stack.
    threading.stack_size(64 * 1024 * 1024)

    warning = mountnotes.warning(spec.data, spec.config, ids)  # listed while still root

    def mounted() -> None:
        privilege.drop(user)
        try:  # later commands given --data use the config this data was mounted with
            (spec.data / "state" / MOUNTED_CONFIG).write_text(f"{spec.config}\n")
        except OSError as e:
            log.warning("cannot record the config in %s: %s", spec.data / "state", e)
        nofile = raise_nofile()
        if nofile < 4 * cfg.limits.open_files:
            log.warning(
                "only %d file descriptors (hard limit): limits.open_files %d lets 4 uids take them all",
                nofile,
                cfg.limits.open_files,
            )
        log.info(
            "mounted %s (data %s, config %s: %s)",
            spec.mountpoint,
            spec.data,
            cfg.source,
            mountnotes.summary(cfg),
        )
        if warning is not None:  # INFO, not WARNING: it is the admin's choice, not a fault
            log.info("%s", warning)

    # Workers are forked from a copy of this process made now: imported, one thread, no
    # FUSE session yet (prefork.py).
    prefork.start(lambda: privilege.drop(user), background.NICE, layout.seed_socket(spec.data))
    where = (spec.data, spec.mountpoint, spec.config)
    try:
        return trio.run(daemon.run, cfg, ids, where, options, user, pidfile(spec.mountpoint), report, mounted)
    except BaseException:
        log.exception("daemon main loop failed")
        return 1
    finally:
        prefork.stop()


def start_background(spec: MountSpec) -> None:
    """Start the daemon detached; return once the mount is ready, else raise MountError."""
    log_path = spec.data / "state" / "memfs.log"
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "memfs", "mount", str(spec.mountpoint), "--foreground"]
    cmd += ["--data", str(spec.data), "--ready-fd", str(w), "--log-file", str(log_path)]
    if spec.config is not None:
        cmd += ["--config", str(spec.config)]
    if spec.debug:
        cmd.append("--debug")
    # What escapes logging (a crash in the interpreter itself) lands beside the log.
    with open(spec.data / "state" / "daemon.err", "ab") as logf:
        # The daemon's output goes to its log, never to our caller's pipes (which it would hold open).
        proc = subprocess.Popen(
            cmd,
            pass_fds=(w,),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            start_new_session=True,
        )
    os.close(w)
    deadline = time.monotonic() + READY_TIMEOUT
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                proc.kill()
                raise MountError(f"daemon did not become ready in {READY_TIMEOUT:.0f}s (see {log_path})")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(r)
    line = buf.decode(errors="replace").strip()
    if line == "ok":
        return
    if line.startswith("error: "):
        raise MountError(line[len("error: ") :])
    code = proc.wait(timeout=10)
    raise MountError(f"daemon exited with status {code} before mounting (see {log_path})")


def live_mounts() -> list[tuple[Path, Path, Path | None]]:
    """(mountpoint, data, config) of every live memfs daemon."""
    found = []
    for pf in RUN_DIR.glob("*.pid") if RUN_DIR.is_dir() else ():
        try:
            lines = pf.read_text().splitlines()
            pid, mnt, pdata = lines[:3]
        except (OSError, ValueError):
            continue
        # /proc, not kill(0) or stat(): a non-root caller may signal neither the daemon's
        # user nor (unknown_uids: deny) stat the mount, and must still find its config.
        if pid.isdigit() and _alive(int(pid)) and mounttable.is_memfs(Path(mnt)):
            found.append((Path(mnt), Path(pdata), Path(lines[3]) if len(lines) > 3 else None))
    return found


def mounts_of(data: Path) -> list[Path]:
    """Live mountpoints whose daemon serves this data directory."""
    return [mnt for mnt, pdata, _cfg in live_mounts() if pdata == data]


def config_of(data: Path | None = None, mountpoint: Path | None = None) -> tuple[Path | None, Path | None]:
    """The config a data directory (or a mountpoint) is served with, and the live mount
    serving it (None: not mounted now; the config is the one it was last mounted with)."""
    for mnt, pdata, cfg in live_mounts():
        if cfg is not None and (pdata == data or mnt == mountpoint):
            return cfg, mnt
    if data is not None:
        try:
            text = (data / "state" / MOUNTED_CONFIG).read_text().strip()
        except OSError:
            return None, None
        if text:
            return Path(text), None
    return None, None


def _alive(pid: int) -> bool:
    """Running, not just a zombie waiting for its parent (init) to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def umount(mountpoint: Path, timeout: float = 300.0, lazy: bool = False) -> str | None:
    """Unmount and wait for the daemon to finish (not with `lazy`: then the kernel detaches
    the mount at once and the daemon ends when the last process using it lets go).
    Returns a note for the caller, if any."""
    pid = None
    pf = pidfile(mountpoint)
    try:
        pid = int(pf.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    if clear_dead_mount(mountpoint):
        return None
    # From /proc, not stat(): `unknown_uids: deny` refuses root's stat of a live mount.
    what = mounttable.fstype(mountpoint)
    if what is None:
        raise MountError(f"{mountpoint} is not mounted")
    if what != mounttable.MEMFS_TYPE:
        raise MountError(f"{mountpoint} is a {what} mount, not memfs")
    users = mounttable.holders(mountpoint) if lazy else []  # after a lazy unmount /proc no longer names it
    cmd = ["fusermount3", "-uz" if lazy else "-u", str(mountpoint)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        reason = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "fusermount3 failed"
        raise MountError(f"cannot unmount {mountpoint}: {_why_busy(mountpoint, reason)}")
    if users:
        return f"detached {mountpoint}; its daemon ends once the {len(users)} processes using it let go"
    # Wait for the daemon to finish its shutdown work, so a remount finds the data free.
    if pid is not None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return None
            time.sleep(0.02)
        raise MountError(f"unmounted {mountpoint}, but daemon {pid} is still running after {timeout:.0f}s")
    return None


def _why_busy(mountpoint: Path, reason: str) -> str:
    """fusermount3's reason, and for EBUSY who holds the mount and what to do."""
    if "busy" not in reason.lower():
        return reason
    held = mounttable.holders(mountpoint)
    if not held:
        return f"{reason}; nothing visible in /proc holds it (another mount below it?)"
    who = ", ".join(str(h) for h in held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    return f"{reason}: in use by pid {who}; stop them, or memfs umount --lazy {mountpoint}"
