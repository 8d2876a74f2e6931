"""Per-caller views: no leak across uids through kernel caches or inherited directories."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from conftest import ALICE, BOB, CAROL, SYS_PYTHON


@pytest.fixture
def mnt(shared_mnt):
    """This file's tests share one mount (conftest.shared_mnt)."""
    return shared_mnt


# One root-run Python process switches its effective uid back and forth (seteuid keeps the
# saved uid 0), so the same process, the same cwd and the same kernel caches serve every uid.
SWITCHER = """
import errno, os, sys
def as_uid(uid):
    os.seteuid(0); os.setegid(uid); os.seteuid(uid)
def attempt(fn):
    try:
        r = fn()
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode[e.errno]
"""


def run_switcher(mnt, body: str) -> list[str]:
    code = SWITCHER + textwrap.dedent(body)
    res = mnt_run_root(mnt, code)
    return res.stdout.split("\n")[:-1]


def mnt_run_root(mnt, code: str):
    import subprocess

    res = subprocess.run(
        [SYS_PYTHON, "-c", code],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        env={"M": str(mnt.mnt)},
    )
    assert res.returncode == 0, res.stderr
    return res


def test_rapid_alternation_on_same_names(mnt):
    out = run_switcher(
        mnt,
        """
        M = os.environ["M"]
        os.chdir("/")
        for i in range(30):
            for uid in (1001, 1002, 1003):
                as_uid(uid)
                p = M + "/note.md"
                if i % 3 == 0:
                    with open(p, "w") as f:
                        f.write(f"{uid}:{i}")
                print(uid, attempt(lambda: open(p).read()), attempt(lambda: os.stat(p).st_uid),
                      attempt(lambda: ",".join(sorted(os.listdir(M)))))
                if i % 5 == 4 and uid == 1002:
                    print("unlink", attempt(lambda: os.unlink(p)))
        """,
    )
    last = {}
    for line in out:
        parts = line.split()
        if parts[0] == "unlink":
            last[1002] = None
            continue
        uid = int(parts[0])
        content, owner, listing = parts[1], parts[2], parts[3] if len(parts) > 3 else ""
        if content.startswith(str(uid)):
            assert owner == str(uid), line
            assert listing == "note.md", line
            last[uid] = content
        else:
            # Only bob ever removes his file; nobody ever sees someone else's bytes.
            assert uid == 1002 and content == "ENOENT" and owner == "ENOENT", line
        assert all(not content.startswith(str(o)) for o in (1001, 1002, 1003) if o != uid), line


def test_negative_entry_of_one_uid_does_not_hide_anothers_file(mnt):
    out = run_switcher(
        mnt,
        """
        M = os.environ["M"]
        for i in range(20):
            as_uid(1002); print(attempt(lambda: os.stat(M + "/only-alice.md").st_size))
            as_uid(1001)
            if i == 0:
                open(M + "/only-alice.md", "w").write("abc")
            print(attempt(lambda: os.stat(M + "/only-alice.md").st_size))
        """,
    )
    assert out == ["ENOENT", "3"] * 20


def test_inherited_cwd_after_setuid_is_refused(mnt):
    mnt.sh(ALICE, "mkdir -p sub/inner; echo secret > sub/s.md; echo deep > sub/inner/d.md")
    out = run_switcher(
        mnt,
        """
        M = os.environ["M"]
        as_uid(1001)
        os.chdir(M + "/sub")
        print(attempt(lambda: open("s.md").read().strip()))   # alice: fine
        os.listdir(".")
        as_uid(1002)
        print(attempt(lambda: open("s.md").read()))
        print(attempt(lambda: os.listdir(".")))
        print(attempt(lambda: open("inner/d.md").read()))
        print(attempt(lambda: open("s.md", "a").write("x")))
        print(attempt(lambda: open("new.md", "w").write("x")))
        print(attempt(lambda: os.unlink("s.md")))
        print(attempt(lambda: os.rename("s.md", "t.md")))
        print(attempt(lambda: os.mkdir("d")))
        print(attempt(lambda: os.rmdir("inner")))
        print(attempt(lambda: os.chmod("s.md", 0o644)))
        print(attempt(lambda: os.truncate("s.md", 0)))
        print(attempt(lambda: os.utime("s.md", (0, 0))))
        print(attempt(lambda: os.stat(".").st_uid))
        """,
    )
    assert out[0] == "secret"
    assert out[1:] == ["EACCES"] * 13
    assert (mnt.backing("alice") / "sub" / "s.md").read_text() == "secret\n"
    assert sorted(p.name for p in (mnt.backing("alice") / "sub").iterdir()) == ["inner", "s.md"]
    bob = mnt.backing("bob")
    assert not bob.exists() or not any(bob.iterdir())


