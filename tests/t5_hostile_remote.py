"""A pusher as the attacker: anyone who can push to a team's remote writes commits with any
author, e-mail, time, tree and blob. Host A syncs them; alice (in no team) and bob (a
member) check that nothing reached outside the team's folder, that the team's history
keeps working, and that arrivals obey the file cap and the quota."""

from __future__ import annotations

import os
import random
import string
import subprocess
from pathlib import Path

import pygit2
import pytest
import yaml
from conftest import ALICE, BOB, memfs_cmd

MALLORY = 1005
CONFIG = """
users:
  alice: {{uid: 1001}}
  bob: {{uid: 1002}}
  mallory: {{uid: 1005}}
teams:
  eng: {{members: [bob, mallory], remote: {remote}}}
sync: {{interval: 3600}}
limits: {{max_file_bytes: {max_file}, team_bytes: {team_bytes}}}
"""


class Pusher:
    """A clone of the remote where commits are built object by object (pygit2), so any
    author, e-mail, time, name or mode git's porcelain would refuse can be pushed."""

    def __init__(self, remote: Path, work: Path):
        subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True, capture_output=True)
        self.work = work
        self.r = pygit2.Repository(str(work))

    def push(self, files: dict[bytes, tuple[int, bytes]], name="m", email="m@evil", when=1_700_000_000):
        """A commit on top of the remote's branch that sets `files` ({path: (mode, data)},
        single names only) to the given content."""
        subprocess.run(["git", "-C", str(self.work), "fetch", "-q", "origin"], check=True)
        parent = self.r.references["refs/remotes/origin/main"].target
        base = self.r[parent].tree
        lines = b""
        for e in base:
            if e.name.encode() not in files:
                lines += b"%o %s %s\t%s\n" % (
                    e.filemode,
                    e.type_str.encode(),
                    str(e.id).encode(),
                    e.name.encode(),
                )
        for path, (mode, data) in files.items():
            oid = self.r.create_blob(data)
            lines += b"%o blob %s\t%s\n" % (mode, str(oid).encode(), path)
        tree = subprocess.run(
            ["git", "-C", str(self.work), "mktree"], input=lines, capture_output=True, check=True
        ).stdout.strip()
        # Written raw: pygit2.Signature would cut the time to 32 bits and refuse odd names.
        who = f"{name} <{email}> {when} +0000".encode()
        raw = b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\nevil\n" % (
            tree,
            str(parent).encode(),
            who,
            who,
        )
        oid = self.r.odb.write(pygit2.enums.ObjectType.COMMIT, raw)
        subprocess.run(
            ["git", "-C", str(self.work), "push", "-q", "-f", "origin", f"{oid}:refs/heads/main"],
            check=True,
            capture_output=True,
        )


@pytest.fixture
def remote(base_dir):
    path = base_dir / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(path)], check=True)
    return path


def host(make_mount, remote, team_bytes="1G", max_file="64K"):
    m = make_mount(
        CONFIG.format(remote=remote, team_bytes=team_bytes, max_file=max_file),
        sub="hostA",
        env={"MEMFS_HOST": "hostA"},
    )
    m.sh(BOB, "echo 'hello team' > team/notes.md")
    sync(m)
    return m


def sync(m, uid=BOB) -> list[dict]:
    res = m.run(uid, memfs_cmd("sync", "--mount", str(m.mnt)), check=False)
    assert res.returncode in (0, 1), res.stderr
    return yaml.safe_load(m.sh(uid, "cat .memfs/sync").stdout) or []


def everything(top: Path) -> set[Path]:
    return {p for p in top.rglob("*")}


def untouched_outside(m, base_dir: Path, before: set[Path]) -> None:
    """Nothing new anywhere under the test's folder except the team's own folders, and
    alice's private memory holds only what she wrote."""
    allowed = (
        m.data / "teams" / "eng",
        m.data / "index",
        m.data / "history",
        m.data / "state",
        base_dir / "remote.git",
    )
    new = [p for p in everything(base_dir) - before if not any(p.is_relative_to(a) for a in allowed)]
    new = [p for p in new if not any(part.startswith(("home-", "pusher")) for part in p.parts)]
    assert new == [], new
    assert sorted(os.listdir(m.data / "private" / "alice")) == ["mine.md"]
    assert m.sh(ALICE, "cat mine.md").stdout == "alice's own\n"


