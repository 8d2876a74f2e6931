"""mount(8), fstab and umount(8): memfs as a fuse.memfs filesystem type."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ALICE, TIMEOUT, wait_for


def helper_env(m) -> dict:
    # mount.fuse3 runs `memfs SOURCE MOUNTPOINT -o OPTS` from PATH, as sshfs is found.
    return dict(m.env, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def test_mount_t_fuse_memfs_and_umount(make_mount):
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
    res = subprocess.run(["umount", str(m.mnt)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    wait_for(lambda: "unmounted" in m.log().splitlines()[-1], "the daemon to finish after umount(8)")


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
