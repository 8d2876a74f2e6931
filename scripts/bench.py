"""The core workload on memfs, a native directory, bindfs and a bare pyfuse3 passthrough
(scripts/passthrough.py, "bare": the floor any pyfuse3 filesystem pays), interleaved; prints
ms per 1000 files, the ratios memfs/native, memfs/bindfs and memfs/bare, and per op memfs's
microseconds per file above the floor. Run by scripts/bench (as root; the workload itself
runs as a non-root uid). It measures whichever memfs is importable: PYTHONPATH=/old/checkout
runs an older one (the daemon inherits the environment and runs from a neutral cwd)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs as the benchmark uid, with the system python, in the target directory.
WORKER = r"""
import json, os, random, subprocess, sys, time
n = int(sys.argv[1]); d = sys.argv[2]; opt = json.loads(sys.argv[3])
os.chdir(d)
rnd = random.Random(1)
WORDS = ["alpha", "beta", "gamma", "delta", "memory", "note"]
def body(i):
    words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(150, 300)))
    head = "---\nname: e%d\ndescription: entry %d\ntype: project\n---\n" % (i, i)
    return (head + words).encode()[: rnd.randint(1024, 2048)]
bodies = [body(i) for i in range(n)]
names = ["e%05d.md" % i for i in range(n)]
t = {}
def timed(key, fn, units=n):  # us per unit = ms per 1000 units
    t0 = time.perf_counter(); fn(); t[key] = (time.perf_counter() - t0) * 1000 * 1000 / units
def create():
    for name, body in zip(names, bodies):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); os.write(fd, body); os.close(fd)
def stat_all():
    for name in names: os.stat(os.path.join(d, name))  # absolute: a walk through the mount root
def read_all():
    for name in names:
        with open(name, "rb") as f: f.read()
def run(cmd):
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
moved = ["r%05d.md" % i for i in range(n)]
def rename_all():
    for a, b in zip(names, moved): os.rename(a, b)
def unlink():
    for name in moved: os.unlink(name)
timed("create", create)
timed("stat1", stat_all); timed("stat2", stat_all)
timed("read1", read_all); timed("read2", read_all)
run(["grep", "-r", "-c", "memory", "."])
timed("grep_r", lambda: run(["grep", "-r", "-c", "memory", "."]))
timed("ls_l", lambda: run(["ls", "-l", "."]))
timed("rename", rename_all)
timed("unlink", unlink)
# History's cost: whole-file rewrites, as a tool saving a file does (O_TRUNC open+write+close)
REWRITE_FILES, REWRITE_PASSES = 100, 10
rewritten = ["w%03d.md" % i for i in range(REWRITE_FILES)]
for i, name in enumerate(rewritten):
    with open(name, "wb") as f: f.write(bodies[i % n])
def rewrite():
    for p in range(REWRITE_PASSES):
        for i, name in enumerate(rewritten):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, b"%d " % p + bodies[i % n]); os.close(fd)
