"""A real sshd on 127.0.0.1 as a git remote's transport, for the tests and the benches.

Started as a child of the calling process, on a free port, with its own host key, config
and authorized key in a temp dir. It logs in one user, `memfs-git`, whose shell is
git-shell, as on a git server (made once on this machine, like scripts/install's `memfs`).
Not root: root's ~/.bashrc here runs `pyenv init`, which bash sources for every ssh
command (100 ms of CPU per session that no git host spends). A remote is
`ssh://memfs-git@127.0.0.1:PORT/abs/path.git`, made by `repo()`. The client side (key and
known_hosts) is owned by the daemon user, as the README tells an admin to do.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from cpu import descendants, tree_cpu

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
GIT_USER = "memfs-git"


def git_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(GIT_USER)
    except KeyError:
        shell = shutil.which("git-shell") or "/usr/bin/git-shell"
        home = ["--no-create-home", "--home-dir", "/nonexistent"]
        # password "*": none to log in with, but not a locked account ("!"), which sshd refuses
        subprocess.run(["useradd", "--system", *home, "--shell", shell, "-p", "*", GIT_USER], check=True)
        return pwd.getpwnam(GIT_USER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Sshd:
    """sshd and the client files that reach it: `key`, `known_hosts` (owned by `owner`)."""

    def __init__(self, base: Path, owner: str = "memfs") -> None:
        self.dir = base / "sshd"
        self.dir.mkdir(mode=0o755, parents=True)
        self.port = free_port()
        host_key, self.key = self.dir / "host_key", self.dir / "client_key"
        for k in (host_key, self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        pub = (self.dir / "host_key.pub").read_text().split()
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        pw = pwd.getpwnam(owner)
        for f in (self.key, self.known_hosts):
            os.chown(f, pw.pw_uid, pw.pw_gid)  # ssh refuses a key that is not its user's
            os.chmod(f, 0o600)
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\nPermitRootLogin no\nAllowUsers {GIT_USER}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {self.dir / 'sshd.pid'}\nMaxStartups 1000\nMaxSessions 1000\nLogLevel ERROR\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "ab"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,  # its per-connection children too: killed as a group
        )
        deadline = time.monotonic() + 30
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(self.dir / 'sshd.log').read_text()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """sshd and every connection it serves (each runs in a session of its own, so
        killing sshd's group would leave open connections working)."""
        if self.proc is not None and self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
        self.proc = None

    def trust(self, port: int) -> None:
        """Known hosts: this server's key reached through another port too (a proxy)."""
        line = self.known_hosts.read_text().splitlines()[0].split(maxsplit=1)[1]
        with self.known_hosts.open("a") as f:
            f.write(f"[127.0.0.1]:{port} {line}\n")

    def repo(self, path: Path) -> Path:
        """A bare repository the git user owns (root's git in the tests may still push to it)."""
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
        pw = git_user()
        subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", str(path)], check=True)
        return path

    def url(self, path: Path, port: int | None = None) -> str:
        return f"ssh://{GIT_USER}@127.0.0.1:{port or self.port}{path}"

    def cpu(self) -> float:
        """CPU seconds of sshd and every process it served (logins, git on the server)."""
        assert self.proc is not None
        return tree_cpu(self.proc.pid)
