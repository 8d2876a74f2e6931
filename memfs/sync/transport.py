"""How sync reaches a remote: the git CLI with the daemon's own ssh settings, the remote's
head asked for cheaply before any fetch, and git's failures told as what broke.

ssh remotes share one connection per server (ControlMaster/ControlPersist): a check is a
channel on it, not a login (bench_sync: a login costs sshd and the client tens of ms of
CPU, a channel a few). The key and known hosts come from `sync.ssh` in the config; an
admin's GIT_SSH_COMMAND still wins (ssh takes the first value it is given for an option).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pygit2

GIT_TIMEOUT = 120
PERSIST = "15m"  # an idle shared connection lives this long (idle checks come more often)
# A unix socket path holds at most 107 bytes; ssh adds ".XXXXXXXXXXXXXXXX" while making it.
_SOCKET_ROOM = 107 - 41 - 17


class SyncError(Exception):
    """A round failed; `kind` says what broke (see explain), the message git's own line."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind}: {self.args[0]}"


# What broke, from git's and ssh's words: the first line that says it wins. Order matters:
# ssh prints the cause, then git prints its generic "Could not read from remote repository".
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rx, re.I))
    for kind, rx in (
        ("host key", r"host key verification failed|host identification has changed|host key is known"),
        ("authentication", r"permission denied|authentication failed|could not read (username|password)"),
        (
            "unreachable",
            r"connection (refused|timed out|closed|reset)|could not resolve|no route to host|"
            r"network is unreachable|kex_exchange_identification|unable to connect|timed out|"
            # the server went away mid-transfer (sshd stopped during a push), or before the
            # handshake (an sshd under load dropping new sessions: MaxStartups)
            r"unexpected disconnect|remote end hung up|broken pipe",
        ),
        ("disk full", r"no space left on device|disk quota exceeded"),
        ("no repository", r"does not appear to be a git repository|repository not found|not found"),
        ("rejected", r"rejected|non-fast-forward|fetch first|protected branch"),
    )
)
# Servers' faults, not one repository's: the server is probed once per interval while they last.
SERVER_KINDS = frozenset({"host key", "authentication", "unreachable"})
# Lines that say nothing of the cause (git's generic trailer, ssh's and sshd's chatter for a
# user with no home).
_NOISE = re.compile(
    r"^(fatal: could not read from remote repository\.|please make sure you have the correct access|"
    r"and the repository exists\.|hint:|warning: permanently added|could not create directory|"
    r"failed to add the host to the list|could not chdir to home directory|to \S+$|$)",
    re.I,
)


