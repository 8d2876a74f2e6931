"""Sync through git remotes: two or three memfs daemons, each with its own data dir and
mount, each standing for a host (MEMFS_HOST), and a bare repository as the remote (also
served by `git daemon` on 127.0.0.1). Syncs are asked for with `memfs sync`, so no test
waits on the background interval."""

from __future__ import annotations

import os
import random
import signal
import socket
import string
import subprocess
import time

import pytest
from conftest import ALICE, BOB, CAROL, memfs_cmd, wait_for

from memfs import client

CONFIG = """
users:
  alice: {{uid: 1001{alice_remote}}}
  bob: {{uid: 1002}}
  carol: {{uid: 1003}}
teams:
  eng: {{members: [alice, bob], remote: {remote}}}
sync: {{interval: 30}}
"""


@pytest.fixture
def remote(base_dir):
    # Shared as a team's bare repository on one box is: root (the tests' git) and the
    # daemon user (memfs's git) both push to it.
    path = base_dir / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(path)], check=True)
    return path


def hosts(make_mount, remote, n=2, alice_remote=""):
    cfg = CONFIG.format(remote=remote, alice_remote=alice_remote)
    return [make_mount(cfg, sub=f"host{i}", env={"MEMFS_HOST": f"host{i}"}) for i in range(n)]


def sync(m, uid=ALICE):
    res = m.run(uid, memfs_cmd("sync", "--mount", str(m.mnt)))  # exit 0, or it raises
    answer = client.parse_sync(res.stdout)
    assert answer.scopes and not answer.failed, res.stdout
    return res.stdout


def test_changes_propagate_both_ways(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "mkdir -p team/notes; echo from-a > team/notes/a.md")
    sync(a)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/notes/a.md").stdout == "from-a\n"
    b.sh(BOB, "echo from-b > team/b.md; rm team/notes/a.md")
    sync(b, BOB)
    sync(a)
    assert a.sh(ALICE, "cat team/b.md").stdout == "from-b\n"
    assert a.sh(ALICE, "ls team/notes").stdout == ""
    # the arrivals are searchable and in the history, attributed to their authors
    assert "team/b.md" in a.sh(ALICE, "cat .memfs/search/from-b").stdout
    log = a.sh(ALICE, "cat .memfs/log").stdout
    # attributed to their authors, marked as arrived by sync from the host that sent them
    assert " bob (via host1) A team/b.md" in log and " bob (via host1) D team/notes/a.md" in log


def test_owners_follow_files_across_hosts(make_mount, remote):
    """Issue 26: a team file shows its creator on every host: an arrival records the
    author of the commit that added it, and a file changed elsewhere keeps its owner here."""
    a, b = hosts(make_mount, remote)
    a.sh(BOB, "mkdir team/d && echo one > team/d/bob.md && git init -q team/g")
    a.sh(ALICE, "echo one > team/alice.md")
    sync(a)
    sync(b, BOB)
    names = ["team/d/bob.md", "team/g/.git/HEAD", "team/alice.md"]
    assert b.run(ALICE, ["stat", "-c", "%u", *names]).stdout.split() == [str(BOB), str(BOB), str(ALICE)]
    b.sh(ALICE, "echo two >> team/d/bob.md")  # changed by alice on b: still bob's file
    sync(b)
    sync(a)
    assert a.sh(ALICE, "cat team/d/bob.md").stdout == "one\ntwo\n"
    assert a.run(ALICE, ["stat", "-c", "%u", "team/d/bob.md"]).stdout.split() == [str(BOB)]


