"""Index keys and paths, and memfs's own query filters."""

from __future__ import annotations

from memfs.index import doc_key, path_bytes, path_text, split_filters
from memfs.policy import Kind, Scope


def test_index_paths_round_trip_any_bytes():
    for raw in (b"plain.md", b"\xff\xfe.md", "ünï.md".encode()):
        assert path_bytes(path_text(raw)) == raw
    assert path_text(b"\xff.md") != path_text(b"\\xff.md")
    assert doc_key(Scope(Kind.TEAM, "eng"), b"x.md") == "team:eng\0x.md"


def test_split_filters():
    text, f = split_filters('tabs type:feedback path:"team/a b" tag:x scope:team')
    assert text.split() == ["tabs"]
    assert f == {"type": ["feedback"], "path": ["team/a b"], "tag": ["x"], "scope": ["team"]}
