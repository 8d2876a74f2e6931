"""Sync across hosts, over ssh: a real sshd on 127.0.0.1 (tests/sshd.py) in front of bare
repositories. Measures the time from a close() on host A to the content being readable on
host B (default settings and `sync: {interval: 1}`; B reading through its mount, and B's
background pace alone), and an idle daemon's CPU (with its git and ssh, and sshd's apart)
at 10, 100 and 1,000 synced scopes. `--fleet`: many hosts (scripts/bench_fleet.py).

    sudo .venv/bin/python scripts/bench_sync.py [--writes N] [--idle-seconds S] [--scopes N ...]
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
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from cpu import tree_cpu  # noqa: E402 (tests/: the tests measure and start sshd the same way)
from sshd import Sshd  # noqa: E402

from memfs import client  # noqa: E402
from memfs.sync.transport import control_path  # noqa: E402

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


def latency(base: Path, interval: float | None, writes: int) -> dict[str, list[float]]:
    """close() on host A -> readable on host B, the remote a bare repository behind a real
    sshd. 'reader': B's reader polls through its mount (a caller reaching a scope makes it
    checked); 'background': B's backing file is polled as root, past the mount, so only
    B's own pace brings it (the scope active on B: a warm-up write was read there)."""
    sshd = Sshd(base / f"lat-{interval}").start()
    remote = sshd.repo(base / f"lat-{interval}" / "remote.git")
    cfg = base / f"sync-{interval}.yaml"
    text = USERS + f"teams:\n  eng: {{members: [alice, bob], remote: '{sshd.url(remote)}'}}\n"
    text += "sync:\n" + ssh_conf(sshd) + (f"  interval: {interval}\n" if interval is not None else "")
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
    backing = base / f"data-b-{interval}" / "teams" / "eng"
    out: dict[str, list[float]] = {"reader": [], "background": []}
    try:
        for kind in ("reader", "background"):
            for i in range(writes + 1):
                body = f"{kind} {i} at {time.time()}\n"
                t0 = time.perf_counter()
                as_uid(ALICE, functools.partial(Path(a, "team", f"{kind}{i}.md").write_text, body))
                if kind == "reader" or i == 0:  # i == 0: a warm-up read on B makes the scope active there
                    as_uid(BOB, functools.partial(wait_for_text, Path(b, "team", f"{kind}{i}.md"), body))
                else:
                    wait_for_text(backing / f"{kind}{i}.md", body)
                if i:
                    out[kind].append(time.perf_counter() - t0)
    finally:
        for mnt, env in mounts:
            subprocess.run([sys.executable, "-m", "memfs", "umount", str(mnt)], env=env, capture_output=True)
        sshd.stop()
    return out