def test_concurrent_edits_merge_or_keep_both(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "printf 'one\\ntwo\\nthree\\n' > team/x.md; echo s > team/same.md")
    sync(a)
    sync(b, BOB)
    # different lines: merged; different files: both kept
    a.sh(ALICE, "printf 'ONE\\ntwo\\nthree\\n' > team/x.md; echo a > team/only-a.md")
    b.sh(BOB, "printf 'one\\ntwo\\nTHREE\\n' > team/x.md; echo b > team/only-b.md")
    sync(a)
    sync(b, BOB)
    sync(a)
    for m, uid in ((a, ALICE), (b, BOB)):
        assert m.sh(uid, "cat team/x.md team/only-a.md team/only-b.md").stdout == "ONE\ntwo\nTHREE\na\nb\n"
    # the same line: the file keeps one side, the other is a conflict copy beside it
    a.sh(ALICE, "echo alice > team/same.md")
    b.sh(BOB, "echo bob > team/same.md")
    sync(a)
    sync(b, BOB)
    sync(a)
    trees = []
    for m, uid in ((a, ALICE), (b, BOB)):
        names = sorted(m.sh(uid, "ls team").stdout.split())
        copies = [n for n in names if n.startswith("same.conflict-")]
        assert len(copies) == 1, names
        texts = {m.sh(uid, "cat team/same.md").stdout, m.sh(uid, f"cat team/{copies[0]}").stdout}
        assert texts == {"alice\n", "bob\n"}
        assert f"team/{copies[0]}: sync conflict" in m.sh(uid, "cat .memfs/status").stdout
        trees.append((names, m.sh(uid, "cat team/same.md").stdout))
    assert trees[0] == trees[1]


