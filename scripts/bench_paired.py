"""The core workload and the per-request probes on memfs, bindfs, the bare pyfuse3 floor and a
native directory, interleaved chunk by chunk in one caller: ratios that hold on a noisy machine.

Why: scripts/bench runs the whole workload on one target, then on the next; on a shared
2-core guest whose speed drifts by tens of percent over seconds (6% steal, a CPU-bound loop
taking 225-359 ms from one run to the next), the targets' phases run seconds apart and the
ratios moved by 2-3x between runs. Here one caller (the benchmark uid) does each phase a chunk
at a time (25 files, or 100 requests of a probe) on every target in turn, the order rotating
from chunk to chunk, so each chunk of memfs is compared with the chunks of bindfs and bare
run milliseconds before or after it. Reported per phase: the median over the chunk cycles of
memfs's time over bindfs's and bare's in the same cycle, and of memfs minus bare in us per
file (per request for the probes), with the cycles' interquartile range beside it.

Between phases the caller waits for quiet cores (what a phase left behind, history's commits,
the index, the embedder, is not charged to the next phase's first chunks); within a phase
memfs's background work runs and competes with every target's chunks alike. memfs runs with
its defaults (history on, the embedder on). grep -r and ls -l run whole, once per target per
cycle (after one untimed warm pass each). --ram-disk puts every target's files on an ext4
image in /dev/shm (bench.ram_disk); --off adds memfs with history off and no embedder, and
--burst runs the first stat and read right after the creates, not waiting for quiet cores:
with both, memfs/off there is what history's and the embedder's work after a burst costs the
callers. Usage (as root): scripts/bench --paired [--rounds N] [--files N] [--chunk N]
[--ram-disk] [--off] [--burst] [--config YAML]; each round starts from empty folders.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import operator
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import bench  # scripts/ is on sys.path: this script's own folder
from bench_probes import mount_memfs
from quiet import wait_quiet

UID = 1001
LABELS = ("memfs", "bindfs", "bare", "native")
OFF = "history: {enabled: false}\nsearch: {embedder: none}\n"  # --off: memfs without its background work
BURST = ("stat1", "read1")  # --burst: run right after the creates, without waiting for quiet cores

# The caller, as the benchmark uid with the system python. argv: the targets' folders (json,
# label -> folder), files, chunk, probe chunk, cycles of grep -r / ls -l. Prints "phase NAME"
# and waits for a line on stdin before each phase (the driver waits for quiet cores), then
# the chunk times as json: phase -> label -> [us per unit, one per chunk cycle].
CALLER = r"""
import ctypes, json, os, random, subprocess, sys, time
targets = json.loads(sys.argv[1]); n, chunk, pchunk, cycles = map(int, sys.argv[2:6])
pids = json.loads(sys.argv[6])  # label -> the serving daemon's pid (none for native)
labels = list(targets)
def cpu(lab):  # the daemon's CPU time so far, every thread (its process CPU clock), ns
    pid = pids.get(lab)
    return time.clock_gettime_ns(((~pid) << 3) | 2) if pid else 0
"""
CALLER += (
    bench.ENTRIES
    + r"""
moved = ["r%05d.md" % i for i in range(n)]
work = {lab: os.path.join(d, "w") for lab, d in targets.items()}
probe = {lab: os.path.join(d, "p") for lab, d in targets.items()}
for lab in labels:
    os.mkdir(work[lab]); os.mkdir(probe[lab])
wfd = {lab: os.open(work[lab], os.O_RDONLY | os.O_DIRECTORY) for lab in labels}
pfd = {lab: os.open(probe[lab], os.O_RDONLY | os.O_DIRECTORY) for lab in labels}
out = {}
def phase(name):
    print("phase", name, flush=True); sys.stdin.readline()
def paired(name, fn, parts, units):
    # fn(label, part) once per target per part, the order rotating; us per unit of each.
    # fn may time a part of its work itself: it returns (wall s, daemon CPU ns) of that part.
    phase(name)
    got = out.setdefault(name, {lab: [] for lab in labels})
    used = out.setdefault(name + ":cpu", {lab: [] for lab in labels})
    for c, part in enumerate(parts):
        k = c % len(labels)
        for lab in labels[k:] + labels[:k]:
            c0 = cpu(lab); t0 = time.perf_counter(); own = fn(lab, part); t1 = time.perf_counter()
            wall, spent = own or (t1 - t0, cpu(lab) - c0)
            got[lab].append(wall * 1e6 / units(part)); used[lab].append(spent / 1e3 / units(part))
chunks = [range(i, min(n, i + chunk)) for i in range(0, n, chunk)]
size = len
def create(lab, part):
    for i in part:
        fd = os.open(names[i], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=wfd[lab])
        os.write(fd, bodies[i]); os.close(fd)
