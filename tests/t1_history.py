"""History's pure parts: path quoting, trees built and diffed like git, the catalog derived
from commits (renames, deletes, retention), with a real repository on a temp dir."""

from __future__ import annotations

import random
import subprocess

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfs.history.catalog import Catalog, parse_renames, rename_lines
from memfs.history.committer import Kept, in_waves
from memfs.history.gitrepo import BLOB, Repo, blob_id
from memfs.inodes import Node
from memfs.logline import subject
from memfs.names import quote_path, unquote_path, version_name
from memfs.policy import Kind, Principal, Scope

SIG = pygit2.Signature("alice", "alice@h", 1_700_000_000, 0)
SIG_WHO = ("alice", "alice@h", 1_700_000_000)


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b))
def test_quoted_paths_round_trip_and_stay_on_one_line(path):
    q = quote_path(path)
    assert unquote_path(q) == path
    assert "\n" not in q and " -> " not in q.strip('"') or q.startswith('"')


def test_one_display_rule_for_odd_bytes():
    assert quote_path(b"notes/x.md") == "notes/x.md" and quote_path("ünï.md".encode()) == "ünï.md"
    assert quote_path(b"\xff.md") == '"\\377.md"' and quote_path(b"a\nb.md") == '"a\\nb.md"'
    assert quote_path(b"\\xff.md") == "\\xff.md"  # a name that merely looks escaped stays apart


def test_log_lines_show_the_whole_path_by_the_display_rule():
    alice = Principal(uid=1001, gid=1001, user="alice", team="eng")
    team = Node(7, Scope(Kind.TEAM, "eng"), b"odd\xff")
    assert subject(alice, 1001, team, b"x\n.md", 7) == 'uid=1001(alice) "team/odd\\377/x\\n.md"'
    assert subject(None, 5, None, b"\xff.md", 1) == 'uid=5(unmapped) "\\377.md"'
    assert subject(alice, 1001, None, None, 99) == "uid=1001(alice) #99"


def test_rename_lines_round_trip():
    pairs = [(b"a.md", b"b.md"), (b"x -> y", b"z\nw"), (b"caf\xe9", b"d/e")]
    assert parse_renames("memfs: x\n\n" + rename_lines(pairs)) == pairs


def test_version_names_sort_by_time_then_count():
    a = version_name(b"notes/x.md", 1_700_000_000, "alice", 9)
    b = version_name(b"notes/x.md", 1_700_000_000, "alice", 10)
    assert a == b"20231114T221320Z-alice-000009.md" and a < b
    assert version_name(b"Makefile", 0, "bob", 1).endswith(b"-000001")


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "r.git")


def commit(repo: Repo, changes: dict, sig=SIG, msg="memfs: test\n"):
    out = {p: (None if d is None else (BLOB, repo.blob(d))) for p, d in changes.items()}
    return repo.commit(out, sig, sig, msg)


def tree_of(repo: Repo) -> dict[bytes, bytes]:
    return {p: repo.r[pygit2.Oid(raw=raw)].data for p, _, raw in repo.files(repo.head_tree())}


