"""Ranked search through the filesystem itself, scoped to what the caller may read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse

import pytest
from conftest import ALICE, BOB, CAROL, DAVE, TIMEOUT, memfs_cmd
from t4_team import TEAM_CONFIG


def entry(name: str, body: str, type_: str = "project", desc: str = "", tags=()) -> str:
    tag_line = f"tags: [{', '.join(tags)}]\n" if tags else ""
    return f"---\nname: {name}\ndescription: {desc or name}\ntype: {type_}\n{tag_line}---\n{body}\n"


def write(m, uid, path, text):
    m.py(uid, f"open({path!r}, 'w').write({text!r})")


def search(m, uid, query: str) -> str:
    name = urllib.parse.quote(query, safe=" :") if "/" in query or "%" in query else query
    return m.run(uid, ["cat", f".memfs/search/{name}"]).stdout


def hit_paths(text: str) -> list[str]:
    return [line.split(". ", 1)[1] for line in text.splitlines() if line.startswith("## ")]


def search_json(m, uid, query: str) -> dict:
    code = (
        "f = open('.memfs/query.json', 'r+b', buffering=0)\n"
        f"f.write({query.encode()!r})\n"
        "import sys; sys.stdout.write(f.read(10_000_000).decode())"
    )
    return json.loads(m.py(uid, code).stdout)


@pytest.fixture
def tm(shared_mount):
    """This file's tests share one mount (conftest.shared_mount)."""
    return shared_mount(TEAM_CONFIG)


def test_result_format_and_empty_result(tm):
    write(tm, ALICE, "tabs.md", entry("Tabs", "Always indent Go code with tabs.", "feedback", "use tabs"))
    out = search(tm, ALICE, "tabs")
    assert hit_paths(out) == ["tabs.md"]
    assert "- name: Tabs" in out and "- type: feedback" in out and "- description: use tabs" in out
    assert "- score: " in out and "**tabs**" in out
    empty = search(tm, ALICE, "zyzzyva")
    assert "No results." in empty and not hit_paths(empty)


def test_every_md_is_indexed_whatever_its_frontmatter(tm):
    write(tm, ALICE, "plain.md", "no frontmatter at all, only aardvark text\n")
    write(tm, ALICE, "broken.md", "---\nname: [unclosed\n---\naardvark in a broken entry\n")
    write(tm, ALICE, "odd.md", entry("Odd", "aardvark of an odd type", "diary"))
    write(tm, ALICE, "notes.txt", "aardvark in a text file is not an entry\n")
    assert sorted(hit_paths(search(tm, ALICE, "aardvark"))) == ["broken.md", "odd.md", "plain.md"]
    hits = {h["path"]: h for h in search_json(tm, ALICE, "aardvark")["hits"]}
    assert any("not valid YAML" in p for p in hits["broken.md"]["problems"])
    assert any("unknown type" in p for p in hits["odd.md"]["problems"])
    assert hits["odd.md"]["type"] == "diary"
    assert (tm.backing("alice") / "broken.md").read_text().startswith("---\nname: [unclosed")


def test_read_your_writes(tm):
    for i in range(15):
        word = f"fresh{i}word"
        tm.sh(ALICE, f"printf 'note {word}\\n' > n{i}.md")
        assert hit_paths(search(tm, ALICE, f"mode:keyword {word}")) == [f"n{i}.md"], i
        # Hybrid finds it first; its near twins (n0.md...) may follow, found by meaning.
        assert hit_paths(search(tm, ALICE, word))[0] == f"n{i}.md", i


def test_background_indexing_goes_on_after_an_idle_search(tm):
    import sqlite3
    import time

    search(tm, ALICE, "nothing")  # a search while nothing is queued
    write(tm, ALICE, "bg.md", entry("BG", "background kinkajou"))
    manifest = tm.data / "state" / "manifest.sqlite"

    def indexed() -> bool:
        db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
        try:
            return any(k.endswith("\0bg.md") for (k,) in db.execute("SELECT key FROM manifest"))
        finally:
            db.close()

    deadline = time.monotonic() + 20  # the committer batches every 200 ms
    while not indexed():
        assert time.monotonic() < deadline, "the committer never indexed bg.md by itself"
        time.sleep(0.05)