def stat_abs(lab, part):  # absolute, as scripts/bench: a walk through the mount root
    for i in part: os.stat(os.path.join(work[lab], names[i]))
def read(lab, part):
    for i in part:
        fd = os.open(names[i], os.O_RDONLY, dir_fd=wfd[lab]); os.read(fd, 8192); os.close(fd)
def tool(cmd):
    def fn(lab, part):
        subprocess.run(cmd, cwd=work[lab], stdout=subprocess.DEVNULL, check=False)
    return fn
def rename(lab, part):
    for i in part: os.rename(names[i], moved[i], src_dir_fd=wfd[lab], dst_dir_fd=wfd[lab])
def unlink(lab, part):
    for i in part: os.unlink(moved[i], dir_fd=wfd[lab])
paired("create", create, chunks, size)
paired("stat1", stat_abs, chunks, size)
paired("stat2", stat_abs, chunks, size)
paired("read1", read, chunks, size)
paired("read2", read, chunks, size)
for lab in labels: tool(["grep", "-r", "-c", "memory", "."])(lab, None)
paired("grep_r", tool(["grep", "-r", "-c", "memory", "."]), range(cycles), lambda _: n)
paired("ls_l", tool(["ls", "-l", "."]), range(cycles), lambda _: n)
paired("rename", rename, chunks, size)
paired("unlink", unlink, chunks, size)
# The probes: one kind of request each, in a folder of their own with 100 files of 1 KB.
P = 100
pnames = [b"p%03d" % i for i in range(P)]
for lab in labels:
    for nm in pnames:
        fd = os.open(nm, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=pfd[lab])
        os.write(fd, b"x" * 1000); os.close(fd)
