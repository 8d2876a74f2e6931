"""What the secret guard costs a sync round that brings files from a remote, guard on
(default: every team scope is guarded) and off, interleaved, through a real mount.

Usage: sudo .venv/bin/python scripts/bench_arrivals.py [--rounds N] [--files N]

Per round and setting: a fresh bare remote and mount; one commit of N files (1-2 KB of
prose each) and one of a 10 MiB file pushed with pygit2; `memfs sync` as bob timed for
each (the daemon fetches, scans every arriving blob when guarded, writes, commits, pushes).
Prints the median seconds per case.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import BOB, Mount, memfs_cmd  # noqa: E402

CONFIG = """
users:
  bob: {{uid: 1002}}
teams:
  eng: {{members: [bob], remote: {remote}}}
sync: {{interval: 3600}}
secrets: {{guard: {guard}}}
"""
WORDS = "the team keeps notes on tabs indentation deploys reviews tickets ports and people".split()


def push(remote: Path, work: Path, files: dict[str, bytes]) -> None:
    r = pygit2.init_repository(str(work)) if not work.exists() else pygit2.Repository(str(work))
    tb = r.TreeBuilder()
    sub = r.TreeBuilder()
    for name, data in files.items():
        sub.insert(name, r.create_blob(data), pygit2.enums.FileMode.BLOB)
    tb.insert("arrived", sub.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("eve", "eve@elsewhere", int(time.time()), 0)
    parent = []
    res = subprocess.run(["git", "-C", str(work), "fetch", "-q", str(remote), "main"], capture_output=True)
    if res.returncode == 0:
        head = r.references.get("FETCH_HEAD") or r.revparse_single("FETCH_HEAD")
        parent = [head.target if hasattr(head, "target") else head.id]
    oid = r.create_commit(None, sig, sig, "arrivals", tb.write(), parent)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(remote), f"{oid}:refs/heads/main"], check=True)


def one(guard: str, n: int, rng: random.Random) -> tuple[float, float]:
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-arrivals-", dir="/tmp"))
    base.chmod(0o755)
    remote = base / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)], check=True)
    m = Mount(base, CONFIG.format(remote=remote, guard="[team, synced]" if guard == "on" else "off"))
    m.start()
    try:
        m.sh(BOB, "echo start > team/start.md")
        m.run(BOB, memfs_cmd("sync", "--mount", str(m.mnt)))
        times = []
        for files in (
            {
                f"f{i:04d}.md": " ".join(rng.choices(WORDS, k=rng.randint(180, 360))).encode()
                for i in range(n)
            },
            {"big.md": (" ".join(rng.choices(WORDS, k=40)) + "\n").encode() * (10 * 2**20 // 250)},
        ):
            push(remote, base / "pusher", files)
            t = time.perf_counter()
            m.run(BOB, memfs_cmd("sync", "--mount", str(m.mnt)))
            times.append(time.perf_counter() - t)
        return times[0], times[1]
    finally:
        m.stop()
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=1000)
    args = ap.parse_args()
    rng = random.Random(1)
    got: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for guard in ("on", "off"):
            got[guard].append(one(guard, args.files, rng))
    for guard, runs in got.items():
        files = statistics.median(r[0] for r in runs)
        big = statistics.median(r[1] for r in runs)
        spread = ", ".join(f"{r[0]:.2f}/{r[1]:.2f}" for r in runs)
        print(f"guard {guard}: {args.files} files {files:.2f} s, 10 MiB file {big:.2f} s  (runs: {spread})")


if __name__ == "__main__":
    main()
