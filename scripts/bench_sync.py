"""Sync across hosts: two memfs daemons (two "hosts", MEMFS_HOST) share a team remote (a
bare repository). Measures the time from a close() on host A to the content being readable
on host B, with the default settings and with `sync: {interval: 1}`, and the CPU an idle
daemon spends per synced scope with 100 scopes configured.

    sudo .venv/bin/python scripts/bench_sync.py [--writes N] [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALICE, BOB = 1001, 1002
USERS = "users:\n  alice: {uid: 1001}\n  bob: {uid: 1002}\n"


def memfs(*args, env):
    subprocess.run([sys.executable, "-m", "memfs", *args], check=True, env=env, capture_output=True)


def as_uid(uid, fn):
    """Run fn in a child process as uid (the mount decides by the caller's uid)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("child failed")


def wait_for_text(path: Path, body: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if path.read_text() == body:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency(base: Path, interval: float | None, writes: int) -> list[float]:
    remote = base / f"remote-{interval}.git"
    subprocess.run(["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)], check=True)
    cfg = base / f"sync-{interval}.yaml"
    text = USERS + f"teams:\n  eng: {{members: [alice, bob], remote: {remote}}}\n"
    if interval is not None:
        text += f"sync: {{interval: {interval}}}\n"
    cfg.write_text(text)
    mounts = []
    for h in ("a", "b"):
        mnt = base / f"{h}-{interval}"
        mnt.mkdir()
        os.chmod(mnt, 0o755)
        env = dict(os.environ, MEMFS_RUN_DIR=str(base / f"run-{h}-{interval}"), MEMFS_HOST=f"host{h}")
        env["PYTHONPATH"] = str(REPO)
        memfs("mount", str(mnt), "--data", str(base / f"data-{h}-{interval}"), "--config", str(cfg), env=env)
        mounts.append((mnt, env))
    (a, _), (b, _) = mounts
    out = []
    try:
        for i in range(writes):
            body = f"write {i} at {time.time()}\n"
            t0 = time.perf_counter()
            as_uid(ALICE, functools.partial(Path(a, "team", f"w{i}.md").write_text, body))
            as_uid(BOB, functools.partial(wait_for_text, Path(b, "team", f"w{i}.md"), body))
            out.append(time.perf_counter() - t0)
    finally:
        for mnt, env in mounts:
            subprocess.run([sys.executable, "-m", "memfs", "umount", str(mnt)], env=env, capture_output=True)
    return out


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(base: Path, scopes: int, seconds: float, interval: float) -> float:
    teams = []
    for i in range(scopes):
        remote = base / f"idle-{interval}-{i}.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)], check=True
        )
        teams.append(f"  t{i}: {{members: [], remote: {remote}}}\n")
    cfg = base / f"idle-{interval}.yaml"
    cfg.write_text(USERS + "teams:\n" + "".join(teams) + f"sync: {{interval: {interval}}}\n")
    mnt = base / f"idle-mnt-{interval}"
    mnt.mkdir()
    run = base / f"run-idle-{interval}"
    env = dict(os.environ, MEMFS_RUN_DIR=str(run), PYTHONPATH=str(REPO))
    memfs("mount", str(mnt), "--data", str(base / f"data-idle-{interval}"), "--config", str(cfg), env=env)
    try:
        pid = int(next(run.glob("*.pid")).read_text().split()[0])
        time.sleep(max(interval * 2, 5))  # the first rounds (one fetch per scope) are not idle
        c0, t0 = cpu_of(pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_of(pid) - c0) / (time.monotonic() - t0)
    finally:
        subprocess.run([sys.executable, "-m", "memfs", "umount", str(mnt)], env=env, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=20)
    ap.add_argument("--scopes", type=int, default=100)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="memfs-sbench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    try:
        print("close() on host A -> readable on host B (team scope, a bare repository as the remote)\n")
        print(f"{'settings':<28} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
        for label, interval in (("default (interval 5 s)", None), ("sync: {interval: 1}", 1)):
            xs = latency(base, interval, a.writes)
            print(f"{label:<28} {statistics.median(xs):7.2f} {pct(xs, 0.99):7.2f} {max(xs):7.2f}")
        print(f"\nidle daemon, {a.scopes} synced scopes (local remotes), over {a.idle_seconds:.0f} s:")
        for interval in (5, 1):
            share = idle_cpu(base, a.scopes, a.idle_seconds, interval)
            per = share / a.scopes * 1e6
            print(f"  interval {interval} s: {share * 100:.1f}% of one core, {per:.0f} µs CPU", end="")
            print(" per scope per second")
        return 0
    finally:
        for m in base.glob("*"):
            if os.path.ismount(m):
                subprocess.run(["fusermount3", "-uz", str(m)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
