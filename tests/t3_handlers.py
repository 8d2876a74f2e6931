"""memfs.fs.Operations called directly, no mount: a fake request context per uid."""

from __future__ import annotations

import errno
import os
import stat
from types import SimpleNamespace

import pyfuse3
import pytest
from conftest import fds_under
from pyfuse3 import EntryAttributes, FUSEError

from memfs.config import parse
from memfs.fs import Operations
from memfs.identity import Identities
from memfs.index import Index
from memfs.numbers import OWN_BASE, ROOT_INODE
from memfs.store import Store

ALICE, BOB, CAROL, STRANGER = 1001, 1002, 1003, 4000123
CONFIG = {
    "users": {"alice": {"uid": ALICE}, "bob": {"uid": BOB}, "carol": {"uid": CAROL}},
    "teams": {"eng": {"members": ["bob"]}},
    "grants": [{"reader": "carol", "owner": "alice"}],
}
CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL


def ctx(uid: int, umask: int = 0o022):
    return SimpleNamespace(uid=uid, gid=uid, pid=4242, umask=umask)


FIELDS = ("atime", "mtime", "ctime", "mode", "uid", "gid", "size")


def fields(*on: str):
    """A stand-in for pyfuse3.SetattrFields (read-only from Python): fields("size") sets update_size."""
    return SimpleNamespace(**{f"update_{f}": f in on for f in FIELDS})


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    Store.init_layout(d)
    return d


def check_inode_table(t) -> None:
    """The table's invariants: every name maps to a live node that is itself, keyed by its
    own (scope, path, view); every node kept is known to the kernel or open."""
    for scope, keys in t._by_key.items():
        for (path, view), node in keys.items():
            assert (node.scope, node.path, node.view) == (scope, path, view), node
            assert not node.unlinked and t._by_ino.get(node.ino) is node, node
    for ino, node in t._by_ino.items():
        assert node.ino == ino
        assert node.nlookup > 0 or node.open_fds, f"a node nobody holds was kept: {node}"


@pytest.fixture
def make_ops(data):
    """Operations as a mount builds them, index included (its queue is what handlers feed;
    no committer runs here)."""
    made = []

    def make(config=CONFIG, max_file_bytes=1024 * 1024, index=True) -> Operations:
        store = Store(data, max_file_bytes)
        ix = Index(data, store) if index and not any(o.index for o in made) else None
        made.append(Operations(store=store, ids=Identities(parse(config)), index=ix))
        return made[-1]

    yield make
    for o in made:
        check_inode_table(o.inodes)
        if o.index is not None:
            o.index.close()


@pytest.fixture
def ops(make_ops) -> Operations:
    return make_ops()


async def errno_of(coro) -> int:
    """The errno a call answers; a lookup's node 0 (guard.MISSING) is the kernel's ENOENT."""
    try:
        answer = await coro
    except FUSEError as e:
        return e.errno
    assert isinstance(answer, EntryAttributes) and answer.st_ino == 0, answer
    assert answer.entry_timeout == 0, "a negative entry the kernel would keep"
    return errno.ENOENT


async def create(ops, uid, name, parent=ROOT_INODE, mode=0o644):
    """Create `name` as `uid`; (fh, inode)."""
    info, attrs = await ops.create(parent, name, stat.S_IFREG | mode, CREATE_FLAGS, ctx(uid))
    return info.fh, attrs.st_ino


async def make_file(ops, uid, name, content=b"", parent=ROOT_INODE) -> int:
    """A closed file with `content`; its inode."""
    fh, ino = await create(ops, uid, name, parent)
    if content:
        assert await ops.write(fh, 0, content) == len(content)
    await ops.release(fh)
    return ino


# -- files ------------------------------------------------------------------------


async def test_create_write_read_release_round_trip(ops, data):
    fh, ino = await create(ops, ALICE, b"MEMORY.md")
    assert await ops.write(fh, 0, b"- [Tabs](tabs.md)\n") == 18
    assert await ops.read(fh, 0, 4096) == b"- [Tabs](tabs.md)\n"
    assert await ops.read(fh, 2, 4) == b"[Tab"
    await ops.release(fh)
    assert (data / "private" / "alice" / "MEMORY.md").read_bytes() == b"- [Tabs](tabs.md)\n"

    attrs = await ops.lookup(ROOT_INODE, b"MEMORY.md", ctx(ALICE))
    assert attrs.st_ino == ino
    assert attrs.st_size == 18
    assert attrs.st_mode == stat.S_IFREG | 0o600
    assert (attrs.st_uid, attrs.st_gid) == (ALICE, ALICE)
    assert attrs.entry_timeout == 0  # names in the root resolve per caller


