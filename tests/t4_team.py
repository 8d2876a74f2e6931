"""Team scope, read-only grants and whoami, with an adversarial access matrix."""

from __future__ import annotations

import grp
import hashlib
import os
import subprocess

import pytest
import yaml
from conftest import ALICE, BOB, CAROL, DAVE, SYS_PYTHON, TIMEOUT
from t4_isolation import run_switcher

TEAM_CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  carol: {uid: 1003}
  dave: {uid: 1004}
teams:
  eng: {members: [alice, bob]}
  ops: {members: [dave]}
grants:
  - {reader: carol, owner: alice}
"""


@pytest.fixture
def tm(shared_mount):
    """This file's tests share one mount (conftest.shared_mount)."""
    return shared_mount(TEAM_CONFIG)


def test_members_share_the_team_folder(tm):
    tm.sh(ALICE, "mkdir -p team/sub; echo '- [Tabs](tabs.md)' > team/MEMORY.md; echo t > team/sub/x.md")
    assert tm.sh(BOB, "cat team/MEMORY.md team/sub/x.md").stdout == "- [Tabs](tabs.md)\nt\n"
    tm.sh(BOB, "echo '- [Tests](tests.md)' >> team/MEMORY.md; rm team/sub/x.md")
    assert (
        tm.sh(ALICE, "cat team/MEMORY.md; ls team/sub").stdout == "- [Tabs](tabs.md)\n- [Tests](tests.md)\n"
    )
    assert (tm.data / "teams" / "eng" / "MEMORY.md").read_text().count("\n") == 2
    # Not in a team: no `team` at all. In another team: that team's own folder.
    assert "No such file" in tm.sh(CAROL, "ls team", check=False).stderr
    assert tm.sh(CAROL, "ls -A").stdout == ""
    assert tm.sh(DAVE, "ls -A team").stdout == ""
    tm.sh(DAVE, "echo ops > team/MEMORY.md")
    assert tm.sh(ALICE, "cat team/MEMORY.md").stdout.count("\n") == 2
    assert sorted(tm.sh(ALICE, "ls -A").stdout.split()) == ["team"]


def test_team_files_show_truthful_owner_and_mode(tm):
    tm.sh(ALICE, "echo p > p.md; mkdir team/d; echo t > team/t.md")
    assert tm.run(ALICE, ["stat", "-c", "%a %u", "p.md"]).stdout.split() == ["600", str(ALICE)]
    # eng has no Unix group: only members ever reach it, so the bits show to all.
    assert tm.run(BOB, ["stat", "-c", "%a", "team/t.md", "team/d"]).stdout.split() == ["666", "777"]
    assert tm.sh(BOB, "test -w team/t.md && test -r team/t.md && echo yes").stdout == "yes\n"


def test_new_team_files_have_equal_times(tm):
    """Recording a team file's or folder's creator (an xattr) moves its ctime: a new one
    still shows atime = mtime = ctime, as natively (t5_conformance's create_times and
    mkdir_times, in team/). A create sets the times again only when the kernel's coarse
    clock ticked in between (~3 in 1,000 creates): 2,000 of them, so that it happens."""
    out = tm.py(
        ALICE,
        """
        import os
        odd = []
        for i in range(2000):
            fd = os.open(f"team/n{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            made = [f"team/n{i}"]
            if i < 200:
                os.mkdir(f"team/d{i}")
                made.append(f"team/d{i}")
            for made in made:
                st = os.stat(made)
                if not st.st_atime_ns == st.st_mtime_ns == st.st_ctime_ns:
                    odd.append(made)
        print(odd)
        """,
    )
    assert out.stdout == "[]\n"


