"""The importer against a source owner who swaps entries for symlinks mid-import, and DATA/ symlinks.

The races are played deterministically: a wrapped step of the importer makes the swap at the
worst moment, so each test is the attacker winning the race every time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from memfs import importer
from memfs.config import Config, parse
from memfs.policy import Kind, Scope

SECRET = b"root-only-secret"
SYMLINK = "symbolic link (not followed)"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A memory dir (a.md, sub/b.md) and, beside it, root-only files a symlink could reach."""
    (tmp_path / "secret.md").write_bytes(SECRET)
    (tmp_path / "root-only").mkdir()
    (tmp_path / "root-only" / "b.md").write_bytes(SECRET)
    s = tmp_path / "src"
    (s / "sub").mkdir(parents=True)
    (s / "a.md").write_bytes(b"a\n")
    (s / "sub" / "b.md").write_bytes(b"b\n")
    return s


def swap_file(src: Path) -> None:
    """The owner's move: a.md becomes a symlink to what only root may read."""
    (src / "a.md").unlink()
    (src / "a.md").symlink_to(src.parent / "secret.md")


def swap_dir(src: Path) -> None:
    """The same for a folder: sub/ becomes a symlink to a root-only folder."""
    (src / "sub").rename(src.parent / "sub-was")
    (src / "sub").symlink_to(src.parent / "root-only")


def plan(src: Path) -> tuple[list[importer.Item], importer.Report]:
    report = importer.Report()
    with importer.Folder.open(src, 1000) as root:
        return importer.plan_dir(root, "mallory", None, report), report


def test_swap_between_listing_and_open_is_refused(src, monkeypatch):
    listed = importer.Folder.names

    def names_then_swap(self):
        names = listed(self)
        if self.path == src:  # the walk has seen a regular a.md and a real sub/
            swap_file(src)
            swap_dir(src)
        return names

    monkeypatch.setattr(importer.Folder, "names", names_then_swap)
    items, report = plan(src)
    assert items == []
    assert sorted(report.skipped) == [(str(src / "a.md"), SYMLINK), (str(src / "sub"), SYMLINK)]


def test_swap_after_open_reads_what_was_opened(src, monkeypatch):
    fstat = os.fstat
    swaps = {str(src / "a.md"): swap_file, str(src / "sub"): swap_dir}

    def swap_then_fstat(fd):
        # Right after the open, before the type check and the read. Too late: the fd holds
        # the inode that was opened, whatever the name now points to.
        if (do := swaps.pop(os.readlink(f"/proc/self/fd/{fd}"), None)) is not None:
            do(src)
        return fstat(fd)

    monkeypatch.setattr(os, "fstat", swap_then_fstat)
    items, report = plan(src)
    monkeypatch.undo()
    assert swaps == {} and report.skipped == []
    assert [(i.rel, i.content) for i in items] == [("a.md", b"a\n"), ("sub/b.md", b"b\n")]


def test_plan_json_refuses_a_symlinked_file(tmp_path):
    (tmp_path / "secret.json").write_text('{"summaries": [{"summary": "root-only-secret"}]}')
    u = tmp_path / "users" / "42"
    u.mkdir(parents=True)
    (u / "mid_term.json").symlink_to(tmp_path / "secret.json")
    report = importer.Report()
    items = importer.plan_json(tmp_path, "mallory", Config(), report)
    assert items == [] and report.skipped == [(str(u / "mid_term.json"), SYMLINK)]


def item(user: str, rel: str, content: bytes) -> importer.Item:
    return importer.Item(Scope(Kind.PRIVATE, user), rel, content, "src")


def test_apply_follows_no_symlink_in_data(tmp_path):
    data, secret, outside = tmp_path / "data", tmp_path / "secret", tmp_path / "outside"
    secret.write_bytes(SECRET)
    outside.mkdir()
    alice = data / "private" / "alice"
    alice.mkdir(parents=True)
    (alice / "MEMORY.md").symlink_to(secret)  # would be read, merged and written back
    (alice / ".new.md.memfs-import").symlink_to(secret)  # a temp name written through
    (data / "private" / "bob").symlink_to(outside)
    items = [
        item("alice", "MEMORY.md", b"- [New](new.md)\n"),
        item("alice", "new.md", b"new\n"),
        item("bob", "x.md", b"x\n"),
    ]
    report = importer.Report()
    importer.apply(items, data, report, dry_run=False)
    assert report.created == ["private:alice/new.md"]
    assert [why for _, why in report.skipped] == [f"{SYMLINK} in DATA/ (nothing written)"] * 2
    assert (alice / "new.md").read_bytes() == b"new\n" and not (alice / ".new.md.memfs-import").exists()
    assert (alice / "MEMORY.md").is_symlink() and secret.read_bytes() == SECRET
    assert list(outside.iterdir()) == []


