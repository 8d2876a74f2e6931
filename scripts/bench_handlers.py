"""memfs's handlers against the bare passthrough's, called in one process: what memfs's own
code adds per request, without the kernel's round trip (scripts/bench's probes measure the
whole request through a mount, where the noise of a shared machine is often larger than
what memfs adds). Run by `scripts/bench --handlers` (as root).

memfs is built as a mount builds it (memfs.daemon.build: history, index, embedder, secret
guard, quotas), without its background tasks; the bare floor is scripts/passthrough.py's
Bare. Each case runs on 100 files in a folder, best of 3 alternated runs, microseconds per
file: getattr; lookup of an existing and of a missing name; open + release (read only);
open, a 4 KiB read and release; and unlink of a closed 1 KB file the kernel has forgotten
(with history on, its content not yet committed moves into history's spool), and of an
empty one (history records it, nothing moves); create + release of an empty file, and create
+ a 1 KB write + release (each timed alone, the files removed after, untimed). With --ram-disk
the data sits on an ext4 image in /dev/shm (scripts/bench.py's ram_disk). With --calls
it counts instead the Python and C function calls the handlers make per file
(sys.setprofile): through a mount each Python call costs ~0.7-1 us (scripts/bench's
probes), so this shows where a request's time above the floor goes, without the noise of
timing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pyfuse3
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import bench  # noqa: E402
import passthrough  # noqa: E402

from memfs import config as config_mod  # noqa: E402
from memfs import daemon  # noqa: E402
from memfs.identity import Identities  # noqa: E402
from memfs.numbers import ROOT_INODE  # noqa: E402
from memfs.store import Store  # noqa: E402

UID = 1001
N = 100


def ctx():
    return SimpleNamespace(uid=UID, gid=UID, pid=4242, umask=0o022)


async def setup(o) -> tuple[int, list[int]]:
    d = (await o.mkdir(ROOT_INODE, b"w", stat.S_IFDIR | 0o755, ctx())).st_ino
    inos = []
    for i in range(N):
        info, at = await o.create(d, b"p%03d" % i, stat.S_IFREG | 0o600, os.O_RDWR | os.O_CREAT, ctx())
        await o.write(info.fh, 0, b"x" * 1500)
        await o.release(info.fh)
        inos.append(at.st_ino)
    return d, inos


def cases(o, d: int, inos: list[int]) -> dict:
    made = [0]
    spent = [0.0]  # a case that times only part of its work adds it here

    async def getattr_():
        for i in inos:
            await o.getattr(i, ctx())

    async def lookup():
        for i in range(N):
            await o.lookup(d, b"p%03d" % i, ctx())

    async def lookup_missing():
        for i in range(N):
            try:
                await o.lookup(d, b"n%03d" % i, ctx())
            except pyfuse3.FUSEError:
                pass

    async def open_release():
        for i in inos:
            info = await o.open(i, os.O_RDONLY, ctx())
            await o.release(info.fh)

    async def open_read_release():
        for i in inos:
            info = await o.open(i, os.O_RDONLY, ctx())
            await o.read(info.fh, 0, 4096)
            await o.release(info.fh)

    async def make(names: list[bytes], size: int) -> list[int]:
        """Create, write `size` bytes (if any) and release each name; their inode numbers."""
        inos = []
        for name in names:
            info, at = await o.create(d, name, stat.S_IFREG | 0o600, os.O_WRONLY | os.O_CREAT, ctx())
            if size:
                await o.write(info.fh, 0, b"y" * size)
            await o.release(info.fh)
            inos.append(at.st_ino)
        return inos

    async def forget(inos: list[int]) -> None:
        """What the kernel sends once it drops the files' inodes (through a mount)."""
        forgot = o.forget([(ino, 1) for ino in inos])
        if forgot is not None:
            await forgot

    def unlink(size: int):
        async def run():
            made[0] += 1
            names = [b"u%d_%03d" % (made[0], i) for i in range(N)]
            await forget(await make(names, size))
            t0 = time.perf_counter()
            for name in names:
                await o.unlink(d, name, ctx())
            spent[0] += time.perf_counter() - t0

        return run

    def create(size: int):
        async def run():
            made[0] += 1
            names = [b"c%d_%03d" % (made[0], i) for i in range(N)]
            t0 = time.perf_counter()
            inos = await make(names, size)
            spent[0] += time.perf_counter() - t0
            for name in names:  # untimed: the folder stays the same size from run to run
                await o.unlink(d, name, ctx())
            # ... and the kernel forgets the removed files, as through a mount: the next run's
            # creates reuse their backing inode numbers, which a node still held would make
            # memfs number on its own (own_numbers.py), as no real create loop does.
            await forget(inos)

        return run

    return {
        "getattr": getattr_,
        "lookup": lookup,
        "lookup-missing": lookup_missing,
        "open+release": open_release,
        "open+read+release": open_read_release,
        "unlink": unlink(1000),
        "unlink-empty": unlink(0),
        "create+release": create(0),
        "create+write+release": create(1000),
    }, spent