async def test_reopen_reads_what_was_written(ops):
    ino = await make_file(ops, ALICE, b"a.md", b"hello")
    info = await ops.open(ino, os.O_RDONLY, ctx(ALICE))
    assert await ops.read(info.fh, 0, 100) == b"hello"
    await ops.release(info.fh)


async def test_write_on_a_read_only_handle_is_ebadf(ops):
    ino = await make_file(ops, ALICE, b"a.md", b"hello")
    info = await ops.open(ino, os.O_RDONLY, ctx(ALICE))
    assert await errno_of(ops.write(info.fh, 0, b"x")) == errno.EBADF
    await ops.release(info.fh)


async def test_lookup_of_a_missing_name_is_enoent(ops):
    assert await errno_of(ops.lookup(ROOT_INODE, b"nothing.md", ctx(ALICE))) == errno.ENOENT


async def test_root_name_resolves_in_the_callers_own_scope(ops, data):
    await make_file(ops, ALICE, b"MEMORY.md", b"alice's")
    assert await errno_of(ops.lookup(ROOT_INODE, b"MEMORY.md", ctx(BOB))) == errno.ENOENT

    bob_ino = await make_file(ops, BOB, b"MEMORY.md", b"bob's!")
    alice_attrs = await ops.lookup(ROOT_INODE, b"MEMORY.md", ctx(ALICE))
    assert alice_attrs.st_ino != bob_ino
    assert alice_attrs.st_size == len(b"alice's")
    assert (data / "private" / "bob" / "MEMORY.md").read_bytes() == b"bob's!"


async def test_subdirectory_lookup(ops):
    notes = (await ops.mkdir(ROOT_INODE, b"notes", stat.S_IFDIR | 0o755, ctx(ALICE))).st_ino
    ino = await make_file(ops, ALICE, b"a.md", b"x", parent=notes)
    attrs = await ops.lookup(notes, b"a.md", ctx(ALICE))
    assert attrs.st_ino == ino
    assert attrs.entry_timeout > 0  # below the root an inode has one scope: cacheable


# -- another user's inodes ----------------------------------------------------------


@pytest.fixture
async def alices(ops):
    """Alice's directory `notes` and file `notes/a.md`: (dir inode, file inode)."""
    notes = (await ops.mkdir(ROOT_INODE, b"notes", stat.S_IFDIR | 0o755, ctx(ALICE))).st_ino
    return notes, await make_file(ops, ALICE, b"a.md", b"secret", parent=notes)


CROSS_USER_CALLS = {
    "getattr": lambda ops, d, f, c: ops.getattr(f, c),
    "getattr-dir": lambda ops, d, f, c: ops.getattr(d, c),
    "open-read": lambda ops, d, f, c: ops.open(f, os.O_RDONLY, c),
    "open-write": lambda ops, d, f, c: ops.open(f, os.O_WRONLY, c),
    "opendir": lambda ops, d, f, c: ops.opendir(d, c),
    "lookup": lambda ops, d, f, c: ops.lookup(d, b"a.md", c),
    "unlink": lambda ops, d, f, c: ops.unlink(d, b"a.md", c),
    "create": lambda ops, d, f, c: ops.create(d, b"new.md", stat.S_IFREG | 0o600, CREATE_FLAGS, c),
    "setattr": lambda ops, d, f, c: ops.setattr(f, EntryAttributes(), fields(), None, c),
}


@pytest.mark.parametrize("call", CROSS_USER_CALLS.values(), ids=CROSS_USER_CALLS.keys())
async def test_another_users_inode_is_eacces(ops, alices, call, data):
    notes, f = alices
    assert await errno_of(call(ops, notes, f, ctx(BOB))) == errno.EACCES
    assert (data / "private" / "alice" / "notes" / "a.md").read_bytes() == b"secret"


