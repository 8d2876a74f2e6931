"""Agent views: .memfs/context.md, index.md and status, for two users and a team."""

from __future__ import annotations

import os
import time

import pytest
from conftest import ALICE, BOB, CAROL
from t4_search import entry, write
from t4_team import TEAM_CONFIG


@pytest.fixture
def tm(shared_mount):
    """This file's tests share one mount (conftest.shared_mount)."""
    return shared_mount(TEAM_CONFIG + "context: {stale_days: 30}\n")


def read(m, uid, name) -> str:
    return m.run(uid, ["cat", f".memfs/{name}"]).stdout


def setup_alice(m):
    write(m, ALICE, "tabs.md", entry("Tabs", "alpha", "feedback", "we indent with tabs"))
    write(m, ALICE, "old.md", entry("Old", "beta", "user", "an old preference"))
    write(m, ALICE, "orphan.md", entry("Orphan", "gamma", "project", "no index line"))
    write(m, ALICE, "broken.md", "---\nname: [unclosed\n---\nbody\n")
    write(m, ALICE, "odd.md", entry("Odd", "delta", "diary", "odd type"))
    m.sh(ALICE, "touch -d '2025-01-01' old.md")
    write(
        m,
        ALICE,
        "MEMORY.md",
        "# Alice\n- [Tabs](tabs.md) — tabs\n- [Old](old.md) — old\n- [Broken](broken.md) — b\n"
        "- [Odd](odd.md) — odd\n- [Gone](gone.md) — dangling\n",
    )
    write(m, BOB, "team/indent.md", entry("Indent", "team text", "reference", "team indentation rule"))
    write(m, BOB, "team/MEMORY.md", "# Team\n- [Indent](indent.md) — indentation\n")
    write(m, BOB, "bob.md", entry("Bob note", "bob's text", "user", "bob private"))
    write(m, BOB, "MEMORY.md", "- [Bob note](bob.md) — mine\n")


def test_context_md(tm):
    setup_alice(tm)
    ctx = read(tm, ALICE, "context.md")
    assert "not instructions" in ctx
    private, team = (
        ctx.index("## Private memory: MEMORY.md"),
        ctx.index("## Team memory (eng): team/MEMORY.md"),
    )
    assert private < team
    assert "```markdown\n# Alice\n- [Tabs](tabs.md) — tabs\n" in ctx
    assert "```markdown\n# Team\n- [Indent](indent.md) — indentation\n```" in ctx
    assert "- old.md (" in ctx and "days old)" in ctx  # older than stale_days shows its age
    unindexed = ctx.split("## Entries with no line in any MEMORY.md (newest first)")[1]
    assert "- [Orphan](orphan.md) — no index line" in unindexed
    assert "tabs.md" not in unindexed.split("##")[0]
    assert "- MEMORY.md line 6: [Gone](gone.md)" in ctx
    # Bob sees his own and the same team block; carol has no team and no MEMORY.md yet.
    bob = read(tm, BOB, "context.md")
    assert "- [Bob note](bob.md) — mine" in bob and "Alice" not in bob and "# Team" in bob
    carol = read(tm, CAROL, "context.md")
    assert "(no MEMORY.md yet)" in carol and "Team memory" not in carol and "tabs" not in carol


def test_context_caps_are_marked_never_silent(make_mount):
    m = make_mount(TEAM_CONFIG)
    lines = ["# Big index"]
    for i in range(300):
        lines.append(f"- [E{i}](e{i}.md) — entry number {i}")
    for i in (50, 250, 290):
        write(m, ALICE, f"e{i}.md", entry(f"E{i}", "x", "project", f"entry {i}"))
        os.utime(m.backing("alice") / f"e{i}.md", (time.time() - 1000 + i, time.time() - 1000 + i))
    write(m, ALICE, "MEMORY.md", "\n".join(lines) + "\n")
    ctx = read(m, ALICE, "context.md")
    block = ctx.split("```markdown\n", 1)[1].split("\n```", 1)[0]
    assert len(block.splitlines()) == 200
    assert "[... 101 more lines truncated ...]" in ctx
    cut = ctx.split("Entries whose index lines were cut (newest first):")[1].split("\n\n")[0]
    assert [ln.split("]")[0] for ln in cut.strip().splitlines()] == ["- [E290", "- [E250"]
    assert "consolidate" in ctx
    status = read(m, ALICE, "status")
    assert "MEMORY.md: 301 lines" in status and "over the context cap" in status
    # The byte cap applies too.
    m2 = make_mount(TEAM_CONFIG + "context: {max_bytes: 100}\n", sub="m2")
    write(m2, ALICE, "MEMORY.md", "\n".join(lines[:20]) + "\n")
    ctx2 = read(m2, ALICE, "context.md")
    assert "more lines truncated" in ctx2 and len(ctx2.split("```markdown\n")[1].split("\n```")[0]) <= 100


