"""CPU-seconds per test file: pytest and every process it starts, the detached daemons too.

Usage: sudo .venv/bin/python scripts/suite_cpu.py [--against DIR] [tests/t4_search.py ...]

The suite is CPU-bound on 2 cores, so CPU, not wall time, says whether a change made it
shorter, and it still means something while other runs share the machine. Each file runs
alone (`pytest -n0`) under this process as a child subreaper (PR_SET_CHILD_SUBREAPER): a
daemon that `memfs mount` detached is re-parented here and its CPU counted when it ends.
With --against DIR (another checkout, e.g. `git worktree add DIR main`), each file runs
there too, at the same time, so both runs see the same load; prints CPU-s and wall s.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
CHECKOUT = Path(__file__).resolve().parent.parent


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def start(checkout: Path, test: str) -> tuple[int, int]:
    """Fork a subreaper that runs one file and reports "CPU-s wall-s exit-code" on a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    os.close(r)
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    began = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", test]
    code = subprocess.run(cmd, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    while True:  # reap the re-parented daemons and workers, so their CPU is counted
        try:
            os.wait()
        except ChildProcessError:
            break
    os.write(w, f"{cpu_of_children()} {time.monotonic() - began} {code}".encode())
    os._exit(0)


def collect(pid: int, r: int) -> tuple[float, float, int]:
    with os.fdopen(r) as f:
        cpu, wall, code = f.read().split()
    os.waitpid(pid, 0)
    return float(cpu), float(wall), int(code)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", type=Path, help="another checkout, run side by side")
    ap.add_argument("files", nargs="*", help="test files (default: every tests/t*.py)")
    args = ap.parse_args()
    files = args.files or sorted(str(p.relative_to(CHECKOUT)) for p in (CHECKOUT / "tests").glob("t*.py"))
    sides = [CHECKOUT] + ([args.against.resolve()] if args.against else [])
    totals = [0.0] * len(sides)
    print("file", *(f"cpu_s,wall_s[{s.name}]" for s in sides), sep="\t")
    for test in files:
        running = [start(side, test) for side in sides]  # side by side
        results = [collect(pid, r) for pid, r in running]
        cells = []
        for i, (cpu, wall, code) in enumerate(results):
            totals[i] += cpu
            cells.append(f"{cpu:.1f},{wall:.0f}" + ("" if code == 0 else f" (exit {code})"))
        print(test, *cells, sep="\t", flush=True)
    print("total", *(f"{t:.1f}" for t in totals), sep="\t")
    return 0


if __name__ == "__main__":
    sys.exit(main())