def test_trees_follow_changes_and_pass_git_fsck(repo):
    commit(repo, {b"a.md": b"1", b"d/e/f.md": b"2", b"caf\xe9.md": b"3", b"d/g": b"4"})
    commit(repo, {b"d/e/f.md": None, b"a.md": b"1b", b"new/x": b"5"})
    assert tree_of(repo) == {b"a.md": b"1b", b"caf\xe9.md": b"3", b"d/g": b"4", b"new/x": b"5"}
    # a file replaces a folder, then a folder replaces the file
    commit(repo, {b"d/g": None, b"d": b"file now"})
    assert tree_of(repo)[b"d"] == b"file now"
    commit(repo, {b"d": None, b"d/h": b"folder again"})
    assert tree_of(repo)[b"d/h"] == b"folder again"
    fsck = subprocess.run(
        ["git", "--git-dir", str(repo.path), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr + fsck.stdout
    # git's own ls-tree agrees with our reading
    ls = subprocess.run(
        ["git", "--git-dir", str(repo.path), "ls-tree", "-r", "-z", "--name-only", "main"],
        capture_output=True,
        check=True,
    ).stdout
    assert set(ls.strip(b"\0").split(b"\0")) == set(tree_of(repo))


def test_versions_kept_interleaved_are_packed_as_deltas_of_their_own_file(repo):
    # Two files of incompressible bytes, each version a small patch of its last, kept
    # alternately (as a save loop over several files leaves them): fast-import stores a
    # blob as a delta of the blob before it, so they must reach it file by file. (120
    # objects: fast-import keeps a pack of 100 or more, and loosens a smaller one.)
    rng = random.Random(7)
    files = {b"a.md": bytearray(rng.randbytes(20_000)), b"b.md": bytearray(rng.randbytes(20_000))}
    kept = []
    with repo.fast_import() as fi:
        for i in range(60):
            for path, body in files.items():
                at = rng.randrange(0, 19_000)
                body[at : at + 100] = rng.randbytes(100)
                data = bytes(body)
                kept.append((path, data, fi.blob(data, blob_id(data), path)))
                fi.commit({path: (BLOB, kept[-1][2])}, SIG_WHO, SIG_WHO, f"memfs: v{i}\n")
    for _path, data, oid in kept:
        assert repo.r[pygit2.Oid(raw=oid)].data == data
    packed = sum(f.stat().st_size for f in (repo.path / "objects" / "pack").glob("*.pack"))
    raw = sum(len(data) for _, data, _ in kept)
    assert packed < raw / 10, (packed, raw)  # interleaved as kept: about raw (no delta found)
    fsck = subprocess.run(
        ["git", "--git-dir", str(repo.path), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr + fsck.stdout


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob"]), st.sampled_from([b"a", b"b", b"c", b"d/e"]), st.booleans()
        ),
        max_size=40,
    )
)
def test_kept_versions_are_committed_in_waves_that_keep_every_order_that_matters(items):
    kept = [
        Kept(user, path, BLOB, "", 0, 0, float(i), moved_from=b"d" if moved else None)
        for i, (user, path, moved) in enumerate(items)
    ]
    out = in_waves(kept)
    assert sorted(out, key=lambda k: k.when) == kept  # the same versions
    at = {k.when: i for i, k in enumerate(out)}
    for i, k in enumerate(kept):
        for later in kept[i + 1 :]:
            ordered = (
                later.path == k.path  # a path's versions
                or later.user != k.user  # another user's
                or k.moved_from is not None  # a rename and what comes after it
                or later.moved_from is not None
            )
            if ordered:
                assert at[k.when] < at[later.when], (k, later)
    # one user's versions of three files, three times each: three waves of three
    saves = [
        Kept("alice", p, BLOB, "", 0, 0, float(i * 3 + j))
        for i, p in enumerate([b"x", b"y", b"z"])
        for j in range(3)
    ]
    assert [k.path for k in in_waves(saves)] == [b"x", b"y", b"z"] * 3


def test_a_flood_of_empty_versions_is_held_in_bounded_chunks(repo):
    # Empty files hold no bytes, but each held blob costs a tuple and its path: a batch of
    # 200k empty versions with 2 KB paths must not pile up in the committer's memory.
    most = 0
    with repo.fast_import() as fi:
        for i in range(200_000):
            fi.blob(b"", blob_id(b""), b"%06d/" % i + b"x" * 2000)
            most = max(most, len(fi._held))
    assert most < 5_000, most
    assert repo.r[pygit2.Oid(raw=blob_id(b""))].data == b""


def test_deep_paths_need_no_recursion(repo):
    deep = b"/".join([b"d"] * 3000) + b"/x.md"
    commit(repo, {deep: b"deep"})
    assert tree_of(repo) == {deep: b"deep"}
    assert [p for p, _, _ in repo.diff(None, repo.head_tree())] == [deep]


def test_unchanged_tree_makes_no_commit(repo):
    commit(repo, {b"a": b"1"})
    assert commit(repo, {b"a": b"1"}) is None


def test_catalog_records_versions_renames_and_deletes(repo, tmp_path):
    commit(repo, {b"a.md": b"1", b"notes/n.md": b"n"})
    bob = pygit2.Signature("bob", "bob@h", 1_700_000_100, 0)
    renames = rename_lines([(b"a.md", b"b.md"), (b"notes", b"archive"), (b"tmp", b"c.md")])
    commit(
        repo,
        {b"a.md": None, b"b.md": b"1", b"notes/n.md": None, b"archive/n.md": b"n", b"c.md": b"c"},
        bob,
        "memfs: x\n\n" + renames,
    )
    with Catalog(str(tmp_path / "c.sqlite")) as cat:
        assert cat.catch_up(repo) == 2
        log = [(c.user, c.op, c.path, c.new_path) for c in reversed(cat.log(100))]
        assert log == [
            ("alice", "A", b"a.md", None),
            ("alice", "A", b"notes/n.md", None),
            ("bob", "R", b"a.md", b"b.md"),
            ("bob", "R", b"notes", b"archive"),
            ("bob", "A", b"c.md", None),  # its source was never committed: an add, not a rename
        ]
        assert [v.op for v in cat.versions(b"b.md")] == ["R"]
        assert [v.user for v in cat.versions(b"a.md")] == ["alice"]  # the old path keeps its history
        assert {n for _, n in cat.children(b"")} == {b"a.md", b"b.md", b"c.md", b"notes", b"archive"}
        assert set(cat.current()) == {b"b.md", b"archive/n.md", b"c.md"}
        assert cat.catch_up(repo) == 0
        assert cat.version_bytes() == cat.stats()[1]  # the running total matches a count


def test_a_reader_never_finds_a_catalog_without_its_tables(tmp_path):
    """doctor reads a catalog beside the daemon making it: the file must appear whole
    (CI of stop 34 saw 'no such table: versions'). A reader polls each new catalog's path
    while it is made; any catalog it finds must answer."""
    import threading

    from memfs.history.catalog import catalog_file

    problems: list[str] = []
    done = threading.Event()
    target: list[object] = [None]

    def read() -> None:
        while not done.is_set():
            f = target[0]
            if f is not None and f.exists():  # type: ignore[attr-defined]
                try:
                    with Catalog.reading(f.parent) as cat:  # type: ignore[attr-defined]
                        cat.stats()
                except Exception as e:  # noqa: BLE001
                    problems.append(str(e))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            gitdir = tmp_path / str(i)
            gitdir.mkdir()
            target[0] = catalog_file(gitdir)
            Catalog.of(gitdir).close()
            Catalog.of(gitdir).close()  # and an existing one is opened, not replaced
    finally:
        done.set()
        reader.join(timeout=30)
    assert problems == []
    assert not [p for p in tmp_path.glob("*/*") if ".new" in p.name]  # no half-made file is left


def test_prune_keeps_what_the_base_holds(repo, tmp_path):
    day = 86400
    for age, changes in (
        (500, {b"x": b"v1"}),
        (450, {b"y": b"y"}),
        (420, {b"y": None}),
        (400, {b"x": b"v2"}),
    ):
        sig = pygit2.Signature("alice", "a@h", 1_800_000_000 - age * day, 0)
        commit(repo, changes, sig)
    sig = pygit2.Signature("alice", "a@h", 1_800_000_000 - 10 * day, 0)
    commit(repo, {b"x": b"v3"}, sig)
    cutoff = 1_800_000_000 - 365 * day
    with Catalog(str(tmp_path / "c.sqlite")) as cat:
        cat.catch_up(repo)
        repo.rewrite_before(cutoff, SIG)
        root = repo.commits_since(None)[0]
        base = {p for p, _, _ in repo.files(root.tree_id)}
        assert base == {b"x"}
        cat.prune(cutoff, base)
        cat.set("head", str(repo.head()))
        assert [repo.read(v.blob) for v in cat.versions(b"x")] == [b"v2", b"v3"]
        assert cat.versions(b"y") == [] and cat.node_id(b"y") is None
        assert len(repo.commits_since(None)) == 2
        assert cat.catch_up(repo) == 0  # the rewritten branch is what it recorded
        assert cat.version_bytes() == cat.stats()[1] == 4


@given(
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
    st.binary(min_size=1, max_size=40),
    st.floats(min_value=0, max_value=4e9),
)
def test_a_journal_line_is_the_json_of_its_fields(scope_name, user, path, when):
    """The journal writes its lines without json.dumps (the scope and user part is cached):
    whatever the names, a line reads back as json.dumps of the same fields would (the
    time in whole seconds: all a commit keeps of it)."""
    import json
    import os

    from memfs.history import journal
    from memfs.history.committer import Kept

    scope = Scope(Kind.TEAM, scope_name)
    k = Kept(user, path, BLOB, "/d/state/kept/12.34-5", 7, 9, when)
    want = [str(scope), user, path.hex(), BLOB, os.path.basename(k.spool), 7, 9, int(when)]
    assert json.loads(journal._line(scope, k)) == want


def test_the_journal_recovers_only_what_stays_in_its_scope_and_spool(tmp_path):
    """A journal line is checked as if anyone wrote it: a path out of its scope, a spool
    name out of the spool, a line cut short by a kill and a version whose spool file went
    with its committed batch are all skipped; the rest comes back in order."""
    from memfs.history import journal
    from memfs.history.committer import Kept

    spool = tmp_path / "kept"
    spool.mkdir()
    (spool / "1.1-1").write_bytes(b"abcdef")
    (tmp_path / "outside").write_bytes(b"secret")
    j = journal.Journal(spool, "1.1")
    alice = Scope(Kind.PRIVATE, "alice")
    ok = [Kept("alice", b"n/a.md", BLOB, str(spool / "1.1-1"), 0, 3, 1.0)]
    ok.append(Kept("alice", b"n/a.md", BLOB, str(spool / "1.1-1"), 3, 3, 2.0))
    for k in ok:
        j.record(alice, k)
    j.record(alice, Kept("alice", b"../../etc/x", BLOB, str(spool / "1.1-1"), 0, 3, 3.0))
    j.record(alice, Kept("alice", b"b.md", BLOB, str(spool / "1.1-9"), 0, 3, 4.0))  # committed
    with open(j.path, "ab") as f:
        f.write(b'["private:alice", "alice", "622e6d64", 33188, "../outside", 0, 6, 5.0]\n')
        f.write(b'["private:alice", "alice", "622e6d64", 33188, "1.1-1", 0')  # cut short
    assert journal.recover(spool) == {alice: ok}
    j.settle([])
    assert journal.recover(spool) == {} and j.path.stat().st_size == 0
    journal.clear(spool, keep="2.2")
    assert list(spool.iterdir()) == []


def test_a_repository_left_half_made_by_a_kill_is_set_aside_and_made_anew(tmp_path):
    """A SIGKILL during init (the daemon's death reaches its worker) left a folder with no
    HEAD and a stale config.lock: every later open tried to finish it and failed on the
    lock, so the scope's history stopped for good. Now a repository is made whole beside
    its place and renamed in; a half-made one found there is moved aside, not removed."""
    path = tmp_path / "history" / "private" / "root.git"
    path.mkdir(parents=True)
    (path / "config.lock").write_text("[core]\n")
    (path / "objects").mkdir()
    repo = Repo(path)
    assert repo.head() is None and (path / "HEAD").exists()
    assert repo.r.config["gc.autoDetach"] is not None
    aside = [p.name for p in path.parent.iterdir() if p.name != "root.git"]
    assert len(aside) == 1 and aside[0].startswith("root.git.broken-"), aside
    assert (path.parent / aside[0] / "config.lock").exists()  # kept for an admin to look at
    # made already (by another process, or before): opened as it is, nothing left beside it
    assert Repo(path).r.path == repo.r.path
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["root.git", *aside])


