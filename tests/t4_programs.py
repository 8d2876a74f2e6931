"""Real, unmodified programs on the mount, each as a non-root uid."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import ALICE, BOB


@pytest.fixture
def mnt(shared_mnt):
    """This file's tests share one mount (conftest.shared_mnt)."""
    return shared_mnt


def test_redirection_cat_ls_stat(mnt):
    mnt.sh(ALICE, "echo one > MEMORY.md; echo two >> MEMORY.md")
    assert mnt.sh(ALICE, "cat MEMORY.md").stdout == "one\ntwo\n"
    ls = mnt.sh(ALICE, "ls -la").stdout
    assert "MEMORY.md" in ls and "-rw-------" in ls
    st = mnt.run(ALICE, ["stat", "-c", "%s %u %a %F", "MEMORY.md"]).stdout.split(None, 3)
    assert st == ["8", str(ALICE), "600", "regular file\n"]
    assert (mnt.backing("alice") / "MEMORY.md").read_text() == "one\ntwo\n"


def test_cp_mv_rm_mkdir_touch_truncate(mnt):
    mnt.sh(
        ALICE,
        """
        printf 'hello\\n' > a.md
        cp a.md b.md
        cp -a a.md c.md
        mkdir -p deep/er/still
        cp -a deep deep2
        mv b.md deep/er/b.md
        printf 'new\\n' > d.md
        mv d.md c.md
        touch t.md
        truncate -s 3 a.md
        rm -r deep2
        """,
    )
    listing = sorted(mnt.sh(ALICE, "find . | sort").stdout.split())
    assert listing == sorted(
        [
            ".",
            "./a.md",
            "./c.md",
            "./t.md",
            "./deep",
            "./deep/er",
            "./deep/er/b.md",
            "./deep/er/still",
        ]
    )
    assert mnt.sh(ALICE, "cat a.md").stdout == "hel"
    assert mnt.sh(ALICE, "cat c.md").stdout == "new\n"
    assert mnt.sh(ALICE, "cat deep/er/b.md").stdout == "hello\n"
    mnt.sh(ALICE, "rm a.md && rm -r deep")
    assert sorted(mnt.sh(ALICE, "ls").stdout.split()) == ["c.md", "t.md"]


def test_mv_noreplace_fallback_and_no_clobber(mnt):
    mnt.sh(ALICE, "echo a > a.md; echo b > b.md")
    # GNU mv -n uses renameat2(RENAME_NOREPLACE): it must not replace b.md.
    mnt.run(ALICE, ["mv", "-n", "a.md", "b.md"], check=False)
    assert mnt.sh(ALICE, "cat b.md").stdout == "b\n"
    mnt.run(ALICE, ["mv", "a.md", "b.md"])
    assert mnt.sh(ALICE, "cat b.md; ls").stdout == "a\nb.md\n"


def test_sed_perl_python_node(mnt):
    mnt.sh(ALICE, "printf 'colour: red\\n' > note.md")
    mnt.sh(ALICE, "sed -i 's/red/blue/' note.md")
    assert mnt.sh(ALICE, "cat note.md").stdout == "colour: blue\n"
    mnt.sh(ALICE, "perl -pi -e 's/blue/green/' note.md")
    assert mnt.sh(ALICE, "cat note.md").stdout == "colour: green\n"
    mnt.py(
        ALICE,
        """
        import os, tempfile
        fd, tmp = tempfile.mkstemp(dir=".", prefix=".note.", suffix=".tmp")
        os.write(fd, b"colour: teal\\n"); os.fsync(fd); os.close(fd)
        os.replace(tmp, "note.md")
        """,
    )
    assert mnt.sh(ALICE, "cat note.md").stdout == "colour: teal\n"
    mnt.run(ALICE, ["node", "-e", "require('fs').writeFileSync('note.md', 'from node\\n')"])
    assert mnt.sh(ALICE, "cat note.md; ls -A").stdout == "from node\nnote.md\n"


def test_tar_extract_and_grep_find_df(mnt, base_dir):
    src = base_dir / "src"
    (src / "proj" / "sub").mkdir(parents=True)
    (src / "proj" / "a.md").write_text("needle here\n")
    (src / "proj" / "sub" / "b.md").write_text("no match\n")
    (src / "proj" / "sub" / "c.txt").write_text("another needle\n")
    tarball = base_dir / "t.tar"
    shutil.make_archive(str(tarball)[:-4], "tar", src)
    tarball.chmod(0o644)
    mnt.run(ALICE, ["tar", "xf", str(tarball)])
    hits = sorted(mnt.run(ALICE, ["grep", "-rl", "needle", "."]).stdout.split())
    assert hits == ["./proj/a.md", "./proj/sub/c.txt"]
    found = sorted(mnt.run(ALICE, ["find", ".", "-name", "*.md"]).stdout.split())
    assert found == ["./proj/a.md", "./proj/sub/b.md"]
    df = mnt.run(ALICE, ["df", "-P", "."]).stdout
    assert "memfs" in df
    assert mnt.run(ALICE, ["stat", "-f", "-c", "%l", "."]).stdout.strip() == "255"


