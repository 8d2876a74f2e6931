"""The index's failure paths, driven directly (no mount)."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from memfs import layout
from memfs.index import Index, IndexUnavailable, committer
from memfs.policy import Kind, Scope
from memfs.store import Store

ALICE = Scope(Kind.PRIVATE, "alice")


@pytest.fixture
def index(tmp_path):
    Store.init_layout(tmp_path)
    ix = Index(tmp_path, Store(tmp_path, 1 << 20))
    yield ix
    ix.close()


def backing(ix, scope: Scope, rel: bytes = b"") -> bytes:
    root = os.fsencode(layout.scope_dir(ix.data, scope))
    os.makedirs(root, exist_ok=True)
    return root + b"/" + rel if rel else root


def write(ix, rel: bytes, text: str) -> None:
    path = backing(ix, ALICE, rel)
    with open(path, "w") as f:
        f.write(text)


def disk_full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_failed_reconcile_leaves_searches_working(index, monkeypatch, checklogs):
    checklogs.expect(r"reconcile failed; the next mount tries again", 1)
    monkeypatch.setattr(index.reconciler, "_plan", disk_full)
    assert await index.reconcile() == {}
    with trio.fail_after(5):  # searches do not wait forever for a reconcile that failed
        assert await index.search([ALICE], "anything") == ([], 0)


async def test_failed_commit_keeps_changes_queued(index, monkeypatch, checklogs):
    checklogs.expect(r"commit failed \(\[Errno 28\].*1 changes kept for a retry", 1)
    await index.reconcile()
    write(index, b"a.md", "queued aardwolf")
    index.touch(ALICE, b"a.md")
    real_apply = index.writer._apply_scope
    monkeypatch.setattr(index.writer, "_apply_scope", disk_full)
    with pytest.raises(IndexUnavailable):
        await index.flush()
    monkeypatch.setattr(index.writer, "_apply_scope", real_apply)
    await index.flush()  # space is back: the queued change is applied
    hits, total = await index.search([ALICE], "aardwolf")
    assert total == 1 and hits[0].relpath == "a.md"


async def test_one_unreadable_entry_does_not_fail_the_batch(index, monkeypatch, checklogs):
    checklogs.expect(r"cannot index private:alice/bad.md; skipped", 1)
    await index.reconcile()
    write(index, b"good.md", "good dugong")
    write(index, b"bad.md", "bad dugong")
    real_add = index.writer._add

    def add(w, scope, path, key):  # noqa: D401
        if path == b"bad.md":
            raise ValueError("odd file")
        return real_add(w, scope, path, key)

    monkeypatch.setattr(index.writer, "_add", add)
    index.touch(ALICE, b"good.md")
    index.touch(ALICE, b"bad.md")
    await index.flush()
    hits, _ = await index.search([ALICE], "dugong")
    assert [h.relpath for h in hits] == ["good.md"]


MALLORY = Scope(Kind.PRIVATE, "mallory")


async def test_a_failing_scope_does_not_hold_up_the_others(index, monkeypatch, checklogs):
    checklogs.expect(r"private:mallory: commit failed \(", committer.MAX_FAILURES - 1)
    checklogs.expect(r"private:mallory: commit failed 5 times .* left to a reconcile", 1)
    await index.reconcile()
    with open(backing(index, MALLORY, b"m.md"), "w") as f:
        f.write("mallory gerenuk")
    write(index, b"a.md", "alice gerenuk")
    real = index.writer._apply_scope
    broken = {MALLORY}

    def apply_scope(scope, ops, embed=True):
        if scope in broken:
            raise OSError(errno.EIO, "Input/output error")
        return real(scope, ops, embed)

    monkeypatch.setattr(index.writer, "_apply_scope", apply_scope)
    for _attempt in range(committer.MAX_FAILURES):
        index.touch(MALLORY, b"m.md")
        index.touch(ALICE, b"a.md")
        with pytest.raises(IndexUnavailable):
            await index.flush()
        # alice's change went in at once, whatever mallory's scope does
        assert [h.relpath for h in (await index.search([ALICE], "gerenuk"))[0]] == ["a.md"]
    # Given up on after MAX_FAILURES: nothing of mallory's is queued, the scope is stale...
    assert index.pending_count() == 0 and index.committer.stale == {MALLORY}
    broken.clear()
    await index.reconcile_stale()  # ...and a reconcile of that scope brings it back
    assert [h.relpath for h in (await index.search([MALLORY], "gerenuk"))[0]] == ["m.md"]


async def test_reconcile_keeps_entries_below_a_folder_it_cannot_read(index, monkeypatch, checklogs):
    checklogs.expect(r"private:alice: cannot read 1 folder\(s\)", 1)
    os.makedirs(backing(index, ALICE, b"sub"))
    write(index, b"sub/k.md", "kept kinkajou")
    write(index, b"top.md", "top kinkajou")
    await index.reconcile()
    real = os.open

    def open_(path, *args, **kw):
        if path == b"sub":
            raise OSError(errno.EMFILE, "Too many open files")
        return real(path, *args, **kw)

    monkeypatch.setattr(os, "open", open_)
    os.unlink(backing(index, ALICE, b"top.md"))
    counts = await index.reconcile()
    assert counts["dropped"] == 1  # top.md is really gone; sub/k.md is only unreadable
    assert [h.relpath for h in (await index.search([ALICE], "kinkajou"))[0]] == ["sub/k.md"]


async def test_folder_moves_use_no_regex_and_any_path_length(index):
    await index.reconcile()
    deep = b"/".join([b"d" * 250] * 6)  # ~1,500 bytes: past Tantivy's regex size limit
    os.makedirs(backing(index, ALICE, b"a/" + deep))
    write(index, b"a/" + deep + b"/n.md", "deep numbat")
    index.touch(ALICE, b"a/" + deep + b"/n.md")
    await index.flush()
    os.rename(backing(index, ALICE, b"a"), backing(index, ALICE, b"b"))
    index.moved(ALICE, b"a", ALICE, b"b", True)
    await index.flush()
    hits, total = await index.search([ALICE], "numbat")
    assert total == 1 and hits[0].relpath == "b/" + deep.decode() + "/n.md"
    hits, total = await index.search([ALICE], "numbat path:b/" + "d" * 250)
    assert total == 1
    assert [key.split("\0")[1] for key in index.manifest.known(None)] == ["b/" + deep.decode() + "/n.md"]


def test_queries_are_bounded_before_parsing():
    from memfs.index.query import MAX_TERMS, MAX_WORDS, bounded

    assert bounded("tabs OR spaces") == ("tabs OR spaces", False)
    text, plain = bounded("(" * 3000 + "x" + ")" * 3000)
    assert plain and text == "x"
    text, plain = bounded("NOT " * 30000 + "x")
    assert plain and text == "not x"
    text, plain = bounded(" ".join(f"w{i}" for i in range(5000)))
    assert plain and len(text.split()) == MAX_WORDS
    assert not bounded(" ".join(["a"] * MAX_TERMS))[1]


async def test_supervised_tasks_are_restarted(checklogs):
    checklogs.expect(r"flaky: failed; restarting", 2)
    from memfs.daemon import supervised

    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")

    await supervised("flaky", flaky)
    assert len(runs) == 3


async def test_a_search_waits_for_its_scope_commit_in_flight(index, monkeypatch):
    # The committer had taken alice's change and was applying it: a search of alice's saw
    # nothing queued and answered without it.
    await index.reconcile()
    write(index, b"a.md", "inflight serval")
    index.touch(ALICE, b"a.md")
    started, release = threading.Event(), threading.Event()
    real = index.writer._apply_scope

    def slow(scope, ops, embed=True):
        started.set()
        release.wait(30)
        return real(scope, ops, embed)

    monkeypatch.setattr(index.writer, "_apply_scope", slow)
    found = []

    async def reader():
        await index.flush(scopes=[ALICE])
        found.extend(h.relpath for h in (await index.search([ALICE], "serval"))[0])

    async with trio.open_nursery() as n:
        n.start_soon(index.flush)  # the committer
        await trio.to_thread.run_sync(started.wait, 30)
        n.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert found == ["a.md"]


SYNTAX = ["(", ")", '"', "+", "-", "NOT ", "AND ", "OR ", "body:", "name:", "type:", "path:", "~", "^2"]
SYNTAX += ["*", "[a TO z]", "{", "}", "IN [a b]", "/re.*/", "x", "y ", "\\", ":", "!", " ", "é", "\0"]


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.sampled_from(SYNTAX), max_size=400), depth=st.integers(0, 5000))
def test_random_query_syntax_never_reaches_the_parser_unbounded(tmp_path_factory, parts, depth):
    # In process: a native stack overflow here would kill the test run itself.
    data = tmp_path_factory.mktemp("q")
    Store.init_layout(data)
    ix = Index(data, Store(data, 1 << 20))
    try:
        ix.writer.apply({ALICE: []})
        text = "(" * depth + "".join(parts) + ")" * depth
        hits, total = ix.searcher.search([ALICE], text, 10)
        assert total == 0
    finally:
        ix.close()


async def test_a_flush_cancelled_before_its_thread_starts_loses_nothing(index, monkeypatch):
    # The committer is cancelled at unmount; a batch it had taken off the queue was lost if
    # the cancel arrived before the worker thread started (the index then missed entries).
    await index.reconcile()
    write(index, b"c.md", "cancelled caracal")
    index.touch(ALICE, b"c.md")
    real_take = index.committer._take
    with trio.CancelScope() as cs:

        def take(scope, limit):
            ops = real_take(scope, limit)
            cs.cancel()  # the unmount arrives right now
            return ops

        monkeypatch.setattr(index.committer, "_take", take)
        await index.flush()
    monkeypatch.setattr(index.committer, "_take", real_take)
    hits, total = await index.search([ALICE], "caracal")
    assert total == 1


async def test_the_kept_entry_list_follows_every_change(index):
    """Searcher.entries keeps a scope's list until its index changes: a write, an edit
    and a removal after a listing each show in the next one."""
    await index.reconcile()

    async def listed() -> dict[str, str]:
        return {h.relpath: h.name for h in await index.entries([ALICE])}

    write(index, b"a.md", "---\nname: one\n---\nbody")
    index.touch(ALICE, b"a.md")
    await index.flush()
    assert await listed() == {"a.md": "one"}
    assert await listed() == {"a.md": "one"}  # the kept list
    write(index, b"a.md", "---\nname: two\n---\nbody")
    index.touch(ALICE, b"a.md")
    write(index, b"b.md", "---\nname: bee\n---\nbody")
    index.touch(ALICE, b"b.md")
    await index.flush()
    assert await listed() == {"a.md": "two", "b.md": "bee"}
    os.unlink(backing(index, ALICE, b"a.md"))
    index.touch(ALICE, b"a.md")
    await index.flush()
    assert await listed() == {"b.md": "bee"}


async def test_a_search_does_not_wait_for_vectors_being_made(index):
    """The backfill holds a scope's lock while it embeds a slice of what is indexed: a
    keyword search of that scope has nothing to wait for and answers at once."""
    await index.reconcile()
    write(index, b"a.md", "quokka notes")
    index.touch(ALICE, b"a.md")
    await index.flush()
    held, done = trio.Event(), trio.Event()

    async def backfill():
        async with index.committer.lock(ALICE):  # as run_backfill holds it
            held.set()
            await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(backfill)
        await held.wait()
        with trio.fail_after(5):
            await index.flush(scopes=[ALICE])  # what a search does first (Control._flush)
            hits, total = await index.search([ALICE], "quokka")
        done.set()
    assert total == 1 and hits[0].relpath == "a.md"
