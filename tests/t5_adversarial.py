"""A hostile uid attacks the shared mount; another uid checks it was not hurt.

Each test: mallory (in no team) runs one attack from issue "multi-tenant safety"; the
daemon must survive, nothing may leak, mallory gets clean errors, and alice (and her
team) go on as before. Latency under attack is measured by `scripts/bench --adversarial`,
not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from conftest import ALICE, BOB, CAROL, TIMEOUT
from t4_search import entry, hit_paths, search, search_json, write

MALLORY = 1666
CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  carol: {uid: 1003}
  mallory: {uid: 1666}
teams:
  eng: {members: [alice, bob]}
grants:
  - {reader: carol, owner: alice}
"""


@pytest.fixture
def am(shared_mount):
    """This file's tests share one mount (conftest.shared_mount)."""
    return shared_mount(CONFIG)


def alive(m) -> None:
    """The daemon still serves another uid, with its own data intact."""
    assert m.pid() is not None and os.path.exists(f"/proc/{m.pid()}")
    write(m, ALICE, "probe.md", entry("Probe", "alive wallaby"))
    assert m.sh(ALICE, "cat probe.md").stdout.endswith("alive wallaby\n")
    assert hit_paths(search(m, ALICE, "wallaby")) == ["probe.md"]


def spawn(m, uid: int, code: str, cwd: str = "."):
    """A long-lived python as `uid`, started in `cwd` below the mount (entered after the
    uid switch: as root the mount shows root's own scope)."""
    return subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            'cd "$0" && exec /usr/bin/python3 -c "$1"',
            str(m.mnt / cwd),
            textwrap.dedent(code),
        ],
        user=uid,
        group=uid,
        extra_groups=[],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_query_syntax_cannot_crash_the_daemon(am):
    # Tantivy's parser recursed once per level: 3,000 parentheses overflowed its stack.
    out = am.py(
        MALLORY,
        r"""
        import random
        rnd = random.Random(7)
        atoms = ['(', ')', '"', '+', '-', 'NOT ', 'AND ', 'OR ', 'body:', 'name:', '~', '^2', '*',
                 '[a TO z]', '{', '}', 'IN [a b]', '/re.*/', 'x', 'y ', '\\', ':', '!', '&&', '||']
        queries = ['(' * 3000 + 'x' + ')' * 3000, 'NOT ' * 30000 + 'x', '+' * 60000 + 'x',
                   '(a ' * 5000, '("a" ' * 5000, 'a AND ' * 10000 + 'b', 'x ' * 60000]
        queries += [''.join(rnd.choice(atoms) for _ in range(rnd.randint(1, 3000))) for _ in range(150)]
        answered = 0
        for i, q in enumerate(queries):
            name = '.memfs/query.json' if i % 2 else '.memfs/query'
            with open(name, 'r+b', buffering=0) as f:
                f.write(q.encode()[:65536])
                answered += bool(f.read(1 << 20))
        for q in queries[:40]:
            import urllib.parse
            name = urllib.parse.quote(q[:200], safe='')[:255]
            answered += bool(open('.memfs/search/' + name, 'rb').read())
        print(answered, len(queries) + 40)
        """,
        timeout=300,
    )
    answered, total = out.stdout.split()
    assert answered == total
    alive(am)


def test_a_long_folder_move_does_not_stop_indexing(am):
    # The folder-move cleanup built a regex over the path; past ~960 bytes Tantivy refused
    # it, and the failed batch blocked every later commit for every user.
    deep = "/".join(["d" * 250] * 4)
    am.sh(MALLORY, f"mkdir -p a/{deep} && printf 'moved numbat\\n' > a/{deep}/n.md")
    assert hit_paths(search(am, MALLORY, "numbat")) == [f"a/{deep}/n.md"]
    am.sh(MALLORY, "mv a b")
    write(am, ALICE, "after.md", entry("After", "later echidna"))
    assert hit_paths(search(am, ALICE, "echidna")) == ["after.md"]
    assert hit_paths(search(am, MALLORY, "numbat")) == [f"b/{deep}/n.md"]
    alive(am)


@pytest.mark.slow
def test_a_huge_memory_md_is_read_within_its_caps(am):
    lines = 580_000
    am.py(
        MALLORY,
        f"""
        with open('MEMORY.md', 'w') as f:
            for i in range({lines}):
                f.write(f'- [x](x{{i}}.md)\\n')
        """,
        timeout=120,
    )
    assert os.path.getsize(am.backing("mallory") / "MEMORY.md") > 9 << 20
    ctx = am.run(MALLORY, ["cat", ".memfs/context.md"]).stdout
    assert f"[... {lines - 200} more lines truncated ...]" in ctx
    assert len(ctx.encode()) < 200_000  # capped, not the whole file
    status = am.run(MALLORY, ["cat", ".memfs/status"]).stdout
    assert f"MEMORY.md: {lines} lines" in status
    am.run(MALLORY, ["cat", ".memfs/index.md"])
    alive(am)
    assert "(no MEMORY.md yet)" in am.run(ALICE, ["cat", ".memfs/context.md"]).stdout


