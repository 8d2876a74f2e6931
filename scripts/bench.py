"""The core workload on memfs, a native directory, bindfs and a bare pyfuse3 passthrough
(scripts/passthrough.py, "bare": the floor any pyfuse3 filesystem pays), interleaved; prints
ms per 1000 files, the ratios memfs/native, memfs/bindfs and memfs/bare, and per op memfs's
microseconds per file above the floor. Run by scripts/bench (as root; the workload itself
runs as a non-root uid). It measures whichever memfs is importable: PYTHONPATH=/old/checkout
runs an older one (the daemon inherits the environment and runs from a neutral cwd).

History's cost: `rewrite` (100 files rewritten with O_TRUNC, 10 passes) and `saveloop` (an
agent's save loop on 4 files of 48 KiB: rewrite in place, patch, truncate; 150 iterations,
--save-iterations) run on every target; memfs/nohist is the ratio to read. With history on
they can be slow (~0.1 s a save-loop iteration at a0e96e1, where every step waited for a
commit), so their passes and iterations are split over the rounds: the run stays bounded.

--count-requests mounts memfs and bare once more with libfuse's -o debug (memfs through
FUSE_DEBUG_MEMFS, which adds "debug" to the options memfs gives pyfuse3.init), runs the
workload on --count-files files one phase at a time, and counts the requests of each phase
per opcode (the worker's, the tools it ran, the kernel's; other processes' are left out), per
file, rewrite or iteration: does memfs send more requests than the floor?

Cost per request above bare (lookup, getattr, open, release, read, create, unlink): probes,
loops that each send one kind of request (PROBES lists what each should send, and
--count-requests checks it), timed on memfs, nohist and bare after the rounds, in runs of their
own (not before a workload: their commits would slow it; not after one: they would wait behind
its commits), best of PROBE_REPS per run, median over one run per round. A probe's us per
iteration on memfs minus the same on bare is what memfs adds to that request: the syscall,
the kernel and the loop are the same on both (paired per round, the median over the rounds,
with the lowest..highest beside it). Two are differences of probes: release =
open+close - open (close returns before RELEASE is answered; the next open waits behind it),
create = O_EXCL create+close - a missing-name lookup - release. The workload ops' own
(memfs - bare) / memfs requests is printed beside the counts, but mixes request kinds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path

from quiet import wait_quiet  # scripts/ is on sys.path: this script's own folder

REPO = Path(__file__).resolve().parent.parent

# The workload's n entries (1-2 KB of frontmatter and words, the same every run) and their
# names: part of the callers here and in scripts/bench_paired.py (needs n and random).
ENTRIES = r"""
rnd = random.Random(1)
WORDS = ["alpha", "beta", "gamma", "delta", "memory", "note"]
def body(i):
    words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(150, 300)))
    head = "---\nname: e%d\ndescription: entry %d\ntype: project\n---\n" % (i, i)
    return (head + words).encode()[: rnd.randint(1024, 2048)]
bodies = [body(i) for i in range(n)]
names = ["e%05d.md" % i for i in range(n)]
"""

# Runs as the benchmark uid, with the system python, in the target directory.
WORKER = r"""
import ctypes, json, os, random, subprocess, sys, time
n = int(sys.argv[1]); d = sys.argv[2]; opt = json.loads(sys.argv[3])
kids = []  # pids of the tools a phase ran: their requests are the phase's too
def mark(key, units):
    # --count-requests: stop after each phase until the caller has counted its requests
    if opt.get("step"):
        print("phase", key, units, ",".join(map(str, kids)) or "-", flush=True); sys.stdin.readline()
    kids.clear()
os.chdir(d)
"""
WORKER += (
    ENTRIES
    + r"""
t = {}
def timed(key, fn, units=n):  # us per unit = ms per 1000 units; a probe repeated keeps its best
    t0 = time.perf_counter(); fn(); us = (time.perf_counter() - t0) * 1000 * 1000 / units
    t[key] = min(us, t.get(key, us))
    mark(key, units)
def untimed(key, fn):
    fn(); mark(key, 0)
def write_all(names):
    for i, name in enumerate(names):
        with open(name, "wb") as f: f.write(bodies[i % n])