def test_search_sees_a_file_still_being_written(tm):
    out = tm.py(
        ALICE,
        """
        import os
        fd = os.open("open.md", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"halfway quokka")
        print(open(".memfs/search/quokka").read())
        os.close(fd)
        """,
    )
    assert hit_paths(out.stdout) == ["open.md"]


def test_edits_renames_and_removals_follow(tm):
    write(tm, ALICE, "a.md", entry("A", "original walrus"))
    assert hit_paths(search(tm, ALICE, "walrus")) == ["a.md"]
    tm.sh(ALICE, "sed -i 's/walrus/narwhal/' a.md")
    assert hit_paths(search(tm, ALICE, "walrus")) == []
    assert hit_paths(search(tm, ALICE, "narwhal")) == ["a.md"]
    tm.sh(ALICE, "mkdir -p d/e && mv a.md d/e/b.md")
    assert hit_paths(search(tm, ALICE, "narwhal")) == ["d/e/b.md"]
    tm.sh(ALICE, "mv d f")
    assert hit_paths(search(tm, ALICE, "narwhal")) == ["f/e/b.md"]
    tm.sh(ALICE, "mv f team/")
    assert hit_paths(search(tm, ALICE, "narwhal")) == ["team/f/e/b.md"]
    assert hit_paths(search(tm, BOB, "narwhal")) == ["team/f/e/b.md"]
    tm.sh(ALICE, "mv team/f/e/b.md c.md")
    assert hit_paths(search(tm, ALICE, "narwhal")) == ["c.md"]
    assert hit_paths(search(tm, BOB, "narwhal")) == []
    tm.sh(ALICE, "rm c.md; rm -r team/f")
    assert hit_paths(search(tm, ALICE, "narwhal")) == []
    write(tm, ALICE, "t.md", "truncate me kiwi")
    tm.sh(ALICE, "truncate -s 0 t.md")
    assert hit_paths(search(tm, ALICE, "kiwi")) == []
    write(tm, ALICE, "o.md", "emptied by redirection okapi")
    tm.sh(ALICE, ": > o.md")
    assert hit_paths(search(tm, ALICE, "okapi")) == []


def test_a_folder_moved_over_one_whose_entry_was_just_removed(tm):
    """An rm queued before a folder rename brings a new file to that path must not drop
    the new file from the index (t5_model, seed 120: mv d1 d2 over an emptied d2, one
    batch). Also read back after the batch, and by doctor's check at unmount."""
    tm.sh(ALICE, "mkdir -p mv1 mv2 && echo 'old gecko' > mv2/c.md && echo 'new axolotl' > mv1/c.md")
    assert hit_paths(search(tm, ALICE, "gecko")) == ["mv2/c.md"]  # both indexed
    tm.sh(ALICE, "rm mv2/c.md && mv -T mv1 mv2")
    assert hit_paths(search(tm, ALICE, "axolotl")) == ["mv2/c.md"]
    assert hit_paths(search(tm, ALICE, "gecko")) == []
    # the rm's file is looked for on disk: a path through what is a file now is gone, quietly
    tm.sh(ALICE, "mkdir nd && echo 'x tapir' > nd/c.md")
    assert hit_paths(search(tm, ALICE, "tapir")) == ["nd/c.md"]
    tm.sh(ALICE, "rm -r nd && echo file > nd")
    assert hit_paths(search(tm, ALICE, "tapir")) == []
    tm.sh(ALICE, "rm -r mv2 nd")


