"""Bad input gets a clear errno and the daemon keeps serving everyone."""

from __future__ import annotations

import pytest
from conftest import ALICE, BOB
from t4_search import search


@pytest.fixture
def mnt(shared_mnt):
    """This file's tests share one mount (conftest.shared_mnt)."""
    return shared_mnt


ERRNO_OF = """
import errno, os, sys
def attempt(fn, *a):
    try:
        fn(*a)
        print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
"""


def errno_of(mnt, uid, stmt: str, cwd=None) -> str:
    """Run one Python statement as `uid` in `cwd` (the mount root); its errno name, or 'ok'."""
    return mnt.py(uid, ERRNO_OF + f"attempt(lambda: {stmt})", cwd=cwd).stdout.strip()


def test_refused_file_types(mnt):
    mnt.sh(ALICE, "echo x > f.md")
    assert errno_of(mnt, ALICE, "os.symlink('f.md', 'l')") == "EPERM"
    assert errno_of(mnt, ALICE, "os.link('f.md', 'h')") == "EPERM"
    assert errno_of(mnt, ALICE, "os.mkfifo('p')") == "EPERM"
    assert errno_of(mnt, ALICE, "os.mknod('n', 0o600 | __import__('stat').S_IFCHR, os.makedev(1, 3))") in (
        "EPERM",
    )
    # A socket cannot be bound there either.
    sock = "__import__('socket').socket(__import__('socket').AF_UNIX).bind('s')"
    assert errno_of(mnt, ALICE, sock) == "EPERM"
    assert mnt.sh(ALICE, "ls").stdout.split() == ["f.md"]
    # Real tools report it cleanly.
    res = mnt.run(ALICE, ["ln", "-s", "f.md", "link"], check=False)
    assert res.returncode != 0 and "Operation not permitted" in res.stderr


def test_name_too_long(mnt):
    long = "n" * 256
    assert errno_of(mnt, ALICE, f"open('{long}', 'w')") == "ENAMETOOLONG"
    assert errno_of(mnt, ALICE, f"os.mkdir('{long}')") == "ENAMETOOLONG"
    assert errno_of(mnt, ALICE, f"os.stat('{long}')") == "ENAMETOOLONG"
    ok = "n" * 255
    assert errno_of(mnt, ALICE, f"open('{ok}', 'w').write('x')") == "ok"
    assert mnt.sh(ALICE, "ls").stdout.split() == [ok]


def test_size_cap_gives_efbig_and_keeps_what_was_written(make_mount):
    cap = 64 * 1024
    m = make_mount(f"limits: {{max_file_bytes: {cap}}}\n")
    out = m.py(
        ALICE,
        f"""
        import errno, os
        fd = os.open("big.md", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"a" * ({cap} - 10))
        print(os.write(fd, b"b" * 100))  # short: only what fits below the cap
        try:
            os.write(fd, b"b" * 100)
            print("no-error")
        except OSError as e:
            print(errno.errorcode[e.errno])
        os.close(fd)
        # Exactly at the cap is allowed.
        with open("exact.md", "wb") as f:
            f.write(b"c" * {cap})
        try:
            os.truncate("exact.md", {cap} + 1)
            print("no-error")
        except OSError as e:
            print(errno.errorcode[e.errno])
        try:
            with open("exact.md", "ab") as f:
                f.write(b"d")
            print("no-error")
        except OSError as e:
            print(errno.errorcode[e.errno])
        """,
    )
    assert out.stdout.split() == ["10", "EFBIG", "EFBIG", "EFBIG"]
    assert (m.backing("uid-1001") / "big.md").read_bytes() == b"a" * (cap - 10) + b"b" * 10
    assert (m.backing("uid-1001") / "exact.md").read_bytes() == b"c" * cap
    assert m.sh(ALICE, "cat big.md | wc -c").stdout.strip() == str(cap)
    # A big buffered write stops at the cap with EFBIG; the file never grows past it.
    res = m.sh(ALICE, "head -c 100000 /dev/zero > z.md", check=False)
    assert res.returncode != 0 and "File too large" in res.stderr
    assert (m.backing("uid-1001") / "z.md").stat().st_size == cap


def test_rename_dir_over_nonempty_dir(mnt):
    mnt.sh(ALICE, "mkdir -p a b/c; echo x > a/f.md")
    assert errno_of(mnt, ALICE, "os.rename('a', 'b')") == "ENOTEMPTY"
    mnt.sh(ALICE, "rmdir b/c")
    assert errno_of(mnt, ALICE, "os.rename('a', 'b')") == "ok"
    assert mnt.sh(ALICE, "cat b/f.md").stdout == "x\n"
    assert errno_of(mnt, ALICE, "os.rename('b', 'b/sub')") == "EINVAL"
    assert errno_of(mnt, ALICE, "os.rmdir('b')") == "ENOTEMPTY"


