"""What the secret guard costs a writer, through a real mount, guard on (default) and off.

Usage: sudo .venv/bin/python scripts/bench_guard.py [--rounds N]

Per round, as alice (uid 1001), timed inside the writing process:
  1000 small writes (one 60-byte line each) to one file, in team/ and in private memory;
  1000 files created, written once and closed, in team/ and in private memory (a private
  close is scanned for the flag);
  one 10 MiB file written in 128 KiB chunks into team/.
Prints the median per case, in ms: what the writer waits for. The flag scans of private
closes run in the background after a pause (FLAG_QUIET): the bench waits that out between
runs, so they do not land in the next run's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ALICE, Mount  # noqa: E402

from memfs.secrets.service import FLAG_QUIET  # noqa: E402

CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
teams:
  eng: {members: [alice, bob]}
"""

PROGRAM = """
import os, sys, time
where, case = sys.argv[1], sys.argv[2]
line = b"- a memory line about tabs and indentation, see notes.md 1\\n"
t = time.perf_counter()
if case == "writes":
    fd = os.open(where + "/w.md", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(1000):
        os.write(fd, line)
    os.close(fd)
elif case == "files":
    os.makedirs(where + "/f", exist_ok=True)
    for i in range(1000):
        fd = os.open(f"{where}/f/{i}.md", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, line * 20)
        os.close(fd)
else:
    chunk = (line * 2300)[: 128 * 1024]
    fd = os.open(where + "/big.md", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(80):
        os.write(fd, chunk)
    os.close(fd)
print((time.perf_counter() - t) * 1000)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cases = [("writes", "team"), ("writes", "."), ("files", "team"), ("files", "."), ("big", "team")]
    results: dict[tuple[str, str, str], list[float]] = {}
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-guard-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        mounts = {}
        for label, extra in (("on", ""), ("off", "secrets: {guard: off}\n")):
            b = base / label
            b.mkdir()
            os.chmod(b, 0o755)
            mounts[label] = Mount(b, CONFIG + extra)
            mounts[label].start()
        for _ in range(args.rounds):
            for case, where in cases:
                for label, m in mounts.items():  # interleaved: on and off see the same load
                    out = m.run(ALICE, [sys.executable, "-c", PROGRAM, where, case]).stdout
                    results.setdefault((case, where, label), []).append(float(out))
                    # the guard's deferred scans of private closes (FLAG_QUIET after the last)
                    # run here, not in the next run's time
                    time.sleep(FLAG_QUIET + 1.5)
        for m in mounts.values():
            m.stop()
    finally:
        for m in locals().get("mounts", {}).values():
            m.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'case':<32} {'guard on':>10} {'guard off':>10}  (median ms of {args.rounds})")
    for case, where in cases:
        name = {"writes": "1000 writes to one file", "files": "1000 files, 1 write each"}.get(
            case, "10 MiB in 128 KiB writes"
        )
        on = statistics.median(results[(case, where, "on")])
        off = statistics.median(results[(case, where, "off")])
        print(f"{name + ' in ' + ('private' if where == '.' else where):<32} {on:>10.0f} {off:>10.0f}")


if __name__ == "__main__":
    main()