async def test_a_granted_reader_reads_but_cannot_write(ops, alices):
    _, f = alices
    assert (await ops.getattr(f, ctx(CAROL))).st_size == len(b"secret")
    info = await ops.open(f, os.O_RDONLY, ctx(CAROL))
    assert await ops.read(info.fh, 0, 100) == b"secret"
    await ops.release(info.fh)
    assert await errno_of(ops.open(f, os.O_WRONLY, ctx(CAROL))) == errno.EROFS
    assert await errno_of(ops.setattr(f, EntryAttributes(), fields(), None, ctx(CAROL))) == errno.EROFS


async def test_a_grant_is_reached_through_memfs_users(ops):
    await make_file(ops, ALICE, b"a.md", b"shared")
    control = (await ops.lookup(ROOT_INODE, b".memfs", ctx(CAROL))).st_ino
    users = (await ops.lookup(control, b"users", ctx(CAROL))).st_ino
    alice_root = (await ops.lookup(users, b"alice", ctx(CAROL))).st_ino
    assert (await ops.lookup(alice_root, b"a.md", ctx(CAROL))).st_size == len(b"shared")
    assert await errno_of(ops.lookup(users, b"alice", ctx(BOB))) == errno.ENOENT
    new = ops.create(alice_root, b"n.md", stat.S_IFREG | 0o600, CREATE_FLAGS, ctx(CAROL))
    assert await errno_of(new) == errno.EROFS


async def test_an_unmapped_uid_is_eacces_under_deny(make_ops):
    ops = make_ops({"users": {"alice": {"uid": ALICE}}, "unknown_uids": "deny"})
    assert await errno_of(ops.lookup(ROOT_INODE, b"a.md", ctx(STRANGER))) == errno.EACCES
    assert await errno_of(ops.getattr(ROOT_INODE, ctx(STRANGER))) == errno.EACCES
    assert (await ops.getattr(ROOT_INODE, ctx(ALICE))).st_uid == ALICE


# -- size cap -----------------------------------------------------------------------


async def test_a_write_crossing_the_cap_is_short_then_efbig(make_ops, data):
    ops = make_ops(max_file_bytes=100)
    fh, ino = await create(ops, ALICE, b"big.md")
    assert await ops.write(fh, 0, b"a" * 90) == 90
    assert await ops.write(fh, 90, b"b" * 20) == 10  # only what fits below the cap
    assert await errno_of(ops.write(fh, 100, b"c")) == errno.EFBIG
    await ops.release(fh)
    assert (data / "private" / "alice" / "big.md").read_bytes() == b"a" * 90 + b"b" * 10
    assert (await ops.getattr(ino, ctx(ALICE))).st_size == 100


async def test_a_write_starting_past_the_cap_is_efbig(make_ops):
    ops = make_ops(max_file_bytes=100)
    fh, _ = await create(ops, ALICE, b"big.md")
    assert await errno_of(ops.write(fh, 150, b"x")) == errno.EFBIG
    await ops.release(fh)


async def test_truncate_past_the_cap_is_efbig(make_ops):
    ops = make_ops(max_file_bytes=100)
    ino = await make_file(ops, ALICE, b"f.md", b"x")
    grow = EntryAttributes()
    grow.st_size = 101
    assert await errno_of(ops.setattr(ino, grow, fields("size"), None, ctx(ALICE))) == errno.EFBIG
    grow.st_size = 100
    assert (await ops.setattr(ino, grow, fields("size"), None, ctx(ALICE))).st_size == 100


# -- refused operations ---------------------------------------------------------------


async def test_symlink_link_and_special_files_are_eperm(ops, data):
    ino = await make_file(ops, ALICE, b"f.md", b"x")
    c = ctx(ALICE)
    assert await errno_of(ops.symlink(ROOT_INODE, b"l", b"f.md", c)) == errno.EPERM
    assert await errno_of(ops.link(ino, ROOT_INODE, b"h", c)) == errno.EPERM
    for ftype in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFSOCK, stat.S_IFBLK):
        assert await errno_of(ops.mknod(ROOT_INODE, b"n", ftype | 0o600, 0, c)) == errno.EPERM
    assert sorted(os.listdir(data / "private" / "alice")) == ["f.md"]


async def test_mknod_of_a_regular_file_works(ops, data):
    attrs = await ops.mknod(ROOT_INODE, b"r.md", stat.S_IFREG | 0o644, 0, ctx(ALICE))
    assert stat.S_ISREG(attrs.st_mode)
    assert (data / "private" / "alice" / "r.md").is_file()


