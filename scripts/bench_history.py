"""History at scale: a team scope of N entries with V versions each (default 100k entries,
1M versions), then through the mount, as a member: `ls .memfs/history/<path>/`, `cat` of
an old version, `cat .memfs/log`, and mount time with history on vs off.

    sudo .venv/bin/python scripts/bench_history.py [--entries N] [--versions V] [--samples S]

The history is written with `git fast-import` (as another host's commits would arrive),
recorded in the catalog with the daemon's own code, and the stat cache filled as a mount's
reconcile would, so the mount measured is a steady-state one.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO))

from memfs import layout  # noqa: E402
from memfs.config import HistoryConf, Limits  # noqa: E402
from memfs.history.catalog import Catalog  # noqa: E402
from memfs.history.committer import Committer  # noqa: E402
from memfs.history.gitrepo import Repo  # noqa: E402
from memfs.policy import Kind, Scope  # noqa: E402
from memfs.store import Store  # noqa: E402

UID = 1001
WORKER = r"""
import json, os, random, sys, time
mnt, paths = sys.argv[1], json.loads(sys.argv[2])
def t(fn):
    t0 = time.perf_counter(); fn(); return (time.perf_counter() - t0) * 1000
ls, cat, log = [], [], []
for p in paths:
    where = os.path.join(mnt, ".memfs/history/team", p)
    names = []
    ls.append(t(lambda: names.extend(sorted(os.listdir(where)))))
    cat.append(t(lambda: open(os.path.join(where, names[0]), "rb").read()))
for _ in range(20):
    log.append(t(lambda: open(os.path.join(mnt, ".memfs/log"), "rb").read()))
print(json.dumps({"ls": ls, "cat": cat, "log": log}))
"""


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def path_of(i: int) -> str:
    return f"d{i // 100:04d}/entry-{i:06d}.md"


def body(i: int, v: int) -> bytes:
    return f"---\nname: entry {i}\ndescription: version {v}\ntype: project\n---\nbody {i} v{v}\n".encode()


def build(data: Path, entries: int, versions: int) -> None:
    scope = Scope(Kind.TEAM, "eng")
    gitdir = layout.history_dir(data, scope)
    Repo(gitdir)  # init as memfs does
    t0 = time.time()
    start = int(time.time()) - versions * 86400
    proc = subprocess.Popen(
        ["git", "--git-dir", str(gitdir), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    per_commit = 1000
    n = 0
    for v in range(versions):
        for c in range(0, entries, per_commit):
            n += 1
            when = start + v * 86400 + c // per_commit
            user = ("alice", "bob")[n % 2]
            msg = b"memfs: bench\n"
            out = [
                b"commit refs/heads/main\n",
                b"author %s <%s@h> %d +0000\n" % (user.encode(), user.encode(), when),
            ]
            out.append(b"committer memfs <memfs@h> %d +0000\n" % when)
            out.append(b"data %d\n%s" % (len(msg), msg))
            for i in range(c, min(c + per_commit, entries)):
                b = body(i, v)
                out.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path_of(i).encode(), len(b), b))
            proc.stdin.write(b"".join(out))
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    print(
        f"history written: {n} commits, {entries * versions} versions in {time.time() - t0:.0f} s",
        file=sys.stderr,
    )
    folder = layout.scope_dir(data, scope)
    for i in range(entries):
        f = folder / path_of(i)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body(i, versions - 1))
    t0 = time.time()
    with Catalog.of(gitdir) as cat:
        cat.catch_up(Repo(gitdir))
    print(f"catalog built in {time.time() - t0:.0f} s", file=sys.stderr)
    t0 = time.time()
    store = Store(data, 10 << 20)
    # the stat cache a mount keeps
    Committer(data, store, HistoryConf(), Limits(), "bench").reconcile(scope, set())
    store.close()
    print(f"stat cache filled in {time.time() - t0:.0f} s", file=sys.stderr)


def mount(mnt: Path, data: Path, cfg: Path, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "memfs", "mount", str(mnt), "--data", str(data), "--config", str(cfg)],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - t0


def umount(mnt: Path, env) -> None:
    subprocess.run(
        [sys.executable, "-m", "memfs", "umount", str(mnt)], check=True, env=env, capture_output=True
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--mounts", type=int, default=3)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="memfs-hbench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    data, mnt = base / "data", base / "mnt"
    mnt.mkdir()
    os.chmod(mnt, 0o755)
    Store.init_layout(data)
    team = "users:\n  alice: {uid: 1001}\n  bob: {uid: 1002}\nteams:\n  eng: {members: [alice, bob]}\n"
    on, off = base / "on.yaml", base / "off.yaml"
    on.write_text(team)
    off.write_text(team + "history: {enabled: false}\n")
    env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run"), PYTHONPATH=str(REPO))
    try:
        build(data, a.entries, a.versions)
        times = {"on": [], "off": []}
        for _ in range(a.mounts):
            for name, cfg in (("off", off), ("on", on)):
                times[name].append(mount(mnt, data, cfg, env))
                umount(mnt, env)
        mount(mnt, data, on, env)
        t0 = time.perf_counter()
        subprocess.run(
            [
                "setpriv",
                f"--reuid={UID}",
                f"--regid={UID}",
                "--clear-groups",
                "ls",
                str(mnt / ".memfs/history/team"),
            ],
            check=True,
            capture_output=True,
        )
        first = (time.perf_counter() - t0) * 1000
        step = max(1, a.entries // a.samples)
        paths = [path_of(i) for i in range(0, a.entries, step)][: a.samples]
        out = subprocess.run(
            [
                "setpriv",
                f"--reuid={UID}",
                f"--regid={UID}",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                WORKER,
                str(mnt),
                json.dumps(paths),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        r = json.loads(out.stdout)
        umount(mnt, env)
        du = sum(f.stat().st_blocks * 512 for f in (data / "history").rglob("*") if f.is_file())
        size = f"history on disk {du / 2**20:.0f} MiB"
        print(f"\nteam scope: {a.entries} entries, {a.entries * a.versions} versions; {size}\n")
        print(f"{'op':<34} {'p50 ms':>8} {'p99 ms':>8}")
        for key, label in (
            ("ls", "ls .memfs/history/team/<path>/"),
            ("cat", "cat <oldest version>"),
            ("log", "cat .memfs/log (1000 lines)"),
        ):
            print(f"{label:<34} {statistics.median(r[key]):8.2f} {pct(r[key], 0.99):8.2f}")
        print(f"{'first history access after mount':<34} {first:8.0f}")
        mon, moff = statistics.median(times["on"]), statistics.median(times["off"])
        print(f"\nmount time (median of {a.mounts}): history on {mon * 1000:.0f} ms", end="")
        print(f", off {moff * 1000:.0f} ms, on/off {mon / moff:.2f}")
        return 0
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