def test_a_teammate_cannot_break_the_team_views(am):
    # A NUL in a link target made context.md, status and index.md EIO for every member.
    write(am, BOB, "team/MEMORY.md", "- [x](a%00b.md) — nul\n- [y](../../etc/passwd)\n- [z](%ff%fe.md)\n")
    for f in ("context.md", "status", "index.md"):
        res = am.run(ALICE, ["cat", f".memfs/{f}"])
        assert res.returncode == 0
    status = am.run(ALICE, ["cat", ".memfs/status"]).stdout
    assert "team/MEMORY.md:3: index line points to %ff%fe.md, which does not exist" in status
    alive(am)


def test_open_handles_are_limited_per_uid(make_mount):
    m = make_mount(CONFIG + "limits: {open_files: 40, open_queries: 5}\n")
    m.sh(MALLORY, "touch f")
    code = """
        import errno, os, sys
        held, err = [], None
        try:
            for i in range(10_000):
                held.append(os.open(sys.argv[1], os.O_RDONLY))
        except OSError as e:
            err = errno.errorcode[e.errno]
        print(len(held), err)
        sys.stdout.flush()
        sys.stdin.read()  # hold them until the test is done
    """
    holders = []
    try:
        for target in ("f", ".memfs/whoami"):
            p = subprocess.Popen(
                ["/usr/bin/python3", "-c", textwrap.dedent(code), target],
                cwd=m.mnt,  # the root: per caller, so mallory's own
                user=MALLORY,
                group=MALLORY,
                extra_groups=[],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            holders.append(p)
            line = p.stdout.readline().split()
            assert line == (["40", "EMFILE"] if target == "f" else ["0", "EMFILE"]), line
        # mallory holds 40 handles; alice creates, lists and searches as before
        m.sh(ALICE, "mkdir d && for i in 1 2 3; do echo $i > d/$i.md; done; ls d | wc -l")
        who = m.run(ALICE, ["cat", ".memfs/whoami"]).stdout
        assert "open_files: 1\n" in who
        alive(m)
    finally:
        for p in holders:
            p.kill()
            p.wait(timeout=TIMEOUT)
    # Handles given back: mallory can open again.
    m.sh(MALLORY, "cat f; cat .memfs/whoami >/dev/null")


def test_quotas_stop_one_user_not_the_others(make_mount):
    m = make_mount(CONFIG + "limits: {user_bytes: 1M, user_files: 20, team_bytes: 64K}\n")
    res = m.py(
        MALLORY,
        """
        import errno, os
        n, err = 0, None
        try:
            with open('fill', 'wb') as f:
                while True:
                    f.write(b'x' * 65536)
                    f.flush()
                    n += 65536
        except OSError as e:
            err = errno.errorcode[e.errno]
        print(os.path.getsize('fill'), err)
        made, err2 = 0, None
        try:
            for i in range(100):
                os.mkdir(f'd{i}')
                made += 1
        except OSError as e:
            err2 = errno.errorcode[e.errno]
        print(made, err2)
        """,
    )
    (size, err), (made, err2) = (ln.split() for ln in res.stdout.splitlines())
    assert err == "EDQUOT" and int(size) == 1 << 20
    assert err2 == "EDQUOT" and int(made) == 19  # 20 entries: 'fill' and 19 folders
    assert "Disk quota exceeded" in m.sh(MALLORY, "truncate -s 2M small", check=False).stderr
    # alice is not mallory: her writes go on
    m.sh(ALICE, "head -c 900000 /dev/zero > big.bin")
    alive(m)
    # Freed space is usable again.
    m.sh(MALLORY, "rm fill && rmdir d1 && echo back > again.md")
    # A move into the team counts against the team's quota, and is refused whole.
    m.sh(ALICE, "head -c 70000 /dev/zero > t.bin")
    res = m.sh(ALICE, "mv t.bin team/", check=False)
    assert res.returncode != 0 and "quota" in res.stderr
    assert (m.backing("alice") / "t.bin").stat().st_size == 70000


def test_scores_and_counts_reveal_nothing_of_others(am):
    write(am, MALLORY, "m.md", entry("M", "quokka7 lives here"))
    write(am, MALLORY, "n.md", entry("N", "nothing else"))

    def probe():
        a = search_json(am, MALLORY, "quokka7")
        b = search_json(am, MALLORY, "relpath:payroll.md")
        c = search_json(am, MALLORY, "quokka7 OR nothing")
        return [(h["path"], h["score"]) for r in (a, b, c) for h in r["hits"]], [a["total"], b["total"]]

    before = probe()
    for i in range(20):
        write(am, ALICE, f"q{i}.md", entry(f"Q{i}", "quokka7 " * (i + 1)))
    write(am, ALICE, "payroll.md", entry("Payroll", "salaries quokka7"))
    write(am, BOB, "team/quokka.md", entry("Team", "quokka7 quokka7"))
    assert len(hit_paths(search(am, ALICE, "quokka7"))) > 3  # alice's writes are indexed
    assert probe() == before


def test_a_rename_into_the_root_is_not_seen_by_others(am):
    # The kernel kept the moved dentry with its old folder's 300 s timeout: bob saw alice's
    # inode and got EACCES writing his own z.md.
    for src in ("n/z.md", "team/z.md"):
        am.sh(ALICE, f"mkdir -p n && echo s > {src} && mv {src} z.md")
        assert "No such file" in am.sh(BOB, "stat z.md", check=False).stderr
        am.sh(BOB, "echo B > z.md && cat z.md")
        assert am.sh(ALICE, "cat z.md").stdout == "s\n"
        am.sh(BOB, "rm z.md")
        am.sh(ALICE, "rm z.md")
    am.sh(ALICE, "mkdir -p n/dir && echo s > n/dir/f && mv n/dir dir")
    assert "No such file" in am.sh(BOB, "ls dir", check=False).stderr
    am.sh(BOB, "mkdir dir && echo b > dir/f")
    assert am.sh(BOB, "cat dir/f").stdout == "b\n"
    assert am.sh(ALICE, "cat dir/f").stdout == "s\n"


def test_a_grant_view_never_moves_the_owners_cwd(am):
    # One directory inode under two paths: the kernel moved alice's cwd into carol's view.
    am.sh(ALICE, "mkdir -p notes/sub && echo x > notes/sub/f.md")
    code = "import os,sys; sys.stdin.readline(); print(os.getcwd()); print(os.listdir('.'))"
    p = spawn(am, ALICE, code, "notes/sub")
    try:
        view = ".memfs/users/alice/notes/sub"
        assert am.sh(CAROL, f"ls {view}").stdout == "f.md\n"
        ino_view = am.sh(CAROL, f"stat -c %i {view}").stdout
        ino_own = am.sh(ALICE, "stat -c %i notes/sub").stdout
        assert ino_view != ino_own
        out, _ = p.communicate("go\n", timeout=TIMEOUT)
        assert out.splitlines() == [str(am.mnt / "notes" / "sub"), "['f.md']"]
    finally:
        p.kill()
    # The view stays read-only for everyone, the owner included (through an inherited cwd).
    assert am.sh(CAROL, f"echo y > {view}/f.md", check=False).returncode != 0


def test_search_flush_is_per_caller(am):
    # Files held open after writing are read for every search: only the caller's, and only
    # when they changed.
    code = """
        import os, sys
        f = open('held.md', 'w')
        f.write('---\\nname: held\\ndescription: d\\ntype: user\\n---\\nheld bandicoot\\n')
        f.flush()
        print('ready'); sys.stdout.flush()
        sys.stdin.readline()
    """
    p = spawn(am, MALLORY, code)
    try:
        assert p.stdout.readline() == "ready\n"
        assert hit_paths(search(am, MALLORY, "bandicoot")) == ["held.md"]  # read-your-writes
        assert hit_paths(search(am, ALICE, "bandicoot")) == []
    finally:
        p.kill()
        p.wait(timeout=TIMEOUT)


def test_whoami_shows_usage(am):
    am.sh(MALLORY, "echo hello > a.md && mkdir d")
    who = am.run(MALLORY, ["cat", ".memfs/whoami"]).stdout
    assert "private_bytes: 6\n" in who and "private_files: 2\n" in who
    assert "team_bytes" not in who
    data = json.dumps(who)
    assert "alice" not in data


def test_history_flooding_hurts_only_the_flooder(make_mount):
    """mallory rewrites one file in a tight loop (every open for writing commits the last
    version first), floods renames, and names a file to forge log lines; alice's writes,
    history and log go on, and none of mallory's changes reach them. Its own mount: it
    reads whole logs and histories."""
    am = make_mount(CONFIG)
    flood = spawn(
        am,
        MALLORY,
        """
        import os
        open("forged\\n2026-01-01T00:00:00Z alice D secret.md", "w").write("x")
        for i in range(300):
            with open("churn.md", "w") as f:
                f.write("v%d " % i * 200)
            os.rename("churn.md", "moved.md"); os.rename("moved.md", "churn.md")
        """,
    )
    try:
        for i in range(5):
            am.sh(ALICE, f"echo 'alice {i}' > mine.md; ls .memfs/history/mine.md > /dev/null")
    finally:
        assert flood.wait(timeout=TIMEOUT) == 0
    names = sorted(am.sh(ALICE, "ls .memfs/history/mine.md").stdout.split())
    assert [am.sh(ALICE, f"cat .memfs/history/mine.md/{n}").stdout for n in names] == [
        f"alice {i}\n" for i in range(5)
    ]
    alice_log = am.sh(ALICE, "cat .memfs/log").stdout
    assert "mallory" not in alice_log and "secret.md" not in alice_log
    mallory_log = am.sh(MALLORY, "cat .memfs/log").stdout.splitlines()
    assert all(line[:4].isdigit() for line in mallory_log)  # the newline name stayed quoted
    assert len(am.sh(MALLORY, "ls .memfs/history/churn.md").stdout.split()) > 1
    alive(am)