async def test_a_name_of_256_bytes_is_enametoolong(ops):
    long, c = b"n" * 256, ctx(ALICE)
    assert await errno_of(ops.lookup(ROOT_INODE, long, c)) == errno.ENAMETOOLONG
    assert await errno_of(ops.create(ROOT_INODE, long, 0o100600, CREATE_FLAGS, c)) == errno.ENAMETOOLONG
    assert await errno_of(ops.mkdir(ROOT_INODE, long, 0o40700, c)) == errno.ENAMETOOLONG


async def test_a_name_of_255_bytes_is_fine(ops):
    fh, _ = await create(ops, ALICE, b"n" * 255)
    await ops.release(fh)
    assert (await ops.lookup(ROOT_INODE, b"n" * 255, ctx(ALICE))).st_size == 0


async def test_reserved_names_in_the_root(ops):
    alice, bob = ctx(ALICE), ctx(BOB)  # bob is in team eng, alice in no team
    assert await errno_of(ops.create(ROOT_INODE, b"team", 0o100600, CREATE_FLAGS, alice)) == errno.EPERM
    assert await errno_of(ops.create(ROOT_INODE, b".memfs", 0o100600, CREATE_FLAGS, alice)) == errno.EEXIST
    assert await errno_of(ops.create(ROOT_INODE, b"team", 0o100600, CREATE_FLAGS, bob)) == errno.EEXIST
    assert await errno_of(ops.mkdir(ROOT_INODE, b"team", 0o40700, alice)) == errno.EPERM
    assert await errno_of(ops.unlink(ROOT_INODE, b".memfs", alice)) == errno.EBUSY
    assert await errno_of(ops.rmdir(ROOT_INODE, b"team", bob)) == errno.EBUSY


async def test_team_lookup_only_for_members(ops, data):
    assert await errno_of(ops.lookup(ROOT_INODE, b"team", ctx(ALICE))) == errno.ENOENT
    team = (await ops.lookup(ROOT_INODE, b"team", ctx(BOB))).st_ino
    await make_file(ops, BOB, b"t.md", b"team note", parent=team)
    assert (data / "teams" / "eng" / "t.md").read_bytes() == b"team note"


# -- rename ---------------------------------------------------------------------------


async def test_rename_noreplace_onto_an_existing_name_is_eexist(ops, data):
    await make_file(ops, ALICE, b"a.md", b"A")
    await make_file(ops, ALICE, b"b.md", b"B")
    rename = ops.rename(ROOT_INODE, b"a.md", ROOT_INODE, b"b.md", pyfuse3.RENAME_NOREPLACE, ctx(ALICE))
    assert await errno_of(rename) == errno.EEXIST
    assert (data / "private" / "alice" / "a.md").read_bytes() == b"A"
    assert (data / "private" / "alice" / "b.md").read_bytes() == b"B"


async def test_rename_exchange_is_einval(ops, data):
    await make_file(ops, ALICE, b"a.md", b"A")
    await make_file(ops, ALICE, b"b.md", b"B")
    rename = ops.rename(ROOT_INODE, b"a.md", ROOT_INODE, b"b.md", pyfuse3.RENAME_EXCHANGE, ctx(ALICE))
    assert await errno_of(rename) == errno.EINVAL
    assert (data / "private" / "alice" / "a.md").read_bytes() == b"A"


async def test_rename_replaces_and_keeps_the_inode(ops, data):
    a = await make_file(ops, ALICE, b"a.md", b"A")
    await make_file(ops, ALICE, b"b.md", b"B")
    await ops.rename(ROOT_INODE, b"a.md", ROOT_INODE, b"b.md", 0, ctx(ALICE))
    assert (await ops.lookup(ROOT_INODE, b"b.md", ctx(ALICE))).st_ino == a
    assert sorted(os.listdir(data / "private" / "alice")) == ["b.md"]


async def test_rename_into_the_team(ops, data):
    team = (await ops.lookup(ROOT_INODE, b"team", ctx(BOB))).st_ino
    await make_file(ops, BOB, b"n.md", b"promoted")
    await ops.rename(ROOT_INODE, b"n.md", team, b"n.md", 0, ctx(BOB))
    assert (data / "teams" / "eng" / "n.md").read_bytes() == b"promoted"
    assert not (data / "private" / "bob" / "n.md").exists()


