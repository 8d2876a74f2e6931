"""InodeTable: one inode per (scope, path, view), re-keyed on moves, kept while known."""

from __future__ import annotations

from memfs.inodes import InodeTable
from memfs.policy import Kind, Scope

A = Scope(Kind.PRIVATE, "alice")
T = Scope(Kind.TEAM, "eng")


def test_a_grant_view_has_inodes_of_its_own():
    t = InodeTable()
    own, view = t.node_for(A, b"notes"), t.node_for(A, b"notes", view=True)
    assert own.ino != view.ino and view.view and not own.view
    assert t.node_for(A, b"notes") is own and t.find(A, b"notes", True) is view


def test_folder_move_rekeys_both_trees_and_only_below_it():
    t = InodeTable()
    below = [t.node_for(A, b"d/x"), t.node_for(A, b"d/x", view=True), t.node_for(A, b"d")]
    beside = t.node_for(A, b"dd/x")
    moved = t.moved(A, b"d", T, b"e", True)
    assert sorted(n.ino for n in moved) == sorted(n.ino for n in below)
    assert t.find(T, b"e/x") is below[0] and t.find(T, b"e/x", True) is below[1]
    assert t.find(A, b"d/x") is None and t.find(A, b"dd/x") is beside


def test_unlinked_nodes_live_while_known_or_open():
    t = InodeTable()
    n = t.node_for(A, b"f")
    t.remember(n)
    n.open_fds.add(7)  # as FileOps._open_handle does
    t.unlinked(A, b"f")
    assert n.unlinked and t.get(n.ino) is n and t.find(A, b"f") is None
    t.forget(n.ino, 1)
    assert t.get(n.ino) is n  # still open
    t.closed(n, 7)
    assert t.get(n.ino) is None
    again = t.node_for(A, b"f")
    assert again.ino != n.ino  # numbers are never reused


def test_rename_over_a_name_unlinks_what_was_there():
    t = InodeTable()
    src, dst = t.node_for(A, b"a"), t.node_for(A, b"b")
    t.remember(dst)
    t.moved(A, b"a", A, b"b", False)
    assert t.find(A, b"b") is src and dst.unlinked and t.get(dst.ino) is dst


def test_numbers_follow_the_backing_inode_and_never_collide():
    t = InodeTable()
    n = t.node_for(A, b"f", backing_ino=4242)
    assert t.node_for(A, b"f", view=True, backing_ino=4242).ino != n.ino
    t.remember(n)
    t.forget(n.ino, 1)  # the kernel forgot it: the same file gets the same number again
    assert t.get(n.ino) is None and t.node_for(A, b"f", backing_ino=4242).ino == n.ino
    # A reused backing inode while the old node is still known: a number of its own.
    old = t.node_for(A, b"old", backing_ino=77)
    t.remember(old)
    t.unlinked(A, b"old")
    new = t.node_for(A, b"new", backing_ino=77)
    assert new.ino != old.ino and t.get(old.ino) is old


def test_a_file_that_got_a_number_of_its_own_keeps_it():
    """A removed folder held as a cwd keeps its node; a new file given the same backing
    inode gets a number of its own, and keeps it after the old node goes and the kernel
    forgets and looks the new file up again (st_ino never changes while it exists)."""
    t = InodeTable()
    cwd = t.node_for(A, b"d", backing_ino=77)
    t.remember(cwd)
    t.unlinked(A, b"d")
    new = t.node_for(A, b"n1", backing_ino=77)
    t.remember(new)
    own = new.ino
    assert own != cwd.ino
    t.forget(cwd.ino, 1)  # the cwd's process exits
    t.forget(own, 1)  # the kernel forgets the new file
    assert t.node_for(A, b"n1", backing_ino=77).ino == own
    # once the file is gone, its number goes with it: a later file gets the backing one
    t.remember(t.find(A, b"n1"))
    t.unlinked(A, b"n1")
    t.forget(own, 1)
    assert t.node_for(A, b"n2", backing_ino=77).ino == cwd.ino


# -- own numbers: kept in memory both ways, saved as an append-only log -------------------


