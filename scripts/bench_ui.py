"""memfs ui at scale: how long each page takes to answer with N entries (default 10k:
half alice's, half her team's) and a 1 MB entry with several versions, through a real
mount, as alice, over loopback HTTP.

    sudo .venv/bin/python scripts/bench_ui.py [--entries N] [--requests R]

Entries are written into DATA before the mount (its start-up reconcile indexes them); the
1 MB file and its versions are written through the mount, so history records them. Each
page is requested once, then R times; p50 and p95 of the whole request (server
and client on the same 2 cores), and the first request's time (the page's caches cold).
The pages are timed once the first mount's start-up work (embedding N entries, history's
reconcile) has settled; --during-startup times them at once, while it runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from quiet import wait_quiet  # scripts/ is on sys.path: this script's own folder

REPO = Path(__file__).resolve().parent.parent
UID = 1001
CONFIG = """users:
  alice: {uid: 1001}
  bob: {uid: 1002}
teams:
  eng: {members: [alice, bob]}
"""
WORDS = (
    "deploy tabs review latency cache python trio fuse index memory team build release test "
    "owner config search history restore diff sync remote merge conflict budget quota"
).split()
AS_ALICE = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]


def entry(i: int, rnd: random.Random) -> str:
    body = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(40, 200)))
    kind = ("user", "feedback", "project", "reference")[i % 4]
    return (
        f"---\nname: Entry {i}\ndescription: note {i} about {rnd.choice(WORDS)}\ntype: {kind}\n---\n{body}\n"
    )


def big(rnd: random.Random, size: int) -> list[str]:
    lines = ["---", "name: Big", "description: a 1 MB entry", "type: reference", "---"]
    while sum(len(x) + 1 for x in lines) < size:
        lines.append(" ".join(rnd.choice(WORDS) for _ in range(10)))
    return lines


class Run:
    def __init__(self, base: Path):
        self.base = base
        self.env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run"), PYTHONPATH=str(REPO))
        self.mnt, self.data = base / "mnt", base / "data"
        self.ui: subprocess.Popen | None = None

    def memfs(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "memfs", *args], env=self.env, cwd=self.base, check=True,
                       capture_output=True, timeout=1800)  # fmt: skip

    def as_alice(self, code: str, *args: str, stdin: str = "") -> str:
        r = subprocess.run(
            [*AS_ALICE, "/usr/bin/python3", "-c", code, *args],
            capture_output=True, text=True, check=True, cwd="/", timeout=1800, input=stdin,
        )  # fmt: skip
        return r.stdout


def request(port: int, cookie: str, path: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}", "Cookie": cookie})
    r = conn.getresponse()
    body = r.read()
    took = (time.perf_counter() - t0) * 1000
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: {r.status} {body[:300]!r}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument(
        "--during-startup",
        action="store_true",
        help="time the pages at once, while the first mount still embeds and reconciles",
    )
    args = ap.parse_args()
    rnd = random.Random(7)
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-ui-", dir="/tmp"))
    os.chmod(base, 0o755)
    run = Run(base)
    try:
        run.mnt.mkdir()
        (base / "config.yaml").write_text(CONFIG)
        for i in range(args.entries):
            where = run.data / ("private/alice" if i % 2 else "teams/eng") / f"d{i % 50:02d}"
            where.mkdir(parents=True, exist_ok=True)
            (where / f"entry-{i:05d}.md").write_text(entry(i, rnd))
        t0 = time.perf_counter()
        run.memfs("mount", str(run.mnt), "--data", str(run.data), "--config", str(base / "config.yaml"))
        lines = big(rnd, 1 << 20)
        # three versions of a 1 MB entry, each changing a few lines, written as alice
        writes = []
        for v in range(3):
            for k in range(5):
                lines[rnd.randrange(5, len(lines))] = f"changed in version {v} line {k}"
            writes.append("\n".join(lines) + "\n")
        run.as_alice(
            "import json, sys, os\n"
            "for t in json.loads(sys.stdin.read()):\n"
            "    open(os.path.join(sys.argv[1], 'big.md'), 'w').write(t)\n"
            "    os.listdir(os.path.join(sys.argv[1], '.memfs/history/big.md'))\n",
            str(run.mnt), stdin=json.dumps(writes),
        )  # fmt: skip
        run.as_alice("import sys; open(sys.argv[1] + '/.memfs/search/tabs').read()", str(run.mnt))
        ready = time.perf_counter() - t0
        if not args.during_startup:  # the first mount's embedding of N entries, history's reconcile
            print(f"start-up work settled after {wait_quiet(120):.1f} s more", file=sys.stderr)
        versions = json.loads(run.as_alice(
            "import json, os, sys; print(json.dumps(sorted(os.listdir(sys.argv[1] + '/.memfs/history/big.md'))))",  # noqa: E501
            str(run.mnt),
        ))  # fmt: skip
        run.ui = subprocess.Popen(
            [*AS_ALICE, sys.executable, "-m", "memfs", "ui", "--mount", str(run.mnt)],
            cwd=REPO, env=run.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        url = urllib.parse.urlsplit(run.ui.stdout.readline().strip() if run.ui.stdout else "")
        port = url.port or 0
        cookie = f"memfs_ui_{port}={urllib.parse.parse_qs(url.query)['token'][0]}"
        q = urllib.parse.quote
        pages = {
            "overview": "/",
            "overview, a type filter": "/?type=feedback&page=3",
            "search keyword": "/search?q=deploy+latency&mode=keyword",
            "search semantic": "/search?q=deploy+latency&mode=semantic",
            "search hybrid": "/search?q=deploy+latency&mode=hybrid",
            "entry (small)": "/entry?path=d07/entry-00007.md",
            "entry (1 MB, 3 versions)": "/entry?path=big.md",
            "diff 1 MB, two versions": f"/diff?path=big.md&a={q(versions[0])}&b={q(versions[-1])}",
            "diff 1 MB, version vs now": f"/diff?path=big.md&a={q(versions[0])}&b=current",
            "activity": "/activity",
            "activity, filtered": "/activity?user=alice&path=big",
        }
        print(f"{args.entries} entries + a 1 MB entry with {len(versions)} versions; ready in {ready:.1f} s")
        print(f"{'page':32} {'first ms':>8} {'p50 ms':>8} {'p95 ms':>8}")
        out = {}
        for name, path in pages.items():
            first = request(port, cookie, path)  # the page's own caches (versions, overview) cold
            times = sorted(request(port, cookie, path) for _ in range(args.requests))
            p50, p95 = statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]
            out[name] = (first, p50, p95)
            print(f"{name:32} {first:8.1f} {p50:8.1f} {p95:8.1f}", flush=True)
        print(f"load average during the run: {os.getloadavg()[1]:.1f} (1 = one of 2 cores busy)")
        print(json.dumps(out))
    finally:
        if run.ui is not None:
            run.ui.terminate()
            run.ui.wait(timeout=60)
        try:
            run.memfs("umount", str(run.mnt))
        except subprocess.CalledProcessError:
            subprocess.run(["fusermount3", "-uz", str(run.mnt)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
