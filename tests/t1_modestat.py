"""modestat.mode_at: a statx for type and mode only, checked against lstat."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from memfs.modestat import mode_at


def test_it_gives_what_lstat_gives_and_follows_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir(mode=0o710)
    (tmp_path / "link").symlink_to("d")
    os.mkfifo(tmp_path / "fifo", 0o640)
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        assert mode_at(b"", fd) == os.lstat(tmp_path).st_mode
        for name in ("f", "d", "link", "fifo"):
            assert mode_at(name.encode(), fd) == os.lstat(tmp_path / name).st_mode, name
        assert stat.S_ISLNK(mode_at(b"link", fd))
        with pytest.raises(FileNotFoundError):
            mode_at(b"missing", fd)
        with pytest.raises(NotADirectoryError):
            mode_at(b"f/x", fd)
    finally:
        os.close(fd)


def test_a_closed_fd_is_ebadf():
    fd = os.open("/", os.O_PATH)
    os.close(fd)
    with pytest.raises(OSError) as e:
        mode_at(b"", fd)
    assert e.value.errno == errno.EBADF