def test_team_files_owned_by_their_creator(tm):
    """Issue 26: a team file or folder shows who made it as owner, as on a shared setgid
    disk, so git, cp -a, rsync -a and sed -i work in team/ for its maker; the same owner
    for every caller and across a remount; chown to another uid is EPERM."""
    git = "git -c user.name=bob -c user.email=bob@example.com"
    out = tm.sh(
        BOB,
        f"git init -q team/g && cd team/g && git status --short && echo x > a.md && git add a.md"
        f" && {git} commit -qm one && {git} status --short && git log --oneline | wc -l",
    )
    assert (out.stdout, out.stderr) == ("1\n", "")
    copies = tm.sh(
        BOB,
        "mkdir src && echo a > src/a.md && chmod 640 src/a.md && cp -a src team/c && rsync -a src/ team/r/"
        " && echo a > team/s.md && sed -i s/a/b/ team/s.md && cat team/s.md team/c/a.md team/r/a.md",
    )
    assert (copies.stdout, copies.stderr) == ("b\na\na\n", "")
    tm.sh(ALICE, "echo mine > team/mine.md; mkdir team/adir")
    paths = ["team/g", "team/g/.git/HEAD", "team/c", "team/c/a.md", "team/r/a.md", "team/s.md"]
    seen = tm.run(ALICE, ["stat", "-c", "%u", *paths, "team/mine.md", "team/adir"]).stdout.split()
    assert seen == [str(BOB)] * len(paths) + [str(ALICE)] * 2
    # chown to someone else is EPERM, for the owner and for a teammate; so is a teammate's chmod
    for uid, cmd in (
        (BOB, "chown 1001 team/s.md"),
        (ALICE, "chown 1001 team/s.md"),
        (ALICE, "chmod 700 team/s.md"),
    ):
        res = tm.sh(uid, cmd, check=False)
        assert res.returncode != 0 and "Operation not permitted" in res.stderr, (cmd, res.stderr)
    tm.sh(BOB, "chmod 700 team/s.md && chown 1002:1002 team/s.md")  # the owner's own: accepted
    assert tm.run(ALICE, ["stat", "-c", "%u %a", "team/s.md"]).stdout.split() == [str(BOB), "777"]
    tm.restart()
    assert tm.run(ALICE, ["stat", "-c", "%u", *paths]).stdout.split() == [str(BOB)] * len(paths)
    # a private file promoted to the team stays its maker's, made before or after; so does
    # everything a private folder holds (private creates record no maker: the move does),
    # and a team file that went through a private folder keeps its own maker
    tm.sh(BOB, "echo b > team/b.md")
    tm.sh(ALICE, "echo p > p.md && mv p.md team/")
    assert tm.run(BOB, ["stat", "-c", "%u", "team/p.md"]).stdout.split() == [str(ALICE)]
    tm.sh(ALICE, "mkdir -p pd/sub && echo a > pd/a.md && echo s > pd/sub/s.md && mv team/b.md pd/sub/")
    tm.sh(ALICE, "mv pd team/")
    moved = ["team/pd", "team/pd/a.md", "team/pd/sub", "team/pd/sub/s.md", "team/pd/sub/b.md"]
    want = [str(ALICE)] * 4 + [str(BOB)]
    assert tm.run(BOB, ["stat", "-c", "%u", *moved]).stdout.split() == want
    tm.restart()
    assert tm.run(BOB, ["stat", "-c", "%u", *moved]).stdout.split() == want


def test_team_with_unix_group_shows_it(make_mount):
    name = f"memfs-t{os.getpid() % 100000}"
    subprocess.run(["groupadd", name], check=True, timeout=TIMEOUT)
    try:
        gid = grp.getgrnam(name).gr_gid
        m = make_mount(
            f"users:\n  alice: {{uid: 1001}}\nteams:\n  eng: {{members: [alice], group: {name}}}\n"
        )
        m.sh(ALICE, "echo t > team/t.md")
        assert m.run(ALICE, ["stat", "-c", "%a %g", "team/t.md"]).stdout.split() == ["660", str(gid)]
    finally:
        subprocess.run(["groupdel", name], check=False, timeout=TIMEOUT)


def test_promote_and_demote_by_mv(tm):
    tm.sh(ALICE, "echo note > note.md; mkdir -p coll; echo c > coll/c.md")
    assert tm.run(ALICE, ["stat", "-c", "%a", "note.md"]).stdout.strip() == "600"
    tm.sh(ALICE, "mv note.md team/ && mv coll team/")
    assert (tm.data / "teams" / "eng" / "note.md").read_text() == "note\n"
    assert (tm.data / "teams" / "eng" / "coll" / "c.md").read_text() == "c\n"
    assert not (tm.backing("alice") / "note.md").exists()
    # The kernel's cached attributes follow the move at once.
    # (and alice, who made it, stays its owner: issue 26)
    assert tm.run(ALICE, ["stat", "-c", "%a %u", "team/note.md"]).stdout.split() == ["666", str(ALICE)]
    assert tm.sh(BOB, "cat team/note.md team/coll/c.md").stdout == "note\nc\n"
    tm.sh(BOB, "mv team/note.md mine.md")
    assert tm.sh(BOB, "cat mine.md").stdout == "note\n"
    assert tm.run(BOB, ["stat", "-c", "%a %u", "mine.md"]).stdout.split() == ["600", str(BOB)]
    assert (tm.backing("bob") / "mine.md").exists()
    assert "No such file" in tm.sh(ALICE, "cat team/note.md", check=False).stderr