timed("rewrite", rewrite, REWRITE_FILES * REWRITE_PASSES)
# ... and an agent's save loop on a few bigger files: each rewritten in place (no O_TRUNC),
# patched in the middle, cut shorter; per iteration, every file once. The caller splits the
# iterations over the rounds (with history on, each step may wait for a commit).
SAVE_FILES, SAVE_SIZE, SAVE_ITERS = 4, 48 * 1024, opt["save_iters"]
saved = ["s%d.md" % k for k in range(SAVE_FILES)]
text = b"".join(bodies) * (SAVE_SIZE // max(1, len(b"".join(bodies))) + 2)
for name in saved:
    with open(name, "wb") as f: f.write(text[:SAVE_SIZE])
def saveloop():
    for it in range(SAVE_ITERS):
        for name in saved:
            fd = os.open(name, os.O_WRONLY); os.pwrite(fd, text[it % 97 :][:SAVE_SIZE], 0); os.close(fd)
            fd = os.open(name, os.O_WRONLY); os.pwrite(fd, b"patch %03d " % it * 30, SAVE_SIZE // 2)
            os.close(fd)
            os.truncate(name, SAVE_SIZE - 2048)
timed("saveloop", saveloop, SAVE_ITERS)
print(json.dumps(t))
"""

OPS = ["create", "stat1", "stat2", "read1", "read2", "grep_r", "ls_l", "rename", "unlink"]
OPS += ["rewrite", "saveloop"]  # history's cost: whole-file rewrites, an agent's save loop
UNITS = (
    "ms per 1000 files of 1-2 KB; rewrite: per 1000 rewrites of a 1-2 KB file (O_TRUNC open+write+close,\n"
    "100 files x 10 passes a round); saveloop: per 1000 iterations of an agent's save loop (4 files of\n"
    "48 KiB, each rewritten in place, patched 300 B in the middle, truncated 2 KiB shorter; {iters} a round)"
)


COLUMNS = ("memfs", "nohist", "noembed", "native", "bindfs", "bare")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kw)


def mount_bare(src: Path, mnt: Path, stderr, debug: bool = False) -> subprocess.Popen:
    """scripts/passthrough.py over src, as root, in the foreground; returns once mounted."""
    cmd = [sys.executable, str(REPO / "scripts" / "passthrough.py"), str(src), str(mnt)]
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--uid", type=int, default=1001)
    ap.add_argument("--no-index", action="store_true", help="mount memfs with index: {enabled: false}")
    ap.add_argument(
        "--save-iterations",
        type=int,
        default=150,
        help="save-loop iterations in all, split over the rounds (history on: ~0.1 s each today)",
    )
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also mount the memfs of another checkout, same rounds (before/after)",
    )
    args = ap.parse_args()
    uid = args.uid
    save_iters = max(1, -(-args.save_iterations // max(1, args.rounds)))

    base = Path(tempfile.mkdtemp(prefix="memfs-bench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    memfs_mnt, bind_src, bind_mnt, native = (base / n for n in ("memfs", "bind-src", "bindfs", "native"))
    bare_src, bare_mnt = base / "bare-src", base / "bare"
    # The same memfs with one feature off, in the same interleaved run: what it costs.
    variants = {"nohist": "history: {enabled: false}\n", "noembed": "search: {embedder: none}\n"}
    variant_mnt = {v: base / f"memfs-{v}" for v in variants}
    for p in (memfs_mnt, *variant_mnt.values(), bind_src, bind_mnt, native, bare_src, bare_mnt):
        p.mkdir()
        os.chmod(p, 0o755)
    os.chown(native, uid, uid)
    os.chown(bare_src, uid, uid)
    data, cfg = base / "data", base / "config.yaml"
    cfg.write_text("index: {enabled: false}\n" if args.no_index else "")
    env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run"))
    # memfs runs from a neutral cwd (`python -m` puts the cwd first on sys.path, ahead of
    # PYTHONPATH): an explicit PYTHONPATH picks the memfs to measure, else this checkout.
    env.setdefault("PYTHONPATH", str(REPO))
    memfs = [sys.executable, "-m", "memfs"]

    def memfs_umount(mnt: Path) -> None:
        subprocess.run([*memfs, "umount", str(mnt)], capture_output=True, env=env, cwd=base)
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)

    with ExitStack() as cleanup:
        # Callbacks run in reverse: every mount is gone before its directory is removed.
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        where = sh(sys.executable, "-c", "import memfs; print(memfs.__file__)", env=env, cwd=base).stdout
        print(f"memfs from {where.strip()}", file=sys.stderr)
        cleanup.callback(memfs_umount, memfs_mnt)
        sh(*memfs, "mount", str(memfs_mnt), "--data", str(data), "--config", str(cfg), env=env, cwd=base)
        for v, extra in variants.items():
            v_cfg = base / f"config-{v}.yaml"
            v_cfg.write_text(cfg.read_text() + extra)
            v_data = base / f"data-{v}"
            mount_v = ["mount", str(variant_mnt[v]), "--data", str(v_data), "--config", str(v_cfg)]
            cleanup.callback(memfs_umount, variant_mnt[v])
            sh(*memfs, *mount_v, env=env, cwd=base)
        # bindfs as admins use it today: a root-owned directory re-owned to the user.
        cleanup.callback(subprocess.run, ["fusermount3", "-uz", str(bind_mnt)], capture_output=True)
        sh(
            "bindfs",
            "-o",
            "allow_other",
            f"--force-user={uid}",
            f"--force-group={uid}",
            "--create-for-user=0",
            "--create-for-group=0",
            str(bind_src),
            str(bind_mnt),
        )
        bare_log = cleanup.enter_context(open(base / "bare.err", "wb"))
        bare = mount_bare(bare_src, bare_mnt, bare_log)
        cleanup.callback(umount_bare, bare_mnt, bare)
        targets = {"memfs": memfs_mnt, **variant_mnt, "native": native, "bindfs": bind_mnt, "bare": bare_mnt}
        if args.baseline:
            base_mnt = base / "memfs-baseline"
            base_mnt.mkdir()
            os.chmod(base_mnt, 0o755)
            base_env = dict(env, PYTHONPATH=str(Path(args.baseline).resolve()))
            mount_b = ["mount", str(base_mnt), "--data", str(base / "data-baseline"), "--config", str(cfg)]
            cleanup.callback(memfs_umount, base_mnt)
            sh(*memfs, *mount_b, env=base_env, cwd=base)
            targets["baseline"] = base_mnt
        results: dict[str, dict[str, list[float]]] = {k: {op: [] for op in OPS} for k in targets}
        order = list(targets)
        for r in range(args.rounds):
            random.Random(r).shuffle(order)
            for name in order:
                d = targets[name] / f"round{r}"
                subprocess.run(
                    ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "mkdir", str(d)],
                    check=True,
                )
                out = subprocess.run(
                    [
                        "setpriv",
                        f"--reuid={uid}",
                        f"--regid={uid}",
                        "--clear-groups",
                        "/usr/bin/python3",
                        "-c",
                        WORKER,
                        str(args.files),
                        str(d),
                        json.dumps({"save_iters": save_iters}),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                for op, v in json.loads(out.stdout).items():
                    results[name][op].append(v)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        med = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in results.items()}
        print(f"\nmedian of {args.rounds} interleaved rounds, uid {uid}; {UNITS.format(iters=save_iters)}\n")
        print("memfs: defaults (history on, WordLlama embeddings); nohist: history: {enabled: false};")
        print("noembed: search: {embedder: none}; bare: scripts/passthrough.py, a bare pyfuse3 passthrough\n")
        head = f"{'op':<8} {'memfs':>9} {'nohist':>9} {'noembed':>9} {'native':>9} {'bindfs':>9} {'bare':>9}"
        print(f"{head} {'memfs/native':>13} {'memfs/bindfs':>13} {'hist on/off':>12} {'embed on/off':>13}")
        for op in OPS:
            m, h, e, n, b, f = (med[k][op] for k in COLUMNS)
            print(
                f"{op:<8} {m:9.1f} {h:9.1f} {e:9.1f} {n:9.1f} {b:9.1f} {f:9.1f} {m / n:13.2f} {m / b:13.2f} "
                f"{m / h:12.2f} {m / e:13.2f}"
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