def test_filters(tm):
    write(tm, ALICE, "p1.md", entry("P1", "shared word lemur", "project", tags=("zoo",)))
    tm.sh(ALICE, "mkdir notes")
    write(tm, ALICE, "notes/u1.md", entry("U1", "shared word lemur", "user"))
    write(tm, ALICE, "team/t1.md", entry("T1", "shared word lemur", "reference", tags=("zoo", "team")))
    assert sorted(hit_paths(search(tm, ALICE, "lemur"))) == ["notes/u1.md", "p1.md", "team/t1.md"]
    assert hit_paths(search(tm, ALICE, "lemur type:user")) == ["notes/u1.md"]
    assert sorted(hit_paths(search(tm, ALICE, "lemur scope:private"))) == ["notes/u1.md", "p1.md"]
    assert hit_paths(search(tm, ALICE, "lemur scope:team")) == ["team/t1.md"]
    assert sorted(hit_paths(search(tm, ALICE, "tag:zoo"))) == ["p1.md", "team/t1.md"]
    assert hit_paths(search(tm, ALICE, "lemur path:notes/")) == ["notes/u1.md"]
    assert hit_paths(search(tm, ALICE, "lemur path:team/")) == ["team/t1.md"]


def test_odd_queries_never_fail(tm):
    write(tm, ALICE, "x.md", entry("X", "text with a/b slash and ferret"))
    for q in ["AND OR ((", '"unclosed', "field:", "name:", "*", "-", "ferret^", "[1 TO", "\\"]:
        out = search(tm, ALICE, q)
        assert out.startswith("# Search:"), q
    # '/' cannot be in a file name: URL-encode it.
    assert hit_paths(search(tm, ALICE, "a/b ferret")) == ["x.md"]
    assert hit_paths(tm.run(ALICE, ["cat", ".memfs/search/ferret%20path%3Ax.md"]).stdout) == ["x.md"]


def test_long_query_through_a_handle(tm):
    write(tm, ALICE, "long.md", entry("Long", "the platypus is here"))
    words = " ".join(f"filler{i}" for i in range(80)) + " platypus"
    assert len(words.encode()) > 255
    res = tm.run(ALICE, ["cat", f".memfs/search/{words}"], check=False)
    assert res.returncode != 0 and "File name too long" in res.stderr
    out = tm.sh(ALICE, f"exec 3<>.memfs/query; printf '%s' '{words}' >&3; cat <&3").stdout
    assert hit_paths(out) == ["long.md"]
    assert [h["path"] for h in search_json(tm, ALICE, words)["hits"]] == ["long.md"]


def test_scope_is_enforced_adversarially(tm):
    write(tm, BOB, "bob.md", entry("Bob secret", "the codeword is xylophone", "user"))
    write(tm, ALICE, "alice.md", entry("Alice note", "alice mentions marimba", "user"))
    write(tm, BOB, "team/shared.md", entry("Shared", "team word glockenspiel"))
    write(tm, DAVE, "team/ops.md", entry("Ops", "ops word xylophone"))
    for q in (
        "xylophone",
        "body:xylophone",
        "owner:bob xylophone",
        "scope:private:bob xylophone",
        "scope:team xylophone",
        'key:"private:bob"',
        "relpath:bob.md",
        "xylophone OR scope:private\\:bob",
        "path:.memfs/users/bob xylophone",
        "path:../bob xylophone",
        "* OR xylophone",
    ):
        # Whatever the query, hits come only from what the caller may read.
        out = search(tm, ALICE, q)
        body = out.split("\n", 1)[1].lower()  # the first line echoes the query
        assert set(hit_paths(out)) <= {"alice.md", "team/shared.md"} and "xylophone" not in body, q
        out = search(tm, CAROL, q)
        body = out.split("\n", 1)[1].lower()
        assert set(hit_paths(out)) <= {".memfs/users/alice/alice.md"} and "xylophone" not in body, q
    assert hit_paths(search(tm, BOB, "xylophone")) == ["bob.md"]
    assert hit_paths(search(tm, DAVE, "xylophone")) == ["team/ops.md"]
    # Team: members only.
    assert hit_paths(search(tm, ALICE, "glockenspiel")) == ["team/shared.md"]
    assert hit_paths(search(tm, CAROL, "glockenspiel")) == []
    assert hit_paths(search(tm, DAVE, "glockenspiel")) == []
    # A grant gives read access to the owner's private entries and nothing else.
    assert hit_paths(search(tm, CAROL, "marimba")) == [".memfs/users/alice/alice.md"]
    assert hit_paths(search(tm, CAROL, "marimba path:.memfs/users/alice")) == [".memfs/users/alice/alice.md"]
    assert hit_paths(search(tm, BOB, "marimba")) == []
    # An empty query with only filters still stays in scope.
    assert sorted(hit_paths(search(tm, ALICE, "type:user"))) == ["alice.md"]
    assert sorted(hit_paths(search(tm, CAROL, "scope:private"))) == [".memfs/users/alice/alice.md"]


