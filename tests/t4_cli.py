"""The memfs CLI: mount/umount, clear failures, signals, dead mounts."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ALICE, BOB, TIMEOUT, daemon_gone, memfs_cmd, wait_for

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
    assert daemon_gone(pid)
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
    mnt.expect_log("clearing a dead mount", count=1)  # the unclean restart is in the daemon's log
    mnt.start()
    assert mnt.sh(ALICE, "cat d.md").stdout == "durable\n"


def test_python_dash_m_and_help():
    res = subprocess.run(memfs_cmd("--help"), capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0 and "mount" in res.stdout
    import memfs

    res = subprocess.run(memfs_cmd("--version"), capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0 and res.stdout.strip() == f"memfs {memfs.__version__}"


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


DENY_CONFIG = """
users:
  alice: {uid: 1001}
unknown_uids: deny
"""


def as_uid(uid: int, m, *args: str) -> subprocess.CompletedProcess:
    """The memfs CLI as `uid`, run from the checkout (so `-m memfs` is the code under test)."""
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *memfs_cmd(*args)]
    return subprocess.run(cmd, env=m.env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)


def test_umount_and_mount_work_when_the_mount_refuses_root(make_mount):
    """unknown_uids: deny refuses root's own stat of the mount: the CLI must not take that
    for 'not mounted' (issue 26)."""
    m = make_mount(DENY_CONFIG)
    assert "busy" in one_line_failure(cli(m, *mount_args(m)))
    res = cli(m, "doctor", "--mount", str(m.mnt), "--config", str(m.config))
    assert f"WARN mount: {m.mnt} answers, but refuses uid 0" in res.stdout, res.stdout
    assert "refuses uid 1002" in one_line_failure(as_uid(BOB, m, "mcp", "--mount", str(m.mnt)))
    pid = m.pid()
    m.stop()
    assert pid is not None and daemon_gone(pid)


def test_doctor_given_data_checks_its_live_mount_and_config_as_any_user(make_mount):
    m = make_mount()
    for uid in (0, ALICE):
        res = as_uid(uid, m, "doctor", "--data", str(m.data))
        assert f"config: {m.config}: 3 users" in res.stdout, res.stdout + res.stderr
        assert f"mount: {m.mnt} answers" in res.stdout, res.stdout + res.stderr


def test_umount_of_a_busy_mount_says_who_holds_it_and_lazy_detaches(mnt):
    holder = subprocess.Popen(
        ["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", "--clear-groups", "sleep", "600"], cwd=mnt.mnt
    )
    try:
        wait_for(lambda: os.readlink(f"/proc/{holder.pid}/cwd") == str(mnt.mnt), "the holder's cwd")
        line = one_line_failure(cli(mnt, "umount", str(mnt.mnt)))
        assert f"{holder.pid} (sleep, cwd)" in line and f"memfs umount --lazy {mnt.mnt}" in line, line
        res = cli(mnt, "umount", "--lazy", str(mnt.mnt))
        assert res.returncode == 0, res.stderr
        assert "detached" in res.stdout and not os.path.ismount(mnt.mnt)
    finally:
        holder.kill()
        holder.wait(TIMEOUT)
    wait_for(lambda: "unmounted" in mnt.log().splitlines()[-1], "the daemon to end once the holder let go")


def test_sigusr1_dumps_stacks_into_the_daemons_log(mnt):
    os.kill(mnt.pid(), signal.SIGUSR1)
    wait_for(lambda: "most recent call first" in mnt.log(), "the stack dump in memfs.log", timeout=15)
    assert "most recent call first" not in (mnt.data / "state" / "daemon.err").read_text()


def test_mount_says_which_config_and_warns_of_memory_no_uid_reaches(make_mount):
    """Mounting without --config uses the default file (issue 26: alice became uid-1001
    with an empty memory and no hint): say so, and name memory no uid reaches."""
    m = make_mount(start=False)
    (m.data / "private" / "zed").mkdir(parents=True)
    (m.data / "private" / "zed" / "note.md").write_text("zed's memory\n")
    res = cli(m, "mount", str(m.mnt), "--data", str(m.data))
    assert res.returncode == 0, res.stderr
    assert "config /etc/memfs/config.yaml (the default: no --config given):" in res.stdout
    assert re.search(r": \d+ users, \d+ teams, \d+ grants\)", res.stdout), res.stdout
    assert "warning:" in res.stderr and "holds memory of user zed that no uid reaches" in res.stderr
    assert "holds memory of user zed" in m.log()


def test_a_uid_n_caller_is_told_why_its_memory_is_empty(make_mount):
    m = make_mount("users:\n  bob: {uid: 1002}\n")
    whoami = m.run(ALICE, ["cat", ".memfs/whoami"]).stdout
    assert "user: uid-1001" in whoami and "users.<name>: {uid: 1001}" in whoami
    assert "you are uid-1001" in m.run(ALICE, ["cat", ".memfs/status"]).stdout
    assert "note:" not in m.run(BOB, ["cat", ".memfs/whoami"]).stdout
    assert "you are" not in m.run(BOB, ["cat", ".memfs/status"]).stdout