def test_other_uid_cannot_reach_by_path(mnt):
    mnt.sh(ALICE, "mkdir d; echo a > d/f.md; echo top > MEMORY.md")
    for cmd in ("cat d/f.md", "cat MEMORY.md", "ls d", "rm d/f.md", "mv d e", "touch d/x"):
        res = mnt.sh(BOB, cmd, check=False)
        assert res.returncode != 0, cmd
    assert mnt.sh(BOB, "ls -A").stdout == ""
    assert mnt.sh(CAROL, "find .").stdout == ".\n"
    assert mnt.sh(ALICE, "cat d/f.md MEMORY.md").stdout == "a\ntop\n"


def test_unlinked_open_file_keeps_working(mnt):
    out = mnt.py(
        ALICE,
        """
        import os
        fd = os.open("gone.md", os.O_RDWR | os.O_CREAT, 0o600)
        os.write(fd, b"before ")
        os.unlink("gone.md")
        print(os.path.exists("gone.md"))
        os.write(fd, b"after")
        os.lseek(fd, 0, 0)
        print(os.read(fd, 100).decode())
        print(os.fstat(fd).st_size)
        os.ftruncate(fd, 3)
        print(os.fstat(fd).st_size)
        os.close(fd)
        """,
    )
    assert out.stdout.split("\n")[:4] == ["False", "before after", "12", "3"]
    assert mnt.sh(ALICE, "ls -A").stdout == ""


def test_trunc_and_ftruncate_bump_mtime_ctime(mnt):
    out = mnt.py(
        ALICE,
        """
        import os
        open("t.md", "w").write("content")
        old = (1_000_000_000, 1_000_000_000)
        os.utime("t.md", ns=old)
        st0 = os.stat("t.md")
        fd = os.open("t.md", os.O_WRONLY | os.O_TRUNC); os.close(fd)
        st1 = os.stat("t.md")
        print(st0.st_mtime_ns, st1.st_mtime_ns > st0.st_mtime_ns, st1.st_ctime_ns >= st0.st_ctime_ns,
              st1.st_size)
        os.utime("t.md", ns=old)
        fd = os.open("t.md", os.O_WRONLY); os.ftruncate(fd, 0); st2 = os.fstat(fd); os.close(fd)
        print(st2.st_mtime_ns > old[1], os.stat("t.md").st_mtime_ns > old[1])
        """,
    )
    assert out.stdout.split() == ["1000000000", "True", "True", "0", "True", "True"]


def test_rename_over_replaces_atomically(mnt):
    # A reader holding the old file keeps its bytes; new opens see the new file, never a mix.
    out = mnt.py(
        ALICE,
        """
        import os
        open("target.md", "w").write("old contents")
        r = open("target.md")
        open("tmp.md", "w").write("new contents")
        os.rename("tmp.md", "target.md")
        print(r.read().replace(" ", "_"))
        print(open("target.md").read().replace(" ", "_"))
        print(sorted(os.listdir(".")))
        """,
    )
    assert out.stdout.split("\n")[:3] == ["old_contents", "new_contents", "['target.md']"]


def test_rename_onto_itself_is_a_no_op(mnt):
    # In a sub-folder the kernel keeps the name cached: the inode must stay valid.
    mnt.sh(ALICE, "mkdir -p sub/d; echo same > sub/s.md")
    mnt.py(ALICE, "import os; os.rename('sub/s.md', 'sub/s.md'); os.rename('sub/d', 'sub/d')")
    assert mnt.sh(ALICE, "cat sub/s.md; ls sub").stdout == "same\nd\ns.md\n"
    assert mnt.sh(ALICE, "echo more >> sub/s.md; cat sub/s.md; ls sub/d").stdout == "same\nmore\n"


def test_files_on_disk_as_written(mnt):
    mnt.sh(ALICE, "mkdir -p notes; printf '%s' '---\nname: x\n---\nbody' > notes/x.md")
    assert (mnt.backing("alice") / "notes" / "x.md").read_text() == "---\nname: x\n---\nbody"
    bob = mnt.backing("bob")
    assert not bob.exists() or not any(bob.iterdir())