def test_a_repository_that_does_not_open_for_another_reason_is_not_moved(tmp_path):
    path = tmp_path / "team.git"
    path.mkdir()
    (path / "HEAD").write_text("garbage\n")
    with pytest.raises(pygit2.GitError):
        Repo(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["team.git"]


def test_what_an_rm_moved_into_the_spool_is_read_after_the_reply(tmp_path, checklogs):
    """rm of content history has not committed renames the name into history's spool
    before its reply and reads what it moved only after it (History.remove_kept, then
    removed). A file becomes a version, an empty one too; a folder that replaced the file
    behind the kernel's back (a sync round between the kernel's lookup and the rm) must not
    stay in the spool: it goes back where it was, whole, and nothing counts as removed."""
    import os

    from memfs.config import HistoryConf
    from memfs.history import History
    from memfs.store import Store

    data = tmp_path / "data"
    Store.init_layout(data)
    store = Store(data, 1 << 20)
    h = History(data=data, store=store, conf=HistoryConf())
    alice = Scope(Kind.PRIVATE, "alice")
    for name, body in ((b"f.md", b"content"), (b"e.md", b"")):
        fd, _ = store.create(alice, name, os.O_WRONLY, 0o600)
        os.write(fd, body)
        os.close(fd)
    store.mkdir(alice, b"d", 0o700)
    fd, _ = store.create(alice, b"d/inside.md", os.O_WRONLY, 0o600)
    os.write(fd, b"kept")
    os.close(fd)

    checklogs.expect("rm of d found a folder there: put back", 1)
    got = {}
    for name in (b"f.md", b"e.md", b"d"):
        spool = h.remove_kept(alice, name, waited=False)
        assert spool is not None and store.find(alice, name) is None  # gone before the reply
        got[name] = h.removed(alice, name, "alice", spool)
    assert got[b"f.md"].st_size == 7 and got[b"e.md"].st_size == 0
    assert got[b"d"] is None  # put back: nothing was removed
    with open(data / "private" / "alice" / "d" / "inside.md", "rb") as f:
        assert f.read() == b"kept"
    kept = {k.path: k for k in h._kept[alice]}
    assert set(kept) == {b"f.md", b"e.md"}
    with open(kept[b"f.md"].spool, "rb") as f:
        assert f.read() == b"content"
    assert kept[b"e.md"].size == 0
    assert not [p for p in os.listdir(h.spool) if os.path.isdir(h.spool / p)]
