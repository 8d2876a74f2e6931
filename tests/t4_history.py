"""History through a real mount, as several uids: versions and authors, undelete, renames,
who sees which history, read-only refusals, a crash mid-batch, retention, the CLI."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pygit2
import pytest
from conftest import ALICE, BOB, CAROL, DAVE, daemon_gone, memfs_cmd, wait_for

from memfs import layout
from memfs.history.gitrepo import BLOB, Repo
from memfs.policy import Kind, Scope

CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  carol: {uid: 1003}
  dave: {uid: 1004}
teams:
  eng: {members: [alice, bob]}
grants:
  - {reader: carol, owner: alice}
"""
VERSION = re.compile(r"^\d{8}T\d{6}Z-(?P<user>[A-Za-z0-9_.-]+)-[0-9a-f]{6}(?P<suffix>\.md)?$")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?P<user>\S+) (?P<op>[AMDR]) (?P<rest>.+)$")


@pytest.fixture
def hm(make_mount):
    return make_mount(CONFIG)


def versions(m, uid, path) -> list[str]:
    return sorted(m.sh(uid, f"ls -1 '.memfs/history/{path}'").stdout.split())


def log_lines(m, uid) -> list[re.Match]:
    lines = m.sh(uid, "cat .memfs/log").stdout.splitlines()
    matches = [LOG_LINE.match(line) for line in lines]
    assert all(matches), lines
    return matches