def test_grants_are_read_only(tm):
    tm.sh(ALICE, "echo secret > MEMORY.md; mkdir d; echo x > d/x.md")
    view = ".memfs/users/alice"
    assert tm.sh(CAROL, f"cat {view}/MEMORY.md {view}/d/x.md").stdout == "secret\nx\n"
    assert sorted(tm.sh(CAROL, f"ls {view}").stdout.split()) == ["MEMORY.md", "d"]
    for cmd in (
        f"echo no > {view}/MEMORY.md",
        f"echo no >> {view}/MEMORY.md",
        f"touch {view}/new.md",
        f"rm {view}/MEMORY.md",
        f"mkdir {view}/e",
        f"mv {view}/d/x.md {view}/y.md",
        f"mv {view}/MEMORY.md stolen.md",
        f"chmod 644 {view}/MEMORY.md",
        f"truncate -s0 {view}/MEMORY.md",
    ):
        res = tm.sh(CAROL, cmd, check=False)
        assert res.returncode != 0, cmd
        assert "Read-only file system" in res.stderr or "Permission denied" in res.stderr, res.stderr
    assert (tm.backing("alice") / "MEMORY.md").read_text() == "secret\n"
    assert sorted(p.name for p in tm.backing("alice").iterdir()) == ["MEMORY.md", "d"]
    # Without a grant the path does not exist.
    for uid in (BOB, DAVE):
        assert "No such file" in tm.sh(uid, f"cat {view}/MEMORY.md", check=False).stderr
    assert "No such file" in tm.sh(CAROL, "ls .memfs/users/bob", check=False).stderr


def test_whoami(tm):
    who = yaml.safe_load(tm.sh(ALICE, "cat .memfs/whoami").stdout)
    usage = who.pop("usage")
    assert usage["open_files"] == 1 and usage["open_files_limit"] == 1024  # the handle being read
    assert usage["private_files"] == 0 and usage["team_bytes_limit"] == 4 << 30
    assert who == {
        "user": "alice",
        "uid": ALICE,
        "team": "eng",
        "private_path": str(tm.mnt),
        "team_path": f"{tm.mnt}/team",
        "grants": [],
    }
    who = yaml.safe_load(tm.sh(CAROL, "cat .memfs/whoami").stdout)
    assert who["team"] is None and who["team_path"] is None
    assert who["grants"] == [{"owner": "alice", "access": "read", "path": f"{tm.mnt}/.memfs/users/alice"}]


def test_control_dir_is_hidden_but_reachable(tm):
    tm.sh(ALICE, "echo needle > n.md")
    assert ".memfs" not in tm.sh(ALICE, "ls -a").stdout
    assert tm.sh(ALICE, "grep -rl alice . || true").stdout == ""  # whoami says 'alice'; not searched
    assert tm.sh(ALICE, "grep -rl needle .").stdout == "./n.md\n"
    assert "whoami" in tm.sh(ALICE, "ls .memfs").stdout
    res = tm.sh(ALICE, "echo x > .memfs/whoami", check=False)
    assert res.returncode != 0


def test_removed_member_loses_access_after_restart(tm):
    tm.sh(BOB, "echo shared > team/s.md")
    tm.config.write_text(TEAM_CONFIG.replace("members: [alice, bob]", "members: [alice]"))
    tm.restart()
    assert "No such file" in tm.sh(BOB, "cat team/s.md", check=False).stderr
    assert tm.sh(ALICE, "cat team/s.md").stdout == "shared\n"


