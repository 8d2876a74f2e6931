"""Memory soak: does the daemon's RSS return near its start after tens of thousands of
mixed operations? Run by `scripts/bench --soak` (as root; the work runs as uid 1001).

Phases (each as uid 1001 through the mount): folder renames back and forth (empty, then
holding .md entries), creates and unlinks of many files, .md writes that get indexed, a
mix of all of them, and rewrites (fsx-like: O_TRUNC rewrites, in-place patches and
truncates of a few files, each a version for history to keep). After each phase the
daemon's RSS is read, and each of its worker processes' (history's, the embedder's, the
secret scans'); `--repeat` runs the phases again to show
growth over time. At the end history is read (its pending batch commits), the kernel's
caches are dropped (so it forgets every inode) and RSS is read again; then, with --idle
(the default), once more after the daemon's idle release (~95 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UID = 1001
CONFIG = "users:\n  alice: {uid: 1001}\n"

WORK = r"""
import os, random, sys
phase, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
os.makedirs("soak", exist_ok=True)
os.chdir("soak")
if phase == "rename_empty":
    os.makedirs("a", exist_ok=True)
    for i in range(n):
        os.rename("a", "b"); os.rename("b", "a")
elif phase == "rename_full":
    os.makedirs("f/sub", exist_ok=True)
    for i in range(20):
        open(f"f/sub/n{i}.md", "w").write(f"---\nname: n{i}\ndescription: d\ntype: user\n---\nsoak {i}\n")
    for i in range(n):
        os.rename("f", "g"); os.rename("g", "f")
elif phase == "create_unlink":
    os.makedirs("c", exist_ok=True)
    for i in range(n):
        p = f"c/x{i % 500}.txt"
        open(p, "w").write("x" * 100)
        if i % 2:
            os.unlink(p)
elif phase == "md_writes":
    os.makedirs("m", exist_ok=True)
    for i in range(n):
        open(f"m/e{i % 300}.md", "w").write(f"---\nname: e{i}\ndescription: d\ntype: user\n---\nbody {i}\n")
elif phase == "mix":
    os.makedirs("x/d0", exist_ok=True)
    for i in range(n):
        k = rnd.randrange(5)
        d = f"x/d{rnd.randrange(20)}"
        os.makedirs(d, exist_ok=True)
        if k == 0:
            open(f"{d}/f{rnd.randrange(50)}.md", "w").write(f"mix {i}")
        elif k == 1:
            for name in os.listdir(d)[:3]:
                try: os.unlink(f"{d}/{name}")
                except (FileNotFoundError, IsADirectoryError): pass
        elif k == 2:
            try: os.rename(d, f"x/d{rnd.randrange(20)}")
            except OSError: pass
        elif k == 3:
            os.listdir(d)
        else:
            try: os.stat(f"{d}/f{rnd.randrange(50)}.md")
            except FileNotFoundError: pass
elif phase == "rewrites":
    os.makedirs("w", exist_ok=True)
    for i in range(n):
        p = f"w/f{rnd.randrange(8)}.md"
        k = rnd.randrange(3)
        if k == 0 or not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(os.urandom(rnd.randrange(8, 64) << 10))
        elif k == 1:
            fd = os.open(p, os.O_WRONLY)
            os.pwrite(fd, os.urandom(rnd.randrange(100, 4000)), rnd.randrange(0, 60000))
            os.close(fd)
        else:
            os.truncate(p, rnd.randrange(0, 64 << 10))
