"""The memfs CLI: mount/umount, clear failures, signals, dead mounts."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ALICE, TIMEOUT, memfs_cmd, wait_for

REPO = Path(__file__).resolve().parent.parent


def cli(m, *args, env=None):
    return subprocess.run(memfs_cmd(*args), env=env or m.env, capture_output=True, text=True, timeout=TIMEOUT)


def mount_args(m, **over):
    a = {"data": str(m.data), "config": str(m.config)}
    a.update(over)
    out = ["mount", str(over.get("mnt", m.mnt)), "--data", a["data"], "--config", a["config"]]
    return out


def one_line_failure(res) -> str:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_mount_prints_where_and_umount_waits(make_mount):
    m = make_mount(start=False)
    res = m.start()
    assert str(m.mnt) in res.stdout
    assert os.path.ismount(m.mnt)
    pid = m.pid()
    m.stop()
    assert not os.path.ismount(m.mnt)
    # The daemon has exited (it may linger as a zombie until init reaps it).
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("Z", "gone")
    line = one_line_failure(cli(m, "umount", str(m.mnt)))
    assert "not mounted" in line


def test_mount_failures_are_one_line(make_mount, base_dir):
    m = make_mount(start=False)
    assert "does not exist" in one_line_failure(cli(m, *mount_args(m, mnt=str(base_dir / "nope"))))
    blocker = base_dir / "file"
    blocker.write_text("")
    line = one_line_failure(cli(m, *mount_args(m, data=str(blocker / "data"))))
    assert "not writable" in line
    m.config.write_text("users:\n  alice: {uid: 1001, colour: red}\n")
    line = one_line_failure(cli(m, *mount_args(m)))
    assert "colour" in line and "users.alice" in line
    m.config.write_text("users: [unclosed\n")
    assert "invalid YAML" in one_line_failure(cli(m, *mount_args(m)))
    m.config.write_text("bogus: 1\n")
    assert "'bogus'" in one_line_failure(cli(m, *mount_args(m)))
    m.config.write_text("users:\n  a: {uid: 1001}\n  b: {uid: 1001}\n")
    assert "uid 1001" in one_line_failure(cli(m, *mount_args(m)))
    m.config.write_text("")
    env = dict(m.env, PATH="/nonexistent")
    assert "FUSE is not available" in one_line_failure(cli(m, *mount_args(m), env=env))
    assert not os.path.ismount(m.mnt)
    m.start()
    assert "busy" in one_line_failure(cli(m, *mount_args(m)))
    m.sh(ALICE, "echo still > ok.md")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_foreground_signal_unmounts_cleanly(make_mount, sig):
    m = make_mount(start=False)
    proc = subprocess.Popen(
        memfs_cmd(*mount_args(m), "--foreground"),
        env=m.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: os.path.ismount(m.mnt), "the mount")
        m.sh(ALICE, "echo kept > k.md")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert not os.path.ismount(m.mnt)
        assert "unmounted" in err
    finally:
        proc.kill()
    assert (m.data / "private" / "alice" / "k.md").read_text() == "kept\n"


def test_dead_mount_is_cleared_on_next_mount(mnt):
    mnt.sh(ALICE, "echo durable > d.md")
    os.kill(mnt.pid(), signal.SIGKILL)
    with pytest.raises(OSError) as exc:
        wait_for(lambda: os.stat(mnt.mnt) and False, "ENOTCONN", timeout=5)
    # ENOTCONN (transport endpoint is not connected), or ECONNABORTED right after the kill
    assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    mnt.start()
    assert mnt.sh(ALICE, "cat d.md").stdout == "durable\n"


def test_python_dash_m_and_help():
    res = subprocess.run(memfs_cmd("--help"), capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0 and "mount" in res.stdout


def test_scripts_mount_is_idempotent(make_mount):
    m = make_mount(start=False)
    args = [
        str(REPO / "scripts" / "mount"),
        str(m.mnt),
        "--data",
        str(m.data),
        "--config",
        str(m.config),
    ]
    for expect in ("memfs mounted at", "already mounted"):
        res = subprocess.run(args, env=m.env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        assert expect in res.stdout


def test_debug_and_error_lines_name_op_caller_path_and_errno(make_mount):
    m = make_mount(start=False)
    m.start("--debug")
    m.sh(ALICE, "mkdir -p n && echo x > n/a.md && cat n/a.md >/dev/null")
    assert m.sh(ALICE, "mkdir team", check=False).returncode != 0
    log = m.log()
    assert "create uid=1001(alice) n/a.md" in log
    assert "read uid=1001(alice) n/a.md" in log  # read carries no caller: the handle's is named
    assert "mkdir uid=1001(alice) team: Operation not permitted (EPERM)" in log