def test_reconcile_after_offline_edits_and_a_kill(tm):
    write(tm, ALICE, "keep.md", entry("Keep", "stays puffin"))
    write(tm, ALICE, "gone.md", entry("Gone", "vanishes puffin"))
    write(tm, ALICE, "edit.md", entry("Edit", "before puffin"))
    assert len(hit_paths(search(tm, ALICE, "puffin"))) == 3
    tm.stop()
    b = tm.backing("alice")
    (b / "gone.md").unlink()
    (b / "edit.md").write_text(entry("Edit", "after gannet"))
    (b / "added").mkdir()
    (b / "added" / "new.md").write_text(entry("New", "admin gannet"))
    tm.start()
    assert hit_paths(search(tm, ALICE, "puffin")) == ["keep.md"]
    assert sorted(hit_paths(search(tm, ALICE, "gannet"))) == ["added/new.md", "edit.md"]
    # A killed daemon loses its queued index updates, never the files: reconcile restores them.
    write(tm, ALICE, "late.md", entry("Late", "written before the kill cormorant"))
    os.kill(tm.pid(), signal.SIGKILL)
    tm.start()
    assert hit_paths(search(tm, ALICE, "cormorant")) == ["late.md"]
    assert "re-indexed" in tm.log()


def test_unchanged_restart_does_not_reindex(tm):
    for i in range(30):
        write(tm, ALICE, f"e{i}.md", entry(f"E{i}", "stable heron"))
    assert len(hit_paths(search(tm, ALICE, "heron"))) == 20  # the top 20 are shown
    tm.restart()
    assert "of 30 results" in search(tm, ALICE, "heron")
    last = [line for line in tm.log().splitlines() if "index: reconciled" in line][-1]
    assert "(0 re-indexed, 0 dropped)" in last, last


