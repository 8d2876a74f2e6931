"""Hostile input: odd names, binary and explosive content, huge folders, deep trees, bad queries.
Each answer is a defined error or a flagged, stored entry, and the daemon keeps serving."""

from __future__ import annotations

import os

import pytest
from conftest import ALICE, BOB, DEFAULT_CONFIG
from t4_search import entry, hit_paths, search, search_json


@pytest.fixture
def mnt(shared_mnt):
    """This file's tests share one mount (conftest.shared_mnt)."""
    return shared_mnt


def daemon_rss_kib(m) -> int:
    for line in open(f"/proc/{m.pid()}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_odd_names(mnt):
    out = mnt.py(
        ALICE,
        r"""
        import os
        names = [b"\xff\xfe bad utf8.md", b"new\nline.md", b"tab\there.md", b"n" * 252 + b".md"]
        for n in names:
            fd = os.open(n, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"odd name wombat " + n)
            os.close(fd)
        listed = sorted(os.listdir(b"."))
        print(listed == sorted(names))
        for n in names:
            print(open(n, "rb").read().endswith(n))
        os.rename(names[0], b"\xfe\xff renamed.md")
        print(sorted(os.listdir(b".")) == sorted([b"\xfe\xff renamed.md", *names[1:]]))
        """,
    )
    assert out.stdout.split() == ["True"] * 6
    assert (mnt.backing("alice") / os.fsdecode(b"\xfe\xff renamed.md")).exists()
    # All of them are indexed and found; odd paths are shown quoted (names.quote_path), one per line.
    found = search(mnt, ALICE, "wombat")
    assert len(hit_paths(found)) == 4
    assert "## 1. " in found and '"new\\nline.md"' in found
    assert '"\\376\\377 renamed.md"' in found
    status = mnt.run(ALICE, ["cat", ".memfs/status"]).stdout
    assert '"new\\nline.md": no frontmatter' in status
    assert mnt.sh(ALICE, "echo still > ok.md; cat ok.md").stdout == "still\n"


def test_binary_md_is_stored_and_flagged(mnt):
    blob = bytes(range(256)) * 64
    mnt.py(ALICE, f"open('blob.md', 'wb').write({blob!r})")
    assert (mnt.backing("alice") / "blob.md").read_bytes() == blob
    status = mnt.run(ALICE, ["cat", ".memfs/status"]).stdout
    assert "blob.md: content is not valid UTF-8 text" in status
    assert (
        mnt.py(ALICE, "import sys; sys.stdout.write(open('blob.md', 'rb').read().hex())").stdout == blob.hex()
    )


def test_yaml_alias_bomb_and_huge_frontmatter(mnt):
    bomb = "---\na: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    bomb += "name: bomb\n---\nalias bomb body quagga\n"
    huge = (
        "---\nname: huge\ndescription: " + "y" * (3 * 1024 * 1024) + "\ntype: user\n---\nhuge body quagga\n"
    )
    before = daemon_rss_kib(mnt)
    mnt.py(ALICE, f"open('bomb.md', 'w').write({bomb!r})")
    # Built inside the writer: 3 MiB does not fit on a command line.
    mnt.py(
        ALICE,
        "open('huge.md', 'w').write('---\\nname: huge\\ndescription: ' + 'y' * (3 << 20)"
        " + '\\ntype: user\\n---\\nhuge body quagga\\n')",
    )
    assert sorted(hit_paths(search(mnt, ALICE, "quagga"))) == ["bomb.md", "huge.md"]
    status = mnt.run(ALICE, ["cat", ".memfs/status"]).stdout
    assert "bomb.md: frontmatter is not valid YAML" in status and "anchors are not allowed" in status
    assert "huge.md: frontmatter larger than 65536 bytes: not parsed" in status
    assert (mnt.backing("alice") / "bomb.md").read_text() == bomb
    assert (mnt.backing("alice") / "huge.md").stat().st_size == len(huge)
    # A billion laughs expanded would need gigabytes; the daemon stayed small.
    assert daemon_rss_kib(mnt) - before < 200 * 1024


def test_hostile_queries(mnt):
    mnt.py(ALICE, f"open('q.md', 'w').write({entry('Q', 'query target okapi')!r})")
    syntax = ('(+-"[]{}^~*?:\\/&|!' * 20)[:255]
    out = mnt.py(
        ALICE,
        "import urllib.parse\n"
        f"name = urllib.parse.quote({syntax!r}, safe='')[:255]\n"
        "print(open('.memfs/search/' + name).read())",
    )
    assert out.stdout.startswith("# Search:")
    parens = "(" * 255
    assert mnt.run(ALICE, ["cat", f".memfs/search/{parens}"]).stdout.startswith("# Search:")
    # A multi-megabyte query through the handle: refused with EFBIG, the daemon unharmed.
    res = mnt.py(
        ALICE,
        """
        import errno
        f = open(".memfs/query", "r+b", buffering=0)
        try:
            f.write(b"okapi " * 500_000)
            print("accepted")
        except OSError as e:
            print(errno.errorcode[e.errno])
        """,
    )
    assert res.stdout.strip() == "EFBIG"
    assert [h["path"] for h in search_json(mnt, ALICE, "okapi " * 5000)["hits"]] == ["q.md"]
    assert hit_paths(search(mnt, ALICE, "okapi")) == ["q.md"]


def test_size_cap_exactly_and_one_past(make_mount):
    m = make_mount("limits: {max_file_bytes: 4096}\n")
    res = m.py(
        ALICE,
        """
        import errno
        open("exact.md", "wb").write(b"e" * 4096)
        try:
            with open("past.md", "wb") as f:  # the error surfaces at the flush in close()
                f.write(b"p" * 4097)
            print("accepted")
        except OSError as e:
            print(errno.errorcode[e.errno])
        """,
    )
    assert res.stdout.strip() == "EFBIG"
    assert (m.backing("uid-1001") / "exact.md").stat().st_size == 4096
    assert (m.backing("uid-1001") / "past.md").stat().st_size == 4096


@pytest.mark.slow
def test_deep_nesting(mnt):
    out = mnt.py(
        ALICE,
        """
        import os
        depth = 0
        try:
            for depth in range(1, 2001):
                os.mkdir("d")
                os.chdir("d")
        except OSError as e:
            print("stopped", depth, e.errno)
        open("deep.md", "w").write("at the bottom")
        print(os.getcwd().count("/d"))
        """,
    )
    assert out.stdout.split()[-1] == "2000"
    deep = "/".join(["d"] * 2000)
    assert (mnt.backing("alice") / deep / "deep.md").read_text() == "at the bottom"
    assert mnt.sh(ALICE, "find . -name deep.md | wc -l").stdout.strip() == "1"
    mnt.sh(ALICE, "rm -r d")
    assert mnt.sh(ALICE, "ls -A").stdout == ""


@pytest.mark.slow
@pytest.mark.timeout(600)  # minutes of requests, more when other tests share the cores
def test_100k_files_in_one_folder(make_mount):
    mnt = make_mount(DEFAULT_CONFIG + "limits: {user_files: 200000}\n")
    n = 100_000
    mnt.py(
        ALICE,
        f"""
        import os
        os.mkdir("big")
        for i in range({n}):
            os.close(os.open(f"big/f{{i:06d}}.txt", os.O_WRONLY | os.O_CREAT, 0o600))
        """,
        timeout=600,
    )
    count = mnt.run(ALICE, ["sh", "-c", "ls big | wc -l"], timeout=600).stdout.strip()
    assert count == str(n)
    assert mnt.run(ALICE, ["stat", "-c", "%s", f"big/f{n - 1:06d}.txt"]).stdout.strip() == "0"
    # Another uid is unaffected and the daemon still answers at once.
    assert mnt.sh(BOB, "echo b > b.md; cat b.md").stdout == "b\n"
    mnt.run(ALICE, ["rm", "-r", "big"], timeout=600)
    assert mnt.sh(ALICE, "ls -A").stdout == ""


def test_folder_rename_storm_logs_nothing_above_info(mnt):
    # Renaming a folder of .md files in a loop logged "commit failed ... [Errno 2]" (40 in a
    # 0.4 s storm): the index must follow moves without errors, and end up right.
    mnt.py(
        ALICE,
        """
        import os
        os.makedirs("a/sub")
        for i in range(20):
            open(f"a/sub/n{i}.md", "w").write(f"storm note {i} pangolin")
        for i in range(300):
            os.rename("a", "b")
            os.rename("b", "a")
        os.rename("a", "c")
        """,
    )
    found = search(mnt, ALICE, "pangolin")
    assert "20 results" in found and all(p.startswith("c/sub/") for p in hit_paths(found))
    noisy = [ln for ln in mnt.log().splitlines() if " WARNING " in ln or " ERROR " in ln]
    assert noisy == []


def test_folder_churn_past_the_kept_folders_reaches_nothing_stale(mnt):
    """The daemon keeps up to 256 folders open (store.MAX_FOLDER_FDS). A user who walks
    far more folders than that while renaming, removing and remaking them by the same
    names must only ever reach what is there now, in her own scope; another user's nested
    files, read between her rounds, are untouched."""
    mnt.py(BOB, "import os\nos.makedirs('deep/er', exist_ok=True)\nopen('deep/er/b.md', 'w').write('bob\\n')")
    mnt.py(
        ALICE,
        """
        import os
        for i in range(400):  # more folders than are kept open
            os.makedirs(f"d{i}/sub")
            open(f"d{i}/sub/f.md", "w").write(f"{i}\\n")
        for r in range(3):
            for i in range(0, 400, 7):
                os.rename(f"d{i}", f"moved{i}")  # the old path must not reach the folder
                assert not os.path.exists(f"d{i}/sub/f.md")
                os.makedirs(f"d{i}/sub")  # a new folder by the same name: empty
                assert os.listdir(f"d{i}/sub") == []
                open(f"d{i}/sub/f.md", "w").write(f"new {r} {i}\\n")
                os.unlink(f"moved{i}/sub/f.md"); os.rmdir(f"moved{i}/sub"); os.rmdir(f"moved{i}")
            for i in range(400):
                want = f"new {r} {i}\\n" if i % 7 == 0 else f"{i}\\n"
                assert open(f"d{i}/sub/f.md").read() == want, (r, i)
        """,
        timeout=300,
    )
    assert mnt.sh(BOB, "cat deep/er/b.md; ls -A").stdout == "bob\ndeep\n"
    assert mnt.sh(ALICE, "cat d7/sub/f.md; ls -d moved* 2>/dev/null | wc -l").stdout == "new 2 7\n0\n"