print("done")
"""


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_kib(pid: int) -> list[tuple[str, int]]:
    """(name, RSS) of each process under the daemon: the worker seed and the workers it
    forks (memfs-history, memfs-embed, memfs-secrets, ...), named by their comm."""
    parent: dict[int, int] = {}
    for p in os.listdir("/proc"):
        try:
            if p.isdigit():
                parent[int(p)] = int(open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
    below, todo = [], [pid]
    while todo:
        up = todo.pop()
        kids = [p for p, pp in parent.items() if pp == up]
        below += kids
        todo += kids
    sizes = []
    for kid in below:
        try:
            sizes.append((open(f"/proc/{kid}/comm").read().strip(), rss_kib(kid)))
        except OSError:
            continue
    return sorted(sizes, key=lambda s: -s[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=4000, help="operations per phase (x2 for renames)")
    ap.add_argument("--index", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--history", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--repeat", type=int, default=1, help="run the phases this many times")
    ap.add_argument(
        "--idle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end, wait until idle workers and the query model are let go, then read RSS",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (scripts/bench --soak)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="memfs-soak-"))
    os.chmod(base, 0o755)
    mnt, data = base / "mnt", base / "data"
    mnt.mkdir()
    os.chmod(mnt, 0o755)
    (base / "config.yaml").write_text(
        CONFIG
        + ("" if args.index else "index: {enabled: false}\n")
        + ("" if args.history else "history: {enabled: false}\n")
    )
    env = dict(
        os.environ, MEMFS_RUN_DIR=str(base / "run"), PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO))
    )
    memfs = [sys.executable, "-m", "memfs"]
    script = base / "work.py"
    script.write_text(textwrap.dedent(WORK))
    os.chmod(script, 0o644)
    try:
        subprocess.run(
            [*memfs, "mount", str(mnt), "--data", str(data), "--config", str(base / "config.yaml")],
            env=env,
            cwd=base,
            check=True,
            timeout=120,
        )
        pid = int(next((base / "run").glob("*.pid")).read_text().split()[0])
        rows = [("start", rss_kib(pid), worker_kib(pid), 0.0)]
        phases = ["rename_empty", "rename_full", "create_unlink", "md_writes", "mix", "rewrites"]
        total = 0
        for r in range(args.repeat):
            for phase in phases:
                t0 = time.perf_counter()
                subprocess.run(
                    ["/usr/bin/python3", str(script), phase, str(args.ops)],
                    cwd=mnt,
                    user=UID,
                    group=UID,
                    extra_groups=[],
                    check=True,
                    timeout=3600,
                    stdout=subprocess.DEVNULL,
                )
                total += args.ops * (2 if phase.startswith("rename") else 1)
                name = phase if args.repeat == 1 else f"{r + 1}:{phase}"
                rows.append((name, rss_kib(pid), worker_kib(pid), time.perf_counter() - t0))
        for what in ("status", "log"):  # reading history commits what is pending
            subprocess.run(["cat", str(mnt / ".memfs" / what)], user=UID, group=UID, capture_output=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        time.sleep(2)  # the kernel's forgets arrive asynchronously
        rows.append(("drop_caches", rss_kib(pid), worker_kib(pid), 0.0))
        if args.idle:
            # idle workers end and the query model goes after IDLE_RELEASE, checked every
            # TRIM_EVERY seconds (then malloc_trim): memory back without a remount
            from memfs.daemon import IDLE_RELEASE, TRIM_EVERY

            wait = IDLE_RELEASE + TRIM_EVERY + 5
            time.sleep(wait)
            rows.append(("idle", rss_kib(pid), worker_kib(pid), wait))
        print(
            f"memfs soak: {total} operations as uid {UID}, index {'on' if args.index else 'off'}, "
            f"history {'on' if args.history else 'off'}"
        )
        print(f"{'after':<18} {'RSS MiB':>8} {'seconds':>8}  processes under it, MiB (largest first)")
        for name, kib, wkib, secs in rows:
            shown = ", ".join(f"{n} {k / 1024:.0f}" for n, k in wkib) or "-"
            print(f"{name:<18} {kib / 1024:8.1f} {secs:8.1f}  {shown}")
        start, end = rows[0][1], rows[-1][1]
        peak = max(k for _, k, _, _ in rows)
        grew, peaked = (end - start) / 1024, (peak - start) / 1024
        print(f"RSS end/start: {end / start:.2f} ({grew:+.1f} MiB; at the peak {peaked:+.1f} MiB)")
    finally:
        subprocess.run([*memfs, "umount", str(mnt)], env=env, cwd=base, capture_output=True, timeout=120)
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
