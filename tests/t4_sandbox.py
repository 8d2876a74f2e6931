"""Agents in sandboxes: a container's mapped uid range, or several uids, act as one memory
user (`users.<u>.uids`), through real user namespaces (issue 26)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ALICE, BOB, SYS_PYTHON, TIMEOUT

USERNS = str(Path(__file__).with_name("userns.py"))
SANDBOX_CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002, uids: [1005]}
  agent: {uids: ["100000-165535"]}
"""


def in_container(m, inner: int, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """`script` as uid `inner` of a container whose uids 0-65535 are the host's 100000-165535."""
    res = subprocess.run(
        [SYS_PYTHON, USERNS, "100000", "65536", str(inner), "sh", "-ec", f'cd "{m.mnt}"; {script}'],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


@pytest.fixture
def sm(make_mount):
    return make_mount(SANDBOX_CONFIG)


def test_every_uid_of_a_container_range_is_one_memory_user(sm):
    in_container(sm, 0, "echo '- [Repo](repo.md)' > MEMORY.md; echo 'uses tabs' > repo.md")
    # another uid of the same container (another agent process), and the range's last uid
    for inner in (1000, 65535):
        res = in_container(sm, inner, "cat MEMORY.md repo.md; cat .memfs/whoami")
        assert res.stdout.startswith("- [Repo](repo.md)\nuses tabs\n"), res.stdout
        assert "agent" in res.stdout
    # on the host, memfs shows the files owned by the range's first uid
    st = os.stat(sm.backing("agent") / "repo.md")
    assert st.st_size == len("uses tabs\n")
    assert in_container(sm, 1000, "stat -c %u repo.md").stdout.strip() == "0"  # host 100000 = its root


def test_a_uid_outside_the_range_and_the_host_users_stay_apart(sm):
    in_container(sm, 0, "echo agent-secret > mine.md")
    for uid in (99999, ALICE):  # just below the range; a host user
        res = sm.sh(uid, "ls; cat mine.md 2>&1 || true")
        assert "agent-secret" not in res.stdout
    # alice in an unprivileged namespace of her own (unshare -r, bubblewrap): still alice
    res = sm.run(ALICE, ["unshare", "--map-root-user", "sh", "-c", "echo from-ns > ns.md; cat .memfs/whoami"])
    assert "alice" in res.stdout
    assert (sm.backing("alice") / "ns.md").read_text() == "from-ns\n"


def test_several_uids_listed_for_one_user_share_its_memory(sm):
    sm.sh(BOB, "echo 'bob writes' > note.md")
    assert sm.sh(1005, "cat note.md; cat .memfs/whoami").stdout.startswith("bob writes\n")
    assert "bob" in sm.sh(1005, "cat .memfs/whoami").stdout
    assert (sm.backing("bob") / "note.md").exists() and not (sm.data / "private" / "uid-1005").exists()
