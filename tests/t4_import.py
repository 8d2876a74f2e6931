"""memfs import (three sources, each twice) and memfs doctor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ALICE, BOB, TIMEOUT, memfs_cmd
from t4_search import entry, hit_paths, search, write

CONFIG = """
users:
  alice: {uid: 1001, aliases: ["-100123", "u-77"]}
  bob: {uid: 1002, aliases: ["555"]}
  carol: {uid: 1003}
  mallory: {uid: 1004}
teams:
  eng: {members: [alice, bob]}
"""


def memfs(m, *args, check=True):
    res = subprocess.run(memfs_cmd(*args), env=m.env, capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def do_import(m, src: Path, *extra) -> str:
    args = ("import", str(src), "--data", str(m.data), "--config", str(m.config), "--quiet", *extra)
    return memfs(m, *args).stdout


def tree(root: Path) -> dict[str, bytes]:
    """The files in DATA/, without what the daemon derives from them in the background
    (index, history's repositories, state)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in ("index", "history", "state")
    }


def make_memory_dir(base: Path) -> Path:
    src = base / "agent-memory"
    (src / "team").mkdir(parents=True)
    (src / "notes").mkdir()
    (src / "MEMORY.md").write_text(
        "- [Tabs](tabs.md) — we indent with tabs\n- [Deep](notes/deep.md) — deep\n"
    )
    (src / "tabs.md").write_text(entry("Tabs", "imported toucan", "feedback", "we indent with tabs"))
    (src / "notes" / "deep.md").write_text(entry("Deep", "nested toucan", "project"))
    (src / "team" / "MEMORY.md").write_text("- [Style](style.md) — team style\n")
    (src / "team" / "style.md").write_text(entry("Style", "team toucan", "reference"))
    return src


@pytest.fixture
def m(shared_mount):
    """This file's tests share one mount (conftest.shared_mount)."""
    return shared_mount(CONFIG)


def test_import_memory_dir_twice_while_mounted(m, base_dir):
    src = make_memory_dir(base_dir)
    write(m, ALICE, "MEMORY.md", "- [Own](own.md) — was here first\n")
    write(m, ALICE, "own.md", entry("Own", "own", "user"))
    m.sh(ALICE, "cat MEMORY.md")  # the kernel now caches its size: the import must refresh it
    out = do_import(m, src, "--user", "alice")
    assert "created 4, merged 1 index files" in out
    first = tree(m.data)
    assert "private/alice/notes/deep.md" in first and "teams/eng/style.md" in first
    # Without a restart: the mount shows the files (and the merged MEMORY.md), search finds them.
    idx = m.sh(ALICE, "cat MEMORY.md").stdout
    assert (
        idx.startswith("- [Own](own.md)") and "- [Tabs](tabs.md)" in idx and "- [Deep](notes/deep.md)" in idx
    )
    assert m.sh(BOB, "cat team/style.md").stdout.startswith("---\nname: Style")
    assert sorted(hit_paths(search(m, ALICE, "toucan"))) == ["notes/deep.md", "tabs.md", "team/style.md"]
    # Idempotent.
    again = do_import(m, src, "--user", "alice")
    assert "created 0, merged 0 index files" in again and "already there" in again
    assert tree(m.data) == first


def test_imported_team_files_are_the_importing_users(m, base_dir):
    """Issue 26: files an import creates are --user's, as if they had written them; a
    MEMORY.md it merges lines into stays its maker's."""
    src = make_memory_dir(base_dir)
    (src / "team" / "sub").mkdir()
    (src / "team" / "sub" / "deep.md").write_text(entry("Sub", "team sub toucan", "project"))
    write(m, BOB, "team/MEMORY.md", "- [Bob](bob.md) — bob's line\n")
    do_import(m, src, "--user", "alice")
    names = ["team/style.md", "team/sub", "team/sub/deep.md", "team/MEMORY.md"]
    assert m.run(BOB, ["stat", "-c", "%u", *names]).stdout.split() == [str(ALICE)] * 3 + [str(BOB)]


def test_import_keeps_existing_files(m, base_dir):
    src = make_memory_dir(base_dir)
    write(m, ALICE, "tabs.md", "mine, not the import's\n")
    out = do_import(m, src, "--user", "alice", "--verbose")
    assert "exists with other content (kept)" in out
    assert m.sh(ALICE, "cat tabs.md").stdout == "mine, not the import's\n"


def test_import_dry_run_changes_nothing(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)
    src = make_memory_dir(base_dir)
    out = do_import(m, src, "--user", "alice", "--dry-run")
    assert "would create 5" in out
    assert not (m.data / "private").exists()


