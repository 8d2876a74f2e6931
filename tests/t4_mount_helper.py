"""mount(8), fstab and umount(8): memfs as a fuse.memfs filesystem type."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ALICE, TIMEOUT, daemon_gone


def helper_env(m) -> dict:
    # mount.fuse3 runs `memfs SOURCE MOUNTPOINT -o OPTS` from PATH, as sshfs is found.
    return dict(m.env, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


HELPER = Path(__file__).resolve().parent.parent / "contrib" / "umount.fuse"
INSTALLED = Path("/sbin/umount.fuse")


def install_umount_helper() -> None:
    """What scripts/install does: contrib/umount.fuse as /sbin/umount.fuse, never over
    another package's helper."""
    if INSTALLED.exists() and b"# memfs: umount(8) helper" not in INSTALLED.read_bytes():
        pytest.skip(f"{INSTALLED} is another package's")
    if not INSTALLED.exists() or INSTALLED.read_bytes() != HELPER.read_bytes():
        shutil.copyfile(HELPER, INSTALLED)
        INSTALLED.chmod(0o755)


def test_mount_t_fuse_memfs_and_umount(make_mount):
    install_umount_helper()
    m = make_mount(start=False)
    env = helper_env(m)
    res = subprocess.run(
        ["mount", "-t", "fuse.memfs", str(m.data), str(m.mnt), "-o", f"config={m.config},nosuid,nodev"],
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert os.path.ismount(m.mnt)
    m.sh(ALICE, "echo hello > note.md && cat note.md")
    assert (m.data / "private" / "alice" / "note.md").read_text() == "hello\n"
    fstype = next(
        ln.split()[2] for ln in Path("/proc/mounts").read_text().splitlines() if ln.split()[1] == str(m.mnt)
    )
    assert fstype == "fuse.memfs"
    pid = m.pid()
    m.sh(ALICE, "for i in $(seq 50); do echo $i > n$i.md; done")  # work for its last commit
    res = subprocess.run(["umount", str(m.mnt)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    # umount(8) returns once the daemon has finished (issue 26: it went on for ~3 s)
    assert pid is not None and daemon_gone(pid)
    assert "unmounted" in m.log().splitlines()[-1]


def test_umount_of_another_fuse_filesystem_is_unchanged(tmp_path):
    """The helper runs for every FUSE mount: a bindfs one is unmounted as without it."""
    install_umount_helper()
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (scripts/install --bench)")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    subprocess.run(["bindfs", str(src), str(mnt)], check=True, timeout=TIMEOUT)
    res = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert not os.path.ismount(mnt)


def test_an_fstab_line(make_mount, tmp_path):
    m = make_mount(start=False)
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"{m.data} {m.mnt} fuse.memfs config={m.config},noauto,_netdev,x-systemd.automount 0 0\n"
    )
    env = helper_env(m)
    res = subprocess.run(
        ["mount", "--fstab", str(fstab), str(m.mnt)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert res.returncode == 0, res.stderr
    assert m.run(ALICE, ["cat", ".memfs/whoami"]).stdout.strip()
    m.stop()  # memfs umount works on it as on any memfs mount


def test_a_bad_option_is_refused_clearly(make_mount):
    m = make_mount(start=False)
    res = subprocess.run(
        ["mount", "-t", "fuse.memfs", str(m.data), str(m.mnt), "-o", "ro"],
        env=helper_env(m), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert res.returncode != 0 and "read-write only" in res.stderr
    assert not os.path.ismount(m.mnt)