mark("setup", 0)
# Probes: loops that each send one kind of request (--count-requests checks which), for the
# cost per request above bare. Timed in runs of their own (only_probes); counted first, in a
# folder of their own beside d, so the workload's folder holds only its own files.
K = opt.get("probe_files", 0)
if K and not opt.get("only_probes"):
    os.mkdir(d + "-probe"); os.chdir(d + "-probe")
probe = ["p%03d" % i for i in range(K)]
created = ["c%03d" % i for i in range(K)]
untimed("probe_setup", lambda: write_all(probe))
def lookup():  # O_EXCL on a cached name: the kernel revalidates it (LOOKUP), then EEXIST
    for name in probe:
        try: os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError: pass
        else: raise SystemExit("p_lookup: %s did not exist" % name)
def lookup_neg():
    for i in range(K):
        try: os.stat("n%03d" % i)
        except FileNotFoundError: pass
libc = ctypes.CDLL(None, use_errno=True); statx_buf = ctypes.create_string_buffer(256)
def getattr_():  # statx(AT_STATX_FORCE_SYNC): the kernel asks however fresh its attributes are
    for name in probe:
        if libc.statx(-100, name.encode(), 0x2000, 0x7FF, statx_buf) != 0:
            raise OSError(ctypes.get_errno(), "statx " + name)
fds = []
def open_all():
    fds.extend(os.open(name, os.O_RDONLY) for name in probe)
def close_all():
    for fd in fds: os.close(fd)
    fds.clear(); time.sleep(0.05)  # the kernel sends RELEASE after close returns: let them pass
def openclose():
    for name in probe: os.close(os.open(name, os.O_RDONLY))
def read():  # the cached page dropped first, so each read goes to the daemon
    for fd in fds:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.pread(fd, 4096, 0)
def create_empty():
    for name in created: os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
def unlink_created():
    for name in created: os.unlink(name)
def create_1k():  # an entry's worth: history moves its uncommitted content into its spool on rm
    for name in created:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"y" * 1000); os.close(fd)
for _ in range(opt.get("probe_reps", 1) if K else 0):
    timed("p_lookup", lookup, K)
    timed("p_lookup_neg", lookup_neg, K)
    timed("p_getattr", getattr_, K)
    timed("p_open", open_all, K)
    untimed("p_open_close", close_all)
    timed("p_openclose", openclose, K)
    untimed("p_read_open", open_all)
    timed("p_read", read, K)
    untimed("p_read_close", close_all)
    timed("p_create", create_empty, K)
    timed("p_unlink", unlink_created, K)
    untimed("p_unlink1k_setup", create_1k)
    timed("p_unlink1k", unlink_created, K)
if opt.get("only_probes"):
    print(json.dumps(t)); sys.exit(0)
untimed("probes_done", lambda: os.chdir(d))
def create():
    for name, body in zip(names, bodies):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); os.write(fd, body); os.close(fd)
def stat_all():
    for name in names: os.stat(os.path.join(d, name))  # absolute: a walk through the mount root
def read_all():
    for name in names:
        with open(name, "rb") as f: f.read()
def run(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL); kids.append(p.pid); p.wait()
moved = ["r%05d.md" % i for i in range(n)]
def rename_all():
    for a, b in zip(names, moved): os.rename(a, b)
def unlink():
    for name in moved: os.unlink(name)
timed("create", create)
timed("stat1", stat_all); timed("stat2", stat_all)
timed("read1", read_all); timed("read2", read_all)
untimed("grep_warm", lambda: run(["grep", "-r", "-c", "memory", "."]))
timed("grep_r", lambda: run(["grep", "-r", "-c", "memory", "."]))
timed("ls_l", lambda: run(["ls", "-l", "."]))
timed("rename", rename_all)
timed("unlink", unlink)
# History's cost: whole-file rewrites, as a tool saving a file does (O_TRUNC open+write+close)
REWRITE_FILES, REWRITE_PASSES = 100, opt["rewrite_passes"]
rewritten = ["w%03d.md" % i for i in range(REWRITE_FILES)]
untimed("rewrite_setup", lambda: write_all(rewritten))
def rewrite():
    for p in range(REWRITE_PASSES):
        for i, name in enumerate(rewritten):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, b"%d " % p + bodies[i % n]); os.close(fd)