def test_member_and_non_member_alternate_on_team_names(tm):
    out = run_switcher(
        tm,
        """
        M = os.environ["M"]
        for i in range(20):
            as_uid(1001)
            if i == 0:
                open(M + "/team/x.md", "w").write("eng")
            print("a", attempt(lambda: open(M + "/team/x.md").read()))
            as_uid(1003); print("c", attempt(lambda: open(M + "/team/x.md").read()),
                                attempt(lambda: os.listdir(M + "/team")))
            as_uid(1004); print("d", attempt(lambda: open(M + "/team/x.md").read()))
            as_uid(1002); print("b", attempt(lambda: open(M + "/team/x.md").read()))
        """,
    )
    assert out == ["a eng", "c ENOENT ENOENT", "d ENOENT", "b eng"] * 20


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("users:\n  a: {uid: 1001}\nteams:\n  eng: {members: [a, ghost]}\n", "unknown user 'ghost'"),
        ("users:\n  a: {uid: 1001}\ngrants:\n  - {reader: a, owner: ghost}\n", "unknown user 'ghost'"),
        ("users:\n  a: {uid: 1001}\n  b: {uid: 1001}\n", "uid 1001"),
        ("users:\n  a: {uid: 1001}\nteams:\n  x: {members: [a]}\n  y: {members: [a]}\n", "users.a.team"),
        ("users:\n  a: {uid: 1001, team: z}\nteams:\n  x: {members: [a]}\n", "no team named 'z'"),
    ],
)
def test_config_errors_stop_mount(make_mount, config, needle):
    m = make_mount(config, start=False)
    res = m.start(check=False)
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr, res.stderr
    assert not os.path.ismount(m.mnt)


def test_multi_team_user_picks_one(make_mount):
    m = make_mount(
        "users:\n  alice: {uid: 1001, team: y}\n  bob: {uid: 1002}\n"
        "teams:\n  x: {members: [alice, bob]}\n  y: {members: [alice]}\n"
    )
    m.sh(ALICE, "echo y > team/f.md")
    assert (m.data / "teams" / "y" / "f.md").exists()
    assert "No such file" in m.sh(BOB, "cat team/f.md", check=False).stderr


# -- the adversarial matrix ----------------------------------------------------------------

OPS = {
    "stat": "os.stat(D + '/f.md')",
    "readdir": "sorted(os.listdir(D)) and None",
    "open_read": "open(D + '/f.md').read() and None",
    "open_write": "open(D + '/w.md', 'r+').write('X') and None",
    "open_trunc": "open(D + '/w2.md', 'w').close()",
    "create": "open(D + '/new.md', 'x').close()",
    "mkdir": "os.mkdir(D + '/newdir')",
    "unlink": "os.unlink(D + '/u.md')",
    "rmdir": "os.rmdir(D + '/sub')",
    "rename_within": "os.rename(D + '/r.md', D + '/r2.md')",
    "rename_out": "os.rename(D + '/o.md', MINE + '/stolen.md')",
    "rename_in": "os.rename(MINE + '/mine.md', D + '/planted.md')",
    "chmod": "os.chmod(D + '/c.md', 0o700)",
    "truncate": "os.truncate(D + '/t.md', 0)",
    "utime": "os.utime(D + '/ut.md', (0, 0))",
    "statfs": "os.statvfs(D) and None",
}
READS = {"stat", "readdir", "open_read", "statfs"}
DENIED = {"EACCES", "EROFS"}


def snapshot(root) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            body = open(p, "rb").read() if n in files else b""
            out[os.path.relpath(p, root)] = (st.st_mode, hashlib.sha1(body).hexdigest())
    return out


SETUP = "mkdir -p {d}/sub {d}/full; echo data > {d}/full/x.md; " + " ".join(
    f"echo {n} > {{d}}/{n}.md;" for n in ("f", "w", "w2", "u", "r", "o", "c", "t", "ut")
)

# relation -> (owner uid that sets up, dir as the owner sees it, tester uid, how the tester gets there)
RELATIONS = {
    "own_private": (ALICE, "m", ALICE, "path", "m"),
    "own_team": (ALICE, "team/m", BOB, "path", "team/m"),
    "granted_read": (ALICE, "m", CAROL, "path", ".memfs/users/alice/m"),
    "other_private_cwd": (ALICE, "m", BOB, "cwd", None),
    "other_team_cwd": (ALICE, "team/m", DAVE, "cwd", None),
    "other_private_path": (ALICE, "m", BOB, "path", ".memfs/users/alice/m"),
    "grant_cwd_of_owner_subdir": (ALICE, "m", CAROL, "cwd", None),
}