# The handlers each case's timed part calls: what --calls counts.
HANDLERS = {
    "getattr": ("getattr",),
    "lookup": ("lookup",),
    "lookup-missing": ("lookup",),
    "open+release": ("open", "release"),
    "open+read+release": ("open", "read", "release"),
    "unlink": ("unlink",),
    "unlink-empty": ("unlink",),
    "create+release": ("create", "release"),
    "create+write+release": ("create", "write", "release"),
}


async def count_calls(o, run, handlers: tuple[str, ...]) -> tuple[float, float]:
    """(Python calls, C calls) per file made inside the handlers while `run` runs: through
    a mount each costs about as much as its share of the request's time above the floor
    (scripts/bench's probes), so this is where that time goes, without the noise."""
    calls = [0, 0]

    def prof(frame, event, arg) -> None:
        if event == "call":
            calls[0] += 1
        elif event == "c_call" and arg is not sys.setprofile:  # the counter's own switch-off
            calls[1] += 1

    def counted(fn):
        async def call(*args):
            sys.setprofile(prof)
            try:
                return await fn(*args)
            finally:
                sys.setprofile(None)

        return call

    saved = {h: getattr(o, h) for h in handlers}
    for h, fn in saved.items():
        setattr(o, h, counted(fn))
    try:
        await run()
    finally:
        for h in handlers:
            delattr(o, h)  # the class's method again
    return calls[0] / N, calls[1] / N


async def main(reps: int, history: bool, calls: bool = False, where: Path = Path("/var/tmp")) -> None:
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-handlers-", dir=where))
    data = base / "data"
    Store.init_layout(data)
    conf: dict = {"users": {"alice": {"uid": UID}}}
    if not history:
        conf["history"] = {"enabled": False}
    cfg = config_mod.parse(conf)
    try:
        async with contextlib.AsyncExitStack() as stack:
            ops = daemon.build(cfg, Identities(cfg), data, base / "mnt", stack).ops
            src = base / "bare"
            src.mkdir()
            bare = passthrough.Bare(os.fsencode(src))
            mine, mine_spent = cases(ops, *(await setup(ops)))
            floor, floor_spent = cases(bare, *(await setup(bare)))
            on = "on" if history else "off"
            if calls:
                print(f"Python calls / C calls per file inside the handlers (history {on})")
                print(f"{'case':18} {'memfs':>12} {'bare':>12}")
                for name, handlers in HANDLERS.items():
                    got = []
                    for cs in (mine, floor):
                        await cs[name]()  # warm: nodes known, caches filled
                        got.append(await count_calls(ops if cs is mine else bare, cs[name], handlers))
                    (mp, mc), (bp, bc) = got
                    print(f"{name:18} {mp:5.1f} / {mc:4.1f} {bp:5.1f} / {bc:4.1f}")
                return
            print(f"us per file, best of 3 alternated runs of {reps} x {N} (history {on})")
            print(f"{'case':18} {'memfs':>8} {'bare':>8} {'above':>8}")
            for name in mine:
                best: dict[str, float] = {}
                for label, (cs, spent) in (("memfs", (mine, mine_spent)), ("bare", (floor, floor_spent))) * 3:
                    for _ in range(2):
                        await cs[name]()
                    spent[0] = 0.0
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        await cs[name]()
                    took = spent[0] or (time.perf_counter() - t0)
                    best[label] = min(best.get(label, 1e9), took * 1e6 / (reps * N))
                m, b = best["memfs"], best["bare"]
                print(f"{name:18} {m:8.1f} {b:8.1f} {m - b:8.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=30, help="passes over the 100 files per timed run")
    ap.add_argument("--no-history", action="store_true")
    ap.add_argument("--calls", action="store_true", help="count the calls each handler makes instead")
    ap.add_argument("--ram-disk", action="store_true", help="on an ext4 image in /dev/shm (bench.ram_disk)")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        where = Path("/var/tmp")
        if args.ram_disk:
            holder = Path(tempfile.mkdtemp(prefix="memfs-bench-handlers-disk-", dir=where))
            stack.callback(shutil.rmtree, holder, ignore_errors=True)
            where = bench.ram_disk(holder, stack)
        trio.run(main, args.reps, not args.no_history, args.calls, where)