def test_reserved_root_names(mnt):
    # alice has no team: `team` does not exist for her but cannot be made private either.
    assert errno_of(mnt, ALICE, "open('team', 'w')") == "EPERM"
    assert errno_of(mnt, ALICE, "os.mkdir('team')") == "EPERM"
    assert errno_of(mnt, ALICE, "os.stat('team')") == "ENOENT"
    assert errno_of(mnt, ALICE, "open('.memfs', 'w')") in ("EEXIST", "EISDIR")
    assert errno_of(mnt, ALICE, "os.mkdir('.memfs')") == "EEXIST"
    mnt.sh(ALICE, "echo x > f.md; mkdir d")
    assert errno_of(mnt, ALICE, "os.rename('f.md', 'team')") == "EPERM"
    assert errno_of(mnt, ALICE, "os.rename('d', '.memfs')") == "EEXIST"
    assert errno_of(mnt, ALICE, "os.rmdir('.memfs')") == "EBUSY"
    # Below the root they are ordinary names.
    assert errno_of(mnt, ALICE, "os.mkdir('d/team')") == "ok"
    assert errno_of(mnt, ALICE, "open('d/.memfs', 'w').close()") == "ok"
    assert sorted(mnt.sh(ALICE, "ls -A").stdout.split()) == ["d", "f.md"]


def test_internal_error_answers_eio_and_mount_keeps_serving(make_mount):
    m = make_mount(env={"MEMFS_FAULT_NAME": "boom.md"}, log_errors=True)
    m.sh(ALICE, "echo fine > ok.md")
    assert errno_of(m, ALICE, "os.stat('boom.md')") == "EIO"
    assert errno_of(m, BOB, "open('boom.md', 'w')") == "EIO"
    assert m.sh(ALICE, "cat ok.md").stdout == "fine\n"
    assert m.sh(BOB, "echo b > b.md; cat b.md").stdout == "b\n"
    assert "internal error, answered EIO" in m.log()


def test_unknown_uids_deny(make_mount):
    m = make_mount("users:\n  alice: {uid: 1001}\nunknown_uids: deny\n")
    m.sh(ALICE, "echo mine > a.md")
    for stmt in (
        "os.stat(M)",
        "os.listdir(M)",
        "open(M + '/a.md')",
        "open(M + '/x.md', 'w')",
        "os.mkdir(M + '/d')",
        "os.statvfs(M)",
        "os.chdir(M)",
    ):
        code = stmt.replace("M", repr(str(m.mnt)))
        assert errno_of(m, BOB, code, cwd="/") == "EACCES", stmt
    res = m.run(BOB, ["ls", str(m.mnt)], cwd="/", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert m.sh(ALICE, "cat a.md").stdout == "mine\n"
    assert sorted(p.name for p in m.data.joinpath("private").iterdir()) == ["alice"]


def test_paths_up_to_path_max_work_wherever_data_lives(mnt):
    # memfs worked on DATA/private/<user>/<path>: a relative path under 4096 bytes failed
    # with ENAMETOOLONG once the data dir's prefix was added (ext4 takes it).
    out = mnt.py(
        ALICE,
        """
        import os
        top = "/".join(["d" * 250] * 15 + ["e" * 200])
        os.makedirs(top)
        name = top + "/" + "f" * 117 + ".md"
        print(len(name))
        with open(name, "w") as f:
            f.write("---\\nname: deep\\ndescription: d\\ntype: user\\n---\\nfar down aardvark\\n")
        print(open(name).read().split()[-1], os.stat(name).st_size)
        os.rename(name, top + "/g.md")
        print(sorted(os.listdir(top)))
        """,
    )
    length, content, listing = out.stdout.splitlines()
    assert int(length) == 4086 and content.split()[0] == "aardvark" and listing == "['g.md']"
    found = search(mnt, ALICE, "aardvark")
    assert "g.md" in found
    mnt.run(ALICE, ["rm", "-r", "d" * 250])
    assert "Warning" not in mnt.log() and " WARNING " not in mnt.log()


def test_paths_past_path_max_below_the_scope_root(mnt):
    # A caller's path is limited from its own cwd: by cd-ing down, a tree can grow far past
    # 4096 bytes from the scope's root, as on ext4. memfs reaches such paths in hops.
    out = mnt.py(
        ALICE,
        """
        import os
        for i in range(40):  # 40 x 251 bytes: ~10 KB below the root
            os.mkdir("d" * 250)
            os.chdir("d" * 250)
        with open("deep.md", "w") as f:
            f.write("---\\nname: deep\\ndescription: d\\ntype: user\\n---\\nvery deep okapi\\n")
        os.rename("deep.md", "deeper.md")
        os.chmod("deeper.md", 0o640)
        os.utime("deeper.md", (1, 2))
        st = os.stat("deeper.md")
        print(open("deeper.md").read().split()[-1], os.listdir("."), oct(st.st_mode & 0o777), st.st_mtime)
        """,
    )
    assert out.stdout.split() == ["okapi", "['deeper.md']", "0o600", "2.0"]
    found = search(mnt, ALICE, "okapi")
    assert "deeper.md" in found
    mnt.run(ALICE, ["rm", "-r", "d" * 250])
    assert mnt.sh(ALICE, "ls -A").stdout == ""