def test_st_ino_is_stable_for_a_files_life(mnt):
    # st_ino changed after any cache drop and after a refused rename: tools keyed on
    # (dev, ino) (rsync, tar -g, git's index, editors) saw a new file each time.
    mnt.sh(ALICE, "mkdir -p a b && echo x > a/x && echo y > b/y && chmod 500 a")
    ino = mnt.sh(ALICE, "stat -c %i a/x").stdout
    assert mnt.sh(ALICE, "mv -T b/y a/x", check=False).returncode != 0  # refused: a is 0500
    assert mnt.sh(ALICE, "stat -c %i a/x").stdout == ino
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")
    assert mnt.sh(ALICE, "stat -c %i a/x").stdout == ino
    mnt.sh(ALICE, "chmod 700 a && mv a/x a/z")
    assert mnt.sh(ALICE, "stat -c %i a/z").stdout == ino
    mnt.restart()
    assert mnt.sh(ALICE, "stat -c %i a/z").stdout == ino
    # Unique among live files.
    inos = mnt.sh(ALICE, "stat -c %i a a/z b").stdout.split()
    assert len(set(inos)) == len(inos)


def test_st_ino_stays_while_a_file_exists_after_its_backing_number_was_busy(make_mount):
    """A removed folder held as a process's cwd keeps its node; new files may get its
    backing inode number, hence a number of their own. After the holder exits and the
    kernel forgets them (drop_caches), and after a remount, the same files show the same
    st_ino. Its own mount: on a fresh data folder the backing filesystem hands the freed
    number to the next file, where a shared mount's earlier removals leave others free."""
    mnt = make_mount()
    for attempt in range(5):  # under load, another test's file may take the freed number first
        holder = subprocess.Popen(
            ["/bin/sh", "-c", 'mkdir "$0/d" && cd "$0/d" && echo in && exec cat', str(mnt.mnt)],
            user=ALICE,
            group=ALICE,
            extra_groups=[],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout.readline() == b"in\n"
            mnt.sh(ALICE, f"rmdir d; for i in $(seq 50); do echo x > n{attempt}_$i; done")
            before = mnt.sh(ALICE, "stat -c '%i %n' n*").stdout
        finally:
            holder.kill()
            holder.wait()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")  # dentries and inodes: the kernel forgets them, memfs gets FORGETs
        assert mnt.sh(ALICE, "stat -c '%i %n' n*").stdout == before
        if any(int(line.split()[0]) > 1 << 42 for line in before.splitlines()):
            break
    else:
        # the backing filesystem gave the folder's number to other files each time
        pytest.skip("no new file got the removed folder's backing inode number in 5 tries")
    mnt.restart()  # and across a remount, with nothing holding the old number any more
    assert mnt.sh(ALICE, "stat -c '%i %n' n*").stdout == before


def test_a_removed_folder_still_answers_stat_through_a_held_cwd(mnt):
    """As on a local filesystem: `stat .` in a removed cwd shows a folder with no links
    (it was ENOENT: memfs had no backing fd to ask)."""
    out = mnt.sh(ALICE, "mkdir gone && cd gone && rmdir ../gone && stat -c '%F %h' . && ls -a | wc -l")
    assert out.stdout == "directory 0\n0\n", out.stdout


def test_a_file_removed_behind_a_cached_name_is_created_again_not_refused(mnt):
    """A sync (here: root, behind memfs's back) removes a file whose name the kernel still
    caches. A writer's `open(O_CREAT)` through that name must create the file, as natively
    (memfs answers ESTALE, the kernel looks the name up again), not fail with ENOENT; a
    reader gets ENOENT, and another uid's same-named file is untouched."""
    mnt.sh(ALICE, "mkdir -p notes && echo old > notes/x.md && cat notes/x.md >/dev/null")
    mnt.sh(BOB, "mkdir -p notes && echo bobs > notes/x.md")
    (mnt.backing("alice") / "notes" / "x.md").unlink()
    assert mnt.sh(ALICE, "cat notes/x.md 2>&1 || echo gone").stdout.strip().endswith("gone")
    mnt.sh(ALICE, "cat notes/x.md >/dev/null 2>&1 || true; echo new > notes/x.md")  # the name was cached
    assert mnt.sh(ALICE, "cat notes/x.md").stdout == "new\n"
    (mnt.backing("alice") / "notes" / "x.md").unlink()
    mnt.sh(ALICE, "echo again > notes/x.md")  # straight through the still-cached name
    assert mnt.sh(ALICE, "cat notes/x.md").stdout == "again\n"
    assert mnt.sh(BOB, "cat notes/x.md").stdout == "bobs\n"
