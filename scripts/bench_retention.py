"""A scope held at its history cap: do its writes go on at normal speed, and how often is
it pruned? Two memfs mounts side by side, the same config but for `history.max_bytes`
(1 MiB: every batch pushes the scope past it; 1 GiB: never), and one writer as uid 1001
rewriting 8 files of 32 KiB in a loop, in slices alternating between the mounts, for
`--seconds` on each. Prints rewrites per second on each, their ratio, and the prunes the
capped daemon logged. Run by `scripts/bench --retention` (as root).

    sudo .venv/bin/python scripts/bench_retention.py [--seconds 60] [--slice 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UID = 1001
CONFIG = "users:\n  alice: {uid: 1001}\nhistory: {max_bytes: %s}\n"

WORKER = r"""
import json, os, sys, time
d, seconds, off = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    with open(f"{d}/f{n % 8}.md", "wb") as f:
        f.write(os.urandom(32 << 10))  # incompressible: every version costs its size
    n += 1
print(json.dumps({"n": n, "s": time.perf_counter() - t0}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="writing time on each mount")
    ap.add_argument("--slice", type=float, default=5.0, help="seconds per turn")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="memfs-retention-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run"))
    env.setdefault("PYTHONPATH", str(REPO))
    memfs = [sys.executable, "-m", "memfs"]
    mounts = {}
    try:
        for name, cap in (("capped", "1M"), ("free", "1G")):
            mnt, cfg = base / name, base / f"{name}.yaml"
            mnt.mkdir()
            os.chmod(mnt, 0o755)
            cfg.write_text(CONFIG % cap)
            data = base / f"data-{name}"
            subprocess.run(
                [*memfs, "mount", str(mnt), "--data", str(data), "--config", str(cfg)],
                env=env,
                cwd=base,
                check=True,
                capture_output=True,
            )
            mounts[name] = (mnt, data)
        done = {k: [0, 0.0] for k in mounts}
        turns = max(1, round(a.seconds / a.slice))
        for t in range(turns):
            for name in mounts if t % 2 == 0 else reversed(list(mounts)):
                out = subprocess.run(
                    ["/usr/bin/python3", "-c", WORKER, str(mounts[name][0] / "w"), str(a.slice), str(t)],
                    user=UID,
                    group=UID,
                    extra_groups=[],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=a.slice + 120,
                )
                r = json.loads(out.stdout)
                done[name][0] += r["n"]
                done[name][1] += r["s"]
        rate = {k: n / s for k, (n, s) in done.items()}
        log = (mounts["capped"][1] / "state" / "memfs.log").read_text(errors="replace")
        prunes = log.count(": pruned ")
        print(f"\nrewrites of 32 KiB as uid {UID}, {turns} turns of {a.slice:.0f} s on each mount\n")
        for k in mounts:
            print(f"{k:<8} {done[k][0]:7d} rewrites in {done[k][1]:6.1f} s  {rate[k]:8.1f}/s")
        print(f"\ncapped/free: {rate['capped'] / rate['free']:.2f}")
        print(f"prunes of the capped scope: {prunes} in {done['capped'][1]:.0f} s of writing")
        return 0
    finally:
        for mnt, _ in mounts.values():
            subprocess.run([*memfs, "umount", str(mnt)], env=env, cwd=base, capture_output=True)
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
