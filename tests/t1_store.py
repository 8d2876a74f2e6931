"""Store: scope folders reached through a bounded set of directory fds."""

from __future__ import annotations

import errno
import os

from conftest import fds_under as open_fds

from memfs import store as store_mod
from memfs.policy import Kind, Scope
from memfs.store import Store


def test_scope_fds_are_bounded_and_never_closed_in_use(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_ROOT_FDS", 8)
    Store.init_layout(tmp_path)
    st = Store(tmp_path, 1 << 20)
    before = open_fds(tmp_path)
    first = Scope(Kind.PRIVATE, "u0")
    with st.at(first) as held:
        for i in range(1, 50):
            scope = Scope(Kind.PRIVATE, f"u{i}")
            os.close(st.create(scope, b"f.md", os.O_WRONLY, 0o600)[0])
            assert st.lstat(scope, b"f.md").st_size == 0
        assert open_fds(tmp_path) - before <= 9  # 8 idle ones and the one in use
        os.stat(".", dir_fd=held)  # still the folder it was: not closed under us
        assert os.path.samefile(f"/proc/self/fd/{held}", tmp_path / "private" / "u0")
    st.close()
    assert open_fds(tmp_path) == before


def test_kept_folder_fds_are_bounded_and_follow_every_move(tmp_path, monkeypatch):
    """Folders below a scope's root are kept open (a file's stat or open is one *at call of
    one name): at most MAX_FOLDER_FDS of them, never closed while in use, and a rename or
    removal of any folder of the scope forgets them, so a path never reaches the folder
    that used to be there or one that moved away (to another scope, too)."""
    monkeypatch.setattr(store_mod, "MAX_FOLDER_FDS", 8)
    Store.init_layout(tmp_path)
    st = Store(tmp_path, 1 << 20, keep_folders=True)
    alice, team = Scope(Kind.PRIVATE, "alice"), Scope(Kind.TEAM, "eng")
    st.lstat(alice, b"")
    st.lstat(team, b"")
    before = open_fds(tmp_path)
    for i in range(40):
        st.mkdir(alice, b"d%02d" % i, 0o700)
        os.close(st.create(alice, b"d%02d/f.md" % i, os.O_WRONLY, 0o600)[0])
        assert st.lstat(alice, b"d%02d/f.md" % i).st_size == 0
    assert open_fds(tmp_path) - before <= 8 + 16  # the cap, and a batch not yet evicted
    with st.place(alice, b"d00/f.md") as (held, name):
        for i in range(40):  # churn the kept folders while one is in use
            st.lstat(alice, b"d%02d/f.md" % i)
        assert os.stat(name, dir_fd=held).st_size == 0  # not closed under us

    # a folder renamed: its old path is gone, its new one reached, a new one in its place is new
    st.mkdir(alice, b"a", 0o700)
    st.mkdir(alice, b"a/b", 0o700)
    os.close(st.create(alice, b"a/b/old.md", os.O_WRONLY, 0o600)[0])
    assert st.lstat(alice, b"a/b/old.md")
    st.rename(alice, b"a", alice, b"z")
    assert _errno(lambda: st.lstat(alice, b"a/b/old.md")) == errno.ENOENT
    assert st.lstat(alice, b"z/b/old.md")
    st.mkdir(alice, b"a", 0o700)
    st.mkdir(alice, b"a/b", 0o700)
    assert _errno(lambda: st.lstat(alice, b"a/b/old.md")) == errno.ENOENT
    os.close(st.create(alice, b"a/b/new.md", os.O_WRONLY, 0o600)[0])
    assert (tmp_path / "private" / "alice" / "a" / "b" / "new.md").exists()
    # removed and made again: the new folder, not the removed one
    st.lstat(alice, b"z/b/old.md")
    st.unlink(alice, b"z/b/old.md")
    st.rmdir(alice, b"z/b")
    st.mkdir(alice, b"z/b", 0o700)
    os.close(st.create(alice, b"z/b/again.md", os.O_WRONLY, 0o600)[0])
    assert (tmp_path / "private" / "alice" / "z" / "b" / "again.md").exists()
    # moved to another scope: alice's path no longer reaches it, the team's does
    st.lstat(alice, b"z/b/again.md")
    st.rename(alice, b"z", team, b"z")
    assert _errno(lambda: st.lstat(alice, b"z/b/again.md")) == errno.ENOENT
    assert st.lstat(team, b"z/b/again.md")
    # a file renamed over nothing keeps the kept folders (the common save), and is right
    os.close(st.create(team, b"z/b/t.tmp", os.O_WRONLY, 0o600)[0])
    st.rename(team, b"z/b/t.tmp", team, b"z/b/t.md")
    assert st.lstat(team, b"z/b/t.md") and _errno(lambda: st.lstat(team, b"z/b/t.tmp")) == errno.ENOENT
    st.close()
    assert open_fds(tmp_path) == before - 2  # the two scope roots went too


def test_a_move_forgets_only_the_folders_at_and_below_it(tmp_path):
    """A folder is opened one name below its kept parent, and a removal or rename forgets
    the kept folders at and below the paths it touched, not the whole scope: a sibling
    or parent path still reaches its own folder, and the moved paths reach what is there
    now, including a folder renamed over another and a name that only shares a prefix."""
    Store.init_layout(tmp_path)
    st = Store(tmp_path, 1 << 20, keep_folders=True)
    alice = Scope(Kind.PRIVATE, "alice")
    root = tmp_path / "private" / "alice"
    for d in (b"p", b"p/a", b"p/a/x", b"p/ab", b"p/b", b"p/b/y", b"q"):
        st.mkdir(alice, d, 0o700)
    for f in (b"p/a/x/1.md", b"p/ab/2.md", b"p/b/y/3.md", b"q/4.md"):
        os.close(st.create(alice, f, os.O_WRONLY, 0o600)[0])
        assert st.lstat(alice, f)  # every folder on the way kept
    kept = {k[1] for k in st._folders}
    assert {b"p", b"p/a", b"p/a/x", b"p/ab", b"p/b/y", b"q"} <= kept
    st.unlink(alice, b"p/a/x/1.md")
    st.rmdir(alice, b"p/a/x")
    kept = {k[1] for k in st._folders}
    assert b"p/a/x" not in kept and {b"p", b"p/a", b"p/ab", b"p/b/y", b"q"} <= kept
    st.mkdir(alice, b"p/a/x", 0o700)  # the same name again: the new folder
    os.close(st.create(alice, b"p/a/x/new.md", os.O_WRONLY, 0o600)[0])
    assert (root / "p" / "a" / "x" / "new.md").exists()
    # p/b renamed over the empty p/a/x: both paths forgotten, "p/ab" (a prefix of neither) kept
    st.unlink(alice, b"p/a/x/new.md")
    st.rename(alice, b"p/b", alice, b"p/a/x")
    kept = {k[1] for k in st._folders}
    assert not {b"p/b", b"p/b/y", b"p/a/x"} & kept and {b"p", b"p/a", b"p/ab", b"q"} <= kept
    assert _errno(lambda: st.lstat(alice, b"p/b/y/3.md")) == errno.ENOENT
    assert st.lstat(alice, b"p/a/x/y/3.md") and st.lstat(alice, b"p/ab/2.md") and st.lstat(alice, b"q/4.md")
    st.mkdir(alice, b"p/b", 0o700)
    st.mkdir(alice, b"p/b/y", 0o700)
    assert _errno(lambda: st.lstat(alice, b"p/b/y/3.md")) == errno.ENOENT
    os.close(st.create(alice, b"p/b/y/5.md", os.O_WRONLY, 0o600)[0])
    assert (root / "p" / "b" / "y" / "5.md").exists() and (root / "p" / "a" / "x" / "y" / "3.md").exists()
    st.close()


def test_a_store_that_keeps_no_folders_holds_no_fds(tmp_path):
    """Another process's Store (history's worker, doctor) is not told of renames: it
    opens each folder per call and holds nothing between calls."""
    Store.init_layout(tmp_path)
    st = Store(tmp_path, 1 << 20)
    alice = Scope(Kind.PRIVATE, "alice")
    st.mkdir(alice, b"a", 0o700)
    before = open_fds(tmp_path)
    os.close(st.create(alice, b"a/f.md", os.O_WRONLY, 0o600)[0])
    assert st.lstat(alice, b"a/f.md").st_size == 0 and open_fds(tmp_path) == before
    os.rename(tmp_path / "private" / "alice" / "a", tmp_path / "private" / "alice" / "b")
    assert _errno(lambda: st.lstat(alice, b"a/f.md")) == errno.ENOENT  # renamed behind it
    st.close()


def _errno(fn) -> int | None:
    try:
        fn()
    except OSError as e:
        return e.errno
    return None
