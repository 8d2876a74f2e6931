"""Operating memfs (issue 26): /metrics in the Prometheus format, scraped over TCP and a
unix socket, and `memfs status --all`, the admin's view of every user and team."""

from __future__ import annotations

import grp
import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import ALICE, BOB, CAROL, CHECKOUT, TIMEOUT, memfs_cmd, wait_for
from prometheus_client.parser import text_string_to_metric_families

CONFIG = """
users:
  alice: {{uid: 1001}}
  bob: {{uid: 1002}}
  carol: {{uid: 1003}}
teams:
  eng: {{members: [alice, bob]}}
daemon: {{admin_group: memfs-test-admins}}
metrics: {{listen: "{listen}"}}
"""
SECRET_NAME = "zz-private-name-7f3a.md"  # a file name that must never show in a label
SECRET_QUERY = "qq-query-words-91b2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_tcp(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as r:
        return r.read().decode()


def scrape_unix(path: str) -> str:
    res = subprocess.run(
        ["curl", "-sS", "--unix-socket", path, "http://localhost/metrics"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return res.stdout


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


ADMINS_GID = 4701


@pytest.fixture
def admins_group():
    """daemon.admin_group, with a gid no test user has as its own."""
    if subprocess.run(["getent", "group", "memfs-test-admins"], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "-g", str(ADMINS_GID), "memfs-test-admins"], check=True)
    return "memfs-test-admins"


def work(m) -> None:
    """Requests of several kinds, some answered with errors, as two users."""
    m.sh(ALICE, f"echo 'note' > {SECRET_NAME}; cat {SECRET_NAME}; mkdir -p team; echo t > team/t.md")
    m.sh(ALICE, f"cat .memfs/search/{SECRET_QUERY} >/dev/null; cat missing.md 2>/dev/null || true")
    m.sh(BOB, "ls team; cat team/t.md")


def test_metrics_over_tcp_count_requests_errors_and_scopes_and_name_no_file(make_mount, admins_group):
    port = free_port()
    m = make_mount(CONFIG.format(listen=f"127.0.0.1:{port}"))
    work(m)
    text = scrape_tcp(port)
    got = samples(text)
    assert got[("memfs_up", ())] == 1
    assert got[("memfs_requests_total", (("op", "create"),))] >= 2
    assert got[("memfs_request_errors_total", (("errno", "ENOENT"), ("op", "lookup")))] >= 1
    assert got[("memfs_request_seconds_count", (("op", "lookup"),))] >= 1
    assert got[("memfs_scope_bytes", (("scope", "private:alice"),))] == len("note\n")
    assert got[("memfs_scope_files", (("scope", "team:eng"),))] == 1
    assert ("memfs_scope_max_bytes", (("scope", "team:eng"),)) in got
    assert ("memfs_history_lag_seconds", (("scope", "private:alice"),)) in got
    assert ("memfs_index_queue", (("scope", "team:eng"),)) in got
    assert got[("memfs_daemon_resident_bytes", ())] > 10 << 20
    assert got[("memfs_daemon_threads", ())] >= 2
    assert ("memfs_embedding_backlog", ()) in got
    # what callers name (files, queries) never becomes a label
    assert SECRET_NAME not in text and SECRET_QUERY not in text and "zz-private" not in text
    if shutil.which("promtool"):
        res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    # open handles per user: alice holds one while we scrape
    holder = subprocess.Popen(
        ["sh", "-c", f'cd "{m.mnt}" && exec sleep 30 < {SECRET_NAME}'],
        user=ALICE,
        group=ALICE,
        extra_groups=[],
    )
    try:
        # sh opens the file, then becomes sleep: once it is sleep, the handle is open
        wait_for(lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep", "the open file")
        assert samples(scrape_tcp(port)).get(("memfs_open_handles", (("user", "alice"),)), 0) >= 1
    finally:
        holder.kill()
        holder.wait()


def test_metrics_over_a_unix_socket(make_mount, base_dir, admins_group):
    # in a folder the daemon's user may write (as /run/memfs/ is)
    run_dir = base_dir / "sockets"
    run_dir.mkdir()
    shutil.chown(run_dir, "memfs", "memfs")
    sock = run_dir / "metrics.sock"
    m = make_mount(CONFIG.format(listen=str(sock)))
    work(m)
    got = samples(scrape_unix(str(sock)))
    assert got[("memfs_requests_total", (("op", "create"),))] >= 2
    m.stop()
    assert not sock.exists()  # the daemon removes its socket at unmount


def test_a_port_in_use_is_a_clear_mount_error(make_mount, admins_group):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        m = make_mount(CONFIG.format(listen=f"127.0.0.1:{port}"), start=False)
        m.expect_log("cannot serve metrics", 1)
        res = m.start(check=False)
        assert res.returncode != 0
        assert f"cannot serve metrics on 127.0.0.1:{port}" in res.stdout + res.stderr


def test_status_all_shows_every_scope_to_root_and_admins_only(make_mount, admins_group):
    m = make_mount(CONFIG.format(listen=f"127.0.0.1:{free_port()}"))
    work(m)
    m.sh(BOB, "echo bob > mine.md")
    res = subprocess.run(
        memfs_cmd("status", "--all", "--json", "--mount", str(m.mnt)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=m.env,
        check=True,
    )
    snap = json.loads(res.stdout)
    scopes = {s["scope"]: s for s in snap["scopes"]}
    assert scopes["private:alice"]["bytes"] == len("note\n")
    assert scopes["private:bob"]["files"] == 1 and scopes["team:eng"]["files"] == 1
    assert scopes["team:eng"]["max_bytes"] > 0 and scopes["private:bob"]["history_bytes"] is not None
    # the table form, as carol acting with daemon.admin_group as her group, names each scope
    table = subprocess.run(
        memfs_cmd("status", "--all", "--mount", str(m.mnt)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        user=CAROL,
        group=grp.getgrnam(admins_group).gr_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": CHECKOUT},
        check=True,
    ).stdout
    assert "private:alice" in table and "team:eng" in table and "open handles" in table
    # alice is not an admin: refused, with why; she still gets her own status
    refused = m.run(ALICE, [*memfs_cmd("status", "--all", "--mount", str(m.mnt))], check=False)
    assert refused.returncode != 0 and "admin_group" in refused.stderr
    assert m.run(ALICE, [*memfs_cmd("status", "--mount", str(m.mnt))]).returncode == 0
    assert "bob" not in m.sh(ALICE, "cat .memfs/admin.json 2>&1 || true").stdout.replace("EACCES", "")