def test_delete_on_one_host_and_edit_on_the_other_keeps_the_edit(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo v1 > team/y.md")
    sync(a)
    sync(b, BOB)
    a.sh(ALICE, "rm team/y.md")
    b.sh(BOB, "echo v2 >> team/y.md")
    sync(a)
    sync(b, BOB)
    sync(a)
    for m, uid in ((a, ALICE), (b, BOB)):
        assert m.sh(uid, "cat team/y.md").stdout == "v1\nv2\n"


def test_changes_that_cancel_out_stay_in_the_history(make_mount, remote):
    """A host whose own commits cancel out (a file written, then removed) takes the other
    hosts' commits with a merge, never by moving its branch onto theirs: its versions
    stay in the history, here and on the others."""
    a, b = hosts(make_mount, remote)
    b.sh(BOB, "echo more > team/more.md")
    sync(b, BOB)
    a.sh(ALICE, "echo fleeting > team/gone.md")
    a.sh(ALICE, "rm team/gone.md")  # rm keeps the content in history first
    sync(a)
    sync(b, BOB)
    for m, uid in ((a, ALICE), (b, BOB)):
        versions = m.sh(uid, "cat .memfs/history/team/gone.md/*").stdout
        assert versions == "fleeting\n", (m.base.name, versions)
        assert m.sh(uid, "cat team/more.md").stdout == "more\n"


def test_rename_on_one_host_edit_on_the_other(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo base > team/r.md")
    sync(a)
    sync(b, BOB)
    a.sh(ALICE, "mv team/r.md team/renamed.md")
    b.sh(BOB, "echo more >> team/r.md")
    sync(a)
    sync(b, BOB)
    sync(a)
    for m, uid in ((a, ALICE), (b, BOB)):
        # nothing lost: the renamed file, and the edit (an edit beats the rename's delete)
        assert m.sh(uid, "cat team/renamed.md").stdout == "base\n"
        assert m.sh(uid, "cat team/r.md").stdout == "base\nmore\n"


def test_open_files_keep_working_and_caches_follow(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo old > team/o.md")
    sync(a)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/o.md").stdout == "old\n"  # cached by b's kernel now
    reader = subprocess.Popen(
        [
            "/usr/bin/python3",
            "-c",
            "import sys,time; f=open('team/o.md'); print(f.read(), end=''); "
            "sys.stdout.flush(); sys.stdin.read(); f.seek(0); print(f.read(), end='')",
        ],
        cwd=b.mnt,
        user=BOB,
        group=BOB,
        extra_groups=[],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline() == "old\n"
        a.sh(ALICE, "echo new > team/o.md")
        sync(a)
        sync(b, BOB)
        assert b.sh(BOB, "cat team/o.md").stdout == "new\n"
        out, _ = reader.communicate("\n", timeout=30)
        assert out == "old\n"  # the open handle keeps the file it opened
    finally:
        reader.kill()


def test_private_remote_follows_its_user_only(make_mount, remote, base_dir):
    alice_remote = base_dir / "alice.git"
    subprocess.run(
        ["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(alice_remote)], check=True
    )
    a, b = hosts(make_mount, remote, alice_remote=f", remote: {alice_remote}")
    a.sh(ALICE, "echo 'alice private' > mine.md")
    sync(a)
    sync(b)
    assert b.sh(ALICE, "cat mine.md").stdout == "alice private\n"
    for uid in (BOB, CAROL):
        assert b.sh(uid, "cat mine.md", check=False).returncode != 0
        assert "No results" in b.sh(uid, "cat '.memfs/search/alice private'").stdout
    out = b.run(BOB, memfs_cmd("sync", "--mount", str(b.mnt))).stdout
    assert [s["scope"] for s in client.parse_sync(out).scopes] == ["team:eng"]
    # one of alice's two scopes fails, the other syncs: the command fails (it exited 0)
    alice_remote.rename(alice_remote.with_name("alice-away.git"))
    res = a.run(ALICE, memfs_cmd("sync", "--mount", str(a.mnt)), check=False)
    answer = client.parse_sync(res.stdout)
    assert [s["scope"] for s in answer.scopes] == ["private:alice", "team:eng"], res.stdout
    assert res.returncode == 1 and answer.failed == ["private:alice"], res.stdout
    a.expect_log(r"private:alice: syncing with .* failed")


def test_remote_down_then_back(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo 1 > team/z.md")
    sync(a)
    moved = remote.with_name("remote-away.git")
    remote.rename(moved)
    try:
        a.sh(ALICE, "echo 2 > team/z.md")  # local work goes on
        res = a.run(ALICE, memfs_cmd("sync", "--mount", str(a.mnt)), check=False)
        assert res.returncode == 1 and client.parse_sync(res.stdout).failed == ["team:eng"], res.stdout
        assert "commits_waiting" in res.stdout
    finally:
        moved.rename(remote)
    a.expect_log(r"team:eng: syncing with .* failed")
    sync(a)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/z.md").stdout == "2\n"


def test_a_host_restarts_and_catches_up(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo 1 > team/w.md")
    sync(a)
    b.stop()
    a.sh(ALICE, "echo 2 > team/w.md; echo n > team/new.md")
    sync(a)
    b.start()
    sync(b, BOB)
    assert b.sh(BOB, "cat team/w.md team/new.md").stdout == "2\nn\n"


def test_background_sync_and_the_git_protocol(make_mount, remote, base_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base_dir}",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # `git daemon` runs git-daemon as a child: kill the group
    )
    try:
        wait_for(lambda: _listening(port), "git daemon")
        cfg = CONFIG.format(remote=f"git://127.0.0.1:{port}/remote.git", alice_remote="").replace(
            "interval: 30", "interval: 0.5"
        )
        a = make_mount(cfg, sub="ga", env={"MEMFS_HOST": "ga"})
        b = make_mount(cfg, sub="gb", env={"MEMFS_HOST": "gb"})
        a.sh(ALICE, "echo over-the-wire > team/net.md")
        # no `memfs sync`: the background rounds carry it
        wait_for(lambda: b.sh(BOB, "cat team/net.md", check=False).stdout == "over-the-wire\n", "arrival", 60)
        a.stop()  # before the remote goes away: their background rounds would log failures
        b.stop()
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        time.sleep(0.05)
        return False


def test_a_host_killed_before_syncing_loses_nothing(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo before > team/k.md")
    sync(a)
    sync(b, BOB)
    a.sh(ALICE, "echo after-crash > team/k.md; echo new > team/k2.md")
    pid = a.pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), "daemon gone")
    a.start()  # clears the dead mount; reconcile commits what the batch never did
    sync(a)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/k.md team/k2.md").stdout == "after-crash\nnew\n"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_hostile_remote_cannot_write_outside_the_scope(make_mount, remote, base_dir):
    """Someone with push access crafts trees git itself would refuse: '..' names, a
    symlink, a submodule. None of it reaches the disk outside (or as links inside)."""
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo ok > team/fine.md")
    sync(a)
    work = base_dir / "evil"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    git = ["git", "-C", str(work), "-c", "user.name=m", "-c", "user.email=m@x"]
    blob = subprocess.run(
        [*git, "hash-object", "-w", "--stdin"], input=b"pwned\n", capture_output=True, check=True
    )
    oid = blob.stdout.decode().strip()
    head_tree = subprocess.run([*git, "rev-parse", "HEAD^{tree}"], capture_output=True, text=True, check=True)
    entries = subprocess.run(
        [*git, "ls-tree", head_tree.stdout.strip()], capture_output=True, check=True
    ).stdout
    entries += f"100644 blob {oid}\t..\n120000 blob {oid}\tlink.md\n".encode()
    tree = (
        subprocess.run([*git, "mktree"], input=entries, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    commit = subprocess.run(
        [*git, "commit-tree", tree, "-p", "HEAD", "-m", "evil"], capture_output=True, text=True
    )
    subprocess.run([*git, "push", "-q", "origin", f"{commit.stdout.strip()}:refs/heads/main"], check=True)
    b.expect_log(r"not applying")
    sync(b, BOB)
    assert b.sh(BOB, "cat team/fine.md").stdout == "ok\n"
    assert b.sh(BOB, "ls team").stdout.split() == ["fine.md"]
    for top in ("teams", "private"):
        for f in (b.data / top).rglob("*"):
            assert f.is_dir() or f.read_bytes() != b"pwned\n", f
    assert "not applying" in b.log()


def test_a_host_killed_mid_sync_recovers(make_mount, remote):
    (a,) = hosts(make_mount, remote, n=1)
    a.py(ALICE, "for i in range(20): open(f'team/f{i}.md', 'w').write(f'file {i}\\n')")
    sync(a)
    cfg = CONFIG.format(remote=remote, alice_remote="")
    b = make_mount(cfg, sub="crashy", env={"MEMFS_HOST": "crashy", "MEMFS_SYNC_CRASH_AFTER": "5"})
    pid = b.pid()
    b.run(BOB, memfs_cmd("sync", "--mount", str(b.mnt)), check=False)  # dies after 5 files
    wait_for(lambda: not _alive(pid), "daemon died mid-apply")
    b.env.pop("MEMFS_SYNC_CRASH_AFTER")
    b.start()
    sync(b, BOB)
    out = b.py(BOB, "print(''.join(open(f'team/f{i}.md').read() for i in range(20)), end='')").stdout
    assert out == "".join(f"file {i}\n" for i in range(20))
    assert not [n for n in b.sh(BOB, "ls team").stdout.split() if ".conflict-" in n]
    sync(a)
    assert a.sh(ALICE, "ls team | wc -l").stdout.strip() == "20"


def test_a_member_removed_on_one_host(make_mount, remote):
    a, b = hosts(make_mount, remote)
    a.sh(ALICE, "echo shared > team/s.md")
    sync(a)
    b.config.write_text(CONFIG.format(remote=remote, alice_remote="").replace("[alice, bob]", "[alice]"))
    b.restart()
    sync(b, ALICE)
    assert b.sh(ALICE, "cat team/s.md").stdout == "shared\n"
    assert b.sh(BOB, "cat team/s.md", check=False).returncode != 0
    out = b.run(BOB, memfs_cmd("sync", "--mount", str(b.mnt))).stdout
    assert "team:eng" not in out


GHP = "ghp_" + "".join(random.Random().choice(string.ascii_letters + string.digits) for _ in range(36))
ARRIVAL_REFUSED = r"not taking .* from the remote .*: a secret at line 2 \(rule github-pat\)"


def git_push(remote, work, path: str, text: str) -> None:
    """Someone with push access, using plain git: clone (or pull), write, commit, push."""
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True, capture_output=True)
    git = ["git", "-C", str(work), "-c", "user.name=eve", "-c", "user.email=eve@elsewhere"]
    subprocess.run([*git, "pull", "-q", "--rebase", "origin", "main"], check=True, capture_output=True)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "notes"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True, capture_output=True)


def test_a_secret_pushed_to_the_remote_is_refused_on_every_host(make_mount, remote, base_dir):
    """host0 syncs the push first (and pushes its merge back), host1 later: neither shows
    the key anywhere; both tell their members; the pusher's clean commit lands on both."""
    a, b = hosts(make_mount, remote)
    for m in (a, b):
        m.expect_log(ARRIVAL_REFUSED, count=1)
    a.sh(ALICE, "echo 'team notes' > team/notes.md")
    sync(a)
    sync(b, BOB)
    git_push(remote, base_dir / "eve", "ops/deploy.md", f"zanzibarcanary deploy\ntoken: {GHP}\n")
    for m, uid in ((a, ALICE), (b, BOB)):
        out = sync(m, uid)
        assert "ops/deploy.md" in out and "rule github-pat" in out and GHP not in out, out
        for who in (ALICE, BOB):
            assert m.sh(who, "ls team").stdout.split() == ["notes.md"]
            assert "No results" in m.sh(who, "cat .memfs/search/zanzibarcanary").stdout
            assert GHP not in m.sh(who, "grep -r . .memfs/history/team/ || true").stdout
            assert "deploy.md" not in m.sh(who, "cat .memfs/log").stdout
            status = m.sh(who, "cat .memfs/status").stdout
            assert f"team/ops/deploy.md: not taken from {remote} at " in status, status
            assert "a secret at line 2 (rule github-pat)" in status and GHP not in status
        assert m.sh(CAROL, "cat .memfs/status").stdout.count("deploy.md") == 0  # not in the team
        assert GHP not in m.log()
    git_push(remote, base_dir / "eve", "ops/deploy.md", "zanzibarcanary deploy\ntoken: in the vault\n")
    for m, uid in ((a, ALICE), (b, BOB)):
        sync(m, uid)
        assert m.sh(BOB, "cat team/ops/deploy.md").stdout.endswith("in the vault\n")
        assert "not taken from" not in m.sh(BOB, "cat .memfs/status").stdout  # the clean one landed
        assert GHP not in m.sh(BOB, "grep -r . .memfs/history/team/").stdout


def test_private_memory_with_a_remote_refuses_a_pushed_secret(make_mount, remote, base_dir):
    alice_remote = base_dir / "alice.git"
    subprocess.run(
        ["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(alice_remote)], check=True
    )
    (a,) = hosts(make_mount, remote, n=1, alice_remote=f", remote: {alice_remote}")
    a.expect_log(ARRIVAL_REFUSED, count=1)
    a.sh(ALICE, "echo mine > mine.md")
    sync(a)
    git_push(alice_remote, base_dir / "eve", "mine.md", f"mine\ntoken: {GHP}\n")
    out = sync(a)
    assert "mine.md" in out and "rule github-pat" in out, out
    assert a.sh(ALICE, "cat mine.md").stdout == "mine\n"
    assert GHP not in a.sh(ALICE, "cat .memfs/history/mine.md/*").stdout
    assert "mine.md: not taken from" in a.sh(ALICE, "cat .memfs/status").stdout