def test_import_legacy_bot_layout_twice(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)  # works unmounted too; the mount reconciles at start
    src = base_dir / "bot"
    (src / "memory" / "-100123").mkdir(parents=True)
    (src / "memory" / "555").mkdir()
    (src / "memory" / "999").mkdir()
    (src / "memory" / "MEMORY.md").write_text("- [Global](global.md) — the service's own\n")
    (src / "memory" / "global.md").write_text(entry("Global", "global heron", "project"))
    (src / "memory" / "-100123" / "MEMORY.md").write_text("- [Chat](chat.md) — alice's chat\n")
    (src / "memory" / "-100123" / "chat.md").write_text(entry("Chat", "chat heron", "user"))
    (src / "memory" / "555" / "MEMORY.md").write_text("- [B](b.md) — bob's chat\n")
    (src / "memory" / "555" / "b.md").write_text(entry("B", "bob heron", "user"))
    (src / "memory" / "999" / "MEMORY.md").write_text("- nobody\n")
    out = do_import(m, src, "--user", "alice")
    # Bob's chat is refused: only --user's memory is written.
    assert "chat 999 has no user" in out and "skipped 2: belongs to user bob, not --user alice" in out
    first = tree(m.data)
    assert first["private/alice/global.md"].startswith(b"---\nname: Global")
    assert first["private/alice/chat.md"].startswith(b"---\nname: Chat")
    assert first["private/alice/MEMORY.md"].decode().splitlines() == [
        "- [Chat](chat.md) — alice's chat",
        "- [Global](global.md) — the service's own",
    ]
    assert not [k for k in first if not k.startswith("private/alice/")]
    assert "created 0" in do_import(m, src, "--user", "alice")
    assert tree(m.data) == first
    m.start()
    assert sorted(hit_paths(search(m, ALICE, "heron"))) == ["chat.md", "global.md"]
    assert hit_paths(search(m, BOB, "heron")) == []


def test_import_json_store_twice(m, base_dir):
    src = base_dir / "store"
    u = src / "users" / "u-77"
    u.mkdir(parents=True)
    (u / "short_term.json").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    (u / "long_term_user.json").write_text(
        json.dumps(
            {
                "profile": {"name": "Alice", "role": "data engineer", "language": "Go"},
                "knowledge": [
                    {
                        "id": "k1",
                        "topic": "Indentation",
                        "content": "Prefers tabs over spaces.",
                        "category": "preference",
                    },
                    {
                        "id": "k2",
                        "content": "Works on the billing pipeline.",
                        "category": "project",
                        "tags": ["billing"],
                    },
                    "Likes short answers.",
                ],
            }
        )
    )
    (u / "mid_term.json").write_text(
        json.dumps({"summaries": [{"id": "s1", "summary": "Migrated billing to Kafka."}]})
    )
    out = do_import(m, src, "--user", "alice")
    assert "created 6" in out and "short-term conversation buffer" in out
    b = m.backing("alice")
    names = sorted(p.name for p in b.iterdir())
    assert "profile.md" in names and "MEMORY.md" in names and len(names) == 6
    prof = (b / "profile.md").read_text()
    assert "type: user" in prof and "- **role**: data engineer" in prof
    pref = next(b.glob("knowledge-indentation-*.md")).read_text()
    assert "name: Indentation" in pref and "type: feedback" in pref and "Prefers tabs" in pref
    assert "type: project" in next(b.glob("summary-*.md")).read_text()
    # Each created entry has its line in MEMORY.md, so nothing is flagged.
    assert m.run(ALICE, ["cat", ".memfs/status"]).stdout == ""
    assert hit_paths(search(m, ALICE, "billing type:project"))
    first = tree(m.data)
    assert "created 0, merged 0" in do_import(m, src, "--user", "alice")
    assert tree(m.data) == first


# -- a source owned by someone else ------------------------------------------------------------
SECRET = "root-only-secret-8f3a"


def secrets(base: Path) -> Path:
    """Root-only files and a root-only folder, each of which would import if followed."""
    d = base / "root-only"
    d.mkdir(mode=0o700)
    (d / "mid_term.json").write_text(json.dumps({"summaries": [{"id": "s", "summary": SECRET}]}))
    (d / "long_term_user.json").write_text(json.dumps({"profile": {"name": SECRET}}))
    (d / "secret.md").write_text(entry("Secret", SECRET, "user"))
    for p in d.iterdir():
        p.chmod(0o600)
    return d