def test_every_close_after_a_read_is_a_version_with_its_author(hm):
    hm.sh(ALICE, "echo one > x.md")
    assert len(versions(hm, ALICE, "x.md")) == 1
    hm.sh(ALICE, "echo two > x.md")
    names = versions(hm, ALICE, "x.md")
    assert len(names) == 2 and all(VERSION.match(n)["user"] == "alice" for n in names)
    assert [hm.sh(ALICE, f"cat .memfs/history/x.md/{n}").stdout for n in names] == ["one\n", "two\n"]
    # team: each member's change is theirs
    hm.sh(ALICE, "echo a > team/t.md")
    hm.sh(BOB, "ls .memfs/history/team/t.md; echo b >> team/t.md")
    names = versions(hm, BOB, "team/t.md")
    assert [VERSION.match(n)["user"] for n in names] == ["alice", "bob"]
    assert hm.sh(ALICE, f"cat .memfs/history/team/t.md/{names[1]}").stdout == "a\nb\n"
    # an admin's git log tells the same, with user@host emails
    gitdir = layout.history_dir(hm.data, Scope(Kind.TEAM, "eng"))
    out = subprocess.run(
        ["git", "--git-dir", str(gitdir), "log", "--format=%an %ae", "--", "t.md"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    host = socket.gethostname()
    assert out[:2] == [f"bob bob@{host}", f"alice alice@{host}"]


def test_versions_are_read_only_files_with_the_versions_bytes(hm):
    hm.sh(ALICE, "printf 'v1' > x.md")
    (name,) = versions(hm, ALICE, "x.md")
    code = f"""
        import errno, os
        v = ".memfs/history/x.md/{name}"
        attempts = {{
            "write": lambda: open(v, "w"),
            "append": lambda: open(v, "a"),
            "create": lambda: open(".memfs/history/x.md/new", "w"),
            "unlink": lambda: os.unlink(v),
            "rename": lambda: os.rename(v, "stolen.md"),
            "rename_in": lambda: os.rename("x.md", ".memfs/history/x.md/in"),
            "mkdir": lambda: os.mkdir(".memfs/history/new"),
            "rmdir": lambda: os.rmdir(".memfs/history/x.md"),
            "chmod": lambda: os.chmod(v, 0o666),
            "truncate": lambda: os.truncate(v, 0),
            "utime": lambda: os.utime(v, (0, 0)),
        }}
        for what, f in attempts.items():
            try:
                f()
                print(what, "ALLOWED")
            except OSError as e:
                print(what, errno.errorcode[e.errno])
        st = os.stat(v)
        print("size", st.st_size, open(v, "rb").read())
    """
    out = dict(line.split(" ", 1) for line in hm.py(ALICE, code).stdout.splitlines())
    for what in (
        "write",
        "append",
        "create",
        "unlink",
        "rename",
        "rename_in",
        "mkdir",
        "rmdir",
        "chmod",
        "truncate",
    ):
        assert out[what] == "EROFS", (what, out[what])
    assert out["utime"] in ("EROFS", "EPERM")
    assert out["size"] == "2 b'v1'"
    assert hm.sh(ALICE, "cat x.md").stdout == "v1"  # the live file untouched


def test_undelete_and_rollback_with_a_plain_copy(hm):
    hm.sh(ALICE, "echo first > x.md; ls .memfs/history/x.md >/dev/null; echo second > x.md; rm x.md")
    assert not os.path.exists(hm.backing("alice") / "x.md")
    first, second = versions(hm, ALICE, "x.md")
    hm.sh(ALICE, f"cp .memfs/history/x.md/{first} x.md")
    assert hm.sh(ALICE, "cat x.md").stdout == "first\n"
    ops = [(m["op"], m["rest"]) for m in log_lines(hm, ALICE)]
    assert ops[:4] == [("A", "x.md"), ("D", "x.md"), ("M", "x.md"), ("A", "x.md")]
    # a teammate's undelete is the teammate's change
    hm.sh(ALICE, "echo keep > team/k.md; ls .memfs/history/team/k.md >/dev/null; rm team/k.md")
    (v,) = versions(hm, BOB, "team/k.md")
    hm.sh(BOB, f"cp .memfs/history/team/k.md/{v} team/k.md")
    assert [VERSION.match(n)["user"] for n in versions(hm, BOB, "team/k.md")] == ["alice", "bob"]


def test_renamed_files_and_folders_keep_their_history_under_the_old_path(hm):
    hm.sh(ALICE, "mkdir notes; echo a > notes/a.md; echo b > b.md; ls .memfs/history >/dev/null")
    hm.sh(ALICE, "mv b.md c.md; mv notes archive; echo more >> c.md")
    assert len(versions(hm, ALICE, "b.md")) == 1
    assert len(versions(hm, ALICE, "notes/a.md")) == 1
    (moved,) = versions(hm, ALICE, "archive/a.md")
    assert hm.sh(ALICE, f"cat .memfs/history/archive/a.md/{moved}").stdout == "a\n"
    # c.md's history starts with the rename; the append is a version of its own
    assert [hm.sh(ALICE, f"cat .memfs/history/c.md/{v}").stdout for v in versions(hm, ALICE, "c.md")] == [
        "b\n",
        "b\nmore\n",
    ]
    rests = {(m["op"], m["rest"]) for m in log_lines(hm, ALICE)}
    assert ("R", "b.md -> c.md") in rests and ("R", "notes -> archive") in rests
    assert ("D", "b.md") not in rests
    listing = set(hm.sh(ALICE, "ls -1 .memfs/history").stdout.split())
    assert {"archive", "notes", "b.md", "c.md", "team"} <= listing


def test_history_is_scoped_like_the_files(make_mount):
    m = make_mount(CONFIG)
    m.sh(ALICE, "echo 'alice secret' > s.md; echo 'team note' > team/t.md; ls .memfs/history >/dev/null")
    m.sh(BOB, "echo 'bob own' > s.md")
    # bob: his own s.md only, the team's history, no alice private line in his log
    assert [m.sh(BOB, f"cat .memfs/history/s.md/{v}").stdout for v in versions(m, BOB, "s.md")] == [
        "bob own\n"
    ]
    assert len(versions(m, BOB, "team/t.md")) == 1
    assert not [x for x in log_lines(m, BOB) if x["user"] == "alice" and "team/" not in x["rest"]]
    # carol: a grant reader sees alice's history read-only, never the team's
    grant = ".memfs/users/alice/.memfs/history"
    (v,) = m.sh(CAROL, f"ls {grant}/s.md").stdout.split()
    assert m.sh(CAROL, f"cat {grant}/s.md/{v}").stdout == "alice secret\n"
    assert m.sh(CAROL, f"cp {grant}/s.md/{v} {grant}/s.md/x", check=False).returncode != 0
    assert m.sh(CAROL, "ls .memfs/history/team", check=False).returncode != 0
    assert any(x["rest"] == ".memfs/users/alice/s.md" for x in log_lines(m, CAROL))
    assert not any("team/" in x["rest"] for x in log_lines(m, CAROL))
    # dave: nothing of anyone
    assert m.sh(DAVE, "ls .memfs/history/s.md .memfs/history/team", check=False).returncode != 0
    assert m.sh(DAVE, "ls .memfs/users/alice/.memfs/history", check=False).returncode != 0
    assert log_lines(m, DAVE) == []
    # search and the agent views never show old versions
    m.sh(ALICE, "echo 'zebra' > s.md")
    hits = m.sh(ALICE, "cat '.memfs/search/alice secret'").stdout
    assert "No results" in hits
    # bob leaves the team: its history goes with it
    m.config.write_text(CONFIG.replace("members: [alice, bob]", "members: [alice]"))
    m.restart()
    assert m.sh(BOB, "ls .memfs/history/team", check=False).returncode != 0
    assert not any("team/" in x["rest"] for x in log_lines(m, BOB))
    assert len(versions(m, ALICE, "team/t.md")) == 1


def test_a_crash_mid_batch_loses_no_content(make_mount):
    # batches never come due on their own: only the crash and the restart decide
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\n")
    m.sh(ALICE, "echo committed > a.md; ls .memfs/history/a.md >/dev/null")
    m.sh(ALICE, "echo pending > b.md; echo changed > a.md; echo 'team pending' > team/t.md")
    os.kill(m.pid(), signal.SIGKILL)
    wait_for(lambda: daemon_gone(m.pid()), "daemon gone")
    m.start()  # clears the dead mount
    assert [m.sh(ALICE, f"cat .memfs/history/a.md/{v}").stdout for v in versions(m, ALICE, "a.md")] == [
        "committed\n",
        "changed\n",
    ]
    (b,) = versions(m, ALICE, "b.md")
    assert VERSION.match(b)["user"] == "memfs-reconcile"
    assert len(versions(m, BOB, "team/t.md")) == 1


def test_versions_kept_in_a_pending_batch_survive_sigkill(make_mount):
    """Content destroyed while its batch waits is kept in the spool, and recorded in the
    daemon's journal: a daemon killed before the batch commits loses none of it."""
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\n")
    m.sh(ALICE, "echo v1 > x.md; echo gone > y.md; head -c 300000 /dev/zero | tr '\\0' b > big.md")
    m.sh(ALICE, "ls .memfs/history/x.md .memfs/history/y.md .memfs/history/big.md >/dev/null")
    m.sh(ALICE, "echo v2 > x.md; echo v3 > x.md; echo v4 > x.md; rm y.md; echo small > big.md")
    m.sh(BOB, "echo t1 > team/t.md; echo t2 > team/t.md")
    os.kill(m.pid(), signal.SIGKILL)
    wait_for(lambda: daemon_gone(m.pid()), "daemon gone")
    m.start()
    xs = versions(m, ALICE, "x.md")
    shown = [m.sh(ALICE, f"cat .memfs/history/x.md/{v}").stdout for v in xs]
    assert shown == ["v1\n", "v2\n", "v3\n", "v4\n"]
    assert [VERSION.match(v)["user"] for v in xs] == ["alice", "alice", "alice", "memfs-reconcile"]
    assert m.sh(ALICE, "cat .memfs/history/y.md/*").stdout == "gone\n"  # removed, still undeletable
    bigs = versions(m, ALICE, "big.md")
    assert len(bigs) == 2
    assert m.sh(ALICE, f"wc -c < .memfs/history/big.md/{bigs[0]}").stdout.strip() == "300000"
    ts = versions(m, BOB, "team/t.md")
    assert [m.sh(BOB, f"cat .memfs/history/team/t.md/{v}").stdout for v in ts] == ["t1\n", "t2\n"]
    m.stop()
    assert sorted(p.name for p in (m.data / "state" / "kept").iterdir()) == []  # nothing left behind


def test_root_reading_history_leaves_it_the_daemons(hm):
    """memfs doctor (root) reads history beside a live daemon, which may not have made a
    scope's catalog yet (a mount right after a crash): doctor must not create it, or the
    file is root's and the daemon's commits fail 'attempt to write a readonly database'."""
    from memfs import doctor
    from memfs.history.catalog import catalog_file

    hm.sh(ALICE, "echo one > a.md; ls .memfs/history/a.md >/dev/null")
    hm.stop()
    gitdir = layout.history_dir(hm.data, Scope(Kind.PRIVATE, "alice"))
    catalog_file(gitdir).unlink()  # derived: the daemon rebuilds it from the repository
    assert doctor._history(hm.data).ok
    assert not catalog_file(gitdir).exists()
    hm.start()
    hm.sh(ALICE, "echo two > a.md")
    assert len(versions(hm, ALICE, "a.md")) == 2
    assert [p.name for p in gitdir.iterdir() if p.stat().st_uid == 0] == []


def test_changes_behind_memfs_back_are_committed_as_such(hm):
    hm.stop()
    hm.backing("alice").mkdir(parents=True, exist_ok=True)
    (hm.backing("alice") / "admin.md").write_text("edited in DATA\n")
    hm.start()
    (v,) = versions(hm, ALICE, "admin.md")
    assert VERSION.match(v)["user"] == "memfs-reconcile"


def test_retention_prunes_old_versions_and_their_blobs(make_mount):
    m = make_mount(CONFIG + "history: {keep_days: 365}\n", start=False)
    day = 86400
    now = int(time.time())
    folder = m.data / "private" / "alice"
    folder.mkdir(parents=True)
    (folder / "x.md").write_text("v3\n")
    repo = Repo(layout.history_dir(m.data, Scope(Kind.PRIVATE, "alice")))
    blobs = {}

    def commit(days_ago: int, changes: dict, user="alice"):
        sig = pygit2.Signature(user, f"{user}@h", now - days_ago * day, 0)
        out = {}
        for path, text in changes.items():
            if text is None:
                out[path] = None
            else:
                blobs[text] = repo.blob(text.encode())
                out[path] = (BLOB, blobs[text])
        repo.commit(out, sig, sig, "memfs: test\n")

    commit(500, {b"x.md": "v1\n"})
    commit(450, {b"y.md": "gone soon\n"})
    commit(420, {b"y.md": None})
    commit(400, {b"x.md": "v2\n"})
    commit(10, {b"x.md": "v3\n"})
    m.start()
    wait_for(lambda: "pruned" in m.log(), "retention at mount")
    names = versions(m, ALICE, "x.md")
    assert [m.sh(ALICE, f"cat .memfs/history/x.md/{n}").stdout for n in names] == ["v2\n", "v3\n"]
    assert m.sh(ALICE, "ls .memfs/history/y.md", check=False).returncode != 0
    gitdir = str(layout.history_dir(m.data, Scope(Kind.PRIVATE, "alice")))
    count = subprocess.run(
        ["git", "--git-dir", gitdir, "rev-list", "--count", "main"], capture_output=True, text=True
    )
    assert count.stdout.strip() == "2"
    for text, gone in (("v1\n", True), ("gone soon\n", True), ("v2\n", False)):
        res = subprocess.run(
            ["git", "--git-dir", gitdir, "cat-file", "-e", blobs[text].hex()], capture_output=True
        )
        assert (res.returncode != 0) == gone, text


def test_log_is_newest_first_bounded_and_unforgeable(hm):
    hm.py(ALICE, "for i in range(1010): open(f'f{i}.md', 'w').write('x')")
    hm.sh(ALICE, "ls .memfs/history >/dev/null")  # that batch committed before the next
    tricky = "evil\n2026-01-01T00:00:00Z bob D secret.md"
    hm.py(ALICE, f"open({tricky!r}, 'w').write('x')")
    lines = log_lines(hm, ALICE)
    assert len(lines) == 1000
    assert lines[0]["rest"].startswith('"evil\\n2026') and lines[0]["user"] == "alice"
    assert not any(x["user"] == "bob" for x in lines)


def test_cli_log_and_restore(hm):
    def memfs(uid, *args, check=True):
        return hm.run(uid, memfs_cmd(*args, "--mount", str(hm.mnt)), check=check)

    hm.sh(ALICE, "echo one > n.md; ls .memfs/history/n.md >/dev/null; echo two > n.md; rm n.md")
    out = memfs(ALICE, "log").stdout
    assert " alice D n.md" in out.splitlines()[0]
    first, second = versions(hm, ALICE, "n.md")
    listing = memfs(ALICE, "log", "n.md").stdout.splitlines()
    assert [ln.split("\t")[0] for ln in listing] == [second, first]
    assert "restored n.md" in memfs(ALICE, "restore", "n.md").stdout
    assert hm.sh(ALICE, "cat n.md").stdout == "two\n"
    memfs(ALICE, "restore", str(hm.mnt / "n.md"), "--at", first)
    assert hm.sh(ALICE, "cat n.md").stdout == "one\n"
    res = memfs(ALICE, "restore", "n.md", "--at", "2001-01-01", check=False)
    assert res.returncode == 1 and "no version at or before" in res.stderr
    res = memfs(BOB, "restore", "n.md", check=False)  # bob has no n.md of his own
    assert res.returncode == 1 and "no history" in res.stderr
    assert not os.path.exists(hm.backing("bob") / "n.md")


def test_an_odd_name_shows_the_same_everywhere(hm):
    """One display rule (names.quote_path): a name that is not UTF-8 and holds a newline
    reads the same in .memfs/log, in search results and in memfs log/restore."""
    hm.py(ALICE, "open(b'team/odd\\xff\\n.md', 'w').write('a wombat entry')")
    shown = '"team/odd\\377\\n.md"'
    assert [x["rest"] for x in log_lines(hm, ALICE) if x["op"] == "A"] == [shown]
    assert f"## 1. {shown}\n" in hm.sh(ALICE, "cat .memfs/search/wombat").stdout
    run = [*memfs_cmd("log", "--mount", str(hm.mnt))]
    assert hm.run(ALICE, run).stdout.splitlines()[0].endswith(f" A {shown}")
    odd = os.fsdecode(b"team/odd\xff\n.md")
    assert hm.run(ALICE, [*memfs_cmd("restore", odd, "--mount", str(hm.mnt))]).stdout.startswith(
        f"restored {shown} from "
    )


def test_history_off(make_mount):
    m = make_mount(CONFIG + "history: {enabled: false}\n")
    m.sh(ALICE, "echo x > x.md")
    assert m.sh(ALICE, "ls .memfs/history", check=False).returncode != 0
    assert not list((m.data / "history").glob("*/*.git"))


def test_max_bytes_drops_the_oldest_versions_first(make_mount):
    m = make_mount(CONFIG + "history: {max_bytes: 100, prune_seconds: 0}\n")
    for v in ("a", "b", "c"):
        m.sh(ALICE, f"printf '{v * 60}' > big.md; ls .memfs/history/big.md > /dev/null")
    # a prune may run after the second version and again after the third: wait for the state
    wait_for(lambda: len(versions(m, ALICE, "big.md")) == 1, "retention past max_bytes")
    names = versions(m, ALICE, "big.md")
    assert [m.sh(ALICE, f"cat .memfs/history/big.md/{n}").stdout for n in names] == ["c" * 60]
    assert m.sh(ALICE, "cat big.md").stdout == "c" * 60


@pytest.mark.parametrize("destroy", ["printf v2 > b.md", "rm b.md", "echo x > c.md; mv c.md b.md"])
def test_a_renamed_file_is_kept_before_its_new_name_is_overwritten(make_mount, destroy):
    """Content written, renamed and then destroyed under its new name, all inside one
    batch: the version is kept (the new name counts as changed since the last batch)."""
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\n")  # no timer commit in between
    m.sh(ALICE, f"printf v1 > a.md; mv a.md b.md; {destroy}")
    versions = m.sh(ALICE, "cat .memfs/history/b.md/* .memfs/history/a.md/* 2>/dev/null || true").stdout
    assert "v1" in versions, versions


def test_a_rename_of_committed_content_moves_nothing_into_the_spool(make_mount):
    """A file or folder renamed after history committed it, then removed or overwritten in
    the same batch (an editor's backup rename, mv then rm): its content is in history
    already, so the rm unlinks it as without history and nothing is copied; the new name's
    history still starts with that version (the committer records the move first). What
    a rename carried that was not yet committed is kept, as before."""
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\n")  # commits only when history is read
    spool = layout.spool_dir(m.data)

    def spooled() -> list[str]:
        return sorted(p.name for p in spool.iterdir() if p.suffix != ".journal")  # kept bytes

    def contents(path: str) -> list[str]:
        shown = [m.sh(ALICE, f"cat '.memfs/history/{path}/{v}'").stdout for v in versions(m, ALICE, path)]
        return sorted(shown)

    m.sh(ALICE, "printf v1 > a.md; mkdir d; printf w1 > d/x.md; echo z > d/z.md")
    m.sh(ALICE, "ls .memfs/history >/dev/null")  # committed
    m.sh(ALICE, "mv a.md b.md; mv b.md c.md; rm c.md; mv d e; printf w2 > e/x.md; rm e/z.md")
    assert spooled() == []
    m.sh(ALICE, "printf v3 > f.md; mv f.md g.md; mkdir h; printf y3 > h/y.md; mv h i; rm g.md i/y.md")
    assert spooled() != []  # uncommitted content renamed, then removed: kept
    assert contents("a.md") == contents("b.md") == contents("c.md") == ["v1"]
    assert contents("d/x.md") == ["w1"] and contents("e/x.md") == ["w1", "w2"]
    assert contents("e/z.md") == ["z\n"]
    assert contents("g.md") == ["v3"] and contents("i/y.md") == ["y3"]
    rests = {(x["op"], x["rest"]) for x in log_lines(m, ALICE)}
    assert {("R", "a.md -> b.md"), ("R", "b.md -> c.md"), ("R", "d -> e"), ("D", "c.md")} <= rests, rests
    # in the order it happened: the move first, then what was written over it
    m.sh(ALICE, "printf x1 > x.md; ls .memfs/history >/dev/null; mv x.md y.md; printf y1 > y.md")
    m.sh(ALICE, "printf y2 > y.md")
    m.sh(ALICE, "ls .memfs/history >/dev/null")
    git = ["git", "--git-dir", str(layout.history_dir(m.data, Scope(Kind.PRIVATE, "alice")))]

    def git_out(*args: str) -> str:
        return subprocess.run([*git, *args], capture_output=True, text=True, check=True).stdout

    revs = git_out("log", "--reverse", "--format=%H", "--", "y.md").split()
    assert [git_out("show", f"{r}:y.md") for r in revs] == ["x1", "y1", "y2"]
    # past FOLDER_MOVES moves of committed folders in one batch (each costs the committer a
    # pass over the folder), later ones count as carrying: rm keeps a copy again
    m.sh(ALICE, "mkdir q0; printf q1 > q0/x.md; ls .memfs/history >/dev/null")
    m.sh(ALICE, "for i in $(seq 16); do mv q$((i - 1)) q$i; done")
    assert spooled() == []
    m.sh(ALICE, "mv q16 q17; rm q17/x.md")
    assert spooled() != []
    assert contents("q17/x.md") == ["q1"] and contents("q0/x.md") == ["q1"]
    # past CARRIES_SCAN pending paths a folder rename is not searched (a storm of them
    # would cost O(pending) each on the loop): it is assumed to carry, and rm keeps a copy
    m.sh(ALICE, "mkdir k; printf k1 > k/x.md; ls .memfs/history >/dev/null")
    m.py(ALICE, "for i in range(2100): open(f'many{i}', 'w').close()")
    assert spooled() == []
    m.sh(ALICE, "mv k l; rm l/x.md")
    assert spooled() != []
    assert contents("l/x.md") == ["k1"]


def test_history_is_bounded_by_the_scopes_quota_by_default(make_mount):
    """No history.max_bytes: a user's versions are pruned past that user's own quota, so
    rewrites cannot store more than the quota in history (the newest version stays)."""
    m = make_mount(CONFIG + "limits: {user_bytes: 64K}\nhistory: {prune_seconds: 0}\n")
    for v in "abcd":
        m.sh(ALICE, f"head -c 30000 /dev/zero | tr '\\0' {v} > big.md; ls .memfs/history/big.md > /dev/null")

    def kept() -> int:
        names = versions(m, ALICE, "big.md")
        return sum(int(m.sh(ALICE, f"wc -c < .memfs/history/big.md/{n}").stdout) for n in names)

    # retention may run after any of the rewrites: wait for the state it must reach
    wait_for(lambda: kept() <= 64 * 1024, "retention down to the quota")
    names = versions(m, ALICE, "big.md")
    assert names and kept() <= 64 * 1024, names
    assert m.sh(ALICE, f"head -c 1 .memfs/history/big.md/{names[-1]}").stdout == "d"


def test_rewrites_keep_every_version_without_waiting_for_a_commit(make_mount):
    """Overwrites, in-place patches, truncates and removal inside one batch: the callers
    never wait for a commit (the scope's branch does not move until history is read), and
    every content a caller destroyed is a version, in order, with its writer as author."""
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\n")
    gitdir = layout.history_dir(m.data, Scope(Kind.TEAM, "eng"))

    def commits() -> int:
        if not (gitdir / "HEAD").exists():
            return 0
        out = subprocess.run(
            ["git", "--git-dir", str(gitdir), "rev-list", "--all", "--count"], capture_output=True, text=True
        )
        return int(out.stdout or 0)

    before = commits()
    m.sh(BOB, "printf bob1 > team/t.md")
    m.sh(ALICE, "printf alice2 > team/t.md")  # O_TRUNC: bob's content goes
    m.py(ALICE, "import os; fd = os.open('team/t.md', os.O_WRONLY); os.pwrite(fd, b'ALICE', 0); os.close(fd)")
    m.sh(BOB, "truncate -s 3 team/t.md")  # alice's patched content goes
    m.sh(BOB, "printf x > team/u.md; mv team/u.md team/t.md")  # a rename over it
    m.sh(ALICE, "rm team/t.md")
    assert commits() == before  # nobody waited for a commit
    # by time, then the scope's count (a name sorts by user within one second)
    names = sorted(versions(m, ALICE, "team/t.md"), key=lambda n: (n[:16], n.rsplit("-", 1)[1]))
    got = [(VERSION.match(n)["user"], m.sh(ALICE, f"cat .memfs/history/team/t.md/{n}").stdout) for n in names]
    assert got == [("bob", "bob1"), ("alice", "alice2"), ("alice", "ALICE2"), ("bob", "ALI"), ("bob", "x")], (
        got
    )


def test_rm_in_the_batch_keeps_the_content_and_an_open_reader_keeps_reading(make_mount):
    """rm of a file history has not committed moves it into history's spool instead of
    unlinking it: the name is gone at once (for everyone, and for rm -f again), a reader
    that holds it open reads it whole and sees it removed, and the removed content is a
    version."""
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\n")
    m.sh(ALICE, "seq 1 20000 > team/held.md; echo y > team/other.md; mkdir team/d")
    m.py(
        ALICE,
        """
        import os, subprocess
        fd = os.open('team/held.md', os.O_RDONLY)
        subprocess.run(['rm', 'team/held.md', 'team/other.md'], check=True)
        assert not os.path.exists('team/held.md') and not os.path.exists('team/other.md')
        assert os.fstat(fd).st_nlink == 0, os.fstat(fd)
        data = os.pread(fd, 1 << 20, 0)
        assert data == b''.join(b'%d\\n' % i for i in range(1, 20001)), len(data)
        os.close(fd)
        """,
    )
    again = m.sh(BOB, "rm -f team/held.md; rm team/held.md 2>&1 || echo refused").stdout
    assert again.strip().endswith("refused")
    assert m.sh(BOB, "rm team/d 2>&1 || echo refused").stdout.strip().endswith("refused")  # still EISDIR
    assert len(versions(m, BOB, "team/other.md")) == 1
    names = versions(m, ALICE, "team/held.md")
    assert len(names) == 1 and VERSION.match(names[0])["user"] == "alice", names
    assert m.sh(ALICE, f"wc -l < .memfs/history/team/held.md/{names[0]}").stdout.strip() == "20000"
    m.sh(ALICE, "echo again > team/held.md")  # the name is free again, a new file
    assert m.sh(BOB, "cat team/held.md").stdout == "again\n"


def test_content_destroyed_while_its_batch_is_being_committed_is_kept(make_mount, base_dir):
    """The commit worker reads a batch's files from disk: a rewrite that lands while that
    batch is being committed must keep what it destroys, as for a batch still queued
    (found by t5_sync_model under load: a closed version was in no file and no history)."""
    holds = base_dir / "holds"
    holds.mkdir()
    os.chmod(holds, 0o777)
    hold = holds / "hold"
    hold.touch()
    m = make_mount(CONFIG + "history: {batch_seconds: 0.2}\n", env={"MEMFS_TEST_HOLD_COMMITS": str(hold)})
    m.sh(ALICE, "printf one > x.md")
    wait_for(lambda: (holds / "hold.waiting").exists(), "a commit in flight")
    m.sh(ALICE, "printf two > x.md")  # O_TRUNC while the batch holding 'one' is committed
    m.sh(ALICE, "rm -f y.md; printf three > y.md; printf four > y.md")  # a new batch meanwhile
    hold.unlink()
    names = versions(m, ALICE, "x.md")
    got = sorted(m.sh(ALICE, f"cat .memfs/history/x.md/{n}").stdout for n in names)
    assert "one" in got and "two" in got, got
    assert m.sh(ALICE, "cat x.md").stdout == "two"


def test_rm_after_a_flood_keeps_the_content_and_never_waits_for_the_commit(make_mount, base_dir):
    # Past history.max_events changes in one batch, the batch becomes a walk of the whole
    # scope (35 s at 100k files) and every path counts as changed. rm used to wait for that
    # commit; with commits held it hung. It must keep the content (a rename into the spool)
    # and go on, and the version must be in history once commits resume.
    holds = base_dir / "holds"
    holds.mkdir()
    os.chmod(holds, 0o777)
    hold = holds / "hold"
    m = make_mount(
        CONFIG + "history: {batch_seconds: 0.2, max_events: 5}\n", env={"MEMFS_TEST_HOLD_COMMITS": str(hold)}
    )
    m.sh(ALICE, "printf kept > doomed.md")
    assert len(versions(m, ALICE, "doomed.md")) == 1  # committed
    hold.touch()
    try:
        m.sh(ALICE, "printf a > first.md")
        wait_for(lambda: (holds / "hold.waiting").exists(), "a commit in flight")  # holds the scope
        m.sh(ALICE, "mkdir flood && for i in $(seq 40); do echo $i > flood/$i.md; done")  # > max_events
        m.sh(ALICE, "printf changed > doomed.md", timeout=20)  # pending again, commits held
        m.sh(ALICE, "rm doomed.md flood/1.md", timeout=20)  # hung for the held rescan
        assert m.sh(ALICE, "ls doomed.md", check=False).returncode != 0
    finally:
        hold.unlink()
    got = sorted(
        m.sh(ALICE, f"cat .memfs/history/doomed.md/{n}").stdout for n in versions(m, ALICE, "doomed.md")
    )
    assert got == ["changed", "kept"], got


def test_rm_of_a_file_too_big_to_version_unlinks_it_and_keeps_its_neighbour(make_mount):
    # A file past history's version cap (64 MiB), not yet committed: rm unlinks it (its
    # blocks are freed) instead of moving it into the spool, while a small file removed
    # by the same rm is kept as a version.
    m = make_mount(CONFIG + "history: {batch_seconds: 3600}\nlimits: {max_file_bytes: 80M}\n")
    m.sh(ALICE, "head -c 67108865 /dev/zero > big.md; printf small > small.md")
    m.sh(ALICE, "rm big.md small.md")
    assert "big.md" not in m.sh(ALICE, "ls").stdout.split()
    spooled = [p.stat().st_size for p in layout.spool_dir(m.data).iterdir() if p.suffix != ".journal"]
    assert all(size < 1 << 20 for size in spooled), spooled  # the 64 MiB went nowhere
    held = sum(p.lstat().st_blocks * 512 for p in m.data.rglob("*") if p.is_file())
    assert held < 16 << 20, held  # nothing under DATA/ holds its blocks (history, index, spool)
    assert [
        m.sh(ALICE, f"cat .memfs/history/small.md/{n}").stdout for n in versions(m, ALICE, "small.md")
    ] == ["small"]
    assert m.sh(ALICE, "ls .memfs/history/big.md 2>&1", check=False).returncode != 0


def test_an_empty_file_removed_before_its_batch_still_has_its_version(make_mount):
    # rm of an empty file not yet committed moves it into the spool like any other (what
    # it was is read after the reply); its version, empty, must still reach history.
    m = make_mount(CONFIG + "history: {batch_seconds: 30}\n")
    m.sh(ALICE, ": > empty.md; printf x > full.md; rm empty.md full.md")
    assert [
        m.sh(ALICE, f"cat .memfs/history/empty.md/{n}").stdout for n in versions(m, ALICE, "empty.md")
    ] == [""]
    assert [m.sh(ALICE, f"cat .memfs/history/full.md/{n}").stdout for n in versions(m, ALICE, "full.md")] == [
        "x"
    ]
