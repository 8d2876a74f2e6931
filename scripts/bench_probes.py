"""Per-request cost of two memfs checkouts against the bare floor, through real mounts,
measured as the daemons' own CPU time.

An A/B for work on the request path: memfs from checkout A, memfs from checkout B (each
with the default config: history on, the embedder on) and scripts/passthrough.py are
mounted side by side. For each kind of request, each round runs one loop of it per mount
as the benchmark uid, in an order that alternates between rounds, and reads the serving
daemon's CPU clock (every thread, clock_gettime of its process CPU clock) around the loop.

Why CPU time: a loop of one request keeps its daemon busy for the whole loop (the next
request is queued before the daemon is done with the last), so the daemon's CPU per
request is the request's cost, and a daemon's CPU clock does not count what the caller,
the kernel's scheduler or another guest of this machine took meanwhile: medians of it
hold still to ~1 us where wall-clock medians of the same loops moved by 5-20 us between
runs. Long loops (thousands of requests) rather than best-of-a-few short ones, for the
same reason. The wall time per iteration is printed beside it.

Prints, per request kind, the median over the rounds of (daemon CPU per request minus
the floor's in the same round) for A and B, and the floor's own. With --inside every daemon
also times each request inside its handler (handler_clock.py): per loop and handler, the
median request's time, memfs minus the floor, and the requests per iteration. What memfs's
code adds to one request, apart from the round trip around it that every pyfuse3 filesystem
pays, and steady where the CPU per loop moves by tens of us. --ram-disk puts the backing
files on an ext4 image in /dev/shm (this machine's disk spread a create by hundreds of us).
Usage (as root): scripts/bench --probes CHECKOUT_A CHECKOUT_B [--rounds N] [--only KIND ...]
[--ram-disk] [--inside].
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench  # scripts/ is on sys.path: this script's own folder
import handler_clock

UID = 1001
# The memfs mounts' config: the defaults, and the benchmark uid in a team, for create-team
# (a team file records its creator: owners.py). The floor's TEAM_DIR is a plain folder.
TEAM_CONFIG = "users: {bench: {uid: 1001}}\nteams: {bench: {members: [bench]}}\n"
TEAM_DIR = "team/w"


def loop_dir(kind: str) -> str:
    """Where a loop of `kind` runs, below a mount: create-team's in the team's folder."""
    return TEAM_DIR if kind == "create-team" else "w"


# The caller's loops: one kind of request each (as scripts/bench's probes), run after a
# set-up the daemon's clock does not see; prints its wall us per iteration.
LOOP = r"""
import ctypes, os, sys, time
os.chdir(sys.argv[1]); n = int(sys.argv[2]); kind = sys.argv[3]; tag = sys.argv[4]
names = [b"p%03d" % i for i in range(100)]
for nm in names:
    if not os.path.exists(nm):
        with open(nm, "wb") as f: f.write(b"x" * 1000)
