"""Per-request cost of two memfs checkouts against the bare floor, through real mounts.

An A/B for work on the request path: memfs from checkout A, memfs from checkout B (each
with the default config: history on, the embedder on) and scripts/passthrough.py are
mounted side by side; each round runs the same probe loops as uid 1001 on all three, in
an order that alternates between rounds, and prints the median over the rounds of each
probe's microseconds per request above the floor. The probes are scripts/bench's (one
kind of request per loop: lookup, negative lookup, getattr, open), plus unlink of an
empty file and of a 1 KB file just written (history moves uncommitted content into its
spool) and, once per round, of 100 files committed seconds before. Only the probes:
`scripts/bench --baseline` runs the whole workload. Usage (as root):
scripts/bench --probes CHECKOUT_A CHECKOUT_B [--rounds N].
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UID = 1001
FILES = 100

# Runs as UID in a fresh folder of one mount; prints {probe: best us per request}.
WORKER = r"""
import ctypes, json, os, sys, time
os.makedirs(sys.argv[1]); os.chdir(sys.argv[1])
K, REPS = int(sys.argv[2]), 5
probe = ["p%03d" % i for i in range(K)]
for n in probe:
    with open(n, "wb") as f: f.write(b"x" * 1500)
libc = ctypes.CDLL(None, use_errno=True); buf = ctypes.create_string_buffer(256)
def lookup():  # O_EXCL on a cached name: the kernel revalidates it (LOOKUP), then EEXIST
    for n in probe:
        try: os.close(os.open(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError: pass
def lookup_neg():
    for i in range(K):
        try: os.stat("n%03d" % i)
        except FileNotFoundError: pass
def getattr_():  # statx(AT_STATX_FORCE_SYNC): one GETATTR whatever the kernel caches
    for n in probe: libc.statx(-100, n.encode(), 0x2000, 0x7FF, buf)
fds = []
def open_all(): fds.extend(os.open(n, os.O_RDONLY) for n in probe)
def close_all():
    for fd in fds: os.close(fd)
    fds.clear(); time.sleep(0.05)  # the kernel sends RELEASE after close returns
made = ["c%03d" % i for i in range(K)]
def make(size):
    for n in made:
        fd = os.open(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if size: os.write(fd, b"y" * size)
        os.close(fd)
def unlink():
    for n in made: os.unlink(n)
out = {}
def timed(key, fn):
    t = time.perf_counter(); fn(); us = (time.perf_counter() - t) / K * 1e6
    out[key] = min(out.get(key, 1e9), us)
old = ["o%03d" % i for i in range(K)]
for n in old:
    with open(n, "wb") as f: f.write(b"z" * 1000)
time.sleep(4.5)  # history's batch (2 s) has committed them
t = time.perf_counter()
for n in old: os.unlink(n)
out["unlink, committed"] = (time.perf_counter() - t) / K * 1e6  # once: they are gone
for _ in range(REPS):
    timed("lookup", lookup); timed("negative lookup", lookup_neg); timed("getattr", getattr_)
    timed("open", open_all); close_all()
    make(0); timed("unlink, empty", unlink)
    make(1000); timed("unlink, 1 KB", unlink)
print(json.dumps(out))
"""


def mount_memfs(checkout: Path, mnt: Path, base: Path, label: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout), MEMFS_RUN_DIR=str(base / f"run-{label}"))
    cfg = base / f"config-{label}.yaml"
    cfg.write_text("")
    cmd = [sys.executable, "-m", "memfs", "mount", str(mnt), "--data", str(base / f"data-{label}")]
    subprocess.run([*cmd, "--config", str(cfg)], check=True, capture_output=True, env=env, cwd=base)
    return env


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
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        for label, checkout in (("A", args.a), ("B", args.b)):
            cleanup.callback(subprocess.run, ["fusermount3", "-uz", str(mnts[label])], capture_output=True)
            env = mount_memfs(checkout.resolve(), mnts[label], base, label)
            umount = [sys.executable, "-m", "memfs", "umount", str(mnts[label])]
            cleanup.callback(subprocess.run, umount, capture_output=True, env=env, cwd=base)
        bare = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "passthrough.py"), str(src), str(mnts["bare"])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        cleanup.callback(bare.wait, 30)
        cleanup.callback(subprocess.run, ["fusermount3", "-u", str(mnts["bare"])], capture_output=True)
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnts["bare"]):
            if bare.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the bare passthrough did not mount")
            time.sleep(0.01)
        got: dict[str, list[dict]] = {label: [] for label in mnts}
        for r in range(args.rounds):
            order = list(mnts) if r % 2 == 0 else list(mnts)[::-1]
            for label in order:
                run = ["setpriv", "--reuid", str(UID), "--regid", str(UID), "--clear-groups"]
                run += [sys.executable, "-c", WORKER, str(mnts[label] / f"r{r}"), str(FILES)]
                out = subprocess.run(run, check=True, capture_output=True, text=True, timeout=300)
                got[label].append(json.loads(out.stdout))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"us per request above the bare floor, median of {args.rounds} alternated rounds")
    print(f"A: {args.a}\nB: {args.b}\n")
    print(f"{'probe':18} {'A':>8} {'B':>8} {'bare':>8}")
    for probe in got["bare"][0]:
        med = {label: statistics.median(x[probe] for x in runs) for label, runs in got.items()}
        print(f"{probe:18} {med['A'] - med['bare']:8.1f} {med['B'] - med['bare']:8.1f} {med['bare']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