def test_own_numbers_survive_a_reload_and_the_log_grows_a_line_a_change(tmp_path):
    from memfs.numbers import OWN_BASE
    from memfs.own_numbers import OwnNumbers

    path = tmp_path / "inode-numbers.log"
    own = OwnNumbers(path)
    for k in range(1, 301):
        own.give(k, OWN_BASE + k)
    own.close()  # the writer thread writes what was queued, then stops
    again = OwnNumbers(path)
    assert len(again) == 300 and again.get(7) == OWN_BASE + 7 and again.last() == OWN_BASE + 300
    again.give(500, OWN_BASE + 500)  # the first change of a run writes the table once
    again.release(OWN_BASE + 7)
    again.release(OWN_BASE + 999)  # never given: nothing happens
    again.close()
    # later changes append one short line each: the table is not rewritten whole at every
    # change (it was: 100k numbers made every new one cost a few MB of JSON on the request path)
    lines = path.read_bytes().splitlines()
    assert lines[-1] == b"7 -" and len(lines) == 301 + 1
    third = OwnNumbers(path)
    assert third.get(7) is None and third.get(8) == OWN_BASE + 8 and len(third) == 300
    third.close()


def test_own_numbers_log_stays_bounded_and_skips_hostile_lines(tmp_path):
    from memfs.numbers import HISTORY_BASE, OWN_BASE
    from memfs.own_numbers import COMPACT_SLACK, OwnNumbers

    path = tmp_path / "inode-numbers.log"
    # lines cut short by a kill, numbers outside the own range, garbage: skipped
    path.write_bytes(
        b"5 %d\n6 %d\n7 12\nnot a line\n8\n9 %d\n\xff\xfe 3\n-1 %d\n10 %d"
        % (OWN_BASE + 5, HISTORY_BASE + 1, OWN_BASE + 9, OWN_BASE + 4, OWN_BASE + 10)
    )
    own = OwnNumbers(path, cap=50)
    assert {k: own.get(k) for k in (5, 6, 7, 9, 10, -1)} == {
        5: OWN_BASE + 5,
        6: None,
        7: None,
        9: OWN_BASE + 9,
        10: OWN_BASE + 10,
        -1: None,
    }
    # churn far past the slack: the log is rewritten from the table, never grows past it
    for k in range(1, 3 * COMPACT_SLACK + 1):
        own.give(1000 + k, OWN_BASE + 1000 + k)
        if k % 2:
            own.release(OWN_BASE + 1000 + k)
    assert len(own) == 50  # the cap: the oldest numbers go
    own.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) <= 2 * 50 + COMPACT_SLACK + 1
    again = OwnNumbers(path)
    assert len(again) == 50 and again.get(1000 + 3 * COMPACT_SLACK) == OWN_BASE + 1000 + 3 * COMPACT_SLACK
    again.close()


def test_own_numbers_read_the_older_json_once(tmp_path):
    from memfs.numbers import OWN_BASE
    from memfs.own_numbers import OwnNumbers

    legacy, path = tmp_path / "inode-numbers.json", tmp_path / "inode-numbers.log"
    legacy.write_text(f'{{"77": {OWN_BASE + 3}, "78": 5}}')
    own = OwnNumbers(path, legacy)
    assert own.get(77) == OWN_BASE + 3 and own.get(78) is None
    own.give(79, OWN_BASE + 4)  # the first change writes the log and removes the JSON
    own.close()
    assert not legacy.exists() and OwnNumbers(path).get(77) == OWN_BASE + 3


def test_control_numbers_are_told_apart_in_one_comparison():
    """numbers.is_control_inode (asked on nearly every request) covers history's view,
    whose fixed inodes lie among the control tree's."""
    from memfs.history.view import HISTORY, LOG, HistoryView
    from memfs.numbers import (
        BACKING_BASE,
        FIRST_DYNAMIC_INODE,
        HISTORY_BASE,
        OWN_BASE,
        QUERY_BASE,
        ROOT_INODE,
        VIEW_BIT,
        is_control_inode,
    )

    for ino in (2, HISTORY, LOG, FIRST_DYNAMIC_INODE - 1, QUERY_BASE, OWN_BASE - 1, HISTORY_BASE, 1 << 62):
        assert is_control_inode(ino), ino
    for ino in (ROOT_INODE, FIRST_DYNAMIC_INODE, BACKING_BASE + 5, BACKING_BASE + VIEW_BIT + 5, OWN_BASE + 1):
        assert not is_control_inode(ino), ino
        assert not HistoryView.owns(ino)
