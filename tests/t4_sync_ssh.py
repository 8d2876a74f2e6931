"""Sync over ssh as an admin sets it up: a real sshd on 127.0.0.1 (tests/sshd.py) in front
of a bare repository, the daemon's own key and known hosts given by `sync.ssh` in the
config. What `.memfs/sync`, `memfs sync` and `memfs doctor` say when the remote is down or
its host key is wrong, and that a host catches up by itself within an interval of the
remote coming back."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ALICE, BOB, memfs_cmd, wait_for
from sshd import Sshd

from memfs import client

CONFIG = """
users:
  alice: {{uid: 1001}}
  bob: {{uid: 1002}}
teams:
  eng: {{members: [alice, bob], remote: '{remote}'}}
sync:
  interval: {interval}
  ssh: {{key: {key}, known_hosts: {known_hosts}}}
"""


@pytest.fixture
def sshd(base_dir):
    """Asked for before make_mount by every test here: set up first, so torn down after
    the mounts are (a mount whose remote went away first would log the failure)."""
    s = Sshd(base_dir).start()
    yield s
    s.stop()


def setup(make_mount, base_dir, sshd, n=2, interval=30, known_hosts=None, extra=""):
    remote = sshd.repo(base_dir / "remote.git")
    cfg = CONFIG.format(
        remote=sshd.url(remote), interval=interval, key=sshd.key, known_hosts=known_hosts or sshd.known_hosts
    )
    cfg += extra
    return remote, [make_mount(cfg, sub=f"host{i}", env={"MEMFS_HOST": f"host{i}"}) for i in range(n)]


def memfs_sync(m, uid):
    res = m.run(uid, memfs_cmd("sync", "--mount", str(m.mnt)), check=False)
    return res, client.parse_sync(res.stdout).scopes[0]


def remote_head(remote) -> str:
    res = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "-q", "--verify", "main"],
        text=True,
        capture_output=True,
    )
    return res.stdout.strip()


def test_over_ssh_what_moved_what_broke_and_catching_up(sshd, make_mount, base_dir):
    remote, (a, b) = setup(make_mount, base_dir, sshd)
    a.sh(ALICE, "echo one > team/one.md")
    res, st = memfs_sync(a, ALICE)
    assert res.returncode == 0, res.stdout
    assert st["last_round"]["pushed"] >= 1 and st["commits_waiting"] == 0, res.stdout
    assert res.stdout.startswith("# team:eng: pushed "), res.stdout  # a line for a person first
    res, st = memfs_sync(b, BOB)
    assert st["last_round"]["fetched"] and st["last_round"]["files"] == 1, res.stdout
    assert "took in 1 files" in res.stdout

    sshd.stop()  # the server goes away: "connection refused", not git's last line
    a.expect_log(r"team:eng: syncing with ssh://.* failed \(1\): unreachable: ssh: connect to host")
    a.sh(ALICE, "echo two > team/two.md")
    res, st = memfs_sync(a, ALICE)
    assert res.returncode == 1, res.stdout
    assert st["error"].startswith("unreachable: ssh: connect to host 127.0.0.1 port"), res.stdout
    assert st["error"].endswith("Connection refused"), res.stdout
    assert st["commits_waiting"] >= 1 and st["last_round"]["failed"] == "unreachable", res.stdout
    assert "FAILED: unreachable" in res.stdout
    doc = a.run(ALICE, memfs_cmd("doctor", "--mount", str(a.mnt)), check=False)
    assert doc.returncode != 0 and "FAIL sync: 1 of 1 remotes" in doc.stdout, doc.stdout
    assert "team:eng: unreachable: ssh: connect to host" in doc.stdout, doc.stdout


def test_a_host_catches_up_within_an_interval_of_the_remote_returning(sshd, make_mount, base_dir):
    """Down long enough that a doubling backoff would wait for a minute, the host probes the
    server every interval and pushes as soon as it answers."""
    remote, (a,) = setup(make_mount, base_dir, sshd, n=1, interval=0.2)
    a.sh(ALICE, "echo one > team/one.md")
    wait_for(lambda: remote_head(remote) != "", "the first push", 60)
    sshd.stop()
    a.expect_log(r"team:eng: syncing with ssh://.* failed \(\d+\): unreachable: ")
    # The server just back may refuse the first push (seen once in CI: "failed to push some
    # refs", retried 0.4 s later); what this test asks is the push within an interval.
    a.expect_log(r"team:eng: syncing with ssh://.* failed \(\d+\): failed: failed to push some refs")
    a.sh(ALICE, "echo two > team/two.md")

    def failures() -> int:
        (scope,) = [s for s in client.admin(a.mnt)["scopes"] if s.get("sync")]
        return scope["sync"]["failures"]

    wait_for(lambda: failures() >= 8, "eight failed tries", 120)  # backoff doubling: 51 s by now
    sshd.start()
    before = remote_head(remote)
    wait_for(lambda: remote_head(remote) != before, "the push after the remote returned", 10)
    doc = a.run(ALICE, memfs_cmd("doctor", "--mount", str(a.mnt)), check=False)
    assert "OK   sync: all 1 remotes" in doc.stdout and "0 commits waiting" in doc.stdout, doc.stdout


def test_a_wrong_host_key_is_named(sshd, make_mount, base_dir):
    other = Sshd(base_dir / "other")  # its host key, never started: known for our port, wrong
    wrong = base_dir / "wrong_known_hosts"
    key = other.known_hosts.read_text().split(maxsplit=1)[1]
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {key}")
    os.chown(wrong, other.known_hosts.stat().st_uid, other.known_hosts.stat().st_gid)
    _, (a,) = setup(make_mount, base_dir, sshd, n=1, known_hosts=wrong)
    a.expect_log(r"team:eng: syncing with ssh://.* failed \(1\): host key: ")
    res, st = memfs_sync(a, ALICE)
    assert res.returncode == 1 and st["error"].startswith("host key: "), res.stdout
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in st["error"] or "Host key" in st["error"], res.stdout


def test_a_caller_reaching_an_idle_scope_has_it_checked_at_once(sshd, make_mount, base_dir):
    """b's scope is idle (nothing seen there; its next check an hour away): bob reading
    team/ through b's mount makes b check the remote now, and what alice wrote arrives."""
    extra = "  active_for: 0\n  idle_interval: 3600\n"
    remote, (a, b) = setup(make_mount, base_dir, sshd, interval=1, extra=extra)
    a.sh(ALICE, "echo from-a > team/fresh.md")
    wait_for(lambda: remote_head(remote) != "", "a's push", 60)
    # polling as a reader does: each lookup of team/ reaches the scope; b checks at most
    # once per interval, so this loop does not make it hammer the remote
    wait_for(lambda: b.sh(BOB, "cat team/fresh.md", check=False).stdout == "from-a\n", "the arrival", 30)
