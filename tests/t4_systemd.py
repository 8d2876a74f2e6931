"""contrib/memfs.service: its command lines run as systemd would run them (no systemd here)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from conftest import ALICE, TIMEOUT, memfs_cmd, wait_for

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "memfs.service"


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNIT)
    return cp


def command(line: str, m) -> list[str]:
    """A unit's command line with this test's mount, data and config, and this memfs."""
    argv = shlex.split(line)
    assert argv[0] == "/usr/local/bin/memfs"  # where scripts/install links it
    subst = {
        "/mnt/memory": str(m.mnt),
        "/var/lib/memfs": str(m.data),
        "/etc/memfs/config.yaml": str(m.config),
    }
    return memfs_cmd(*(subst.get(a, a) for a in argv[1:]))


def test_the_unit_declares_what_a_service_needs():
    s = unit()
    svc = s["Service"]
    assert svc["Restart"] == "on-failure" and int(svc["LimitNOFILE"]) >= 65536
    assert "--foreground" in svc["ExecStart"] and svc["ExecStop"].split()[1] == "umount"
    assert s["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):  # systemd's own checks where systemd exists
        res = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
        assert "error" not in res.stderr.lower(), res.stderr


def test_the_documentation_it_names_is_installed():
    """Every file:// Documentation= path is one scripts/install puts there (issue 26: the
    unit named a README path nothing created)."""
    install = (UNIT.parent.parent / "scripts" / "install").read_text()
    docs = unit()["Unit"]["Documentation"].split()
    assert docs
    for url in docs:
        if url.startswith("file://"):
            assert f"README.md {url.removeprefix('file://')}" in install, url


def sandbox(svc) -> list[str]:
    """The unit's NoNewPrivileges and CapabilityBoundingSet, applied with setpriv as
    systemd would apply them (its namespace and seccomp options need systemd itself)."""
    out = ["setpriv"]
    if svc.get("NoNewPrivileges") == "yes":
        out.append("--no-new-privs")
    caps = svc.get("CapabilityBoundingSet")
    if caps:
        keep = ",".join("+" + c.removeprefix("CAP_").lower() for c in caps.split())
        out.append(f"--bounding-set=-all,{keep}")
    return out


def test_the_unit_is_hardened():
    if not shutil.which("systemd-analyze"):
        return
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
    )
    score = float(res.stdout.rsplit("exposure level for memfs.service:", 1)[1].split()[0])
    assert score <= 5.0, res.stdout[-2000:]


def test_start_crash_restart_and_stop(make_mount):
    m = make_mount(start=False)
    s = unit()["Service"]
    start, stop = sandbox(s) + command(s["ExecStart"], m), command(s["ExecStop"], m)
    daemon = subprocess.Popen(start, env=m.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.ismount(m.mnt), "ExecStart to mount")
        m.sh(ALICE, "echo kept > note.md")
        # Restart=on-failure after a crash: the dead mount is cleared by the new daemon.
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(TIMEOUT)
        daemon = subprocess.Popen(
            start, env=m.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        wait_for(
            lambda: m.run(ALICE, ["cat", "note.md"], check=False).stdout == "kept\n", "the restarted mount"
        )
        res = subprocess.run(stop, env=m.env, capture_output=True, text=True, timeout=TIMEOUT)
        assert res.returncode == 0, res.stderr
        assert daemon.wait(TIMEOUT) == 0  # the service ends cleanly: no failure for systemd to restart
        journal = daemon.stderr.read()  # what the journal gets from a foreground daemon
        assert "clearing a dead mount" in journal and "unmounted" in journal
        assert not os.path.ismount(m.mnt)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(TIMEOUT)
