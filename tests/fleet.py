"""A fleet of memfs hosts syncing through a real sshd on 127.0.0.1, for t5_fleet (bounded)
and scripts/bench_fleet.py (larger): several uids write, rename and delete in the team
scope and their private scopes on every host, seeded; one host is cut off from the remote
for a while (its own proxy, tests/proxy.py), one is killed with SIGKILL and restarted.
Then: every host must hold the same files, and every version a close() reported must be
in a file, a conflict copy or the history of every host."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpu import tree_cpu
from proxy import Proxy
from sshd import Sshd

from memfs import client
from memfs.sync.transport import control_path

UIDS = {"alice": 1001, "bob": 1002, "carol": 1003}
CONFIG = """
users:
  alice: {{uid: 1001, remote: '{url}/alice.git'}}
  bob: {{uid: 1002}}
  carol: {{uid: 1003, remote: '{url}/carol.git'}}
teams:
  eng: {{members: [alice, bob, carol], remote: '{url}/eng.git'}}
sync:
  interval: {interval}
  idle_interval: {idle}
  ssh: {{key: {key}, known_hosts: {known}}}
"""
# scope -> its folder in DATA, its history repository, and who writes it (a private scope
# with a remote is its user's alone; bob's private memory has no remote and is not synced)
SCOPES = {
    "team:eng": ("teams/eng", "history/teams/eng.git", ("alice", "bob", "carol")),
    "private:alice": ("private/alice", "history/private/alice.git", ("alice",)),
    "private:carol": ("private/carol", "history/private/carol.git", ("carol",)),
}
NAMES = [f"n{i}.md" for i in range(6)] + [f"notes/m{i}.md" for i in range(3)]


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Host:
    mount: object  # conftest.Mount
    proxy: Proxy
    cpu_before: float = 0.0  # CPU of daemons of this host that ended (killed)
    pid: int | None = None
    alive: bool = True

    def cpu(self) -> float:
        if not self.alive or self.pid is None:
            return self.cpu_before
        masters = str(control_path(self.mount.data / "state")).encode()  # ssh's shared connections
        return self.cpu_before + tree_cpu(self.pid, also=masters)


@dataclass
class Fleet:
    base: Path
    make: object  # (config, sub, env) -> a started conftest.Mount
    n_hosts: int = 5
    interval: float = 1.0
    idle: float = 5.0
    seed: int = 1
    hosts: list[Host] = field(default_factory=list)
    versions: dict[str, set[bytes]] = field(default_factory=dict)  # scope -> every closed version
    ops: int = 0
    journal: list[str] = field(default_factory=list)  # what each op did, for a failure's message

    def start(self) -> Fleet:
        self.sshd = Sshd(self.base).start()
        remotes = self.base / "remotes"
        remotes.mkdir()
        for name in ("eng", "alice", "carol"):
            self.sshd.repo(remotes / f"{name}.git")
        for i in range(self.n_hosts):
            proxy = Proxy(self.sshd.port).start()
            self.sshd.trust(proxy.port)
            cfg = CONFIG.format(
                url=self.sshd.url(remotes, proxy.port),
                interval=self.interval,
                idle=self.idle,
                key=self.sshd.key,
                known=self.sshd.known_hosts,
            )
            m = self.make(cfg, sub=f"host{i}", env={"MEMFS_HOST": f"host{i}"})
            self.hosts.append(Host(m, proxy, pid=m.pid()))
        self.rng = random.Random(self.seed)
        return self

    def stop(self) -> None:
        for h in self.hosts:
            h.proxy.cut()
        self.sshd.stop()

    # -- what callers do ----------------------------------------------------------------
    def step(self) -> None:
        """One caller's change on one live host: write (new or over), rename or delete."""
        rng = self.rng
        host = rng.choice([h for h in self.hosts if h.alive])
        user = rng.choice(list(UIDS))
        scopes = [s for s, (_, _, who) in SCOPES.items() if user in who]
        scope = rng.choice(scopes)
        prefix = "team/" if scope == "team:eng" else ""
        name, other = rng.choice(NAMES), rng.choice(NAMES)
        what = rng.choices(["write", "rename", "delete"], weights=[6, 2, 1])[0]
        self.ops += 1
        if what == "write":
            text = f"{scope} {user} host{self.hosts.index(host)} op{self.ops} {rng.random()}"
            script = f"mkdir -p {prefix}notes; printf '%s\\n' '{text}' > {prefix}{name}"
        elif what == "rename":
            script = f"mkdir -p {prefix}notes; mv {prefix}{name} {prefix}{other}"
        else:
            script = f"rm -f {prefix}{name}"
        rc = host.mount.sh(UIDS[user], script, check=False).returncode
        if what == "write" and rc == 0:
            self.versions.setdefault(scope, set()).add(text.encode() + b"\n")  # close() said yes
        self.journal.append(f"op{self.ops} host{self.hosts.index(host)} {user}: {script} -> {rc}")

    def kill(self, i: int) -> None:
        """SIGKILL, once the host's history has committed what callers wrote: a version
        overwritten inside history's batch (2 s) is kept only in the spool until the batch
        commits, and a SIGKILL loses it (README, History); that is not sync's to fix."""
        h = self.hosts[i]
        deadline = time.monotonic() + 120
        while any(s["history_waiting"] or s["history_lag"] for s in client.admin(h.mount.mnt)["scopes"]):
            assert time.monotonic() < deadline, "history did not commit within 120 s"
            time.sleep(0.05)
        h.cpu_before = h.cpu()
        assert h.pid is not None
        os.kill(h.pid, signal.SIGKILL)
        while Path(f"/proc/{h.pid}").exists() and "Z" not in _state(h.pid):
            time.sleep(0.01)
        h.alive = False

    def restart(self, i: int) -> None:
        h = self.hosts[i]
        h.mount.start()  # clears the dead mount; reconcile commits what the killed one had not
        h.pid, h.alive = h.mount.pid(), True

    # -- what must hold -----------------------------------------------------------------
    def trees(self) -> list[dict[str, dict[str, bytes]]]:
        """Each host's synced scopes as files on disk (path -> bytes), read past the mount."""
        out = []
        for h in self.hosts:
            scopes = {}
            for scope, (folder, _, _) in SCOPES.items():
                top = h.mount.data / folder
                files = {}
                for p in top.rglob("*") if top.exists() else []:
                    if p.is_file() and ".memfs-sync-" not in p.name:
                        files[str(p.relative_to(top))] = p.read_bytes()
                scopes[scope] = files
            out.append(scopes)
        return out

    def converged(self) -> bool:
        trees = self.trees()
        return all(t == trees[0] for t in trees[1:])

    def lost(self) -> list[str]:
        """Versions a close() reported that some host holds in no file and no commit."""
        missing = []
        for h in self.hosts:
            for scope, (_, repo, _) in SCOPES.items():
                gitdir = h.mount.data / repo
                res = subprocess.run(
                    ["git", "--git-dir", str(gitdir), "rev-list", "--objects", "--all"],
                    capture_output=True,
                    text=True,
                )
                known = {ln.split()[0] for ln in res.stdout.splitlines() if ln}
                files = {blob_id(b) for b in self.trees()[self.hosts.index(h)][scope].values()}
                for v in self.versions.get(scope, ()):
                    if blob_id(v) not in known | files:
                        missing.append(f"host{self.hosts.index(h)} {scope}: {v!r}")
        return missing


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


