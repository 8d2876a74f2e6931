"""The one gate: whatever bytes a path holds, nothing is created, opened or renamed outside
the scope's folder (hostile names from callers, remotes and memfs's own name builders)."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memfs import confine, names
from memfs.policy import Kind, Scope
from memfs.store import Store


def _one_name(raw: bytes) -> bytes:
    """Any bytes as one ordinary path component (for building test paths)."""
    name = raw.replace(b"/", b"_").replace(b"\0", b"_")
    return name if name.strip(b".") else b"_" + name


PIECES = [b"..", b".", b"", b"/", b"\0", b"a", b"b.md", b"..a", b"x/../..", b"\xff", b"ESCAPED", b" "]
hostile = st.lists(st.sampled_from(PIECES), min_size=0, max_size=12).map(b"".join) | st.binary(max_size=64)


def _everything(top: str) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(top):
        out |= {os.path.join(dirpath, n) for n in dirs + files}
    return out


@pytest.fixture
def store(tmp_path):
    Store.init_layout(tmp_path / "data")
    s = Store(tmp_path / "data", 1 << 20)
    yield s
    s.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rel=hostile, other=hostile)
def test_no_store_call_leaves_the_scope(store, tmp_path, rel, other):
    scope = Scope(Kind.PRIVATE, "mallory")
    with store.at(scope):
        pass
    (store.data / "private" / "mallory" / "a").mkdir(exist_ok=True)
    before = _everything(str(tmp_path))
    calls = [
        lambda: os.close(store.create(scope, rel, os.O_WRONLY, 0o600)[0]),
        lambda: store.mkdir(scope, rel, 0o700),
        lambda: store.rename(scope, b"a", scope, rel),
        lambda: store.rename(scope, rel, scope, other),
        lambda: store.unlink(scope, rel),
        lambda: store.rmdir(scope, rel),
        lambda: store.utime(scope, rel, 0, 0),
        lambda: store.chmod(scope, rel, 0o777),
    ]
    for call in calls:
        try:
            call()
        except OSError:
            pass
    inside = str(store.data / "private" / "mallory")
    new = _everything(str(tmp_path)) - before
    assert all(p.startswith(inside + "/") for p in new), new
    assert os.stat(store.data).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("rel", [b"..", b"../x", b"a/../../x", b"/etc/x", b"a//b", b"a/./b", b"a\0b", b""])
def test_unsafe_paths_are_refused_before_any_syscall(rel):
    if rel == b"":
        with confine.beneath(-1, rel) as got:  # '' is the folder itself
            assert got == (-1, b".")
        return
    with pytest.raises(OSError) as e, confine.beneath(-1, rel):
        pass
    assert e.value.errno == errno.EINVAL


def test_a_symlink_left_inside_the_scope_is_not_followed(store, tmp_path):
    scope = Scope(Kind.PRIVATE, "alice")
    with store.at(scope):
        pass
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, store.data / "private" / "alice" / "link")
    os.symlink("..", store.data / "private" / "alice" / "up")
    for rel in (b"link/x.md", b"up/bob/x.md", b"link/deeper/x.md"):
        with pytest.raises(OSError) as e:
            os.close(store.create(scope, rel, os.O_WRONLY, 0o600)[0])
        assert e.value.errno in (errno.ELOOP, errno.EXDEV, errno.ENOENT, errno.ENOTDIR), rel
    assert list(outside.iterdir()) == []


def test_long_paths_still_work_through_the_gate(store):
    scope = Scope(Kind.PRIVATE, "alice")
    rel = b""
    for i in range(30):  # 30 x 200 bytes: longer than PATH_MAX from the scope's root
        rel = (rel + b"/" if rel else b"") + (b"%03d" % i) * 66
        store.mkdir(scope, rel, 0o700)
    os.close(store.create(scope, rel + b"/f.md", os.O_WRONLY, 0o600)[0])
    assert store.lstat(scope, rel + b"/f.md").st_size == 0


texts = st.text(max_size=80) | st.sampled_from(
    ["..", ".", "/", "a/../..", "m@/../../x", "\x00", "", " (via x)"]
)
times = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    folder=st.sampled_from([b"", b"notes", b"a/b"]),
    host=texts,
    when=times,
    name=st.binary(min_size=1, max_size=40),
)
def test_every_name_built_from_remote_data_is_one_component_in_its_folder(folder, host, when, name):
    """Conflict copies, version names and labels, whatever a commit's e-mail, author and
    time hold: one ordinary component, in the folder of the file it copies."""
    name = _one_name(name)
    path = folder + b"/" + name if folder else name
    copy = names.conflict_name(path, host, when)
    assert copy.rpartition(b"/")[0] == folder and confine.bad_component(copy) is None, copy
    version = names.version_name(path, when, names.via(host, host), 7)
    assert confine.bad_component(version) is None and b"/" not in version, version
    for label in (names.label(host), names.host_of(host), names.label(host.encode("utf-8", "surrogatepass"))):
        assert label and confine.bad_component(label.encode()) is None and " " not in label