def test_json_import_plan(tmp_path):
    u = tmp_path / "users" / "42"
    u.mkdir(parents=True)
    (u / "long_term_user.json").write_text(
        json.dumps(
            {
                "profile": {"name": "Al"},
                "knowledge": [{"id": 1, "content": "Uses vim.", "category": "preference"}],
            }
        )
    )
    cfg = parse({"users": {"al": {"uid": 1001, "aliases": [42]}}})
    report = importer.Report()
    items = importer.plan_json(tmp_path, None, cfg, report)
    assert sorted(i.rel.split("-")[0] for i in items) == ["knowledge", "profile.md"]
    k = next(i for i in items if i.rel.startswith("knowledge"))
    assert k.scope == Scope(Kind.PRIVATE, "al") and b"type: feedback" in k.content
    # The same input gives the same names: that is what makes a second import a no-op.
    assert [i.rel for i in importer.plan_json(tmp_path, None, cfg, importer.Report())] == [
        i.rel for i in items
    ]


def test_merge_index_appends_only_new_lines():
    assert importer._merge_index(b"- a\n", ["- a", "- b"]) == b"- a\n- b\n"
    assert importer._merge_index(b"- a", ["- b"]) == b"- a\n- b\n"
    assert importer._merge_index(b"- a\n- b\n", ["- b", ""]) is None


def memoryos_store(tmp_path: Path) -> Path:
    """A MemoryOS-style store (issue 26): profile as text, items' text under `knowledge`,
    an item with no text, a key memfs does not read."""
    u = tmp_path / "users" / "42"
    u.mkdir(parents=True)
    (u / "long_term_user.json").write_text(
        json.dumps(
            {
                "profile": "Al is a nurse who likes tabs.",
                "knowledge_base": [
                    {"knowledge": "Al's cat is called Miso.", "timestamp": "2025-01-02"},
                    {"timestamp": "2025-01-03", "keywords": ["x"]},
                ],
                "assistant_knowledge_count": 3,
            }
        )
    )
    return tmp_path


def test_json_reads_text_profiles_and_knowledge_and_reports_the_rest(tmp_path):
    cfg = parse({"users": {"al": {"uid": 1001, "aliases": [42]}}})
    report = importer.Report()
    items = importer.plan_json(memoryos_store(tmp_path), None, cfg, report)
    by_name = {i.rel.split("-")[0]: i.content.decode() for i in items}
    assert sorted(by_name) == ["knowledge", "profile.md"]
    assert "Al is a nurse who likes tabs." in by_name["profile.md"]
    assert (
        "Al's cat is called Miso." in by_name["knowledge"]
        and "timestamp: '2025-01-02'" in by_name["knowledge"]
    )
    whys = dict(report.skipped)
    src = tmp_path / "users" / "42" / "long_term_user.json"
    assert whys[f"{src}#1"].startswith("no text in any of content, summary, text, fact, knowledge")
    assert whys[f"{src}#assistant_knowledge_count"].startswith("key not read")


def test_merging_memory_md_keeps_one_heading():
    merged = importer._merge_index(b"# Memory\n- [a](a.md)\n", ["# Memory", "# Notes", "- [b](b.md)"])
    assert merged == b"# Memory\n- [a](a.md)\n- [b](b.md)\n"
    assert importer._merge_index(b"", ["# Memory", "- [b](b.md)"]) == b"# Memory\n- [b](b.md)\n"


def test_a_source_named_by_another_users_id_is_refused_unless_claimed(tmp_path):
    cfg = parse({"users": {"alice": {"uid": 1001}, "kai": {"uid": 1002, "aliases": ["kai"]}}})
    src = tmp_path / "kai" / "memory"
    src.mkdir(parents=True)
    (src / "a.md").write_text("a\n")
    with pytest.raises(importer.ImportFailed, match="id of user kai .*--claim"):
        importer.plan("auto", src, "alice", None, cfg, importer.Report())
    items, _ = importer.plan("auto", src, "alice", None, cfg, importer.Report(), claim=True)
    assert [i.rel for i in items] == ["a.md"]
    items, _ = importer.plan("auto", src, "kai", None, cfg, importer.Report())
    assert [i.rel for i in items] == ["a.md"]