def latency_table(base: Path, writes: int) -> None:
    print("close() on host A -> readable on host B (team scope, a bare repository behind sshd)\n")
    print(f"{'settings':<24} {'B':<11} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for label, interval in (("default (interval 5 s)", None), ("sync: {interval: 1}", 1)):
        for kind, xs in latency(base, interval, writes).items():
            print(f"{label:<24} {kind:<11} {statistics.median(xs):7.2f} {pct(xs, 0.99):7.2f} {max(xs):7.2f}")


def recovery(base: Path, outage: float, tries: int) -> list[float]:
    """The remote (sshd) away for `outage` seconds while a write waits on host A, default
    settings: seconds from sshd listening again to A's commit being on the remote."""
    sshd = Sshd(base / "rec").start()
    remote = sshd.repo(base / "rec" / "remote.git")
    cfg = base / "rec.yaml"
    cfg.write_text(
        USERS + f"teams:\n  eng: {{members: [alice], remote: '{sshd.url(remote)}'}}\nsync:\n" + ssh_conf(sshd)
    )
    mnt = base / "rec-mnt"
    mnt.mkdir()
    os.chmod(mnt, 0o755)
    env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run-rec"), PYTHONPATH=str(REPO))
    memfs("mount", str(mnt), "--data", str(base / "data-rec"), "--config", str(cfg), env=env)

    def head() -> str:
        git = ["git", "--git-dir", str(remote), "rev-parse", "-q", "--verify", "main"]
        return subprocess.run(git, capture_output=True, text=True).stdout.strip()

    out = []
    try:
        for i in range(tries):
            sshd.stop()
            as_uid(ALICE, functools.partial(Path(mnt, "team", f"r{i}.md").write_text, f"{i}\n"))
            time.sleep(outage)  # the outage itself: what is measured starts when it ends
            before = head()
            sshd.start()
            t0 = time.monotonic()
            while head() == before:
                time.sleep(0.05)
            out.append(time.monotonic() - t0)
    finally:
        subprocess.run([sys.executable, "-m", "memfs", "umount", str(mnt)], env=env, capture_output=True)
        sshd.stop()
    return out


def ssh_conf(sshd) -> str:
    return f"  ssh: {{key: {sshd.key}, known_hosts: {sshd.known_hosts}}}\n"


def synced_all(mnt: Path) -> bool:
    """Every synced scope has had a successful round (the startup rounds are over)."""
    try:
        scopes = client.admin(mnt)["scopes"]
    except (OSError, client.AnswerError):
        return False
    return all(s["sync"]["last_ok"] for s in scopes if s.get("sync"))


def idle_cpu(base: Path, scopes: int, seconds: float, settle: float, extra: str = "") -> dict:
    """One daemon with `scopes` team scopes, each with its own bare repository behind a
    real sshd on 127.0.0.1. After the startup rounds and `settle` seconds (by then idle
    scopes are in their idle pace), CPU over `seconds` of the daemon with its git and ssh
    children and ssh's shared connections, and of sshd with its logins and server gits."""
    sshd = Sshd(base / f"idle-{scopes}").start()
    try:
        teams = []
        for i in range(scopes):
            remote = sshd.repo(base / f"idle-{scopes}" / f"t{i}.git")
            teams.append(f"  t{i}: {{members: [], remote: '{sshd.url(remote)}'}}\n")
        cfg = base / f"idle-{scopes}.yaml"
        cfg.write_text(USERS + "teams:\n" + "".join(teams) + "sync:\n" + ssh_conf(sshd) + extra)
        mnt, run, data = (
            base / f"idle-mnt-{scopes}",
            base / f"run-idle-{scopes}",
            base / f"data-idle-{scopes}",
        )
        mnt.mkdir()
        os.chmod(mnt, 0o755)
        env = dict(os.environ, MEMFS_RUN_DIR=str(run), PYTHONPATH=str(REPO))
        t0 = time.monotonic()
        memfs("mount", str(mnt), "--data", str(data), "--config", str(cfg), env=env)
        try:
            pid = int(next(run.glob("*.pid")).read_text().split()[0])
            while not synced_all(mnt):
                time.sleep(1)
            startup = time.monotonic() - t0
            time.sleep(settle)
            masters = str(control_path(data / "state")).encode()  # ssh's shared connections

            def both():
                return tree_cpu(pid, also=masters), sshd.cpu()

            (d0, s0), w0 = both(), time.monotonic()
            time.sleep(seconds)
            (d1, s1), w1 = both(), time.monotonic()
            return {"startup": startup, "daemon": (d1 - d0) / (w1 - w0), "sshd": (s1 - s0) / (w1 - w0)}
        finally:
            subprocess.run([sys.executable, "-m", "memfs", "umount", str(mnt)], env=env, capture_output=True)
    finally:
        sshd.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--settle", type=float, default=330, help="after startup, before measuring idle")
    ap.add_argument("--scopes", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--recovery", type=int, default=5, help="outages to time (0: none)")
    ap.add_argument("--outage", type=float, default=30.0)
    ap.add_argument("--fleet", action="store_true", help="many hosts: scripts/bench_fleet.py's run")
    a, rest = ap.parse_known_args()
    if a.fleet:
        import bench_fleet

        return bench_fleet.main(rest)
    base = Path(tempfile.mkdtemp(prefix="memfs-sbench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    try:
        if not a.skip_latency:
            latency_table(base, a.writes)
        if a.recovery:
            xs = recovery(base, a.outage, a.recovery)
            print(
                f"\nremote back after {a.outage:.0f} s away (default interval): the waiting write on it in",
                end="",
            )
            print(f" p50 {statistics.median(xs):.1f} s, max {max(xs):.1f} s ({len(xs)} outages)")
        print(f"\nidle daemon at the default pace, over {a.idle_seconds:.0f} s after {a.settle:.0f} s idle:")
        print(f"{'scopes':>7} {'startup s':>10} {'daemon+git+ssh':>15} {'sshd':>7}")
        for n in a.scopes:
            r = idle_cpu(base, n, a.idle_seconds, a.settle)
            print(f"{n:>7} {r['startup']:>10.0f} {r['daemon'] * 100:>14.2f}% {r['sshd'] * 100:>6.2f}%")
        return 0
    finally:
        for m in base.glob("*"):
            if os.path.ismount(m):
                subprocess.run(["fusermount3", "-uz", str(m)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
