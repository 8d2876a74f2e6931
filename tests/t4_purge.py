"""memfs purge through a real mount: versions taken out of a scope's history for good (a
secret that got in), only by who may write the scope, recorded without the content, and
carried to the remote and to other hosts at their next sync."""

from __future__ import annotations

import json
import random
import string
import subprocess

from conftest import ALICE, BOB, CAROL, memfs_cmd
from t4_sync import hosts, remote, sync  # noqa: F401 (remote is a fixture)

from memfs import layout
from memfs.history.gitrepo import blob_id
from memfs.policy import Kind, Scope

R = random.Random(24)
GHP = "ghp_" + "".join(R.choice(string.ascii_letters + string.digits) for _ in range(36))
SECRET = f"deploy with {GHP}\n"
CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  carol: {uid: 1003}
teams:
  eng: {members: [alice, carol]}
grants:
  - {reader: bob, owner: alice}
"""


def memfs(m, uid, *args, check=True):
    return m.run(uid, memfs_cmd(*args, "--mount", str(m.mnt)), check=check)


def versions(m, uid, path) -> list[str]:
    return sorted(m.sh(uid, f"ls -1 '.memfs/history/{path}'").stdout.split())


def contents(m, uid, path) -> list[str]:
    """Every version's bytes of a path, oldest first (names may hold spaces: '(via host)')."""
    code = f"""
    import json, os
    d = '.memfs/history/{path}'
    print(json.dumps([open(os.path.join(d, n)).read() for n in sorted(os.listdir(d))]))
    """
    return json.loads(m.py(uid, code).stdout)


def has_object(gitdir, oid: bytes) -> bool:
    res = subprocess.run(["git", "--git-dir", str(gitdir), "cat-file", "-e", oid.hex()], capture_output=True)
    return res.returncode == 0


def gitdir(m, scope: Scope):
    return layout.history_dir(m.data, scope)


ALICE_SCOPE = Scope(Kind.PRIVATE, "alice")