# -- robustness -----------------------------------------------------------------------


async def test_an_internal_error_is_eio_and_the_next_call_works(ops, monkeypatch, checklogs):
    checklogs.expect(r"internal error, answered EIO", 1)
    await make_file(ops, ALICE, b"a.md", b"A")

    def boom(*args):
        raise RuntimeError("injected")

    monkeypatch.setattr(ops.store, "find", boom)
    assert await errno_of(ops.lookup(ROOT_INODE, b"a.md", ctx(ALICE))) == errno.EIO
    monkeypatch.undo()
    assert (await ops.lookup(ROOT_INODE, b"a.md", ctx(ALICE))).st_size == 1


async def test_a_backing_os_error_keeps_its_errno(ops, monkeypatch, checklogs):
    checklogs.expect(r"backing store: denied \(EACCES\)")

    def denied(*args):
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(ops.store, "find", denied)
    assert await errno_of(ops.lookup(ROOT_INODE, b"a.md", ctx(ALICE))) == errno.EACCES


async def test_unlinked_but_open_file_still_works(ops, data):
    fh, ino = await create(ops, ALICE, b"tmp.md")
    assert await ops.write(fh, 0, b"hello") == 5
    await ops.unlink(ROOT_INODE, b"tmp.md", ctx(ALICE))
    assert not (data / "private" / "alice" / "tmp.md").exists()
    assert await errno_of(ops.lookup(ROOT_INODE, b"tmp.md", ctx(ALICE))) == errno.ENOENT

    assert (await ops.getattr(ino, ctx(ALICE))).st_size == 5
    assert await ops.write(fh, 5, b" world") == 6
    assert await ops.read(fh, 0, 100) == b"hello world"
    assert (await ops.getattr(ino, ctx(ALICE))).st_size == 11
    await ops.release(fh)
    assert await errno_of(ops.getattr(ino, ctx(ALICE))) == errno.ENOENT


async def test_getattr_of_an_open_file_answers_from_its_fd(ops, monkeypatch):
    # The kernel asks getattr while a reader holds the file open (Python's read(), cat and
    # grep fstat what they opened): fstat of the open fd answers, no walk of the path; the
    # caller is still checked.
    fh, ino = await create(ops, ALICE, b"f.md")
    assert await ops.write(fh, 0, b"hello") == 5

    def no_walk(*args):
        raise AssertionError("getattr of an open file walked its path")

    monkeypatch.setattr(ops.store, "lstat", no_walk)
    assert (await ops.getattr(ino, ctx(ALICE))).st_size == 5
    assert await errno_of(ops.getattr(ino, ctx(BOB))) == errno.EACCES
    monkeypatch.undo()
    await ops.release(fh)
    assert (await ops.getattr(ino, ctx(ALICE))).st_size == 5  # closed: by its path again


async def test_a_new_file_under_an_unlinked_name_is_a_new_inode(ops):
    fh, ino = await create(ops, ALICE, b"f.md")
    await ops.unlink(ROOT_INODE, b"f.md", ctx(ALICE))
    fh2, ino2 = await create(ops, ALICE, b"f.md")
    assert ino2 != ino
    await ops.release(fh)
    await ops.release(fh2)


async def test_setting_mtime_to_zero_on_an_unlinked_open_file(ops):
    fh, ino = await create(ops, ALICE, b"f.md")
    await ops.unlink(ROOT_INODE, b"f.md", ctx(ALICE))
    epoch = EntryAttributes()
    epoch.st_mtime_ns = 0
    attrs = await ops.setattr(ino, epoch, fields("mtime"), None, ctx(ALICE))
    await ops.release(fh)
    assert attrs.st_mtime_ns == 0


async def test_setting_mtime_to_zero_on_a_file(ops):
    ino = await make_file(ops, ALICE, b"f.md")
    epoch = EntryAttributes()
    epoch.st_mtime_ns = 0
    attrs = await ops.setattr(ino, epoch, fields("mtime"), None, ctx(ALICE))
    assert attrs.st_mtime_ns == 0