timed("rewrite", rewrite, REWRITE_FILES * REWRITE_PASSES)
# ... and an agent's save loop on a few bigger files: each rewritten in place (no O_TRUNC),
# patched in the middle, cut shorter; per iteration, every file once. The caller splits the
# iterations, and the rewrite passes, over the rounds (with history on, each step may wait
# for a commit of the one before).
SAVE_FILES, SAVE_SIZE, SAVE_ITERS = 4, 48 * 1024, opt["save_iters"]
saved = ["s%d.md" % k for k in range(SAVE_FILES)]
text = (b"".join(bodies) * (SAVE_SIZE // max(1, len(b"".join(bodies))) + 2))[: SAVE_SIZE + 97]
def save_setup():
    for name in saved:
        with open(name, "wb") as f: f.write(text[:SAVE_SIZE])
untimed("saveloop_setup", save_setup)
def saveloop():
    for it in range(SAVE_ITERS):
        whole = text[it % 97 : it % 97 + SAVE_SIZE]  # different content every iteration
        for name in saved:
            fd = os.open(name, os.O_WRONLY); os.pwrite(fd, whole, 0); os.close(fd)
            fd = os.open(name, os.O_WRONLY); os.pwrite(fd, b"patch %03d " % it * 30, SAVE_SIZE // 2)
            os.close(fd)
            os.truncate(name, SAVE_SIZE - 2048)
timed("saveloop", saveloop, SAVE_ITERS)
print(json.dumps(t))
"""
)

OPS = ["create", "stat1", "stat2", "read1", "read2", "grep_r", "ls_l", "rename", "unlink"]
OPS += ["rewrite", "saveloop"]  # history's cost: whole-file rewrites, an agent's save loop
UNITS = (
    "ms per 1000 files of 1-2 KB; rewrite: per 1000 rewrites of a 1-2 KB file (O_TRUNC open+write+close,\n"
    "100 files x {passes} passes a round); saveloop: per 1000 iterations of an agent's save loop (4 files\n"
    "of 48 KiB: each rewritten in place, patched 300 B in the middle, cut 2 KiB shorter; {iters} a round)"
)
REWRITE_PASSES = 10  # in all, split over the rounds like --save-iterations


COLUMNS = ("memfs", "nohist", "noembed", "noguard", "native", "bindfs", "bare")
PROBE_TARGETS = ("memfs", "nohist", "bare")  # the probes only serve the per-request costs above bare
PROBE_FILES = 100
PROBE_REPS = 3  # in the timed rounds; each probe's best of these, then the median over the rounds
# The probes are timed after the rounds, in runs of their own: run before a workload they would
# leave history committing (p_unlink forces a commit per file) and slow it; run after one,
# they would wait behind its commits. History's committer gets this long to finish first.
PROBE_SETTLE = 3.0
# Each probe and the requests it should send per iteration (--count-requests checks them).
# FORGET and BATCH_FORGET follow as the kernel drops inodes and are not expected or counted against.
PROBES = {
    "p_lookup": {"LOOKUP": 1},
    "p_lookup_neg": {"LOOKUP": 1},
    "p_getattr": {"GETATTR": 1},
    "p_open": {"OPEN": 1},
    "p_openclose": {"OPEN": 1, "RELEASE": 1},
    "p_read": {"READ": 1},
    "p_create": {"LOOKUP": 1, "CREATE": 1, "RELEASE": 1},
    "p_unlink": {"UNLINK": 1},
    "p_unlink1k": {"UNLINK": 1},
}
# us per request from the probes' us per iteration: (request, formula, how).
PER_REQUEST = [
    ("lookup", {"p_lookup": 1}, "p_lookup: O_CREAT|O_EXCL on a cached name, one revalidating LOOKUP"),
    ("lookup-", {"p_lookup_neg": 1}, "p_lookup_neg: stat of a missing name, one LOOKUP answered ENOENT"),
    ("getattr", {"p_getattr": 1}, "p_getattr: statx(AT_STATX_FORCE_SYNC), one GETATTR"),
    ("open", {"p_open": 1}, "p_open: open O_RDONLY, the fds kept open"),
    ("release", {"p_openclose": 1, "p_open": -1}, "p_openclose - p_open"),
    ("read", {"p_read": 1}, "p_read: fadvise(DONTNEED) + pread 4 KiB, one READ"),
    (
        "create",
        {"p_create": 1, "p_lookup_neg": -1, "p_openclose": -1, "p_open": 1},
        "p_create - lookup- - release",
    ),
    ("unlink", {"p_unlink": 1}, "p_unlink: one UNLINK of an empty file (the FORGET after it included)"),
    ("unlink1k", {"p_unlink1k": 1}, "p_unlink1k: one UNLINK of a 1 KB file just written"),
]
# libfuse's -o debug: one line per request as the daemon reads it.
REQUEST_LINE = re.compile(
    rb"^unique: \d+, opcode: (\S+) \((\d+)\), nodeid: \d+, insize: \d+, pid: (\d+)$", re.M
)
OPCODE_ORDER = [
    "LOOKUP", "GETATTR", "SETATTR", "ACCESS", "CREATE", "OPEN", "READ", "WRITE", "FLUSH", "IOCTL",
    "RELEASE", "UNLINK", "RENAME", "MKDIR", "OPENDIR", "READDIRPLUS", "RELEASEDIR", "GETXATTR",
    "LISTXATTR", "STATFS", "FORGET", "BATCH_FORGET",
]  # fmt: skip
SHORT = {"READDIRPLUS": "RDPLUS", "RELEASEDIR": "RELDIR", "GETXATTR": "GETXATR", "LISTXATTR": "LSTXATR"}
SHORT["BATCH_FORGET"] = "BFORGET"
COUNT_SETTLE = 0.3  # s after a phase before counting: RELEASE and FORGET come after the call returns
# memfs's own mount, with libfuse's -o debug added to the options memfs passes to pyfuse3.init:
# memfs's --debug traces only the handlers memfs implements, not FORGET or what pyfuse3
# answers ENOSYS itself, so both filesystems are counted by the same libfuse line.
FUSE_DEBUG_MEMFS = """
import runpy, sys, pyfuse3
init = pyfuse3.init
pyfuse3.init = lambda ops, mountpoint, options: init(ops, mountpoint, set(options) | {"debug"})
sys.argv[0] = "memfs"
runpy.run_module("memfs", run_name="__main__", alter_sys=True)
"""


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kw)


def as_uid(uid: int, *cmd: str) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]


def worker(uid: int, n: int, d: Path, opt: dict) -> list[str]:
    return as_uid(uid, "/usr/bin/python3", "-c", WORKER, str(n), str(d), json.dumps(opt))


def run_worker(uid: int, n: int, d: Path, opt: dict) -> dict[str, float]:
    out = subprocess.run(worker(uid, n, d, opt), check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout)


def mount_bindfs(src: Path, mnt: Path, uid: int) -> None:
    """bindfs as admins use it today: a root-owned directory re-owned to the user."""
    sh(
        "bindfs", "-o", "allow_other", f"--force-user={uid}", f"--force-group={uid}",
        "--create-for-user=0", "--create-for-group=0", str(src), str(mnt),
    )  # fmt: skip


def ram_disk(base: Path, cleanup: ExitStack) -> Path:
    """A 4 GiB ext4 image in /dev/shm, loop-mounted on base/disk: files' metadata in RAM.
    On this machine's root ext4 a create of a 1 KB file took 520-660 us against 20-25 us on
    such an image (the host reclaims the guest's page cache, so inode tables are read back from
    disk): every target pays it, and its spread hides what the filesystems themselves add."""
    img, disk = Path("/dev/shm") / f"{base.name}.img", base / "disk"
    disk.mkdir()
    cleanup.callback(img.unlink, missing_ok=True)
    sh("truncate", "-s", "4G", str(img))
    sh("mkfs.ext4", "-q", "-F", str(img))
    cleanup.callback(subprocess.run, ["umount", "-l", str(disk)], capture_output=True)
    sh("mount", "-o", "loop", str(img), str(disk))
    os.chmod(disk, 0o755)
    return disk


def mount_bare(src: Path, mnt: Path, stderr, debug: bool = False, prelude: str = "") -> subprocess.Popen:
    """scripts/passthrough.py over src, as root, in the foreground; returns once mounted.
    `prelude`: Python run first, given the script and its arguments (handler_clock.PRELUDE)."""
    cmd = [sys.executable, *(["-c", prelude] if prelude else []), str(REPO / "scripts" / "passthrough.py")]
    cmd += [str(src), str(mnt)]
    proc = subprocess.Popen(
        [*cmd, *(["--debug-fuse"] if debug else [])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"bare passthrough did not mount {mnt} (exit {proc.poll()})")
        time.sleep(0.01)
    return proc


def umount_bare(mnt: Path, proc: subprocess.Popen) -> None:
    subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        proc.kill()
        proc.wait()


def mount_memfs_foreground(
    argv: list[str], stderr, env: dict, cwd: Path, prelude: tuple[str, ...]
) -> subprocess.Popen:
    """memfs mount --foreground, started as `python -c *prelude *argv` (FUSE_DEBUG_MEMFS:
    libfuse's -o debug on stderr; handler_clock.PRELUDE, "-m", "memfs": its handlers timed);
    returns once mounted."""
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", *prelude, *argv, "--foreground", "--ready-fd", str(w)],
        pass_fds=(w,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    os.close(w)
    with os.fdopen(r) as ready:  # the daemon writes "ok" or "error: ..." (memfs/mount.py)
        line = ready.readline().strip() if select.select([ready], [], [], 60)[0] else ""
    if line != "ok":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"memfs in the foreground did not mount: {line or 'no answer'}")
    return proc


def count_requests(uid: int, n: int, d: Path, opt: dict, log: Path) -> dict[str, tuple[Counter, int]]:
    """Run the workload step by step in d; per phase, the requests the daemon logged, and
    the units (files, rewrites, iterations) the phase is reported per (0: not reported)."""
    subprocess.run(as_uid(uid, "mkdir", str(d)), check=True)
    phases: dict[str, tuple[Counter, int]] = {}
    others, rest = 0, b""
    with open(log, "rb") as f:
        f.seek(0, os.SEEK_END)
        proc = subprocess.Popen(
            worker(uid, n, d, {**opt, "step": True}), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdin is not None and proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("phase "):
                continue
            _, key, units, pids = line.split()
            # the worker, the tools it ran, and the kernel itself (pid 0: RELEASE, FORGET)
            ours = {0, proc.pid, *(int(p) for p in pids.split(",") if p != "-")}
            time.sleep(COUNT_SETTLE)
            text = rest + f.read()
            cut = text.rfind(b"\n") + 1  # a line still being written is the next phase's
            rest = text[cut:]
            counts = Counter()
            for name, code, pid in REQUEST_LINE.findall(text[:cut]):
                if int(pid) in ours:
                    counts[name.decode() if name != b"???" else f"opcode{int(code)}"] += 1
                else:
                    others += 1
            phases[key] = (counts, int(units))
            proc.stdin.write("\n")
            proc.stdin.flush()
        if proc.wait(timeout=600) != 0:
            raise RuntimeError(f"counting workload in {d} failed with status {proc.returncode}")
    if others:
        print(f"{d}: {others} requests from other processes not counted", file=sys.stderr)
    return phases


def print_timings(args, med: dict[str, dict[str, float]], opt: dict) -> None:
    units = UNITS.format(passes=opt["rewrite_passes"], iters=opt["save_iters"])
    print(f"\nmedian of {args.rounds} interleaved rounds, uid {args.uid}; {units}\n")
    print("memfs: defaults (history on, WordLlama embeddings); nohist: history: {enabled: false};")
    print("noembed: search: {embedder: none}; noguard: secrets: {guard: off};")
    print("bare: scripts/passthrough.py, a bare pyfuse3 passthrough\n")
    head = f"{'op':<8} {'memfs':>9} {'nohist':>9} {'noembed':>9} {'noguard':>9} {'native':>9} {'bindfs':>9}"
    head += f" {'bare':>9} {'memfs/native':>13} {'memfs/bindfs':>13}"
    print(f"{head} {'hist on/off':>12} {'embed on/off':>13} {'guard on/off':>13}")
    for op in OPS:
        m, h, e, g, n, b, f = (med[k][op] for k in COLUMNS)
        print(
            f"{op:<8} {m:9.1f} {h:9.1f} {e:9.1f} {g:9.1f} {n:9.1f} {b:9.1f} {f:9.1f} "
            f"{m / n:13.2f} {m / b:13.2f} {m / h:12.2f} {m / e:13.2f} {m / g:13.2f}"
        )
    print("\nmemfs over the bare pyfuse3 floor; us per file above bare = memfs - bare in ms per 1000\n")
    head = f"{'op':<8} {'memfs':>9} {'bare':>9} {'memfs/bare':>11}"
    print(f"{head} {'us/file above bare':>19} {'nohist/bare':>12}")
    for op in OPS:
        m, f, h = med["memfs"][op], med["bare"][op], med["nohist"][op]
        print(f"{op:<8} {m:9.1f} {f:9.1f} {m / f:11.2f} {m - f:19.1f} {h / f:12.2f}")
    hist = [f"{op} {med['memfs'][op] / med['nohist'][op]:.2f}x" for op in ("rewrite", "saveloop")]
    extra = [med["memfs"][op] - med["nohist"][op] for op in ("rewrite", "saveloop")]
    print(f"\nhistory on/off (memfs/nohist): {', '.join(hist)}; ", end="")
    print(f"+{extra[0]:.0f} us per rewrite, +{extra[1]:.0f} us per save-loop iteration")
    if args.baseline:
        print(f"\nbaseline: memfs from {args.baseline}, same config, same rounds\n")
        print(f"{'op':<8} {'memfs':>9} {'baseline':>9} {'memfs/baseline':>15} {'baseline/bindfs':>16}")
        for op in OPS:
            m, o, b = med["memfs"][op], med["baseline"][op], med["bindfs"][op]
            print(f"{op:<8} {m:9.1f} {o:9.1f} {m / o:15.2f} {o / b:16.2f}")


def print_counts(counts: dict[str, dict[str, tuple[Counter, int]]], med: dict | None, n: int) -> None:
    ops = [op for op in [*OPS, *PROBES] if op in counts["memfs"]]
    per = {
        k: {op: {c: v / counts[k][op][1] for c, v in counts[k][op][0].items()} for op in ops} for k in counts
    }
    seen = {c for k in per for op in ops for c in per[k][op]}
    cols = [c for c in OPCODE_ORDER if c in seen] + sorted(seen - set(OPCODE_ORDER))
    print(
        f"\nFUSE requests per file (rewrite, iteration), libfuse -o debug, {n} files, probes {PROBE_FILES}:"
    )
    print("the workload's requests and the kernel's (pid 0: RELEASE, FORGET)")
    print(
        f"({', '.join(f'{v}={k}' for k, v in SHORT.items())}; us above bare: memfs - bare from the rounds)\n"
    )
    head = f"{'op':<12} {'fs':<5}" + "".join(f" {SHORT.get(c, c):>7}" for c in cols) + f" {'total':>6}"
    print(head + (f" {'us above bare':>13} {'per memfs req':>13}" if med else ""))
    for op in ops:
        for k in ("memfs", "bare"):
            row = per[k][op]
            line = f"{op if k == 'memfs' else '':<12} {k:<5}"
            line += "".join(f" {row[c]:7.2f}" if c in row else f" {'.':>7}" for c in cols)
            line += f" {sum(row.values()):6.2f}"
            if med and k == "memfs":
                above = med["memfs"][op] - med["bare"][op]
                line += f" {above:13.1f} {above / max(sum(row.values()), 1e-9):13.1f}"
            print(line)

    # FORGET and BATCH_FORGET come when the kernel evicts inodes, on its own schedule: left out here
    def asked(k: str, op: str) -> float:
        return sum(v for c, v in per[k][op].items() if c not in ("FORGET", "BATCH_FORGET"))

    more = [op for op in ops if asked("memfs", op) > asked("bare", op) + 0.05]
    print(f"\nmemfs sends more requests (FORGETs aside) than bare in: {', '.join(more) or 'none'}")


def print_per_request(counts: dict | None, med: dict[str, dict[str, float]], results: dict) -> None:
    print("\nus per request above bare, from the probes (loops that each send one kind of request), timed")
    runs = f"{PROBE_FILES} files, best of {PROBE_REPS} per run, one run per round"
    print(f"after the rounds in runs of their own: {runs}.")
    print("memfs, nohist, bare: median us per probe iteration (the request, the syscall and the loop")
    print("around it). above bare: median over the rounds of memfs - bare in that round's probe runs")
    print("(a round runs memfs's, nohist's and bare's one after another); rounds: its lowest..highest\n")
    head = f"{'request':<8} {'memfs':>8} {'nohist':>8} {'bare':>8}"
    print(f"{head} {'memfs above bare':>17} {'rounds':>15} {'nohist above':>13}  from")

    def above(k: str, formula: dict[str, int]) -> list[float]:
        """k minus bare in each round: a round's probe runs follow one another."""
        rounds = range(len(results["bare"]["p_lookup"]))
        return [
            sum(w * (results[k][op][r] - results["bare"][op][r]) for op, w in formula.items()) for r in rounds
        ]

    for req, formula, how in PER_REQUEST:
        m, h, b = (sum(w * med[k][op] for op, w in formula.items()) for k in ("memfs", "nohist", "bare"))
        each = above("memfs", formula)
        spread = f"{min(each):.0f}..{max(each):.0f}"
        mb, hb = statistics.median(each), statistics.median(above("nohist", formula))
        print(f"{req:<8} {m:8.1f} {h:8.1f} {b:8.1f} {mb:17.1f} {spread:>15} {hb:13.1f}  {how}")
    if counts is None:
        print("\n(requests per probe not checked: run with --count-requests)")
        return
    off = []
    for k in ("memfs", "bare"):
        for probe, want in PROBES.items():
            got, units = counts[k][probe]
            for c in set(want) | set(got):
                if c not in ("FORGET", "BATCH_FORGET") and abs(got[c] / units - want.get(c, 0)) > 0.05:
                    off.append(f"{k} {probe} {c} {got[c] / units:.2f} (want {want.get(c, 0)})")
    print("\nprobes checked against the request counts: " + ("as expected" if not off else "; ".join(off)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--rounds", type=int, default=5, help="timed rounds (0 with --count-requests: counts only)"
    )
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--uid", type=int, default=1001)
    ap.add_argument("--no-index", action="store_true", help="mount memfs with index: {enabled: false}")
    ap.add_argument(
        "--save-iterations",
        type=int,
        default=150,
        help="save-loop iterations in all, split over the rounds",
    )
    ap.add_argument(
        "--count-requests",
        action="store_true",
        help="after the rounds, mount memfs and bare with libfuse's -o debug and count requests per op",
    )
    ap.add_argument("--count-files", type=int, default=100, help="files of the counted run")
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also mount the memfs of another checkout, same rounds (before/after)",
    )
    args = ap.parse_args()
    uid = args.uid
    # The history ops' work in all is split over the rounds: with history on they are slow.
    per_round = {
        "rewrite_passes": max(1, -(-REWRITE_PASSES // max(1, args.rounds))),
        "save_iters": max(1, -(-args.save_iterations // max(1, args.rounds))),
    }

    base = Path(tempfile.mkdtemp(prefix="memfs-bench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    memfs_mnt, bind_src, bind_mnt, native = (base / n for n in ("memfs", "bind-src", "bindfs", "native"))
    bare_src, bare_mnt = base / "bare-src", base / "bare"
    count_mnt, bare_count_src, bare_count_mnt = (
        base / "memfs-count",
        base / "bare-count-src",
        base / "bare-count",
    )
    # The same memfs with one feature off, in the same interleaved run: what it costs.
    variants = {
        "nohist": "history: {enabled: false}\n",
        "noembed": "search: {embedder: none}\n",
        "noguard": "secrets: {guard: off}\n",
    }
    variant_mnt = {v: base / f"memfs-{v}" for v in variants}
    dirs = [memfs_mnt, *variant_mnt.values(), bind_src, bind_mnt, native, bare_src, bare_mnt]
    for p in [*dirs, count_mnt, bare_count_src, bare_count_mnt]:
        p.mkdir()
        os.chmod(p, 0o755)
    for p in (native, bare_src, bare_count_src):
        os.chown(p, uid, uid)
    data, cfg = base / "data", base / "config.yaml"
    cfg.write_text("index: {enabled: false}\n" if args.no_index else "")
    env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run"))
    # memfs runs from a neutral cwd (`python -m` puts the cwd first on sys.path, ahead of
    # PYTHONPATH): an explicit PYTHONPATH picks the memfs to measure, else this checkout.
    env.setdefault("PYTHONPATH", str(REPO))
    memfs = [sys.executable, "-m", "memfs"]

    def memfs_umount(mnt: Path, proc: subprocess.Popen | None = None) -> None:
        subprocess.run([*memfs, "umount", str(mnt)], capture_output=True, env=env, cwd=base)
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        if proc is not None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    with ExitStack() as cleanup:
        # Callbacks run in reverse: every mount is gone before its directory is removed.
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        where = sh(sys.executable, "-c", "import memfs; print(memfs.__file__)", env=env, cwd=base).stdout
        print(f"memfs from {where.strip()}", file=sys.stderr)
        med: dict[str, dict[str, float]] | None = None
        if args.rounds > 0:
            cleanup.callback(memfs_umount, memfs_mnt)
            sh(*memfs, "mount", str(memfs_mnt), "--data", str(data), "--config", str(cfg), env=env, cwd=base)
            for v, extra in variants.items():
                v_cfg = base / f"config-{v}.yaml"
                v_cfg.write_text(cfg.read_text() + extra)
                v_data = base / f"data-{v}"
                mount_v = ["mount", str(variant_mnt[v]), "--data", str(v_data), "--config", str(v_cfg)]
                cleanup.callback(memfs_umount, variant_mnt[v])
                sh(*memfs, *mount_v, env=env, cwd=base)
            cleanup.callback(subprocess.run, ["fusermount3", "-uz", str(bind_mnt)], capture_output=True)
            mount_bindfs(bind_src, bind_mnt, uid)
            bare_err = cleanup.enter_context(open(base / "bare.err", "wb"))
            bare = mount_bare(bare_src, bare_mnt, bare_err)
            cleanup.callback(umount_bare, bare_mnt, bare)
            targets = {
                "memfs": memfs_mnt,
                **variant_mnt,
                "native": native,
                "bindfs": bind_mnt,
                "bare": bare_mnt,
            }
            if args.baseline:
                base_mnt = base / "memfs-baseline"
                base_mnt.mkdir()
                os.chmod(base_mnt, 0o755)
                base_env = dict(env, PYTHONPATH=str(Path(args.baseline).resolve()))
                mount_b = [
                    "mount",
                    str(base_mnt),
                    "--data",
                    str(base / "data-baseline"),
                    "--config",
                    str(cfg),
                ]
                cleanup.callback(memfs_umount, base_mnt)
                sh(*memfs, *mount_b, env=base_env, cwd=base)
                targets["baseline"] = base_mnt
            results: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in targets}
            order = list(targets)
            for r in range(args.rounds):
                random.Random(r).shuffle(order)
                for name in order:
                    d = targets[name] / f"round{r}"
                    subprocess.run(as_uid(uid, "mkdir", str(d)), check=True)
                    wait_quiet()  # the target before may still commit or scan its last phases
                    for op, v in run_worker(uid, args.files, d, per_round).items():
                        results[name][op].append(v)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
            time.sleep(PROBE_SETTLE)
            probe_order = list(PROBE_TARGETS)
            for r in range(args.rounds):
                random.Random(r).shuffle(probe_order)
                for name in probe_order:
                    d = targets[name] / f"probes{r}"
                    subprocess.run(as_uid(uid, "mkdir", str(d)), check=True)
                    opt = {"only_probes": True, "probe_files": PROBE_FILES, "probe_reps": PROBE_REPS}
                    for op, v in run_worker(uid, PROBE_FILES, d, opt).items():
                        results[name][op].append(v)
            print("probes done", file=sys.stderr)
            med = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in results.items()}
            print_timings(args, med, per_round)
        counts = None
        if args.count_requests:
            print("counting requests: memfs and bare with libfuse -o debug", file=sys.stderr)
            memfs_log = cleanup.enter_context(open(base / "memfs-count.fuse", "wb"))
            argv = ["mount", str(count_mnt), "--data", str(base / "data-count"), "--config", str(cfg)]
            argv += ["--log-file", str(base / "memfs-count.log")]
            cleanup.callback(memfs_umount, count_mnt)  # before the daemon exists: a failed start too
            daemon = mount_memfs_foreground(argv, memfs_log, env, base, (FUSE_DEBUG_MEMFS,))
            cleanup.callback(memfs_umount, count_mnt, daemon)
            bare_log = cleanup.enter_context(open(base / "bare-count.fuse", "wb"))
            bare_counted = mount_bare(bare_count_src, bare_count_mnt, bare_log, debug=True)
            cleanup.callback(umount_bare, bare_count_mnt, bare_counted)
            opt = {"rewrite_passes": 2, "save_iters": 20, "probe_files": PROBE_FILES}
            counts = {
                "memfs": count_requests(
                    uid, args.count_files, count_mnt / "count", opt, base / "memfs-count.fuse"
                ),
                "bare": count_requests(
                    uid, args.count_files, bare_count_mnt / "count", opt, base / "bare-count.fuse"
                ),
            }
            print_counts(counts, med, args.count_files)
        if med is not None:
            print_per_request(counts, med, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
