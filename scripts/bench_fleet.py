"""Sync on a fleet (issue 25): N memfs hosts (default 5) sync a team scope and two private
scopes through a real sshd on 127.0.0.1; alice, bob and carol write, rename and delete on
every host (seeded); one host is cut off from the remote for a third of the run and one is
killed with SIGKILL and restarted (tests/fleet.py, the scenario t5_fleet runs bounded).
Prints the time from the last write until every host holds the same files, the CPU each
host's daemon (with its git and ssh) spent, sshd's, and whether any reported version was
lost.

    sudo .venv/bin/python scripts/bench_sync.py --fleet [--hosts N] [--ops N] [--interval S] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from conftest import Mount  # noqa: E402
from fleet import Fleet, scenario  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=5)
    ap.add_argument("--ops", type=int, default=150)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--idle-interval", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=25)
    ap.add_argument("--keep", action="store_true", help="leave the data dirs (unmounted) for a look")
    a = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="memfs-fleet-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    mounts: list[Mount] = []

    def make(config: str, sub: str, env: dict) -> Mount:
        b = base / sub
        b.mkdir()
        os.chmod(b, 0o755)
        m = Mount(b, config, dict(env, PYTHONPATH=str(REPO)))
        mounts.append(m)
        m.start()
        return m

    fleet = Fleet(base, make, a.hosts, a.interval, a.idle_interval, a.seed)
    try:
        fleet.start()
        sshd0 = fleet.sshd.cpu()
        r = scenario(fleet, a.ops)
        sshd = fleet.sshd.cpu() - sshd0
        print(
            f"{a.hosts} hosts, interval {a.interval:g} s, idle_interval {a.idle_interval:g} s, seed {a.seed}"
        )
        print(f"{r['ops']} ops by 3 users ({r['versions']} versions closed) in {r['run_s']:.0f} s")
        print(f"converged {r['converged_s']:.1f} s after the last write")
        cpu = r["cpu_s"]
        print(
            f"CPU per host over the run: median {statistics.median(cpu):.1f} s, max {max(cpu):.1f} s "
            f"({', '.join(f'{c:.1f}' for c in cpu)}); sshd {sshd:.1f} s"
        )
        print(f"versions lost: {len(r['lost'])}")
        for line in r["lost"][:10]:
            print("  ", line)
        if r["lost"]:
            print("what the callers did:", *fleet.journal, sep="\n  ")
        return 1 if r["lost"] else 0
    finally:
        for m in mounts:
            try:
                m.stop()
            except AssertionError:
                m.cleanup()
        fleet.stop()
        if a.keep:
            print(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