def explain(stderr: str, fallback: str) -> SyncError:
    """git's first meaningful line, with what broke."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if not _NOISE.match(ln)]
    for ln in lines:
        for kind, rx in KINDS:
            if rx.search(ln):
                return SyncError(_bare(ln), kind)
    if lines:
        return SyncError(_bare(lines[0]))
    if "could not read from remote repository" in stderr.lower():  # ssh died without a word
        return SyncError(
            "the connection ended with no reason given (git: Could not read from remote)", "unreachable"
        )
    # Nothing said at all (or only "To <url>"): the other end went away without a word, as
    # an sshd under load drops a session; a refusal of git's own always says why.
    return SyncError(f"{fallback}: the connection ended with no reason given", "unreachable")


def _bare(line: str) -> str:
    return re.sub(r"^(fatal|error): ", "", line)[:300]


def control_path(state: Path) -> Path:
    """Where ssh's shared-connection sockets live: state/ssh, or for a deep DATA (a socket
    path holds 107 bytes) a short folder in /tmp named after it."""
    control = state / "ssh"
    if len(str(control)) > _SOCKET_ROOM:
        digest = hashlib.sha1(str(state).encode()).hexdigest()[:16]
        control = Path(tempfile.gettempdir()) / f"memfs-ssh-{digest}"
    return control


def _control_dir(state: Path) -> Path:
    control = control_path(state)
    try:
        control.mkdir(mode=0o700)
    except FileExistsError:
        st = control.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return Path(tempfile.mkdtemp(prefix="memfs-ssh-"))  # someone else's: not trusted
    return control


def is_local(url: str) -> bool:
    return not ("://" in url or (":" in url.split("/")[0] and not url.startswith("/")))


def server_of(url: str) -> str:
    """What scopes share a connection and an outage with: user@host:port, or the path."""
    if is_local(url):
        return url
    if "://" in url:
        u = urlsplit(url)
        return f"{u.scheme}://{u.username or ''}@{u.hostname or ''}:{u.port or ''}"
    return "ssh://" + url.split(":", 1)[0]  # scp-like: user@host:path


@dataclass(frozen=True)
class Transport:
    """The environment every sync git runs with."""

    env: dict[str, str]
    control_dir: Path | None

    @classmethod
    def make(
        cls, config: Path, state: Path, key: str | None, known_hosts: str | None, urls: list[str]
    ) -> Transport:
        # a folder for shared connections only where some remote goes through ssh
        control = _control_dir(state) if any(_ssh_target(u) is not None for u in urls) else None
        ssh = shlex.split(os.environ.get("GIT_SSH_COMMAND") or "ssh")
        ssh += ["-o", "BatchMode=yes"]  # never wait for a password
        if key is not None:
            ssh += ["-i", key, "-o", "IdentitiesOnly=yes"]
        if known_hosts is not None:
            ssh += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        shared = ("ControlMaster=auto", f"ControlPath={control}/%C", f"ControlPersist={PERSIST}")
        for opt in (*(shared if control else ()), "ConnectTimeout=10", "ServerAliveInterval=15"):
            ssh += ["-o", opt]
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_SYSTEM=str(config))
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        return cls(env, control)

    def git(self, args: list[str], gitdir: str, check: bool = True) -> subprocess.CompletedProcess:
        try:
            res = subprocess.run(
                ["git", "--git-dir", gitdir, *args],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            raise SyncError(f"git {args[0]} took over {GIT_TIMEOUT} s", "unreachable") from None
        if check and res.returncode != 0:
            raise explain(res.stderr, f"git {args[0]} failed (exit {res.returncode})")
        return res

    def head(self, url: str, gitdir: str) -> str | None:
        """The remote's main branch (None: it has none yet), asked before any fetch: a local
        path is read directly, a URL by `git ls-remote` (one channel, no objects)."""
        if is_local(url):
            try:
                ref = pygit2.Repository(url).references.get("refs/heads/main")
            except (pygit2.GitError, KeyError, ValueError, OSError):
                raise SyncError(f"'{url}' does not appear to be a git repository", "no repository") from None
            return str(ref.target) if ref is not None else None
        out = self.git(["ls-remote", url, "refs/heads/main"], gitdir).stdout.split()
        return out[0] if out else None

    def close(self, urls: list[str]) -> None:
        """End the shared connections (they would outlive the daemon by PERSIST), then
        their folder, once empty."""
        if self.control_dir is None:
            return
        ssh = shlex.split(self.env["GIT_SSH_COMMAND"])
        for url in {server_of(u): u for u in urls if not is_local(u)}.values():
            target = _ssh_target(url)
            if target is not None:
                subprocess.run([*ssh, "-O", "exit", *target], capture_output=True, timeout=10, env=self.env)
        try:
            self.control_dir.rmdir()
        except OSError:
            pass  # a connection still closing: its socket goes with it, the folder stays


def _ssh_target(url: str) -> list[str] | None:
    """ssh's destination for a remote that goes through ssh (ssh://, scp-like), else None."""
    if is_local(url):
        return None
    if "://" in url:
        u = urlsplit(url)
        if "ssh" not in u.scheme:
            return None  # git://, https://: no ssh
        port = ["-p", str(u.port)] if u.port else []
        return [*port, f"{u.username}@{u.hostname}" if u.username else (u.hostname or "")]
    return [url.split(":", 1)[0]]  # scp-like: user@host:path