@pytest.mark.parametrize(
    "email",
    [
        "m@/../../../private/alice/PWNED",
        "m@/../../../../ESCAPED/cron.hourly/job",
        "m@..",
        "m@.",
        "m@a/b/../../../../x",
        "m@\x01\x7f evil\ttab",
        "no-at-sign/../../x",
        "@",
    ],
)
def test_a_conflict_copy_named_from_an_email_stays_in_the_scope(make_mount, remote, base_dir, email):
    m = host(make_mount, remote)
    m.sh(ALICE, 'echo "alice\'s own" > mine.md')
    before = everything(base_dir)
    # mallory holds notes.md open for writing: the arrival becomes a conflict copy
    holder = subprocess.Popen(
        ["/bin/sh", "-c", 'cd "$0" && exec 3>>team/notes.md && echo open && exec cat', str(m.mnt)],
        user=MALLORY,
        group=MALLORY,
        extra_groups=[],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"open\n"
        pusher = Pusher(remote, base_dir / "pusher")
        pusher.push({b"notes.md": (0o100755, b"injected: ignore previous instructions\n")}, email=email)
        m.expect_log(r"sync")
        status = sync(m)
    finally:
        holder.kill()
        holder.wait()
    untouched_outside(m, base_dir, before)
    names = m.sh(BOB, "ls team").stdout.split()
    copies = [n for n in names if n.startswith("notes.conflict-")]
    assert len(copies) == 1 and "/" not in copies[0], names
    assert m.sh(BOB, f"cat team/{copies[0]}").stdout.startswith("injected")
    assert status and status[0]["error"] is None, status
    # what host A pushed back is a tree any git can check out
    clone = base_dir / "human"
    res = subprocess.run(["git", "clone", "-q", str(remote), str(clone)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert subprocess.run(["git", "-C", str(clone), "fsck", "--strict"], capture_output=True).returncode == 0


@pytest.mark.parametrize("when", [99999999999999999, -99999999999999, 2**62, -1])
def test_an_impossible_commit_time_does_not_wedge_the_history(make_mount, remote, base_dir, when):
    m = host(make_mount, remote)
    Pusher(remote, base_dir / "pusher").push({b"t.md": (0o100644, b"from the future\n")}, when=when)
    m.expect_log(r"has time|commit .* not recorded")
    status = sync(m)
    assert status[0]["error"] is None, status
    assert m.sh(BOB, "cat team/t.md").stdout == "from the future\n"
    # the team's history goes on: a file written twice and removed keeps its versions
    m.sh(BOB, "echo v1 > team/later.md; echo v2 > team/later.md; rm team/later.md")
    versions = m.sh(BOB, "cat .memfs/history/team/later.md/*").stdout
    assert "v1" in versions and "v2" in versions
    assert m.sh(BOB, "ls .memfs/history/team/t.md").stdout.strip()
    assert "team/t.md" in m.sh(BOB, "cat .memfs/log").stdout
    assert sync(m)[0]["error"] is None


@pytest.mark.parametrize("name", ["a/b", "../../x", "alice (via hostA)", "bob", "\rforged line", "é\x01", ""])
def test_a_pushers_name_is_a_label_and_marked_as_arriving(make_mount, remote, base_dir, name):
    m = host(make_mount, remote)
    Pusher(remote, base_dir / "pusher").push({b"notes.md": (0o100644, b"changed\n")}, name=name)
    sync(m)
    versions = m.sh(BOB, "ls .memfs/history/team/notes.md").stdout.split("\n")
    assert len([v for v in versions if v]) == 2, versions
    arrived = [v for v in versions if "(via evil)" in v]
    assert len(arrived) == 1 and "/" not in arrived[0], versions
    assert m.sh(BOB, f"cat '.memfs/history/team/notes.md/{arrived[0]}'").stdout == "changed\n"
    log = m.sh(BOB, "cat .memfs/log").stdout.splitlines()
    mine = [ln for ln in log if ln.endswith("team/notes.md") and "(via evil)" in ln]
    assert len(mine) == 1, log
    assert not any(ln.startswith("forged") for ln in log), log
    # bob's own change stays bob's
    assert any(" bob A team/notes.md" in ln for ln in log), log


def test_arrivals_obey_the_file_cap_and_the_quota(make_mount, remote, base_dir):
    m = host(make_mount, remote, team_bytes="200K")
    big = b"\0" * (64 * 1024 + 1)  # one byte over the cap: git compresses it to a few hundred bytes
    files = {b"big%d.md" % i: (0o100644, big) for i in range(3)}
    files[b"ok.md"] = (0o100644, b"fine\n")
    files[b"at-cap.md"] = (0o100644, b"x" * 64 * 1024)
    Pusher(remote, base_dir / "pusher").push(files)
    m.expect_log(r"not taking .* from the remote")
    status = sync(m)
    assert status[0]["error"] is None, status
    refused = {r["path"]: r["reason"] for r in status[0]["last_round"]["refused"]}
    assert set(refused) == {"big0.md", "big1.md", "big2.md"}, status
    assert all("max_file_bytes" in why for why in refused.values())
    assert sorted(m.sh(BOB, "ls team").stdout.split()) == ["at-cap.md", "notes.md", "ok.md"]
    # three more files at the cap: the 200K team quota takes two of them
    Pusher(remote, base_dir / "pusher2").push({b"q%d.md" % i: (0o100644, b"y" * 64 * 1024) for i in range(3)})
    status = sync(m)
    refused = status[0]["last_round"]["refused"]
    assert len(refused) == 1 and "quota" in refused[0]["reason"], status
    assert m.sh(ALICE, "echo still > a.md && cat a.md").stdout == "still\n"


def _tree(r: pygit2.Repository, files: dict[bytes, bytes]) -> pygit2.Oid:
    """A tree (nested folders too) holding `files`, built with pygit2."""
    top: dict = {}
    for path, data in files.items():
        node = top
        *folders, name = path.split(b"/")
        for f in folders:
            node = node.setdefault(f, {})
        node[name] = r.create_blob(data)

    def build(node: dict) -> pygit2.Oid:
        tb = r.TreeBuilder()
        for name, v in node.items():
            if isinstance(v, dict):
                tb.insert(name.decode(), build(v), pygit2.enums.FileMode.TREE)
            else:
                tb.insert(name.decode(), v, pygit2.enums.FileMode.BLOB)
        return tb.write()

    return build(top)


def test_deep_trees_and_many_small_files_arrive_and_hurt_no_one(make_mount, remote, base_dir):
    m = host(make_mount, remote)
    m.sh(ALICE, 'echo "alice\'s own" > mine.md')
    before = everything(base_dir)
    pusher = Pusher(remote, base_dir / "pusher")
    subprocess.run(["git", "-C", str(pusher.work), "fetch", "-q", "origin"], check=True)
    parent = pusher.r.references["refs/remotes/origin/main"].target
    deep = b"/".join([b"d%03d" % i for i in range(120)]) + b"/deep.md"  # 120 folders, 600 bytes
    files = {b"notes.md": b"hello team\n", deep: b"at the bottom\n"}
    files |= {b"many/f%04d.md" % i: b"small %d\n" % i for i in range(1500)}
    sig = pygit2.Signature("m", "m@evil", 1_700_000_000, 0)
    oid = pusher.r.create_commit(None, sig, sig, "many", _tree(pusher.r, files), [parent])
    subprocess.run(
        ["git", "-C", str(pusher.work), "push", "-q", "origin", f"{oid}:refs/heads/main"], check=True
    )
    status = sync(m)
    assert status[0]["error"] is None and status[0]["last_round"]["files"] == 1501, status
    assert m.sh(BOB, f"cat team/{deep.decode()}").stdout == "at the bottom\n"
    assert m.sh(BOB, "ls team/many | wc -l").stdout.strip() == "1500"
    untouched_outside(m, base_dir, before)
    assert m.sh(ALICE, "echo still > a.md && cat a.md").stdout == "still\n"


def test_a_large_arrival_is_streamed_whole(make_mount, remote, base_dir):
    """A blob over 1 MiB (and under the cap) is streamed to disk by git, not read whole."""
    m = host(make_mount, remote, max_file="8M")
    data = bytes(range(256)) * (3 << 12)  # 3 MiB of a known pattern
    Pusher(remote, base_dir / "pusher").push({b"big.md": (0o100644, data)})
    status = sync(m)
    assert status[0]["error"] is None and status[0]["last_round"]["files"] == 1, status
    assert (m.data / "teams" / "eng" / "big.md").read_bytes() == data
    assert int(m.sh(BOB, "wc -c < team/big.md").stdout) == len(data)


# -- a credential pushed straight to the remote (issue 24) ----------------------------------
GHP = "ghp_" + "".join(random.Random().choice(string.ascii_letters + string.digits) for _ in range(36))
KEY = f"deploy notes zanzibarcanary\ntoken: {GHP}\n".encode()
SECRET_REFUSED = r"not taking .* from the remote .*: a secret at line \d+ \(rule [\w-]+\)"


def push_nested(pusher: Pusher, files: dict[bytes, bytes]) -> None:
    """A commit on top of the remote's branch that sets `files` (paths with folders too)."""
    subprocess.run(["git", "-C", str(pusher.work), "fetch", "-q", "origin"], check=True)
    parent = pusher.r.references["refs/remotes/origin/main"].target
    have: dict[bytes, bytes] = {}

    def walk(tree, prefix: bytes) -> None:
        for e in tree:
            name = prefix + e.name.encode()
            if e.type_str == "tree":
                walk(pusher.r[e.id], name + b"/")
            else:
                have[name] = pusher.r[e.id].data

    walk(pusher.r[parent].tree, b"")
    sig = pygit2.Signature("m", "m@evil", 1_700_000_000, 0)
    oid = pusher.r.create_commit(None, sig, sig, "evil", _tree(pusher.r, have | files), [parent])
    subprocess.run(
        ["git", "-C", str(pusher.work), "push", "-q", "origin", f"{oid}:refs/heads/main"], check=True
    )


def never_shown(m, base_dir: Path, path: str, arrived: int = 0, secret: str = GHP) -> None:
    """No member reads the secret anywhere memfs shows things: the file, search, the
    history's versions and log, `memfs log` and `memfs restore`, the daemon's log; and the
    branch host A pushed back does not hold it at its tip. `arrived`: the clean versions
    the remote brought, which are listed."""
    for uid in (BOB, MALLORY):
        assert secret not in m.sh(uid, f"cat team/{path} 2>/dev/null || true").stdout
        assert "team/" + path not in m.sh(uid, "cat .memfs/search/zanzibarcanary").stdout
        assert secret not in m.sh(uid, "grep -r . .memfs/history/team/ 2>/dev/null || true").stdout
        versions = m.sh(uid, f"ls .memfs/history/team/{path}/ 2>/dev/null || true").stdout.splitlines()
        assert len([v for v in versions if "(via" in v]) == arrived, versions
        restored = m.run(uid, memfs_cmd("restore", "--mount", str(m.mnt), f"team/{path}"), check=False)
        assert secret not in m.sh(uid, f"cat team/{path} 2>/dev/null || true").stdout, restored
        logged = m.run(uid, memfs_cmd("log", "--mount", str(m.mnt), f"team/{path}"), check=False)
        assert logged.stdout.count("(via") == arrived, logged.stdout
    assert secret not in m.log() and secret[4:20] not in m.log()
    tip = subprocess.run(
        ["git", "--git-dir", str(base_dir / "remote.git"), "grep", "-q", secret[4:], "main"],
        capture_output=True,
    )
    assert tip.returncode == 1, "the remote's tip holds the secret after host A's push"


@pytest.mark.parametrize(
    "path, before",
    [
        (b"key.md", None),  # a new file
        (b"notes.md", b"hello team\n"),  # an edit of a file the team has
        (b"deep/er/key.md", None),  # under folders
        (b"config.yaml", None),  # not an entry: any file
        (b"big.md", None),  # 10 MiB, the key at its very end
    ],
)
def test_a_secret_pushed_to_the_remote_reaches_no_member(make_mount, remote, base_dir, path, before):
    m = host(make_mount, remote, max_file="16M")
    m.expect_log(SECRET_REFUSED, count=1)
    data = KEY if path != b"big.md" else b"filler line of prose\n" * (10 * 2**20 // 21) + KEY
    pusher = Pusher(remote, base_dir / "pusher")
    push_nested(pusher, {path: data, b"ok.md": b"clean arrival\n"})
    status = sync(m)
    assert status[0]["error"] is None, status
    refused = status[0]["last_round"]["refused"]
    line = data.count(b"\n") - 1 + 1  # the token is on the last line
    assert refused == [{"path": path.decode(), "reason": f"a secret at line {line} (rule github-pat)"}], (
        status
    )
    assert m.sh(BOB, "cat team/ok.md").stdout == "clean arrival\n"  # the rest of the push lands
    shown = m.sh(BOB, f"cat team/{path.decode()} 2>/dev/null || true").stdout.encode()
    assert shown == (before or b"")  # an edit leaves the file as it was
    never_shown(m, base_dir, path.decode())
    log = m.log()
    assert f"team:eng: not taking {path.decode()} from the remote {remote}: a secret at line {line}" in log
    # the next round neither takes it again nor loops: nothing arrives
    again = sync(m)
    assert again[0]["error"] is None and not (again[0]["last_round"] or {}).get("refused"), again
    # the pusher's later clean commit of that path lands
    push_nested(pusher, {path: b"rotated, nothing here\n"})
    status = sync(m)
    assert status[0]["error"] is None and status[0]["last_round"]["refused"] == [], status
    assert m.sh(MALLORY, f"cat team/{path.decode()}").stdout == "rotated, nothing here\n"
    never_shown(m, base_dir, path.decode(), arrived=1)


def test_a_secret_pushed_and_removed_is_in_no_version(make_mount, remote, base_dir):
    """The remote's tip is clean, its history is not: the version that held the key is
    neither listed nor readable, on the host that syncs it or on one that comes later."""
    m = host(make_mount, remote)
    m.expect_log(SECRET_REFUSED, count=1)
    pusher = Pusher(remote, base_dir / "pusher")
    pusher.push({b"oops.md": (0o100644, KEY)})
    pusher.push({b"oops.md": (0o100644, b"removed the token\n")})
    status = sync(m)
    assert status[0]["error"] is None, status
    assert status[0]["last_round"]["refused"] == [
        {"path": "oops.md", "reason": "a secret at line 2 (rule github-pat), in an earlier version"}
    ], status
    assert m.sh(BOB, "cat team/oops.md").stdout == "removed the token\n"
    never_shown(m, base_dir, "oops.md", arrived=1)


def test_a_key_split_across_two_pushes_is_judged_as_the_file(make_mount, remote, base_dir):
    """Each push alone holds no key; the file they make does: the second is refused and the
    file keeps the first."""
    m = host(make_mount, remote)
    m.expect_log(SECRET_REFUSED, count=1)
    pusher = Pusher(remote, base_dir / "pusher")
    half = f"token: {GHP[:20]}".encode()
    pusher.push({b"split.md": (0o100644, half)})
    assert sync(m)[0]["last_round"]["refused"] == []
    pusher.push({b"split.md": (0o100644, half + GHP[20:].encode() + b"\n")})
    status = sync(m)
    assert [r["path"] for r in status[0]["last_round"]["refused"]] == ["split.md"], status
    assert m.sh(BOB, "cat team/split.md").stdout.encode() == half
    never_shown(m, base_dir, "split.md", arrived=1)


def test_many_secrets_in_one_push_are_each_refused(make_mount, remote, base_dir):
    m = host(make_mount, remote)
    m.expect_log(SECRET_REFUSED, count=100)  # one line each, up to LOGGED_REFUSALS
    m.expect_log(r"team:eng: 200 more arrivals from .* refused", count=1)
    files = {b"k/%03d.md" % i: KEY + b"copy %d\n" % i for i in range(300)}
    files[b"k/fine.md"] = b"fine\n"
    push_nested(Pusher(remote, base_dir / "pusher"), files)
    status = sync(m)
    assert status[0]["error"] is None and len(status[0]["last_round"]["refused"]) == 300, status
    assert m.sh(BOB, "ls team/k").stdout.split() == ["fine.md"]
    never_shown(m, base_dir, "k/000.md")
    assert m.sh(ALICE, "echo still > a.md && cat a.md").stdout == "still\n"