def assert_no_secret(data: Path) -> None:
    leaked = [p for p in data.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked


def test_import_json_follows_no_symlink(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)
    root_only = secrets(base_dir)
    users = base_dir / "store" / "users"
    (users / "u-77").mkdir(parents=True)
    (users / "u-77" / "mid_term.json").symlink_to(root_only / "mid_term.json")
    (users / "u-77" / "long_term_user.json").symlink_to(root_only / "long_term_user.json")
    (users / "alice").symlink_to(root_only)
    out = do_import(m, base_dir / "store", "--user", "alice")
    assert "created 0" in out and "skipped 2: symbolic link (not followed)" in out
    assert_no_secret(m.data)


def test_import_dir_follows_no_symlink(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)
    root_only = secrets(base_dir)
    src = make_memory_dir(base_dir)
    (src / "leak.md").symlink_to(root_only / "secret.md")
    (src / "linked").symlink_to(root_only)
    (src / "team" / "linked.md").symlink_to(root_only / "secret.md")
    out = do_import(m, src, "--user", "alice", "--verbose")
    assert "created 5, merged 0 index files" in out and "skipped 3: symbolic link (not followed)" in out
    assert f"skipped {src / 'linked'}: symbolic link (not followed)" in out
    assert_no_secret(m.data)
    assert not (m.backing("alice") / "linked").exists()


def test_import_source_root_symlink_refused(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)
    (base_dir / "export").symlink_to(secrets(base_dir))
    args = (
        "import",
        str(base_dir / "export"),
        "--user",
        "alice",
        "--data",
        str(m.data),
        "--config",
        str(m.config),
    )
    res = memfs(m, *args, check=False)
    assert res.returncode != 0 and "is not a directory (symbolic link (not followed))" in res.stderr
    assert not m.data.exists()


def test_import_skips_fifos_and_big_files(make_mount, base_dir):
    m = make_mount(CONFIG + "limits: {max_file_bytes: 1000}\n", start=False)
    src = make_memory_dir(base_dir)
    os.mkfifo(src / "pipe.md")  # nobody writes: reading it would wait forever
    (src / "big.md").write_text("x" * 1001)
    out = do_import(m, src, "--user", "alice")
    assert "created 5" in out and "skipped 1: not a regular file" in out
    assert "skipped 1: larger than limits.max_file_bytes (1000 bytes)" in out
    assert not (m.backing("alice") / "pipe.md").exists() and not (m.backing("alice") / "big.md").exists()


def test_import_writes_only_into_the_users_memory(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)
    users = base_dir / "store" / "users"
    for who in ("alice", "mallory"):
        (users / who).mkdir(parents=True)
        (users / who / "mid_term.json").write_text(
            json.dumps({"summaries": [{"id": who, "summary": f"planted by mallory as {who}"}]})
        )
    out = do_import(m, base_dir / "store", "--user", "mallory", "--verbose")
    assert "created 2" in out and "skipped 1: belongs to user alice, not --user mallory" in out
    assert f"skipped {users / 'alice' / 'mid_term.json'}#alice: belongs to user alice" in out
    assert not (m.data / "private" / "alice").exists()
    assert len(list(m.backing("mallory").glob("summary-*.md"))) == 1
    # The store's one user folder still maps to --user, whatever its id.
    (users / "mallory").rename(users / "42")
    shutil.rmtree(users / "alice")
    assert "created 2, merged 0" in do_import(m, base_dir / "store", "--user", "carol")
    assert len(list(m.backing("carol").glob("summary-*.md"))) == 1


def test_refresh_is_root_only(m):
    write(m, ALICE, "x.md", "x\n")
    res = m.sh(ALICE, f"echo {m.data}/private/bob/x.md > .memfs/refresh", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr


def test_import_errors_are_one_line(m, base_dir):
    res = memfs(m, "import", str(base_dir / "nope"), "--user", "alice", "--data", str(m.data), check=False)
    assert res.returncode != 0 and "is not a directory" in res.stderr
    src = make_memory_dir(base_dir)
    res = memfs(m, "import", str(src), "--user", "../x", "--data", str(m.data), check=False)
    assert res.returncode != 0 and "not a valid user name" in res.stderr


# -- doctor ------------------------------------------------------------------------------------
def test_doctor_healthy_and_broken(m):
    write(m, ALICE, "MEMORY.md", "- [Gone](gone.md) — dangling\n")
    args = ["doctor", "--mount", str(m.mnt), "--data", str(m.data), "--config", str(m.config)]
    ok = memfs(m, *args)
    lines = ok.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == [
        "fuse:",
        "config:",
        "data:",
        "mount:",
        "status:",
        "sync:",  # no remote configured: OK
        "index:",
        "history:",
    ]
    assert all(ln.startswith("OK") for ln in lines), ok.stdout
    # As alice, through the mount: her warnings are summed up.
    res = m.run(ALICE, [*memfs_cmd("doctor", "--mount", str(m.mnt)), "--config", str(m.config)], check=False)
    if res.returncode == 0:  # alice can run this checkout's venv
        assert "WARN status: 1 warnings" in res.stdout
    # As alice with --data: she cannot look inside DATA/, and doctor says so (no traceback).
    res = m.run(ALICE, [*memfs_cmd("doctor", *args[1:])], check=False)
    if m.run(ALICE, [sys.executable, "-c", "import memfs"], check=False).returncode == 0:
        assert (
            "Traceback" not in res.stderr
            and "OK   data:" in res.stdout
            and "run doctor as root" in res.stdout
        )
    data = json.loads(memfs(m, *args, "--json").stdout)
    assert {c["name"] for c in data} == {
        "fuse",
        "config",
        "data",
        "mount",
        "status",
        "sync",
        "index",
        "history",
    }
    # Broken: the data dir opened to others, an entry edited behind memfs's back, the mount gone.
    os.chmod(m.data, 0o755)
    m.stop()
    (m.data / "private" / "alice" / "sneaky.md").write_text("added while unmounted\n")
    bad = memfs(m, *args, check=False)
    assert bad.returncode != 0
    out = bad.stdout
    assert "FAIL data:" in out and "chmod 700" in out
    assert "FAIL mount: nothing is mounted" in out
    assert "FAIL index:" in out and "entries on disk" in out
    m.config.write_text("bogus: 1\n")
    assert "FAIL config: config: unknown key 'bogus'" in memfs(m, *args, check=False).stdout


def test_an_import_while_mounted_counts_against_the_quota_at_once(m, base_dir):
    """Files an import writes behind the daemon's back are in the scope's usage right
    away (.memfs/whoami), not only after a remount: the quota sees what is on disk."""
    src = make_memory_dir(base_dir)
    (src / "big.md").write_text(entry("Big", "x" * 50_000, "user"))

    def usage() -> dict:
        import yaml

        return yaml.safe_load(m.sh(ALICE, "cat .memfs/whoami").stdout)["usage"]

    write(m, ALICE, "own.md", entry("Own", "own", "user"))
    before = usage()  # the daemon has counted alice's scope now
    do_import(m, src, "--user", "alice")
    after = usage()
    assert after["private_bytes"] >= before["private_bytes"] + 50_000, (before, after)
    assert after["private_files"] >= before["private_files"] + 4, (before, after)


def test_an_import_brings_no_secret_into_team_memory(m, base_dir):
    """`memfs import` is one more way content arrives: a file holding a credential is not
    written into the team (the guard's default), and the report names line and rule, never
    the secret; the same key in the user's own private memory is imported (flagged, not
    refused, as a write there would be)."""
    from t4_secrets import GHP

    src = make_memory_dir(base_dir)
    (src / "team" / "deploy.md").write_text(entry("Deploy", "how we deploy", "project", f"token {GHP}"))
    (src / "mine.md").write_text(entry("Mine", "my own token", "user", f"token {GHP}"))
    out = do_import(m, src, "--user", "alice", "--verbose")
    assert "skipped 1: a secret at line" in out and "(rule github-pat): team:eng never holds one" in out, out
    assert GHP not in out
    assert not (m.data / "teams" / "eng" / "deploy.md").exists()
    assert m.sh(BOB, "ls team").stdout.split() == ["MEMORY.md", "style.md"]
    assert GHP in m.sh(ALICE, "cat mine.md").stdout


def test_another_chats_folder_needs_claim_and_a_merge_keeps_one_heading(make_mount, base_dir):
    m = make_mount(CONFIG, start=False)
    src = base_dir / "555" / "memory"  # bob's chat (users.bob.aliases)
    src.mkdir(parents=True)
    (src / "MEMORY.md").write_text("# Memory\n- [Chat](chat.md) — from the chat\n")
    (src / "chat.md").write_text(entry("Chat", "from the chat", "project"))
    (m.backing("alice")).mkdir(parents=True)
    (m.backing("alice") / "MEMORY.md").write_text("# Memory\n- [Mine](mine.md) — mine\n")
    args = ("import", str(src), "--data", str(m.data), "--config", str(m.config), "--quiet")
    res = memfs(m, *args, "--user", "alice", check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "id of user bob" in res.stderr and "--claim" in res.stderr
    assert not (m.backing("alice") / "chat.md").exists()
    assert "created 1, merged 1" in do_import(m, src, "--user", "alice", "--claim")
    index = (m.backing("alice") / "MEMORY.md").read_text()
    assert index == "# Memory\n- [Mine](mine.md) — mine\n- [Chat](chat.md) — from the chat\n"
