"""Convergence on a fleet (issue 25): five memfs hosts sync a team scope and two private
scopes through a real sshd on 127.0.0.1; alice, bob and carol write, rename and delete on
every host (seeded); one host is cut off from the remote for a while and another is killed
(SIGKILL) and restarted. After the last write every host holds the same files, and every
version a close() reported is in a file, a conflict copy or the history of every host.
The scenario is tests/fleet.py; scripts/bench_fleet.py runs it larger and times it."""

from __future__ import annotations

import pytest
from fleet import Fleet, scenario


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_five_hosts_converge_and_lose_nothing(make_mount, base_dir):
    fleet = Fleet(base_dir, make_mount, n_hosts=5, interval=1, idle=5, seed=25).start()
    try:
        for h in fleet.hosts:
            # the cut host's rounds fail while it is cut, and a connection may end under
            # any host's round as the cut begins or the killed host dies
            h.mount.expect_log(r"syncing with ssh://\S+ failed \(\d+\): unreachable: ")
        r = scenario(fleet, ops=45)
        assert r["lost"] == [], "\n".join(r["lost"][:5] + fleet.journal)
        assert r["versions"] > 20
        print(f"converged {r['converged_s']:.1f} s after the last write; CPU s per host {r['cpu_s']}")
        for h in fleet.hosts:
            h.mount.stop()  # before sshd goes: the hosts would log its absence
    finally:
        fleet.stop()
