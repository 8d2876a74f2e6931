"""The index's failure paths, driven directly (no mount)."""

from __future__ import annotations

import errno

import pytest
import trio

from memfs.index import Index, IndexUnavailable
from memfs.policy import Kind, Scope
from memfs.store import Store

ALICE = Scope(Kind.PRIVATE, "alice")


@pytest.fixture
def index(tmp_path):
    Store.init_layout(tmp_path)
    ix = Index(tmp_path, Store(tmp_path, 1 << 20))
    yield ix
    ix.close()


def write(ix, rel: bytes, text: str) -> None:
    path = ix.store.path(ALICE, rel)
    with open(path, "w") as f:
        f.write(text)


def disk_full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_failed_reconcile_leaves_searches_working(index, monkeypatch):
    monkeypatch.setattr(index, "_reconcile", disk_full)
    assert await index.reconcile() == {}
    with trio.fail_after(5):  # searches do not wait forever for a reconcile that failed
        assert await index.search([ALICE], "anything") == ([], 0)


async def test_failed_commit_keeps_changes_queued(index, monkeypatch):
    await index.reconcile()
    write(index, b"a.md", "queued aardwolf")
    index.touch(ALICE, b"a.md")
    real_apply = index._apply
    monkeypatch.setattr(index, "_apply", disk_full)
    with pytest.raises(IndexUnavailable):
        await index.flush()
    monkeypatch.setattr(index, "_apply", real_apply)
    await index.flush()  # space is back: the queued change is applied
    hits, total = await index.search([ALICE], "aardwolf")
    assert total == 1 and hits[0].relpath == "a.md"


async def test_one_unreadable_entry_does_not_fail_the_batch(index, monkeypatch):
    await index.reconcile()
    write(index, b"good.md", "good dugong")
    write(index, b"bad.md", "bad dugong")
    real_add = index._add

    def add(w, scope, path, key):
        if path == b"bad.md":
            raise ValueError("odd file")
        return real_add(w, scope, path, key)

    monkeypatch.setattr(index, "_add", add)
    index.touch(ALICE, b"good.md")
    index.touch(ALICE, b"bad.md")
    await index.flush()
    hits, _ = await index.search([ALICE], "dugong")
    assert [h.relpath for h in hits] == ["good.md"]
