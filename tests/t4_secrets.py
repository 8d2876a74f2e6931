"""The secret guard through a real mount: a credential never lands in a team (or synced)
scope, whichever program writes or moves it there; the writer is told (EACCES, status,
quarantine), nobody else is, and no log line holds the secret. Keys are fakes of the
right shape, made fresh per run."""

from __future__ import annotations

import base64
import random
import string
import subprocess
import textwrap

import pytest
from conftest import ALICE, BOB, TIMEOUT, wait_for

R = random.Random()
B62 = string.ascii_letters + string.digits
GHP = "ghp_" + "".join(R.choice(B62) for _ in range(36))
AWS_ID = "AKIA" + "".join(R.choice(string.ascii_uppercase + "234567") for _ in range(16))
_body = base64.b64encode(R.randbytes(900)).decode()
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(_body[i : i + 64] for i in range(0, len(_body), 64))
    + "\n-----END RSA PRIVATE KEY-----\n"
)
PEM_BODY = _body[128:192]  # the key's third line, whole: no ordinary text holds it

CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  carol: {uid: 1003}
teams:
  eng: {members: [alice, bob]}
"""
REFUSED = r"refused: a secret at line \d+ \(rule [\w-]+\)"


@pytest.fixture
def tm(make_mount):
    m = make_mount(CONFIG)
    m.expect_log(REFUSED)
    return m


def read(m, uid, name, check=True):
    return m.sh(uid, f"cat .memfs/{name}", check=check).stdout


def git_text(m, scope: str) -> str:
    """Every version history keeps of a scope, as text (the packs are compressed)."""
    res = subprocess.run(
        ["git", "-c", "safe.directory=*", "--git-dir", str(m.data / "history" / scope), "log", "-p", "--all"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return res.stdout


def test_printf_of_a_key_into_team_is_refused_and_nobody_sees_it(tm):
    res = tm.sh(ALICE, f"/usr/bin/printf 'deploy token %s\\n' '{GHP}' > team/x.md", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert GHP not in tm.sh(BOB, "cat team/x.md 2>/dev/null || true").stdout
    assert GHP not in read(tm, BOB, "search/deploy")
    assert "No results." in read(tm, BOB, "search/" + GHP)
    assert "refused" not in read(tm, BOB, "status")
    # the writer's status names the path, line and rule, never the secret
    status = read(tm, ALICE, "status")
    assert "team/x.md:1: write refused" in status and "github-pat" in status
    assert GHP not in status and GHP[:8] not in status
    assert "quarantine: 1 refused write" in status
    # an ordinary entry next to it writes as always, and clears nothing it should not
    tm.sh(ALICE, "printf -- '---\\nname: tabs\\n---\\nuse tabs\\n' > team/tabs.md")
    assert tm.sh(BOB, "cat team/tabs.md").stdout.endswith("use tabs\n")
    # a later good write of the path clears the refusal from status
    tm.sh(ALICE, "echo 'the token lives in the vault' > team/x.md")
    assert "team/x.md:1: write refused" not in read(tm, ALICE, "status")
    tm.restart()  # history commits what is pending
    assert GHP not in git_text(tm, "teams/eng.git")
    assert "the token lives in the vault" in git_text(tm, "teams/eng.git")
    log = tm.log()
    assert "write uid=1001(alice) team/x.md: refused: a secret at line 1 (rule github-pat)" in log
    assert GHP not in log and GHP[4:] not in log and GHP[4:20] not in log


def test_split_writes_cp_mv_rename_and_temp_files(tm):
    # a key split across two writes: the second, which completes it, is refused
    out = tm.py(
        ALICE,
        f"""
        import os
        fd = os.open("team/split.md", os.O_WRONLY | os.O_CREAT, 0o644)
        key = {AWS_ID!r}
        os.write(fd, b"aws_access_key_id = " + key[:9].encode())
        try:
            os.write(fd, key[9:].encode() + b"\\n")
            print("second written")
        except PermissionError:
            print("second refused")
        os.close(fd)
        """,
    ).stdout
    assert out == "second refused\n"
    assert AWS_ID not in (tm.data / "teams" / "eng" / "split.md").read_text()
    # private memory without a remote: written, flagged, not refused
    tm.sh(ALICE, f"printf 'my key\\n%s' '{PEM}' > private.md; printf 'tok %s\\n' '{GHP}' > k.txt")
    assert PEM in tm.sh(ALICE, "cat private.md").stdout
    # cp into team/: the write is refused
    res = tm.sh(ALICE, "cp private.md team/", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    # mv into team/: refused, the private file intact
    res = tm.sh(ALICE, "mv private.md team/promoted.md", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert PEM in tm.sh(ALICE, "cat private.md").stdout
    assert "No such file" in tm.sh(BOB, "cat team/promoted.md", check=False).stderr
    # a folder moved into team/ with a key in one of its files: refused, the folder intact
    tm.sh(ALICE, f"mkdir -p coll/sub; echo fine > coll/a.md; printf 'x\\ny\\n%s\\n' '{GHP}' > coll/sub/b.md")
    res = tm.sh(ALICE, "mv coll team/", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert tm.sh(ALICE, "cat coll/a.md").stdout == "fine\n" and "coll" not in tm.sh(BOB, "ls team").stdout
    # a .txt renamed from private into team/x.md
    res = tm.py(
        ALICE,
        """
        import os
        try:
            os.rename("k.txt", "team/x.md")
        except PermissionError:
            print("refused")
        """,
    )
    assert res.stdout == "refused\n" and GHP in tm.sh(ALICE, "cat k.txt").stdout
    # an editor's temp file + os.replace inside team/: the temp file's write is refused
    res = tm.py(
        ALICE,
        f"""
        import os, tempfile
        fd, tmp = tempfile.mkstemp(dir="team", suffix=".tmp")
        try:
            os.write(fd, b"note\\n" + {GHP!r}.encode())
            os.close(fd)
            os.replace(tmp, "team/note.md")
            print("replaced")
        except PermissionError:
            os.close(fd)
            os.unlink(tmp)
            print("refused")
        """,
    )
    assert res.stdout == "refused\n"
    assert "note.md" not in tm.sh(BOB, "ls team").stdout
    for f in (tm.data / "teams" / "eng").rglob("*"):
        if f.is_file():
            text = f.read_text(errors="replace")
            assert GHP not in text and AWS_ID not in text and PEM_BODY not in text, f
    alice, bob = read(tm, ALICE, "status"), read(tm, BOB, "status")
    assert "private.md:2: holds a secret" in alice  # flagged in the owner's status
    assert "team/promoted.md" in alice and "team/x.md" in alice and "team/split.md:1" in alice
    assert "refused" not in bob and "holds a secret" not in bob and "quarantine" not in bob
    log = tm.log()
    for secret in (GHP[4:], AWS_ID, PEM_BODY):
        assert secret not in log
    # a PEM block: whichever detector names it first (gitleaks's private-key, detect-secrets's)
    promoted = "rename uid=1001(alice) team/promoted.md: refused: a secret at line 2 (rule "
    assert promoted + "private-key)" in log or promoted + "PrivateKeyDetector)" in log
    assert "rename uid=1001(alice) team/coll/sub/b.md: refused: a secret at line 3 (rule github-pat)" in log


def test_quarantine_is_the_writers_alone(tm):
    tm.sh(ALICE, f"printf 'deploy %s\\n' '{GHP}' > team/q.md", check=False)
    names = tm.sh(ALICE, "ls .memfs/quarantine").stdout.split()
    assert len(names) == 1 and names[0].endswith("-q.md")
    assert GHP in tm.sh(ALICE, f"cat .memfs/quarantine/{names[0]}").stdout
    assert tm.sh(BOB, "ls .memfs/quarantine").stdout == ""
    res = tm.sh(BOB, f"cat .memfs/quarantine/{names[0]}", check=False)
    assert res.returncode != 0 and GHP not in res.stdout
    res = tm.sh(ALICE, f"echo x > .memfs/quarantine/{names[0]}", check=False)
    assert res.returncode != 0
    # on disk: the daemon's own folder, 0700, per user
    folder = tm.data / "state" / "quarantine" / "alice"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_guard_off_lets_it_through(make_mount):
    m = make_mount(CONFIG + "secrets: {guard: off}\n")
    m.sh(ALICE, f"printf 'deploy %s\\n' '{GHP}' > team/x.md")
    assert GHP in m.sh(BOB, "cat team/x.md").stdout
    assert "quarantine" not in m.sh(ALICE, "ls .memfs/quarantine 2>&1 || true").stdout.split()


def test_allow_and_private_refuse(make_mount):
    m = make_mount(CONFIG + f"secrets: {{allow: ['^{GHP}$'], private: refuse}}\n")
    m.expect_log(REFUSED, count=1)
    m.sh(ALICE, f"printf 'a known fake %s\\n' '{GHP}' > team/fake.md")
    assert GHP in m.sh(BOB, "cat team/fake.md").stdout
    res = m.sh(ALICE, f"/usr/bin/printf 'aws_access_key_id = %s\\n' '{AWS_ID}' > mine.md", check=False)
    assert "Permission denied" in res.stderr


def test_private_memory_with_a_remote_is_guarded(make_mount, base_dir):
    remote = base_dir / "remote.git"
    subprocess.run(
        ["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)],
        check=True,
        timeout=TIMEOUT,
    )
    m = make_mount(CONFIG.replace("alice: {uid: 1001}", f"alice: {{uid: 1001, remote: {remote}}}"))
    m.expect_log(REFUSED, count=1)
    res = m.sh(ALICE, f"/usr/bin/printf 'token %s\\n' '{GHP}' > mine.md", check=False)
    assert "Permission denied" in res.stderr
    m.sh(BOB, f"/usr/bin/printf 'token %s\\n' '{GHP}' > mine.md")  # bob's has no remote: flagged
    # scanned in the background after the close, without anyone reading status
    wait_for(lambda: "secret in uid=1002(bob) mine.md: line 1 (rule github-pat)" in m.log(), "the flag", 20)
    assert "mine.md:1: holds a secret" in read(m, BOB, "status")
    assert "mine.md:1: write refused" in read(m, ALICE, "status")


def test_a_burst_of_private_files_is_flagged_in_the_background_file_by_file(tm):
    """The flagger scans closed private files in batches in an idle worker: each flag names
    its own file and line, clean files none, and a file removed before its scan nothing."""
    tm.py(
        BOB,
        f"""
        import os
        for i in range(150):
            key = "token {GHP}\\n" if i in (7, 93, 149) else ""
            open(f"n{{i:03d}}.md", "w").write("line one\\nline two\\n" + key + "tail\\n")
        os.unlink("n149.md")
        """,
    )
    wanted = [f"secret in uid=1002(bob) n{i:03d}.md: line 3 (rule github-pat)" for i in (7, 93)]
    wait_for(lambda: all(w in tm.log() for w in wanted), "the two flags", 30)
    flags = [ln for ln in tm.log().splitlines() if "secret in uid=1002(bob)" in ln]
    assert len(flags) == 2, flags
    status = read(tm, BOB, "status")
    assert "n007.md:3: holds a secret" in status and "n093.md:3: holds a secret" in status
    assert status.count("holds a secret") == 2


def test_a_flagged_file_emptied_is_no_longer_flagged(tm):
    """An empty file is not scanned (touch, lock files, 100k empty files): its flag goes at
    its close, and status says so."""
    tm.sh(BOB, f"/usr/bin/printf 'token %s\\n' '{GHP}' > mine.md; touch empty.md")
    wait_for(lambda: "secret in uid=1002(bob) mine.md: line 1" in tm.log(), "the flag", 20)
    assert "mine.md:1: holds a secret" in read(tm, BOB, "status")
    tm.sh(BOB, ": > mine.md")
    status = read(tm, BOB, "status")
    assert "holds a secret" not in status, status


# --- a hostile member smuggling a key into team/; a teammate must never read it ---------------
# Each attempt is a script run by alice (every OSError swallowed: she keeps trying); KEY,
# B64 and PEM are bound in it. B64 is "GITHUB_TOKEN=<key>" base64-wrapped at 76 as
# `base64` does: the key decoded, and the blob itself, must both stay out.
B64 = base64.encodebytes(f"GITHUB_TOKEN={GHP}\n".encode()).decode()
_SMUGGLE_PRELUDE = f"""
import os, subprocess, tempfile
KEY, B64, PEM = {GHP!r}, {B64!r}, {PEM!r}
def attempt(f):
    try:
        f()
    except OSError as e:
        print("refused:", e.errno)