def test_a_purged_version_is_gone_from_history_and_disk_and_the_purge_is_logged(make_mount):
    m = make_mount(CONFIG)
    m.sh(ALICE, f"mkdir notes; printf '%s' '{SECRET}' > notes/k.md; echo other > o.md")
    leaked = versions(m, ALICE, "notes/k.md")[0]  # committed now (read-your-writes)
    m.sh(ALICE, "echo clean > notes/k.md; cp o.md o2.md; echo more >> o.md")
    before = versions(m, ALICE, "notes/k.md")
    assert len(before) == 2
    # the content a file holds now is never purged
    res = memfs(m, ALICE, "purge", "notes/k.md", "--version", before[1], check=False)
    assert res.returncode == 1 and "what a file holds now" in res.stderr
    out = memfs(m, ALICE, "purge", str(m.mnt / "notes/k.md"), "--version", leaked).stdout
    assert "purged 1 version" in out and leaked in out and "not touched" in out
    assert versions(m, ALICE, "notes/k.md") == [before[1]]
    assert m.sh(ALICE, "cat notes/k.md").stdout == "clean\n"  # the file is not touched
    assert m.sh(ALICE, f"cat .memfs/history/notes/k.md/{leaked}", check=False).returncode != 0
    git = gitdir(m, ALICE_SCOPE)
    assert not has_object(git, blob_id(SECRET.encode()))
    assert has_object(git, blob_id(b"other\n"))  # the rest of the history stays
    assert len(versions(m, ALICE, "o.md")) == 2 and len(versions(m, ALICE, "o2.md")) == 1
    fsck = subprocess.run(["git", "--git-dir", str(git), "fsck", "--full"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    # the record: who purged which version of which path, never the content
    log = m.sh(ALICE, "cat .memfs/log").stdout
    assert f" alice P notes/k.md version {leaked}\n" in log
    messages = subprocess.run(
        ["git", "--git-dir", str(git), "log", "--format=%B", "main"], capture_output=True, text=True
    ).stdout
    assert f"memfs-purged: notes/k.md -> {leaked}" in messages and GHP not in messages
    assert "purge alice private:alice notes/k.md: 1 versions purged by alice" in m.log()
    assert GHP not in m.log()


def test_a_version_still_in_the_spool_is_purged_with_the_rest(make_mount):
    m = make_mount(CONFIG)
    # both writes inside one batch: the secret version is only kept (spooled), not committed
    m.sh(ALICE, f"printf '%s' '{SECRET}' > k.md; echo clean > k.md")
    out = memfs(m, ALICE, "purge", "k.md", "--all").stdout
    assert "purged 1 version" in out
    names = versions(m, ALICE, "k.md")
    assert [m.sh(ALICE, f"cat .memfs/history/k.md/{n}").stdout for n in names] == ["clean\n"]
    assert not has_object(gitdir(m, ALICE_SCOPE), blob_id(SECRET.encode()))


def test_only_who_may_write_a_scope_may_purge_it(make_mount):
    m = make_mount(CONFIG)
    m.sh(ALICE, "echo one > k.md; ls .memfs/history >/dev/null; echo two > k.md")
    m.sh(ALICE, "echo t1 > team/t.md; ls .memfs/history/team >/dev/null; echo t2 > team/t.md")
    mine, team = versions(m, ALICE, "k.md"), versions(m, ALICE, "team/t.md")
    # bob reads alice's memory through a grant: reading is not writing
    res = memfs(m, BOB, "purge", ".memfs/users/alice/k.md", "--version", mine[0], check=False)
    assert res.returncode == 1 and "you may not purge it" in res.stderr
    # bob is in no team: there is no team/ for him, and his k.md is his own (no history)
    res = memfs(m, BOB, "purge", "team/t.md", "--version", team[0], check=False)
    assert res.returncode == 1 and "no such version" in res.stderr
    res = memfs(m, BOB, "purge", "k.md", "--version", mine[0], check=False)
    assert res.returncode == 1 and "no such version" in res.stderr
    assert versions(m, ALICE, "k.md") == mine and versions(m, ALICE, "team/t.md") == team
    assert "refused: only who may write private:alice may purge it (EACCES)" in m.log()
    # a member of the team may purge its history: carol, though alice wrote it
    memfs(m, CAROL, "purge", "team/t.md", "--version", team[0])
    assert versions(m, ALICE, "team/t.md") == team[1:]
    assert f" carol P team/t.md version {team[0]}" in m.sh(ALICE, "cat .memfs/log").stdout


def test_a_purge_reaches_the_remote_and_the_other_hosts(make_mount, remote):  # noqa: F811
    a, b = hosts(make_mount, remote)
    team = Scope(Kind.TEAM, "eng")
    # a shared bare repository refuses history rewrites unless told otherwise (README)
    subprocess.run(
        ["git", "--git-dir", str(remote), "config", "receive.denyNonFastForwards", "false"], check=True
    )
    leaked = b"password for the staging db: hunter2-staging\n"
    a.py(ALICE, f"open('team/s.md', 'wb').write({leaked!r})")
    sync(a)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/s.md").stdout == leaked.decode()
    a.sh(ALICE, "echo clean > team/s.md")
    sync(a)
    sync(b, BOB)
    name = versions(a, ALICE, "team/s.md")[contents(a, ALICE, "team/s.md").index(leaked.decode())]
    out = memfs(a, ALICE, "purge", "team/s.md", "--version", name).stdout
    assert "replaced at the next sync" in out
    oid = blob_id(leaked)
    assert not has_object(gitdir(a, team), oid)
    sync(a)
    assert not has_object(remote, oid)  # force-pushed, and the local-path remote pruned
    sync(b, BOB)
    assert not has_object(gitdir(b, team), oid)
    assert leaked.decode() not in contents(b, BOB, "team/s.md")
    assert f" alice (via host0) P team/s.md version {name}" in b.sh(BOB, "cat .memfs/log").stdout
    # b goes on writing and syncing: the old history never comes back
    b.sh(BOB, "echo from-b > team/b.md")
    sync(b, BOB)
    sync(a)
    assert a.sh(ALICE, "cat team/b.md").stdout == "from-b\n"
    for git in (gitdir(a, team), gitdir(b, team), remote):
        assert not has_object(git, oid), git
    assert a.sh(ALICE, "cat team/s.md").stdout == b.sh(BOB, "cat team/s.md").stdout == "clean\n"


def test_a_host_still_holding_the_purged_bytes_takes_the_clean_file_and_never_pushes_them_back(
    make_mount,
    remote,  # noqa: F811
):
    """Host b synced the leak but not its clean rewrite before the purge: its file still
    holds the purged bytes. Adopting the purge, b takes the clean file (not a conflict
    copy of it beside the leak), and nothing b commits brings the bytes back anywhere."""
    a, b = hosts(make_mount, remote)
    team = Scope(Kind.TEAM, "eng")
    subprocess.run(
        ["git", "--git-dir", str(remote), "config", "receive.denyNonFastForwards", "false"], check=True
    )
    leaked = b"password for the staging db: hunter2-staging\n"
    a.py(ALICE, f"open('team/s.md', 'wb').write({leaked!r})")
    sync(a)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/s.md").stdout == leaked.decode()
    a.sh(ALICE, "echo clean > team/s.md")  # b does not sync this before the purge
    sync(a)
    name = versions(a, ALICE, "team/s.md")[contents(a, ALICE, "team/s.md").index(leaked.decode())]
    memfs(a, ALICE, "purge", "team/s.md", "--version", name)
    sync(a)
    oid = blob_id(leaked)
    assert not has_object(remote, oid)
    sync(b, BOB)
    assert b.sh(BOB, "cat team/s.md").stdout == "clean\n"
    assert b.sh(BOB, "ls team").stdout.split() == ["s.md"]  # no conflict copy
    b.sh(BOB, "echo from-b > team/b.md")
    sync(b, BOB)
    sync(a)
    for git in (gitdir(a, team), gitdir(b, team), remote):
        assert not has_object(git, oid), git
    assert leaked.decode() not in contents(b, BOB, "team/s.md")


def doctor_secrets(m):
    args = ["doctor", "--mount", str(m.mnt), "--data", str(m.data), "--config", str(m.config), "--secrets"]
    return subprocess.run(memfs_cmd(*args), capture_output=True, text=True, timeout=120)


def test_doctor_finds_secrets_in_files_and_history_and_never_shows_them(make_mount):
    m = make_mount(CONFIG)
    m.sh(ALICE, f"printf '%s' 'notes\n{SECRET}' > k.md")
    leaked = versions(m, ALICE, "k.md")[0]
    m.sh(ALICE, f"echo clean > k.md; printf '%s' '{SECRET}' > now.md; cp k.md team/t.md")
    assert versions(m, ALICE, "now.md")  # its version committed (a history read flushes), not pending
    res = doctor_secrets(m)
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"private:alice k.md version {leaked} line 2: github-pat" in res.stdout
    assert "private:alice now.md (current file) line 1: github-pat" in res.stdout
    assert "FAIL secrets: 3 found" in res.stdout and GHP not in res.stdout + res.stderr
    # cleaned up: the file rewritten, the versions purged
    m.sh(ALICE, "echo clean > now.md")
    memfs(m, ALICE, "purge", "k.md", "--version", leaked)
    memfs(m, ALICE, "purge", "now.md", "--all")
    res = doctor_secrets(m)
    assert res.returncode == 0 and "OK   secrets: none found in" in res.stdout, res.stdout
