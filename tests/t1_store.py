"""Store: scope folders reached through a bounded set of directory fds."""

from __future__ import annotations

import os

from memfs import store as store_mod
from memfs.policy import Kind, Scope
from memfs.store import Store


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_scope_fds_are_bounded_and_never_closed_in_use(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_ROOT_FDS", 8)
    Store.init_layout(tmp_path)
    st = Store(tmp_path, 1 << 20)
    before = open_fds()
    first = Scope(Kind.PRIVATE, "u0")
    with st.at(first) as held:
        for i in range(1, 50):
            scope = Scope(Kind.PRIVATE, f"u{i}")
            os.close(st.create(scope, b"f.md", os.O_WRONLY, 0o600)[0])
            assert st.lstat(scope, b"f.md").st_size == 0
        assert open_fds() - before <= 9  # 8 idle ones and the one in use
        os.stat(".", dir_fd=held)  # still the folder it was: not closed under us
        assert os.path.samefile(f"/proc/self/fd/{held}", tmp_path / "private" / "u0")
    st.close()
    assert open_fds() == before
