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


def test_an_idle_writer_is_closed_and_a_busy_one_never(tmp_path):
    """A writer holds its arena and threads until closed: the daemon closes the idle ones
    (IDLE_RELEASE); one a batch is using is left alone, and the next batch opens another."""
    import tantivy

    from memfs.index.schema import build_schema
    from memfs.index.shards import Shards

    shards = Shards(tmp_path, build_schema())
    alice = Scope(Kind.PRIVATE, "alice")
    shard = shards.get(alice, create=True)
    w = shards.writer(shard)  # busy: a batch is writing
    assert shards.idle_writers(0) == []
    shards.close_writer(alice)
    assert shard.writer is w
    w.add_document(tantivy.Document(path="a.md", name="a"))
    w.commit()
    shards.release(shard)
    assert shards.idle_writers(3600) == [] and shards.idle_writers(0) == [alice]
    shards.close_writer(alice)
    assert shard.writer is None and shards.idle_writers(0) == []
    again = shards.writer(shard)  # the index's lock was let go with the old writer
    assert again is not w
    again.commit()
    shards.release(shard)
    shards.close()