libc = ctypes.CDLL(None, use_errno=True); buf = ctypes.create_string_buffer(256)
fresh = [b"%s_%d" % (tag.encode(), i) for i in range(n)]
if kind.startswith(("unlink", "mv")):  # files written just before: history has not committed them
    body = b"" if kind == "unlink" else b"y" * 1000
    for nm in fresh:
        fd = os.open(nm, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if body: os.write(fd, body)
        os.close(fd)
    if kind in ("unlink-old", "mv+unlink"):  # ... unless it is read: that commits what is pending
        try: os.listdir(b"../.memfs/history")
        except OSError: pass  # the floor has no history
fds = [os.open(names[i % 100], os.O_RDONLY) for i in range(n)] if kind == "read" else []
print("ready", flush=True); sys.stdin.readline()
t = time.perf_counter()
if kind == "getattr":  # statx(AT_STATX_FORCE_SYNC): one GETATTR however fresh the cache
    for i in range(n):
        if libc.statx(-100, names[i % 100], 0x2000, 0x7FF, buf) != 0: raise SystemExit("statx")
elif kind == "lookup-":  # a missing name: one LOOKUP
    for i in range(n):
        try: os.stat(b"n%05d" % i)
        except FileNotFoundError: pass
elif kind == "lookup":  # O_CREAT|O_EXCL on a cached name: one revalidating LOOKUP, EEXIST
    for i in range(n):
        try: os.close(os.open(names[i % 100], os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError: pass
        else: raise SystemExit("lookup: the name did not exist")
elif kind == "open+release":
    for i in range(n): os.close(os.open(names[i % 100], os.O_RDONLY))
elif kind == "read":  # the cached page dropped first: one READ each
    for fd in fds:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.pread(fd, 4096, 0)
elif kind in ("create", "create-team"):  # LOOKUP (missing), CREATE, RELEASE
    for nm in fresh: os.close(os.open(nm, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
elif kind.startswith("unlink"):
    for nm in fresh: os.unlink(nm)
elif kind == "mv+unlink":  # an editor's backup: the old file renamed, then removed
    for nm in fresh: os.rename(nm, nm + b"~"); os.unlink(nm + b"~")
print((time.perf_counter() - t) / max(n, 1) * 1e6, flush=True)
for fd in fds: os.close(fd)
"""

# kind -> requests per loop: enough for ~0.5 s of a busy daemon. read keeps its fds open
# (under the caller's 1024), create and unlink make that many files per round. unlink and
# unlink1k remove files history has not committed (rm moves them into its spool),
# unlink-old 1 KB files it has; mv+unlink counts a RENAME and an UNLINK per iteration;
# create-team creates in a team folder (loop_dir).
KINDS = {
    "getattr": 8000,
    "lookup": 6000,
    "lookup-": 6000,
    "open+release": 4000,
    "read": 800,
    "create": 2000,
    "create-team": 2000,
    "unlink": 2000,
    "unlink1k": 2000,
    "unlink-old": 2000,
    "mv+unlink": 2000,
}


def cpu_ns(pid: int) -> int:
    """The CPU time of every thread of process `pid` so far (its process CPU clock)."""
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def quiet(pids: list[int], limit: float = 20.0) -> None:
    """Wait (up to `limit` s) until no daemon works in the background: each used under 1%
    of a core over the last 0.2 s. The loops before leave history's commits and the index's
    batches behind, and a daemon's CPU clock counts every thread."""
    deadline = time.monotonic() + limit
    last = [cpu_ns(pid) for pid in pids]
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = [cpu_ns(pid) for pid in pids]
        if all(b - a < 2_000_000 for a, b in zip(last, now, strict=True)):
            return
        last = now


def mount_memfs(
    checkout: Path,
    mnt: Path,
    base: Path,
    label: str,
    cleanup: contextlib.ExitStack,
    config: str = "",
    clocked: bool = False,
) -> int:
    """memfs from `checkout` on `mnt` with the default config (or `config`); returns the
    daemon's pid. `clocked`: in the foreground, its handlers timed (handler_clock.PRELUDE)."""
    run_dir = base / f"run-{label}"
    env = dict(os.environ, PYTHONPATH=str(checkout), MEMFS_RUN_DIR=str(run_dir))
    cfg = base / f"config-{label}.yaml"
    cfg.write_text(config)
    memfs = [sys.executable, "-m", "memfs"]
    daemons: list[subprocess.Popen] = []
    cleanup.callback(reap, daemons)  # the last of the three (an ExitStack runs them last first)
    cleanup.callback(subprocess.run, ["fusermount3", "-uz", str(mnt)], capture_output=True)
    cleanup.callback(subprocess.run, [*memfs, "umount", str(mnt)], capture_output=True, env=env, cwd=base)
    argv = ["mount", str(mnt), "--data", str(base / f"data-{label}"), "--config", str(cfg)]
    if clocked:
        prelude = (handler_clock.PRELUDE, "-m", "memfs")
        daemons.append(bench.mount_memfs_foreground(argv, subprocess.DEVNULL, env, base, prelude))
    else:
        subprocess.run([*memfs, *argv], check=True, capture_output=True, env=env, cwd=base)
    key = hashlib.sha1(os.fsencode(mnt)).hexdigest()[:16]  # memfs.mount.pidfile's name
    return int((run_dir / f"{key}.pid").read_text().split()[0])


def reap(daemons: list[subprocess.Popen]) -> None:
    """Daemons started in the foreground, once unmounted: waited for, killed if they hang."""
    for d in daemons:
        try:
            d.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()


def run_loop(
    pid: int, d: Path, kind: str, n: int, tag: str, clock: Path | None = None
) -> tuple[float, float, dict[str, list[int]]]:
    """(daemon CPU us per request, the caller's wall us per iteration, and with `clock` (the
    daemons' handler_clock folder) the ns each request of the loop spent in its handler) of
    one loop."""
    inside: dict[str, list[int]] = {}
    cmd = bench.as_uid(UID, "/usr/bin/python3", "-c", LOOP, str(d), str(n), kind, tag)
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{kind} loop in {d} did not start")
            if clock is not None:
                handler_clock.take(clock, pid)  # the set-up's requests: not counted
            before = cpu_ns(pid)
            proc.stdin.write("\n")
            proc.stdin.flush()
            wall = float(proc.stdout.readline())
            used = cpu_ns(pid) - before
            if clock is not None:
                inside = handler_clock.take(clock, pid)
            proc.stdin.close()
            if proc.wait(timeout=120) != 0:
                raise RuntimeError(f"{kind} loop in {d} failed")
        finally:
            if proc.poll() is None:
                proc.kill()
    return used / n / 1000, wall, inside


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="checkout A (its memfs/ is measured)")
    ap.add_argument("b", type=Path, help="checkout B")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--only", nargs="+", choices=list(KINDS), help="these kinds of request only")
    ap.add_argument(
        "--ram-disk",
        action="store_true",
        help="the backing files on an ext4 image in /dev/shm (bench.ram_disk)",
    )
    ap.add_argument(
        "--inside",
        action="store_true",
        help="also the time each request spends in its handler (handler_clock.py), per handler",
    )
    args = ap.parse_args()
    kinds = args.only or list(KINDS)
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-probes-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    mnts = {label: base / label for label in ("A", "B", "bare")}
    cpu: dict[str, dict[str, list[float]]] = {k: {label: [] for label in mnts} for k in kinds}
    wall: dict[str, dict[str, list[float]]] = {k: {label: [] for label in mnts} for k in kinds}
    # kind -> label -> one {handler: ns of each request} per round
    inside: dict[str, dict[str, list[dict[str, list[int]]]]] = {
        k: {label: [] for label in mnts} for k in kinds
    }
    clock = handler_clock.folder(base) if args.inside else None
    if clock is not None:
        os.environ["HANDLER_CLOCK_DIR"] = str(clock)  # every daemon's, inherited
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        disk = bench.ram_disk(base, cleanup) if args.ram_disk else base  # the backing files
        src = disk / "bare-src"
        for d in (*mnts.values(), src):
            d.mkdir()
            os.chmod(d, 0o755)
        os.chown(src, UID, UID)
        pids = {
            label: mount_memfs(ck.resolve(), mnts[label], disk, label, cleanup, TEAM_CONFIG, args.inside)
            for label, ck in (("A", args.a), ("B", args.b))
        }
        prelude = handler_clock.PRELUDE if args.inside else ""
        bare = bench.mount_bare(src, mnts["bare"], subprocess.DEVNULL, prelude=prelude)
        cleanup.callback(bench.umount_bare, mnts["bare"], bare)
        pids["bare"] = bare.pid
        for mnt in mnts.values():
            subprocess.run(bench.as_uid(UID, "mkdir", "-p", str(mnt / "w"), str(mnt / TEAM_DIR)), check=True)
        for r in range(args.rounds):
            for kind in kinds:
                order = list(mnts) if r % 2 == 0 else list(mnts)[::-1]
                for label in order:
                    quiet(list(pids.values()))
                    c, w, ns = run_loop(
                        pids[label], mnts[label] / loop_dir(kind), kind, KINDS[kind], f"r{r}{kind}", clock
                    )
                    cpu[kind][label].append(c)
                    wall[kind][label].append(w)
                    inside[kind][label].append(ns)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"daemon CPU us per request, median of {args.rounds} alternated rounds of one loop each")
    print("A, B: memfs minus the floor in the same round (lowest..highest beside it); bare: the floor")
    print(f"A: {args.a}\nB: {args.b}\n")
    print(f"{'request':14} {'A':>20} {'B':>20} {'bare':>7}   wall us/iteration A / B / bare")
    for kind in kinds:
        row = [f"{kind:14}"]
        for label in ("A", "B"):
            row.append(above_floor(cpu[kind][label], cpu[kind]["bare"], 5))
        row.append(f"{statistics.median(cpu[kind]['bare']):7.1f}")
        w = [statistics.median(wall[kind][label]) for label in mnts]
        row.append("   " + " / ".join(f"{x:.1f}" for x in w))
        print(" ".join(row))
    if args.inside:
        report_inside(inside, args.rounds)
    return 0


def above_floor(xs: list[float], floor: list[float], width: int) -> str:
    """Round by round, a memfs minus the floor: the median, the lowest..highest beside it."""
    d = [x - y for x, y in zip(xs, floor, strict=True)]
    return f"{statistics.median(d):7.1f} ({min(d):{width}.1f}..{max(d):{width}.1f})"


def report_inside(inside: dict[str, dict[str, list[dict[str, list[int]]]]], rounds: int) -> None:
    """Per kind of loop and handler: the median time one request spent in the handler,
    memfs A and B minus the floor's in the same round (median over the rounds, lowest..
    highest beside it), the floor's own, and the requests of that handler per iteration."""
    print(f"\ninside the handler: us per request, the median request of each loop; median of {rounds} rounds")
    print(
        f"{'loop':14} {'handler':9} {'A - bare':>22} {'B - bare':>22} {'bare':>7}",
        "  requests/iteration A / B / bare",
    )
    for kind, by_label in inside.items():
        n = KINDS[kind]
        handlers = sorted({h for runs in by_label.values() for run in runs for h in run})
        for h in handlers:
            per = [
                statistics.median(len(run.get(h, ())) for run in by_label[label]) / n for label in by_label
            ]
            if max(per) < 0.5:  # not the loop's own (the set-up's last release, a cwd's releasedir)
                continue
            # "<handler>+after": memfs's bookkeeping after that handler's reply (after_reply.py),
            # none for a daemon that has none (the floor): its time, not above anything
            none = 0.0 if h.endswith("+after") else float("nan")
            med = {
                label: [statistics.median(run[h]) / 1000 if run.get(h) else none for run in runs]
                for label, runs in by_label.items()
            }
            row = [f"{kind:14} {h:9}"]
            for label in ("A", "B"):
                row.append(above_floor(med[label], med["bare"], 6))
            row.append(f"{statistics.median(med['bare']):7.1f}")
            row.append("   " + " / ".join(f"{x:.2f}" for x in per))
            print(" ".join(row))


if __name__ == "__main__":
    sys.exit(main())
