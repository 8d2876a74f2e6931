"""Per-request cost of two memfs checkouts against the bare floor, through real mounts.

An A/B for work on the request path: memfs from checkout A, memfs from checkout B (each
with the default config: history on, the embedder on) and scripts/passthrough.py are
mounted side by side; each round runs scripts/bench's probe loops (its worker, with
`only_probes`: one kind of request per loop) as the benchmark uid on all three, in an
order that alternates between rounds, plus, once per round, unlink of files committed
seconds before. Prints the median over the rounds of each probe's microseconds per
iteration above the floor. Only the probes: `scripts/bench --baseline` runs the whole
workload. Usage (as root): scripts/bench --probes CHECKOUT_A CHECKOUT_B [--rounds N].
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import bench  # scripts/ is on sys.path: this script's own folder

UID = 1001


def mount_memfs(checkout: Path, mnt: Path, base: Path, label: str, cleanup: contextlib.ExitStack) -> None:
    env = dict(os.environ, PYTHONPATH=str(checkout), MEMFS_RUN_DIR=str(base / f"run-{label}"))
    cfg = base / f"config-{label}.yaml"
    cfg.write_text("")
    memfs = [sys.executable, "-m", "memfs"]
    cleanup.callback(subprocess.run, ["fusermount3", "-uz", str(mnt)], capture_output=True)
    cleanup.callback(subprocess.run, [*memfs, "umount", str(mnt)], capture_output=True, env=env, cwd=base)
    argv = [*memfs, "mount", str(mnt), "--data", str(base / f"data-{label}"), "--config", str(cfg)]
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=base)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="checkout A (its memfs/ is measured)")
    ap.add_argument("b", type=Path, help="checkout B")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-probes-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    mnts = {label: base / label for label in ("A", "B", "bare")}
    src = base / "bare-src"
    for d in (*mnts.values(), src):
        d.mkdir()
        os.chmod(d, 0o755)
    os.chown(src, UID, UID)
    got: dict[str, list[dict[str, float]]] = {label: [] for label in mnts}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        for label, checkout in (("A", args.a), ("B", args.b)):
            mount_memfs(checkout.resolve(), mnts[label], base, label, cleanup)
        bare = bench.mount_bare(src, mnts["bare"], subprocess.DEVNULL)
        cleanup.callback(bench.umount_bare, mnts["bare"], bare)
        opt = {"only_probes": True, "probe_files": bench.PROBE_FILES, "probe_reps": 5}
        opt["unlink_committed"] = True
        for r in range(args.rounds):
            order = list(mnts) if r % 2 == 0 else list(mnts)[::-1]
            for label in order:
                d = mnts[label] / f"r{r}"
                subprocess.run(bench.as_uid(UID, "mkdir", str(d)), check=True)
                got[label].append(bench.run_worker(UID, bench.PROBE_FILES, d, opt))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"us per iteration above the bare floor, median of {args.rounds} alternated rounds")
    print(f"(scripts/bench's probes: p_openclose is an open and a release)\nA: {args.a}\nB: {args.b}\n")
    print(f"{'probe':20} {'A':>8} {'B':>8} {'bare':>8}")
    for probe in got["bare"][0]:
        med = {label: statistics.median(x[probe] for x in runs) for label, runs in got.items()}
        print(f"{probe:20} {med['A'] - med['bare']:8.1f} {med['B'] - med['bare']:8.1f} {med['bare']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