def test_reindex_command(tm):
    write(tm, ALICE, "r.md", entry("R", "rebuild osprey"))
    search(tm, ALICE, "osprey")
    busy = subprocess.run(
        memfs_cmd("reindex", "--data", str(tm.data)), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert busy.returncode != 0 and "unmount it first" in busy.stderr
    tm.stop()
    res = subprocess.run(
        memfs_cmd("reindex", "--data", str(tm.data)), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert res.returncode == 0, res.stderr
    assert "indexed 1 entries" in res.stdout
    tm.start()
    assert hit_paths(search(tm, ALICE, "osprey")) == ["r.md"]


def test_search_cli(tm):
    write(tm, ALICE, "cli.md", entry("CLI", "command line pelican", "reference"))
    write(tm, BOB, "cli.md", entry("CLI", "bob's pelican", "reference"))
    # Run the CLI as alice when her uid can run this checkout's venv; else as root (its own scope).
    probe = tm.run(ALICE, [sys.executable, "-c", "import memfs"], check=False)
    uid = ALICE if probe.returncode == 0 else 0
    if uid == 0:
        write(tm, 0, "cli.md", entry("CLI", "root's pelican", "reference"))
    cmd = memfs_cmd("search", "--mount", str(tm.mnt), "pelican")
    out = tm.run(uid, cmd).stdout
    assert hit_paths(out) == ["cli.md"]
    data = json.loads(tm.run(uid, [*cmd, "--json"]).stdout)
    assert [h["path"] for h in data["hits"]] == ["cli.md"]
    assert data["hits"][0]["type"] == "reference"
    bad = tm.run(uid, memfs_cmd("search", "--mount", "/tmp", "x"), check=False)
    assert bad.returncode != 0 and "not a memfs mount" in bad.stderr


def test_claude_code_entries_have_their_type(tm):
    """Claude Code 2.1 writes the type under metadata:; search, index.md and status read it."""
    text = (
        '---\nname: prefer-tabs\ndescription: "bob indents with tabs, never spaces"\nmetadata:\n'
        "  node_type: memory\n  type: feedback\n  originSessionId: b8f2cca5-77aa\n---\n\nUse tabs.\n"
    )
    write(tm, BOB, "prefer-tabs.md", text)
    assert hit_paths(search(tm, BOB, "mode:keyword type:feedback tabs")) == ["prefer-tabs.md"]
    assert hit_paths(search(tm, BOB, "mode:keyword b8f2cca5")) == ["prefer-tabs.md"]
    assert "no type" not in tm.run(BOB, ["cat", ".memfs/status"]).stdout
    index = tm.run(BOB, ["cat", ".memfs/index.md"]).stdout
    assert "### feedback" in index and "(no type)" not in index
    assert tm.run(BOB, ["cat", "prefer-tabs.md"]).stdout == text  # nothing written back


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_entries_rank_before_the_memory_md_that_lists_them(tm, mode):
    """MEMORY.md's hook lines repeat its entries' words: entries come first, the index
    after them (scores still never rise down the list), and it reports no problem."""
    write(tm, ALICE, "tabs.md", entry("tabs", "alice indents code with tabs", "feedback", "Tabs."))
    write(tm, ALICE, "team/deploy.md", entry("deploy", "we deploy on fridays", "project", "Fridays."))
    index = "- [Tabs](tabs.md) — alice indents code with tabs, never spaces\n"
    write(tm, ALICE, "MEMORY.md", index * 3)
    write(tm, ALICE, "team/MEMORY.md", "- [Deploy](deploy.md) — we deploy on fridays\n" * 3)
    for query, first in (("indents code with tabs", "tabs.md"), ("deploy on fridays", "team/deploy.md")):
        data = search_json(tm, ALICE, f"mode:{mode} {query}")
        paths = [h["path"] for h in data["hits"]]
        assert paths[0] == first, paths
        assert all(p.endswith("MEMORY.md") for p in paths[paths.index(first) + 1 :]), paths
        scores = [h["score"] for h in data["hits"]]
        assert scores == sorted(scores, reverse=True)
        assert all(h["problems"] == [] for h in data["hits"]), data["hits"]


def test_index_off(make_mount):
    """`index: {enabled: false}` is a documented mode: files work, the agent files built
    from the index are absent, nothing is indexed, and the unmount check still holds."""
    m = make_mount(TEAM_CONFIG + "index: {enabled: false}\n")
    m.sh(ALICE, "printf -- '---\\nname: n\\ndescription: d\\ntype: user\\n---\\nbody\\n' > n.md")
    assert m.sh(ALICE, "cat n.md").stdout.endswith("body\n")
    for f in (".memfs/index.md", ".memfs/status", ".memfs/context.md", ".memfs/search/body"):
        assert m.sh(ALICE, f"cat {f}", check=False).returncode != 0, f
    assert m.sh(ALICE, "cat .memfs/whoami").stdout.startswith("user: alice")
    assert not (m.data / "state" / "manifest.sqlite").exists()


def test_a_huge_entry_is_indexed_from_its_head(mnt):
    """A 2 MiB entry: its first 256 KiB are searchable, the rest is stored but not parsed
    (parsing all of it would hold the GIL every caller's requests need)."""
    mnt.py(
        ALICE,
        """
        head = b"---\\nname: big\\ndescription: d\\ntype: user\\n---\\nnarwhal\\n"
        open("big.md", "wb").write(head + b"filler " * 300_000 + b"\\nwalrus\\n")
        """,
    )
    assert [h["path"] for h in search_json(mnt, ALICE, "narwhal")["hits"]] == ["big.md"]
    assert search_json(mnt, ALICE, "mode:keyword walrus")["hits"] == []
    assert mnt.sh(ALICE, "tail -c 7 big.md").stdout == "walrus\n"