async def test_chmod_keeps_owner_bits_only(ops, data):
    ino = await make_file(ops, ALICE, b"run.sh")
    mode = EntryAttributes()
    mode.st_mode = stat.S_IFREG | 0o755
    attrs = await ops.setattr(ino, mode, fields("mode"), None, ctx(ALICE))
    assert attrs.st_mode == stat.S_IFREG | 0o700
    assert stat.S_IMODE((data / "private" / "alice" / "run.sh").stat().st_mode) == 0o700


async def test_a_folders_owner_bits_gate_lookups_and_changes_in_it(ops):
    """A folder without u+x cannot be passed (lookup EACCES), one without u+w cannot be
    changed (create, rm EACCES), as natively; with the bits back every call goes through."""
    d = (await ops.mkdir(ROOT_INODE, b"d", stat.S_IFDIR | 0o700, ctx(ALICE))).st_ino
    await make_file(ops, ALICE, b"f.md", b"x", parent=d)

    async def refused(call) -> int:
        try:
            await call
        except FUSEError as e:
            return e.errno
        return 0

    mode = EntryAttributes()
    for bits, passing, changing in ((0o600, errno.EACCES, errno.EACCES), (0o500, 0, errno.EACCES)):
        mode.st_mode = stat.S_IFDIR | bits
        await ops.setattr(d, mode, fields("mode"), None, ctx(ALICE))
        assert await refused(ops.lookup(d, b"f.md", ctx(ALICE))) == passing, oct(bits)
        made = ops.create(d, b"g.md", stat.S_IFREG | 0o600, CREATE_FLAGS, ctx(ALICE))
        assert await refused(made) == changing, oct(bits)
        assert await refused(ops.unlink(d, b"f.md", ctx(ALICE))) == changing, oct(bits)
    mode.st_mode = stat.S_IFDIR | 0o700
    await ops.setattr(d, mode, fields("mode"), None, ctx(ALICE))
    assert (await ops.lookup(d, b"f.md", ctx(ALICE))).st_ino
    await ops.unlink(d, b"f.md", ctx(ALICE))
    assert await errno_of(ops.lookup(d, b"f.md", ctx(ALICE))) == errno.ENOENT


async def test_open_to_read_is_refused_by_the_owner_bits_and_keeps_no_fd(ops, data):
    # An open to read is made first and judged by the fstat of what it opened: when
    # refused, nothing of it is kept (no fd, no handle, no count against the caller).
    ino = await make_file(ops, ALICE, b"w.md", b"secret")
    mode = EntryAttributes()
    mode.st_mode = stat.S_IFREG | 0o200
    await ops.setattr(ino, mode, fields("mode"), None, ctx(ALICE))
    fds = fds_under(data)
    assert await errno_of(ops.open(ino, os.O_RDONLY, ctx(ALICE))) == errno.EACCES
    assert fds_under(data) == fds
    assert not ops._files and ops.opens.held(ALICE) == (0, 0)
    mode.st_mode = stat.S_IFREG | 0o600
    await ops.setattr(ino, mode, fields("mode"), None, ctx(ALICE))
    fi = await ops.open(ino, os.O_RDONLY, ctx(ALICE))
    assert await ops.read(fi.fh, 0, 100) == b"secret"
    await ops.release(fi.fh)


async def test_chown_to_another_owner_is_eperm(ops):
    ino = await make_file(ops, ALICE, b"f.md")
    owner = EntryAttributes()
    owner.st_uid = BOB
    assert await errno_of(ops.setattr(ino, owner, fields("uid"), None, ctx(ALICE))) == errno.EPERM
    owner.st_uid = ALICE
    assert (await ops.setattr(ino, owner, fields("uid"), None, ctx(ALICE))).st_uid == ALICE


async def test_forget_drops_the_inode(ops):
    ino = await make_file(ops, ALICE, b"f.md")
    assert ops.forget([(ino, 1)]) is None  # sync: pyfuse3 does not await it
    assert await errno_of(ops.getattr(ino, ctx(ALICE))) == errno.ESTALE
    # Looked up again, the same file has the same number (it follows the backing inode).
    assert (await ops.lookup(ROOT_INODE, b"f.md", ctx(ALICE))).st_ino == ino