def expected(relation: str, op: str) -> set[str]:
    if relation == "own_team" and op == "chmod":
        return {"EPERM"}  # a teammate's file: only its owner changes its mode, as natively
    if relation in ("own_private", "own_team"):
        return {"ok"}
    if relation == "granted_read" or relation == "grant_cwd_of_owner_subdir":
        return {"ok"} if op in READS else DENIED
    if relation == "other_private_path":
        return {"ENOENT"}
    # A process sitting in another scope: refused, except statfs, which reports only the disk.
    return {"ok"} if op == "statfs" else {"EACCES"}


@pytest.mark.parametrize("relation", list(RELATIONS))
def test_access_matrix(tm, relation):
    owner, owner_dir, tester, how, tester_dir = RELATIONS[relation]
    tm.sh(owner, SETUP.format(d=owner_dir))
    tm.sh(tester, "echo mine > mine.md")
    before = snapshot(tm.data / "private" / "alice"), snapshot(tm.data / "teams")
    ops = "\n".join(f"print({op!r}, attempt(lambda: ({code}, None)[1]))" for op, code in OPS.items())
    if how == "path":
        goto = f"as_uid({tester}); D = M + '/{tester_dir}'"
    else:
        # Sit in the owner's folder as the owner, then become the tester; drop the kernel's
        # dentry cache so every name is asked of the daemon, not answered from the cache.
        goto = (
            f"as_uid({owner}); os.chdir(M + '/{owner_dir}'); os.listdir('.'); D = '.'\n"
            "os.seteuid(0); open('/proc/sys/vm/drop_caches', 'w').write('2')\n"
            f"as_uid({tester})"
        )
    out = run_switcher(tm, f"M = os.environ['M']\nMINE = M\n{goto}\n{ops}\n")
    got = dict(line.split() for line in out)
    wrong = {op: got[op] for op in OPS if got[op] not in expected(relation, op)}
    assert not wrong, f"{relation}: {wrong}"
    if relation not in ("own_private", "own_team"):
        after = snapshot(tm.data / "private" / "alice"), snapshot(tm.data / "teams")
        assert after == before, f"{relation} changed the owner's files"


def test_an_open_folder_follows_renames_but_not_into_private_memory(tm):
    """A folder held open follows its renames inside the team, as a directory fd does
    (not the folder now at its old name); once a teammate moves it into their private
    memory, the holder lists nothing of it (the handle was checked for the team only),
    and fsync on it still succeeds (natively, both listings would show the folder)."""
    tm.sh(BOB, "mkdir -p team/open && echo a > team/open/a.md")
    holder = f"""
import ctypes, errno, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(65536)
def names(fd):  # getdents64 itself: no fstat first, as os.listdir's fdopendir does
    os.lseek(fd, 0, os.SEEK_SET)
    out = []
    while (n := libc.syscall(217, fd, buf, len(buf))) > 0:
        pos = 0
        while pos < n:
            reclen = struct.unpack_from("H", buf.raw, pos + 16)[0]
            out.append(buf.raw[pos + 19 : pos + reclen].split(b"\\0")[0].decode())
            pos += reclen
    if n < 0:
        return errno.errorcode[ctypes.get_errno()]
    return sorted(x for x in out if x not in (".", ".."))
fd = os.open({str(tm.mnt / "team" / "open")!r}, os.O_RDONLY | os.O_DIRECTORY)
for _ in range(2):
    print("ready", flush=True)
    sys.stdin.readline()
    print(names(fd), flush=True)
os.fsync(fd)
print("synced", flush=True)
"""
    with subprocess.Popen(
        [SYS_PYTHON, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        user=ALICE,
        group=ALICE,
        extra_groups=[],
    ) as p:
        assert p.stdin is not None and p.stdout is not None
        try:
            assert p.stdout.readline() == "ready\n"
            tm.sh(BOB, "mv team/open team/moved && mkdir team/open && echo o > team/open/other.md")
            p.stdin.write("\n")
            p.stdin.flush()
            assert p.stdout.readline() == "['a.md']\n"
            assert p.stdout.readline() == "ready\n"
            tm.sh(BOB, "echo s > team/moved/secret-name.md && mv team/moved mine")
            p.stdin.write("\n")
            p.stdin.flush()
            assert p.stdout.readline() == "[]\n"
            assert p.stdout.readline() == "synced\n"
            assert p.wait(timeout=TIMEOUT) == 0
        finally:
            if p.poll() is None:
                p.kill()
    assert tm.run(BOB, ["ls", "mine"]).stdout.split() == ["a.md", "secret-name.md"]