"""
SMUGGLING = {
    "two-writes": """
        def go():
            fd = os.open("team/s.md", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"token " + KEY[:10].encode())
                os.write(fd, KEY[10:].encode() + b"\\n")
            finally:
                os.close(fd)
        attempt(go)
        """,
    "two-opens-append": """
        for part in (b"token " + KEY[:10].encode(), KEY[10:].encode() + b"\\n"):
            def go(part=part):
                with open("team/s.md", "ab") as f:
                    f.write(part)
            attempt(go)
        """,
    "txt-renamed-to-md": """
        def go():
            with open("team/s.txt", "w") as f:
                f.write("token " + KEY + "\\n")
        attempt(go)
        attempt(lambda: os.rename("team/s.txt", "team/s.md"))
        """,
    "hidden-renamed-to-md": """
        def go():
            with open("team/.s", "w") as f:
                f.write("token " + KEY + "\\n")
        attempt(go)
        attempt(lambda: os.rename("team/.s", "team/s.md"))
        """,
    "private-renamed-into-team": """
        with open("s.txt", "w") as f:
            f.write("token " + KEY + "\\n")
        attempt(lambda: os.rename("s.txt", "team/s.md"))
        """,
    "os-replace-temp-file": """
        def go():
            fd, tmp = tempfile.mkstemp(dir="team", suffix=".tmp")
            try:
                os.write(fd, ("token " + KEY + "\\n").encode())
            finally:
                os.close(fd)
            os.replace(tmp, "team/s.md")
        attempt(go)
        """,
    "sed-i": """
        with open("team/s.md", "w") as f:
            f.write("token PLACEHOLDER\\n")
        res = subprocess.run(["sed", "-i", "s/PLACEHOLDER/" + KEY + "/", "team/s.md"], capture_output=True)
        print("sed exit", res.returncode)
        """,
    "base64-wrapped": """
        def go():
            with open("team/s.md", "w") as f:
                f.write("config, base64:\\n" + B64)
        attempt(go)
        """,
    "pem-in-small-writes": """
        def go():
            fd = os.open("team/s.md", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                data = ("deploy key\\n" + PEM).encode()
                for i in range(0, len(data), 16):
                    os.write(fd, data[i : i + 16])
            finally:
                os.close(fd)
        attempt(go)
        """,
    "truncate-pwrite-middle": """
        with open("team/s.md", "w") as f:
            f.write("".join(f"line {i} of an ordinary note\\n" for i in range(200)))
        def go():
            fd = os.open("team/s.md", os.O_RDWR)
            try:
                os.ftruncate(fd, 8000)
                os.pwrite(fd, ("token " + KEY).encode(), 2003)
            finally:
                os.close(fd)
        attempt(go)
        """,
}


@pytest.mark.parametrize("how", sorted(SMUGGLING))
def test_a_hostile_member_cannot_smuggle_a_key_to_a_teammate(tm, how):
    out = tm.py(ALICE, _SMUGGLE_PRELUDE + textwrap.dedent(SMUGGLING[how])).stdout
    assert "refused: 13" in out or "sed exit 4" in out, out  # EACCES reached the writer
    leaks = (GHP, GHP[4:20], B64.split()[0], PEM_BODY)
    tm.restart()  # history commits what is pending; nothing cached survives
    seen = tm.run(
        BOB,
        [
            "sh",
            "-c",
            "cat team/* team/.[!.]*; grep -r . .; cat .memfs/search/token; grep -r . .memfs/history",
        ],
        check=False,
    ).stdout
    seen += git_text(tm, "teams/eng.git")
    assert "line 5 of an ordinary note" in seen or how != "truncate-pwrite-middle"  # bob reads
    for leak in leaks:
        assert leak not in seen, (how, leak)
    for f in (tm.data / "teams" / "eng").rglob("*"):
        if f.is_file():
            assert not any(leak in f.read_text(errors="replace") for leak in leaks), (how, f)