def test_git_in_subfolder(mnt):
    mnt.sh(
        ALICE,
        """
        mkdir -p repo && cd repo
        git init -q
        git config user.email a@example.com && git config user.name alice
        echo '# notes' > notes.md
        git add notes.md && git commit -qm first
        echo more >> notes.md
        git commit -qam second
        git log --oneline | wc -l
        git status --porcelain
        git gc -q
        git fsck
        """,
    )
    out = mnt.sh(ALICE, "cd repo && git log --format=%s").stdout.split()
    assert out == ["second", "first"]


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim not installed")
def test_vim_edits_in_place(mnt):
    mnt.sh(ALICE, "printf 'line one\\n' > v.md")
    mnt.run(ALICE, ["vim", "-Es", "-u", "NONE", "-c", "%s/one/two/", "-c", "wq", "v.md"])
    assert mnt.sh(ALICE, "cat v.md; ls -A").stdout == "line two\nv.md\n"


def test_two_uids_same_paths_see_their_own(mnt):
    mnt.sh(ALICE, "echo alice > MEMORY.md; mkdir notes; echo a > notes/x.md")
    mnt.sh(BOB, "echo bob > MEMORY.md")
    assert mnt.sh(ALICE, "cat MEMORY.md").stdout == "alice\n"
    assert mnt.sh(BOB, "cat MEMORY.md").stdout == "bob\n"
    assert mnt.sh(BOB, "ls").stdout.split() == ["MEMORY.md"]
    assert mnt.run(BOB, ["cat", "notes/x.md"], check=False).returncode != 0
    assert (mnt.backing("bob") / "MEMORY.md").read_text() == "bob\n"
    assert (mnt.backing("alice") / "notes" / "x.md").read_text() == "a\n"


def test_survives_remount(mnt):
    mnt.sh(ALICE, "mkdir -p a/b; echo keep > a/b/c.md; echo top > MEMORY.md")
    mnt.restart()
    assert mnt.sh(ALICE, "cat a/b/c.md MEMORY.md").stdout == "keep\ntop\n"


def test_o_direct_reads_and_writes(mnt):
    # O_DIRECT was passed to the backing open: every aligned read and write got EINVAL.
    out = mnt.py(
        ALICE,
        """
        import mmap, os
        buf = mmap.mmap(-1, 8192)
        buf.write(b"d" * 8192)
        fd = os.open("direct.bin", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
        print(os.pwrite(fd, buf, 0), os.pwrite(fd, buf, 4096))
        back = mmap.mmap(-1, 4096)
        print(os.preadv(fd, [back], 4096))
        os.close(fd)
        fd = os.open("direct.bin", os.O_RDONLY | os.O_DIRECT)
        print(os.preadv(fd, [back], 0), back[:4] == b"dddd")
        """,
    )
    assert out.stdout.split() == ["8192", "8192", "4096", "4096", "True"]
    assert (mnt.backing("alice") / "direct.bin").stat().st_size == 12288


@pytest.mark.parametrize(
    "how",
    [
        "touch -d 2020-01-02T03:04:05 x.md",
        "cp -p /tmp/old.md x.md",
        "tar -xf /tmp/old.tar",
        "rsync -t /tmp/old.md x.md",
    ],
)
def test_times_set_after_close_reach_the_index(mnt, how):
    """cp -p, rsync -t, tar x and touch -d set a file's times after closing it: search
    results and index.md show those times (and doctor's check after unmount agrees)."""
    if how.startswith("rsync") and shutil.which("rsync") is None:
        pytest.skip("rsync is not installed")
    home = mnt.home(ALICE)
    old = home / "old.md"
    old.write_text("---\nname: X\ndescription: d\ntype: user\n---\nbody\n")
    os.utime(old, (1577934245, 1577934245))  # 2020-01-02T03:04:05Z
    os.chown(old, ALICE, ALICE)
    how = how.replace("/tmp/", f"{home}/")
    if how.startswith("tar"):
        subprocess.run(["tar", "-C", str(home), "-cf", str(home / "old.tar"), "old.md"], check=True)
        how += " && mv old.md x.md"
    else:
        mnt.sh(ALICE, "echo fresh > x.md; cat .memfs/index.md > /dev/null")  # indexed as it is now
    mnt.sh(ALICE, how)
    assert "(updated 2020-01-02)" in mnt.sh(ALICE, "cat .memfs/index.md").stdout