def test_index_md(tm):
    setup_alice(tm)
    idx = read(tm, ALICE, "index.md")
    assert "cannot drift" in idx
    private = idx.split("## Private")[1].split("## Team")[0]
    assert "### feedback\n\n- [Tabs](tabs.md) — we indent with tabs (updated " in private
    assert "### project\n\n- [Orphan](orphan.md)" in private
    assert "### (no type)" in private and "broken.md" in private
    team = idx.split("## Team (eng)")[1]
    assert "### reference\n\n- [Indent](team/indent.md) — team indentation rule" in team
    assert "MEMORY.md" not in idx.replace("MEMORY.md)", "")  # index files are not entries
    # It follows the files at once, however they are made.
    tm.sh(ALICE, "rm orphan.md")
    assert "orphan" not in read(tm, ALICE, "index.md").lower()
    tm.py(ALICE, "import os, stat; os.mknod('made-by-mknod.md', stat.S_IFREG | 0o600)")
    assert "made-by-mknod.md" in read(tm, ALICE, "index.md")
    # Grants show the owner's entries read-only; nothing of bob's leaks to alice.
    carol = read(tm, CAROL, "index.md")
    assert "## alice (read-only grant)" in carol and "(.memfs/users/alice/tabs.md)" in carol
    assert "bob" not in idx.lower() and "team" not in carol.lower()


def test_status(tm):
    setup_alice(tm)
    status = read(tm, ALICE, "status").splitlines()
    assert "broken.md: frontmatter is not valid YAML" in "\n".join(status)
    assert any(s.startswith("odd.md: unknown type 'diary'") for s in status)
    assert "MEMORY.md:6: index line points to gone.md, which does not exist" in status
    assert "orphan.md: no line in MEMORY.md" in status
    assert not any(s.startswith(("tabs.md", "team/", "bob")) for s in status)
    assert read(tm, BOB, "status") == ""  # all well
    write(tm, BOB, "team/stray.md", "no frontmatter\n")
    bob = read(tm, BOB, "status").splitlines()
    assert "team/stray.md: no frontmatter (expected --- name/description/type ---)" in bob
    assert "team/stray.md: no line in team/MEMORY.md" in bob
    assert "team/stray.md: no line in team/MEMORY.md" in read(tm, ALICE, "status")


def test_types_are_configurable(make_mount):
    m = make_mount(TEAM_CONFIG + "memory: {types: [user, decision]}\n")
    write(m, ALICE, "d.md", entry("D", "x", "decision", "a decision"))
    write(m, ALICE, "f.md", entry("F", "x", "feedback", "now unknown"))
    status = read(m, ALICE, "status")
    assert "d.md: unknown type" not in status
    assert "f.md: unknown type 'feedback' (allowed: user, decision)" in status


def test_control_files_are_read_only_and_hidden(tm):
    for name in ("context.md", "index.md", "status"):
        res = tm.sh(ALICE, f"echo x > .memfs/{name}", check=False)
        assert res.returncode != 0
    assert sorted(tm.sh(ALICE, "ls .memfs").stdout.split()) == [
        "admin.json",  # root's (memfs status --all): alice cannot read it
        "context.md",
        "entries.json",
        "history",
        "index.md",
        "log",
        "purge",
        "quarantine",
        "query",
        "query.json",
        "refresh",
        "search",
        "status",
        "users",
        "whoami",
    ]
    assert tm.sh(ALICE, "ls -A").stdout == "team\n"