async def test_a_file_whose_backing_number_is_taken_is_served_normally(ops, monkeypatch):
    # ext4 reuses a freed inode number at once; while the kernel still knows the old node
    # the new file gets a number of its own, which must not be taken for a control file
    # (it was: EISDIR on open, EPERM on chmod).
    real = ops.inodes._made
    monkeypatch.setattr(ops.inodes, "_made", lambda scope, path, view, backing: real(scope, path, view, None))
    fh, ino = await create(ops, ALICE, b"b.md")
    assert ino >= OWN_BASE and not ops.control.owns(ino)
    await ops.release(fh)
    fi = await ops.open(ino, os.O_RDWR, ctx(ALICE))
    assert await ops.write(fi.fh, 0, b"new") == 3
    await ops.release(fi.fh)
    attr = EntryAttributes()
    attr.st_mode = 0o600
    await ops.setattr(ino, attr, fields("mode"), None, ctx(ALICE))
    assert (await ops.getattr(ino, ctx(ALICE))).st_size == 3
    ops.forget([(ino, 1)])
    assert await errno_of(ops.getattr(ino, ctx(ALICE))) == errno.ESTALE


async def test_handlers_feed_the_index_queue(ops):
    # What a search will apply: written entries, renames of files and folders, removals.
    alice = ctx(ALICE)
    await make_file(ops, ALICE, b"a.md", b"x")
    await make_file(ops, ALICE, b"notes.txt", b"x")  # not an entry: never queued
    private = ops.ids.principal(ALICE, ALICE).private
    assert ops.index.committer._pending[private] == {b"a.md": "index"}
    d = (await ops.mkdir(ROOT_INODE, b"d", 0o700, alice)).st_ino
    await make_file(ops, ALICE, b"n.md", b"x", parent=d)
    await ops.rename(ROOT_INODE, b"d", ROOT_INODE, b"e", 0, alice)
    assert ops.index.committer._trees[private] == [("delete_tree", b"d"), ("index_tree", b"e")]
    await ops.rename(ROOT_INODE, b"a.md", ROOT_INODE, b"b.md", 0, alice)
    await ops.unlink(ROOT_INODE, b"b.md", alice)
    assert ops.index.committer._pending[private] == {b"d/n.md": "index", b"a.md": "delete", b"b.md": "delete"}


async def test_handles_of_each_kind_never_share_a_number(ops):
    """A log line names what a handle is: a folder listing and an open file (whose handle
    is its fd) have numbers from ranges of their own, so `readdir dh=N` can never name a
    file another caller holds open with fd N."""
    secret = await make_file(ops, ALICE, b"secret-notes.md", b"x")
    files = [(await ops.open(secret, os.O_RDONLY, ctx(ALICE))).fh for _ in range(20)]
    notes = (await ops.mkdir(ROOT_INODE, b"notes", stat.S_IFDIR | 0o755, ctx(BOB))).st_ino
    dirs = [await ops.opendir(notes, ctx(BOB)) for _ in range(20)]
    assert not set(files) & set(dirs)
    for dh in dirs:
        line = ops.describe("readdir", (dh, 0, None))
        assert "bob" in line and "notes" in line and "secret" not in line, line
        await ops.releasedir(dh)
    for fh in files:
        assert "secret-notes.md" in ops.describe("read", (fh, 0, 10))
        await ops.release(fh)


async def test_opening_a_file_removed_behind_the_kernels_cached_name_is_estale(ops, data):
    """The kernel opens by the node a cached name gave it. When a sync removed or replaced
    that file since, the answer is ESTALE: Linux then looks the name up again and retries
    (an open with O_CREAT creates the file), where ENOENT would fail the caller's open."""
    gone = await make_file(ops, ALICE, b"gone.md", b"x")
    (data / "private" / "alice" / "gone.md").unlink()  # behind memfs's back, not yet told
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_TRUNC):
        assert await errno_of(ops.open(gone, flags, ctx(ALICE))) == errno.ESTALE
    told = await make_file(ops, ALICE, b"told.md", b"x")
    (data / "private" / "alice" / "told.md").unlink()
    ops.synced(ops.ids.principal(ALICE, ALICE).private, [], [b"told.md"])  # as a sync round does
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_TRUNC):
        assert await errno_of(ops.open(told, flags, ctx(ALICE))) == errno.ESTALE
    # looked up again, the name is free: a create makes a new file
    assert await errno_of(ops.lookup(ROOT_INODE, b"told.md", ctx(ALICE))) == errno.ENOENT
    await make_file(ops, ALICE, b"told.md", b"new")
