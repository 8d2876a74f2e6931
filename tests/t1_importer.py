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
