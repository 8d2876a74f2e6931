"""The time each FUSE request spends inside its filesystem's handler, read from a daemon
serving a real mount: what memfs adds per request, without the round trip around it.

Through a mount, a loop's time per request is mostly what every pyfuse3 filesystem pays
(the kernel, /dev/fuse, trio's scheduling: ~50-90 us here), and it moves by tens of us
between runs on this machine. The handler's own time is what memfs's code adds, with the
caches as real traffic leaves them, and it holds still. PRELUDE runs a daemon (memfs's
`mount --foreground`, or scripts/passthrough.py) with every handler of the operations object
it gives pyfuse3.init wrapped in a clock (one frame and two clock reads a request, the same
on every daemon); SIGUSR2 makes it write what it measured since the last signal to
HANDLER_CLOCK_DIR/<pid>.json ({handler: [ns, ...]}) and start again. SIGUSR1 is memfs's
traceback dump (memfs/daemonlog.py), so not that one. For benchmarks only (bench_probes.py --inside).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

# Run as `python -c PRELUDE TARGET ARGS...`: TARGET is a script path or `-m module`.
PRELUDE = r"""
import json, os, runpy, signal, sys, time
import pyfuse3

HANDLERS = ("lookup", "getattr", "setattr", "access", "create", "open", "read", "write",
            "release", "fsync", "unlink", "rename", "mkdir", "rmdir", "opendir", "readdir",
            "releasedir", "statfs", "getxattr", "listxattr")
spent = {}

last = [""]

def clocked(name, fn):
    clock = time.perf_counter_ns
    async def call(*args):
        t = clock()
        try:
            return await fn(*args)
        finally:
            spent.setdefault(name, []).append(clock() - t)
            last[0] = name
    return call

def clocked_after(drain):
    # memfs's bookkeeping after a reply (memfs/after_reply.py), counted as "<handler>+after"
    clock = time.perf_counter_ns
    def call():
        t = clock()
        try:
            return drain()
        finally:
            spent.setdefault(last[0] + "+after", []).append(clock() - t)
    return call

init = pyfuse3.init

def clocked_init(ops, mountpoint, options):
    for name in HANDLERS:
        fn = getattr(ops, name, None)
        if fn is not None:
            setattr(ops, name, clocked(name, fn))
    after = getattr(ops, "after", None)
    if after is not None:
        after.drain = clocked_after(after.drain)
    return init(ops, mountpoint, options)

pyfuse3.init = clocked_init

def dump(signum, frame):
    out = os.path.join(os.environ["HANDLER_CLOCK_DIR"], "%d.json" % os.getpid())
    with open(out + ".tmp", "w") as f:
        json.dump(spent, f)
    os.replace(out + ".tmp", out)
    spent.clear()

signal.signal(signal.SIGUSR2, dump)
if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def folder(base: Path) -> Path:
    """Where the daemons write what they measured: any daemon user may write there (memfs's
    runs as `memfs` once mounted)."""
    d = base / "handler-clock"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o1777)
    return d


def take(where: Path, pid: int, timeout: float = 10.0) -> dict[str, list[int]]:
    """What daemon `pid` measured since the last take (it starts again from nothing)."""
    out = where / f"{pid}.json"
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while not out.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon {pid} wrote no handler times (is it run through PRELUDE?)")
        time.sleep(0.005)
    got = json.loads(out.read_text())
    out.unlink()
    return got