def scenario(fleet: Fleet, ops: int, cut: int = 1, killed: int = 2) -> dict:
    """The seeded run: a third of the ops, `cut` loses the remote; another third, `killed`
    is killed; the cut ends; the rest, `killed` comes back midway. Then the wait for every
    host to agree (timed from the last write) and the check that nothing was lost."""
    t0, cpu0 = time.monotonic(), [h.cpu() for h in fleet.hosts]
    third = max(1, ops // 3)
    for i in range(ops):
        if i == third:
            fleet.hosts[cut].proxy.cut()
        if i == 2 * third:
            fleet.kill(killed)
        if i == 2 * third + third // 2:
            fleet.hosts[cut].proxy.start()
        if i == ops - third // 3 - 1:
            fleet.restart(killed)
        fleet.step()
    last = time.monotonic()
    deadline = last + 300
    while not fleet.converged():
        if time.monotonic() > deadline:
            raise AssertionError("the hosts did not converge within 300 s")
        time.sleep(0.2)
    done = time.monotonic()
    return {
        "ops": ops,
        "versions": sum(len(v) for v in fleet.versions.values()),
        "converged_s": done - last,
        "run_s": done - t0,
        "cpu_s": [h.cpu() - c for h, c in zip(fleet.hosts, cpu0, strict=True)],
        "lost": fleet.lost(),
    }