pchunks = [range(c * pchunk, (c + 1) * pchunk) for c in range(max(1, 4000 // pchunk))]
libc = ctypes.CDLL(None, use_errno=True); buf = ctypes.create_string_buffer(256)
def getattr_(lab, part):  # statx(AT_STATX_FORCE_SYNC): one GETATTR however fresh the cache
    d = pfd[lab]
    for i in part:
        if libc.statx(d, pnames[i % P], 0x2000, 0x7FF, buf) != 0: raise SystemExit("statx")
def lookup(lab, part):  # O_CREAT|O_EXCL on a cached name: one revalidating LOOKUP, EEXIST
    for i in part:
        try: os.close(os.open(pnames[i % P], os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=pfd[lab]))
        except FileExistsError: pass
        else: raise SystemExit("lookup: the name did not exist")
def lookup_neg(lab, part):  # a missing name: one LOOKUP answered ENOENT
    for i in part:
        try: os.stat(b"n%05d" % i, dir_fd=pfd[lab])
        except FileNotFoundError: pass
def openclose(lab, part):  # OPEN, RELEASE
    for i in part: os.close(os.open(pnames[i % P], os.O_RDONLY, dir_fd=pfd[lab]))
fds = {lab: [os.open(nm, os.O_RDONLY, dir_fd=pfd[lab]) for nm in pnames] for lab in labels}
def read1(lab, part):  # the cached page dropped first: one READ each
    for i in part:
        fd = fds[lab][i % P]; os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.pread(fd, 4096, 0)
fresh = [b"c%05d" % i for i in range(len(pchunks) * pchunk)]
def create_empty(lab, part):  # LOOKUP (missing), CREATE, RELEASE
    for i in part: os.close(os.open(fresh[i], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=pfd[lab]))
def unlink_fresh(lab, part):  # one UNLINK (history keeps what it had not committed)
    for i in part: os.unlink(fresh[i], dir_fd=pfd[lab])
def unlink_1k(lab, part, committed=False):  # 1 KB files written just before (untimed) ...
    for i in part:
        fd = os.open(fresh[i], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=pfd[lab])
        os.write(fd, b"y" * 1000); os.close(fd)
    if committed:  # ... that history has committed: reading .memfs/history commits them
        try: os.listdir(os.path.join(os.path.dirname(targets[lab]), ".memfs", "history"))
        except OSError: pass  # the others have no history
    c0 = cpu(lab); t0 = time.perf_counter(); unlink_fresh(lab, part)
    return time.perf_counter() - t0, cpu(lab) - c0
paired("p_getattr", getattr_, pchunks, size)
paired("p_lookup", lookup, pchunks, size)
paired("p_lookup_neg", lookup_neg, pchunks, size)
paired("p_openclose", openclose, pchunks, size)
paired("p_read", read1, pchunks, size)
paired("p_create", create_empty, pchunks, size)
paired("p_unlink", unlink_fresh, pchunks, size)
paired("p_unlink1k", unlink_1k, pchunks, size)  # these two time only their unlinks
paired("p_unlink_old", lambda lab, part: unlink_1k(lab, part, committed=True), pchunks, size)
print("result", json.dumps(out), flush=True)
"""
)

WORKLOAD = ["create", "stat1", "stat2", "read1", "read2", "grep_r", "ls_l", "rename", "unlink"]
# Issue 22's targets against bindfs, same run: op -> the most memfs/bindfs may be
TARGETS = {"create": 1.2, "read2": 1.2, "ls_l": 1.0, "unlink": 2.5, "grep_r": 1.0}
PROBES = [
    ("getattr", "p_getattr", "statx(AT_STATX_FORCE_SYNC): GETATTR"),
    ("lookup", "p_lookup", "O_CREAT|O_EXCL on a cached name: LOOKUP, EEXIST"),
    ("lookup-", "p_lookup_neg", "stat of a missing name: LOOKUP, ENOENT"),
    ("open+release", "p_openclose", "open + close: OPEN, RELEASE"),
    ("read", "p_read", "fadvise(DONTNEED) + pread 4 KiB: READ"),
    ("create+close", "p_create", "O_CREAT|O_EXCL + close: LOOKUP, CREATE, RELEASE"),
    ("unlink", "p_unlink", "unlink of an empty file just made: UNLINK"),
    ("unlink1k", "p_unlink1k", "unlink of a 1 KB file just written: UNLINK"),
    ("unlink-old", "p_unlink_old", "unlink of a 1 KB file history has committed: UNLINK"),
]


def drive(
    dirs: dict[str, Path], pids: dict[str, int], files: int, chunk: int, pchunk: int, cycles: int, burst: bool
) -> dict:
    """One round of the caller; waits for quiet cores before each phase (with `burst`, not
    before BURST: they run while what the creates started still runs)."""
    spec = json.dumps({k: str(v) for k, v in dirs.items()})
    args = [spec, str(files), str(chunk), str(pchunk), str(cycles), json.dumps(pids)]
    cmd = bench.as_uid(UID, "/usr/bin/python3", "-c", CALLER, *args)
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for line in proc.stdout:
                if line.startswith("phase "):
                    if not (burst and line.split()[1] in BURST):
                        wait_quiet()
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                elif line.startswith("result "):
                    result = json.loads(line[len("result ") :])
                    break
            else:
                raise RuntimeError(f"the caller ended without a result (status {proc.wait()})")
            proc.stdin.close()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    return result


def cycle_stat(a: list[float], b: list[float], how) -> tuple[float, float, float]:
    """Median and quartiles over the chunk cycles of how(a's chunk, b's chunk)."""
    each = sorted(how(x, y) for x, y in zip(a, b, strict=True))
    q = statistics.quantiles(each, n=4) if len(each) > 1 else [each[0]] * 3
    return q[1], q[0], q[2]


def report(res: dict[str, dict[str, list[float]]], args) -> None:
    ratio, minus = operator.truediv, operator.sub
    cells = f"{args.rounds} round(s) of {args.files} files in chunks of {args.chunk}"
    conf = f"config {args.config!r}" if args.config else "defaults: history on, embedder on"
    disk = "an ext4 image in /dev/shm" if args.ram_disk else "this machine's disk"
    print(f"\nmemfs ({conf}) against bindfs, bare pyfuse3 and native, on {disk}; {cells};")
    print("per op: median us per file over the chunk cycles; memfs/X: median over the cycles of memfs's")
    print("chunk over X's chunk in the same cycle [interquartile range]; above bare: memfs - bare,")
    print("us per file; bare/bindfs: the floor's own ratio, what no pyfuse3 filesystem gets under\n")
    labels = [k for k in (*LABELS, "off") if k in res["create"]]
    if "off" in labels:
        print(f"off: memfs with {OFF!r} (its background work off); memfs/off in the last column")
    if args.burst:
        print(f"{', '.join(BURST)}: right after the creates, not waiting for quiet cores")
    head = f"{'op':<8}" + "".join(f" {k:>8}" for k in labels)
    head += f" {'memfs/bindfs':>22} {'bare/bindfs':>11} {'memfs/bare':>20} {'above bare':>22}"
    print(head + (f" {'memfs/off':>20}" if "off" in labels else "") + "  target")
    for op in WORKLOAD:
        r = res[op]
        line = f"{op:<8}" + "".join(f" {statistics.median(r[k]):8.1f}" for k in labels)
        m, lo, hi = cycle_stat(r["memfs"], r["bindfs"], ratio)
        line += f" {m:6.2f} [{lo:5.2f}..{hi:5.2f}] {cycle_stat(r['bare'], r['bindfs'], ratio)[0]:11.2f}"
        m2, lo2, hi2 = cycle_stat(r["memfs"], r["bare"], ratio)
        line += f" {m2:5.2f} [{lo2:5.2f}..{hi2:5.2f}]"
        m3, lo3, hi3 = cycle_stat(r["memfs"], r["bare"], minus)
        line += f" {m3:6.1f} [{lo3:6.1f}..{hi3:6.1f}]"
        if "off" in labels:
            m4, lo4, hi4 = cycle_stat(r["memfs"], r["off"], ratio)
            line += f" {m4:5.2f} [{lo4:5.2f}..{hi4:5.2f}]"
        if op in TARGETS:
            line += f"  <= {TARGETS[op]:.1f}: {'met' if m <= TARGETS[op] else 'MISSED'}"
        print(line)
    print(f"\nper request: probes in chunks of {args.probe_chunk} requests; us per iteration (the syscall,")
    print("the round trip, the loop); above bare: median over the cycles of memfs - bare [IQR]\n")
    print(f"{'request':<13}" + "".join(f" {k:>8}" for k in labels) + f" {'memfs above bare':>26}  what")
    for req, key, how in PROBES:
        r = res[key]
        m, lo, hi = cycle_stat(r["memfs"], r["bare"], minus)
        line = f"{req:<13}" + "".join(f" {statistics.median(r[k]):8.1f}" for k in labels)
        print(f"{line} {m:8.1f} [{lo:6.1f}..{hi:6.1f}]  {how}")
    print("\nthe same probes as the serving daemon's CPU time per request (every thread of its process,")
    print("read around each chunk; memfs's history and embedder workers are processes of their own)\n")
    daemons = [k for k in labels if k != "native"]
    print(f"{'request':<13}" + "".join(f" {k:>8}" for k in daemons) + f" {'memfs above bare':>26}")
    for req, key, _how in PROBES:
        r = res[key + ":cpu"]
        m, lo, hi = cycle_stat(r["memfs"], r["bare"], minus)
        line = f"{req:<13}" + "".join(f" {statistics.median(r[k]):8.1f}" for k in daemons)
        print(f"{line} {m:8.1f} [{lo:6.1f}..{hi:6.1f}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=25, help="files per chunk of a workload phase")
    ap.add_argument("--probe-chunk", type=int, default=100, help="requests per chunk of a probe")
    ap.add_argument("--cycles", type=int, default=8, help="grep -r and ls -l runs per target and round")
    ap.add_argument("--json", type=Path, help="also write every chunk's time here")
    ap.add_argument("--config", default="", help="memfs's config (YAML text) instead of the defaults")
    ap.add_argument("--off", action="store_true", help="also memfs with history off and no embedder")
    ap.add_argument("--burst", action="store_true", help="stat1 and read1 right after the creates")
    ap.add_argument(
        "--ram-disk",
        action="store_true",
        help="put every target's backing files on an ext4 image in /dev/shm, loop-mounted",
    )
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-paired-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    res: dict[str, dict[str, list[float]]] = {}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        disk = bench.ram_disk(base, cleanup) if args.ram_disk else base
        labels = (*LABELS, "off") if args.off else LABELS
        mnts = {label: base / label for label in labels}
        mnts["native"] = disk / "native"
        bind_src, bare_src = disk / "bind-src", disk / "bare-src"
        for d in (*mnts.values(), bind_src, bare_src):
            d.mkdir()
            os.chmod(d, 0o755)
        for d in (mnts["native"], bare_src):
            os.chown(d, UID, UID)
        checkout = Path(__file__).resolve().parent.parent
        pids = {"memfs": mount_memfs(checkout, mnts["memfs"], disk, "memfs", cleanup, args.config)}
        if args.off:
            pids["off"] = mount_memfs(checkout, mnts["off"], disk, "off", cleanup, OFF)
        cleanup.callback(subprocess.run, ["fusermount3", "-uz", str(mnts["bindfs"])], capture_output=True)
        bench.mount_bindfs(bind_src, mnts["bindfs"], UID)
        pids["bindfs"] = int(bench.sh("pgrep", "-f", f"^bindfs .* {mnts['bindfs']}$").stdout.split()[0])
        bare = bench.mount_bare(bare_src, mnts["bare"], subprocess.DEVNULL)
        cleanup.callback(bench.umount_bare, mnts["bare"], bare)
        pids["bare"] = bare.pid
        for r in range(args.rounds):
            dirs = {}
            for label, mnt in mnts.items():
                dirs[label] = mnt / f"round{r}"
                subprocess.run(bench.as_uid(UID, "mkdir", str(dirs[label])), check=True)
            got = drive(dirs, pids, args.files, args.chunk, args.probe_chunk, args.cycles, args.burst)
            for op, per in got.items():
                for label, xs in per.items():
                    res.setdefault(op, {}).setdefault(label, []).extend(xs)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(res))
    report(res, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
