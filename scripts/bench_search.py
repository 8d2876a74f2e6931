"""Search benchmark: index time, search latency against grep, remount cost, write throughput
with indexing on and off. Run by `scripts/bench --search` (as root; every measured access
runs as a non-root uid through the mount).

For each corpus size: generate a deterministic corpus directly in a fresh DATA dir (50
users, 5 teams of 10, ~80% private / ~20% team entries), mount memfs (first mount indexes
everything), time searches and `grep -rl` as one uid, unmount and remount the unchanged
store. Then, once, compare create+write+close throughput on a mount with indexing on, one
with it off and a native directory, time how soon a search finds the last file written,
and check that files written after an idle search are indexed in the background.

--scale instead: one corpus of --users users x --per-user entries each (~20% of them in
the user's team, teams of --team-size), as many scopes as a real site; measures the first
mount (until the first search answers: initial indexing done), the daemon's RSS, search
latency for 1 and for N concurrent searchers (each its own uid), the remount, and writes
JSON to --out. It measures whichever memfs is importable: PYTHONPATH=/old/checkout runs an
older one (the daemon inherits the environment and runs from a neutral cwd).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

N_USERS = 50
N_TEAMS = 5
FIRST_UID = 2000
BENCH_UID = FIRST_UID  # u00, member of t0
TEAM_SHARE = 0.2
VOCAB_SIZE = 4000
N_RARE = 120
TYPES = ["user", "feedback", "project", "reference"]
TAGS = "infra python testing deploy api perf security docs ci oncall db frontend release style".split()
PRIVATE_FOLDERS = ["", "projects", "feedback", "reference", "notes/2024", "notes/2025"]
TEAM_FOLDERS = ["", "decisions", "runbooks", "projects", "reference/apis"]
SEARCH_TIMEOUT = 3600.0

# Runs as the benchmark uid, with the system python. argv[1]: JSON parameters.
WORKER = r"""
import json, os, re, subprocess, sys, time
cfg = json.loads(sys.argv[1])
TOTAL = re.compile(rb"^(\d+)(?: of (\d+))? results?$", re.M)

def search(mnt, q):
    t0 = time.perf_counter()
    with open(os.path.join(mnt, ".memfs", "search", cfg.get("prefix", "") + q), "rb") as f:
        data = f.read()
    dt = time.perf_counter() - t0
    m = TOTAL.search(data)
    return dt, 0 if m is None else int(m.group(2) or m.group(1))

def grep(d, q):
    t0 = time.perf_counter()
    r = subprocess.run(["grep", "-rl", q, "."], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, len(r.stdout.splitlines())

out = {}
mode = cfg["mode"]
if mode == "search":
    search(cfg["mnt"], cfg["queries"][0])  # warm-up, not counted
    if "start_at" in cfg:  # concurrent searchers start together
        time.sleep(max(0.0, cfg["start_at"] - time.time()))
    out["t0"] = time.time()
    out["search"] = [[q, *search(cfg["mnt"], q)] for q in cfg["queries"]]
    out["t1"] = time.time()
elif mode == "grep":
    for d in cfg["dirs"]:
        grep(d, cfg["words"][0])  # warm the caches, as a user's second grep would find them
    out["grep"] = {d: [] for d in cfg["dirs"]}
    for q in cfg["words"]:
        for d in cfg["dirs"]:
            out["grep"][d].append([q, *grep(d, q)])
elif mode == "write":
    import random
    rnd = random.Random(cfg["seed"])
    n, d = cfg["files"], os.path.join(cfg["mnt"], cfg["dir"])
    os.makedirs(d)
    syl = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = ["".join(rnd.choice(syl) for _ in range(rnd.randint(2, 3))) for _ in range(2000)]
    tok = cfg["token"]
    bodies = []
    for i in range(n):
        head = "---\nname: %s %d\ndescription: %s\ntype: %s\ntags: [%s]\n---\n\n" % (
            rnd.choice(words), i, " ".join(rnd.choices(words, k=10)),
            rnd.choice(["user", "feedback", "project", "reference"]), rnd.choice(words))
        text = "%s%s%d %s\n" % (head, tok, i, " ".join(rnd.choices(words, k=400)))
        bodies.append(text.encode()[: rnd.randint(1024, 2048)])
    names = [os.path.join(d, "w%05d.md" % i) for i in range(n)]
    t0 = time.perf_counter()
    for name, body in zip(names, bodies):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, body)
        os.close(fd)
    t1 = time.perf_counter()
    out["write_s"] = t1 - t0
    if cfg["search"]:
        # read-your-writes: how soon after the last close a search finds the last file
        time.sleep(cfg.get("settle", 0))
        last = "%s%d" % (tok, n - 1)
        tries = 0
        while True:
            tries += 1
            dt, total = search(cfg["mnt"], last)
            if tries == 1:
                out["first_search_s"] = dt
            if total >= 1 or time.perf_counter() - t1 > 60:
                break
            time.sleep(0.005)
        out["ryw_s"] = time.perf_counter() - t1
        out["ryw_tries"] = tries
        out["ryw_found"] = total >= 1
print(json.dumps(out))
"""


# -- corpus -------------------------------------------------------------------------------
def make_vocab(rnd: random.Random, n: int) -> list[str]:
    syl = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiouy"]
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < n:
        w = "".join(rnd.choice(syl) for _ in range(rnd.choice((2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


@dataclass
class Corpus:
    size: int
    n_private: int = 0
    n_team: int = 0
    visible: int = 0  # entries the bench uid can see
    common: list[str] = field(default_factory=list)
    mid: list[str] = field(default_factory=list)
    rare: list[str] = field(default_factory=list)  # each with a handful of hits for the bench uid
    seconds: float = 0.0
    # per searcher (user index): entries it can see, and each rare word's count of them
    visible_by: dict[int, int] = field(default_factory=dict)
    rare_hits: dict[int, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """Who exists: users u00.. with uids from FIRST_UID, teams t0.. of consecutive users."""

    n_users: int = N_USERS
    n_teams: int = N_TEAMS

    def team_of(self, user: int) -> int:
        return min(user // (self.n_users // self.n_teams), self.n_teams - 1)


DEFAULT_LAYOUT = Layout()


def user_name(i: int) -> str:
    return f"u{i:02d}"


def team_of(user: int) -> int:
    return DEFAULT_LAYOUT.team_of(user)


def write_config(
    path: Path,
    index_enabled: bool = True,
    lay: Layout = DEFAULT_LAYOUT,
    embedder: str = "wordllama",
    history: bool = True,
) -> None:
    lines = ["users:"]
    lines += [f"  {user_name(i)}: {{uid: {FIRST_UID + i}}}" for i in range(lay.n_users)]
    lines.append("teams:")
    members: dict[int, list[str]] = {}
    for i in range(lay.n_users):
        members.setdefault(lay.team_of(i), []).append(user_name(i))
    for t in range(lay.n_teams):
        lines.append(f"  t{t}: {{members: [{', '.join(members.get(t, []))}]}}")
    if not index_enabled:
        lines.append("index: {enabled: false}")
    lines.append(f"search: {{embedder: {embedder}}}")
    if not history:
        lines.append("history: {enabled: false}")
    path.write_text("\n".join(lines) + "\n")


def generate(
    data: Path,
    size: int,
    seed: int = 42,
    lay: Layout = DEFAULT_LAYOUT,
    per_user: int | None = None,
    searchers: tuple[int, ...] = (BENCH_UID - FIRST_UID,),
) -> Corpus:
    """Write `size` entries straight into DATA/private/<user>/ and DATA/teams/<team>/:
    owners drawn at random, or (per_user) exactly per_user entries for each user, each in
    its private memory or (TEAM_SHARE) its team's. Rare words get hits for each searcher."""
    t0 = time.perf_counter()
    rnd = random.Random(seed)
    vocab = make_vocab(random.Random(7), VOCAB_SIZE)
    cum = list(itertools.accumulate(1.0 / (r + 1) ** 1.05 for r in range(VOCAB_SIZE)))
    top = cum[-1]
    rand = rnd.random

    def words(k: int) -> list[str]:
        return [vocab[bisect.bisect(cum, rand() * top)] for _ in range(k)]

    owners: list[tuple[str, int]] = []  # ("private"|"teams", index)
    if per_user is None:
        for _ in range(size):
            if rnd.random() < TEAM_SHARE:
                owners.append(("teams", rnd.randrange(lay.n_teams)))
            else:
                owners.append(("private", rnd.randrange(lay.n_users)))
    else:
        size = lay.n_users * per_user
        for u in range(lay.n_users):
            for _ in range(per_user):
                owners.append(("teams", lay.team_of(u)) if rnd.random() < TEAM_SHARE else ("private", u))
    c = Corpus(size)
    sees = {s: {("private", s), ("teams", lay.team_of(s))} for s in searchers}
    mine = {s: [i for i, o in enumerate(owners) if o in sees[s]] for s in searchers}
    anyone = set().union(*sees.values())
    others = [i for i in range(size) if owners[i] not in anyone]
    c.visible = len(mine[searchers[0]])
    c.visible_by = {s: len(m) for s, m in mine.items()}
    c.n_team = sum(1 for k, _ in owners if k == "teams")
    c.n_private = size - c.n_team
    # Rare words: 1-6 hits each searcher can see, 0-8 more none of them can.
    planted: dict[int, list[str]] = {}
    for r in range(N_RARE):
        w = f"zyq{r:04d}"
        c.rare.append(w)
        for s in searchers:
            for i in rnd.sample(mine[s], min(len(mine[s]), rnd.randint(1, 6))):
                planted.setdefault(i, []).append(w)
        for i in rnd.sample(others, min(len(others), rnd.randint(0, 8))):
            planted.setdefault(i, []).append(w)
    c.rare_hits = {
        s: {w: sum(1 for i in m if w in planted.get(i, ())) for w in c.rare} for s, m in mine.items()
    }
    c.common = vocab[:100]
    c.mid = vocab[100:]

    made: set[Path] = set()
    for i, (kind, n) in enumerate(owners):
        if kind == "private":
            root = data / "private" / user_name(n)
            folder = PRIVATE_FOLDERS[rnd.randrange(len(PRIVATE_FOLDERS))]
        else:
            root = data / "teams" / f"t{n}"
            folder = TEAM_FOLDERS[rnd.randrange(len(TEAM_FOLDERS))]
        d = root / folder if folder else root
        if d not in made:
            d.mkdir(parents=True, exist_ok=True)
            made.add(d)
        name_words = [vocab[100 + rnd.randrange(VOCAB_SIZE - 100)] for _ in range(rnd.randint(2, 4))]
        body = words(rnd.randint(150, 300))
        for w in planted.get(i, ()):
            body.insert(rnd.randrange(len(body) + 1), w)
        lines = [" ".join(body[j : j + 12]) for j in range(0, len(body), 12)]
        paras = ["\n".join(lines[j : j + 5]) for j in range(0, len(lines), 5)]
        text = (
            "---\n"
            f"name: {' '.join(name_words)}\n"
            f"description: {' '.join(words(rnd.randint(6, 14)))}\n"
            f"type: {TYPES[rnd.randrange(4)]}\n"
            f"tags: [{', '.join(rnd.sample(TAGS, rnd.randint(1, 3)))}]\n"
            "---\n\n"
            f"# {' '.join(name_words).capitalize()}\n\n" + "\n\n".join(paras) + "\n"
        )
        (d / f"{'-'.join(name_words[:2])}-{i:06d}.md").write_text(text)
    c.seconds = time.perf_counter() - t0
    return c


# -- running things -------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


class Bench:
    def __init__(self, base: Path, debug: bool):
        self.base = base
        self.debug = debug
        self.env = dict(os.environ, MEMFS_RUN_DIR=str(base / "run"))
        # memfs runs from a neutral cwd (`python -m` puts the cwd first on sys.path, ahead of
        # PYTHONPATH): an explicit PYTHONPATH picks the memfs to measure, else this checkout.
        self.env.setdefault("PYTHONPATH", str(REPO))
        self.mounted: list[Path] = []

    def memfs_file(self) -> str:
        """Where the memfs that `memfs mount` runs (and its daemon) is imported from."""
        r = subprocess.run(
            [sys.executable, "-c", "import memfs; print(memfs.__file__)"],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=self.base,
            check=True,
        )
        return r.stdout.strip()

    def daemon_pid(self, mnt: Path) -> int:
        for pf in (self.base / "run").glob("*.pid"):
            lines = pf.read_text().splitlines()
            if len(lines) >= 2 and Path(lines[1]) == mnt:
                return int(lines[0])
        raise RuntimeError(f"no pid file for {mnt} in {self.base / 'run'}")

    def memfs(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [sys.executable, "-m", "memfs", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
        )
        if r.returncode != 0:
            raise RuntimeError(f"memfs {' '.join(args)} failed: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def mount(self, mnt: Path, data: Path, cfg: Path) -> None:
        extra = ["--debug"] if self.debug else []
        self.memfs("mount", str(mnt), "--data", str(data), "--config", str(cfg), *extra)
        self.mounted.append(mnt)

    def umount(self, mnt: Path) -> None:
        self.memfs("umount", str(mnt), timeout=600)
        self.mounted.remove(mnt)

    def first_search(self, mnt: Path, query: str, uid: int = BENCH_UID) -> bytes:
        """One search as the bench uid; blocks until the start-up reconcile is done."""
        r = subprocess.run(
            ["cat", str(mnt / ".memfs" / "search" / query)],
            user=uid,
            group=uid,
            extra_groups=[],
            capture_output=True,
            timeout=SEARCH_TIMEOUT,
            cwd=self.base,
        )
        if r.returncode != 0:
            raise RuntimeError(f"search through {mnt} failed: {r.stderr.decode().strip()}")
        return r.stdout

    def worker(self, params: dict, timeout: float = 3600, uid: int = BENCH_UID) -> dict:
        return self.workers([(uid, params)], timeout)[0]

    def workers(self, jobs: list[tuple[int, dict]], timeout: float = 3600) -> list[dict]:
        """Run workers (uid, params) at the same time; their outputs in the same order."""
        procs = [
            subprocess.Popen(
                [
                    "setpriv",
                    f"--reuid={uid}",
                    f"--regid={uid}",
                    "--clear-groups",
                    "/usr/bin/python3",
                    "-c",
                    WORKER,
                    json.dumps(params),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.base,
            )
            for uid, params in jobs
        ]
        outs = []
        for (_uid, params), proc in zip(jobs, procs, strict=True):
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise
            if proc.returncode != 0:
                raise RuntimeError(f"worker {params['mode']} failed: {err.strip()[-2000:]}")
            outs.append(json.loads(out))
        return outs

    def cleanup(self) -> None:
        for mnt in list(self.mounted):
            try:
                self.umount(mnt)
            except Exception as e:
                print(f"cleanup: {e}; lazy unmount of {mnt}", file=sys.stderr)
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
                self.mounted.remove(mnt)
        # A daemon we started that is still alive (its pid file is in our own run dir).
        for pf in (self.base / "run").glob("*.pid"):
            try:
                pid = int(pf.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                print(f"cleanup: sent SIGTERM to memfs daemon {pid}", file=sys.stderr)
            except (OSError, ValueError, IndexError):
                pass


def log_lines(data: Path, pattern: str) -> list[str]:
    try:
        text = (data / "state" / "memfs.log").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if pattern in line]


def reconciled(line: str) -> str:
    m = re.search(r"index: reconciled.*", line)
    return m.group(0) if m else line


# -- one corpus size ------------------------------------------------------------------------
def run_size(b: Bench, size: int, n_queries: int, grep_reps: int) -> dict:
    root = b.base / f"size{size}"
    data, mnt, native, cfg = root / "data", root / "mnt", root / "native", root / "config.yaml"
    for p in (root, mnt, native):
        p.mkdir(parents=True)
        os.chmod(p, 0o755)
    write_config(cfg)
    log = lambda msg: print(f"[{size}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    res: dict = {"size": size}

    log("generating corpus")
    c = generate(data, size)
    res["corpus"] = c
    log(
        f"{c.n_private} private + {c.n_team} team entries in {c.seconds:.1f} s; "
        f"uid {BENCH_UID} sees {c.visible}"
    )

    # Native copy of what the bench uid can see, for grep's reference time.
    subprocess.run(["cp", "-a", f"{data}/private/{user_name(0)}/.", str(native)], check=True)
    (native / "team").mkdir()
    subprocess.run(["cp", "-a", f"{data}/teams/t{team_of(0)}/.", str(native / "team")], check=True)
    subprocess.run(["chown", "-R", f"{BENCH_UID}:{BENCH_UID}", str(native)], check=True)

    rnd = random.Random(size)
    first_q = c.rare[0]
    log("first mount (indexes everything)")
    t0 = time.perf_counter()
    b.mount(mnt, data, cfg)
    t1 = time.perf_counter()
    out = b.first_search(mnt, first_q)
    t2 = time.perf_counter()
    res["init_mount_s"], res["init_search_s"] = t1 - t0, t2 - t0
    res["init_log"] = [reconciled(x) for x in log_lines(data, "index: reconciled")]
    res["first_result_ok"] = b"No results" not in out
    log(f"mount returned {t1 - t0:.2f} s, first search answered {t2 - t0:.2f} s")

    # Queries: 40% common, 30% mid-frequency, 30% planted rare words.
    queries = []
    for _ in range(n_queries):
        x = rnd.random()
        pool = c.common if x < 0.4 else c.mid if x < 0.7 else c.rare
        queries.append(pool[rnd.randrange(len(pool))])
    log(f"{n_queries} searches")
    sr = b.worker({"mode": "search", "mnt": str(mnt), "queries": queries})["search"]
    lat = [dt * 1000 for _q, dt, _n in sr]
    res["search_ms"] = lat
    kind = {w: "common" for w in c.common} | {w: "mid" for w in c.mid} | {w: "rare" for w in c.rare}
    res["search_by_kind"] = {
        k: statistics.median([dt * 1000 for q, dt, _n in sr if kind[q] == k] or [math.nan])
        for k in ("common", "mid", "rare")
    }
    search_total = {q: n for q, _dt, n in sr}

    # grep: half common, half rare words; each through the mount and over the native copy.
    words = [
        c.common[rnd.randrange(20)] if i % 2 == 0 else c.rare[rnd.randrange(N_RARE)] for i in range(grep_reps)
    ]
    log(f"{grep_reps} x grep -rl through the mount and on a native copy")
    g = b.worker({"mode": "grep", "dirs": [str(mnt), str(native)], "words": words})["grep"]
    res["grep_mnt_ms"] = [dt * 1000 for _q, dt, _n in g[str(mnt)]]
    res["grep_native_ms"] = [dt * 1000 for _q, dt, _n in g[str(native)]]
    # Sanity: for the planted words (unique tokens), grep and search must agree on the count.
    mism = []
    for (q, _dt, n_mnt), (_q, _dt2, n_nat) in zip(g[str(mnt)], g[str(native)], strict=True):
        if n_mnt != n_nat:
            mism.append(f"{q}: grep mount {n_mnt} != native {n_nat}")
        if q in c.rare and q in search_total and search_total[q] != n_mnt:
            mism.append(f"{q}: search {search_total[q]} != grep {n_mnt}")
    if not res["first_result_ok"]:
        mism.append(f"the first search ({first_q}) found nothing")
    res["mismatches"] = mism

    log("umount, remount of the unchanged store")
    t0 = time.perf_counter()
    b.umount(mnt)
    res["umount_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    b.mount(mnt, data, cfg)
    t1 = time.perf_counter()
    b.first_search(mnt, first_q)
    t2 = time.perf_counter()
    res["re_mount_s"], res["re_search_s"] = t1 - t0, t2 - t0
    lines = [reconciled(x) for x in log_lines(data, "index: reconciled")]
    res["re_log"] = lines[len(res["init_log"]) :] or ["(no reconcile line)"]
    log(f"mount returned {t1 - t0:.2f} s, first search answered {t2 - t0:.2f} s; {res['re_log'][-1]}")
    b.umount(mnt)
    # The files stay until the end: on ext4 without a journal (as on the machine this was
    # written on), creating files soon after deleting many is slow (recently_deleted()
    # scans skip inodes freed in the last minutes), which would skew later timings.
    return res


# -- write throughput -----------------------------------------------------------------------
def wait_reconciled(data: Path, before: int, timeout: float = SEARCH_TIMEOUT) -> None:
    """Wait for the daemon's start-up reconcile without searching (see the committer check)."""
    deadline = time.monotonic() + timeout
    while len(log_lines(data, "index: reconciled")) <= before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no 'index: reconciled' in {data}/state/memfs.log after {timeout:.0f} s")
        time.sleep(0.05)


def run_writes(b: Bench, where: Path, files: int, rounds: int, seed_entries: int) -> dict:
    log = lambda msg: print(f"[writes] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    mounts = {}
    for name, enabled in (("off", False), ("on", True)):
        root = where / f"writes-{name}"
        data, mnt, cfg = root / "data", root / "mnt", root / "config.yaml"
        for p in (root, mnt):
            p.mkdir(parents=True)
            os.chmod(p, 0o755)
        write_config(cfg, index_enabled=enabled)
        generate(data, seed_entries, seed=1)
        b.mount(mnt, data, cfg)
        mounts[name] = mnt
        if enabled:
            # The small corpus is indexed before we measure. Not by a search: one while the
            # committer is idle is exactly what the check below is about.
            wait_reconciled(data, 0)

    native = where / "writes-native"
    native.mkdir()
    os.chown(native, BENCH_UID, BENCH_UID)
    mounts["native"] = native  # the same disk without memfs: what the disk itself costs

    def write(name: str, r: int, n: int, **kw) -> dict:
        params = {"mode": "write", "mnt": str(mounts[name]), "dir": f"wbench/round{r}", "files": n}
        params |= {"seed": r, "token": f"tok{r}x", "search": name == "on", **kw}
        return b.worker(params)

    res: dict = {"on": [], "off": [], "native": [], "on_searchable": [], "ryw_ms": [], "ryw_tries": []}
    res["ryw_found"] = True
    order = ["off", "on", "native"]
    for r in range(rounds):
        for name in order[r % 3 :] + order[: r % 3]:
            out = write(name, r, files)
            res[name].append(files / out["write_s"])
            what = "native" if name == "native" else f"index {name}"
            msg = f"round {r + 1}/{rounds} {what}: {files / out['write_s']:.0f} files/s"
            if name == "on":
                res["on_searchable"].append(files / (out["write_s"] + out["ryw_s"]))
                res["ryw_ms"].append(out["ryw_s"] * 1000)
                res["ryw_tries"].append(out["ryw_tries"])
                res["ryw_found"] &= out["ryw_found"]
                msg += f", last file found by search {out['ryw_s'] * 1000:.0f} ms after its close"
            log(msg)
    # Background indexing check: a search while the committer is idle, then writes, then a
    # pause of several commit delays: the committer should have indexed them all by then, so
    # a search costs what a search costs. If it costs ~0.3 ms per file written, the search
    # indexed them itself: nothing ran in the background.
    time.sleep(1.0)  # let the committer finish its last batch and go idle
    b.first_search(mounts["on"], "zyq0001")
    n_check = 1000
    out = write("on", rounds, n_check, settle=2.0)
    res["check_files"] = n_check
    res["check_search_ms"] = out["first_search_s"] * 1000
    res["check_found"] = out["ryw_found"]
    log(f"background check: search 2 s after writing {n_check} files took {res['check_search_ms']:.1f} ms")
    for name in ("off", "on"):
        b.umount(mounts[name])
    return res


# -- scale: many users, many scopes --------------------------------------------------------
def proc_status(pid: int) -> dict:
    """VmRSS, VmHWM (MiB) and Threads of a live process, plus its open fds."""
    out: dict = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) / 1024
            elif key == "Threads":
                out[key] = int(val)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def idle_cpu(pid: int, seconds: float) -> float:
    """The daemon's CPU use (% of one core) over `seconds` with no caller doing anything."""

    def ticks() -> int:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    t0, c0 = time.perf_counter(), ticks()
    time.sleep(seconds)
    return 100 * (ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - t0)


def dir_usage(path: Path) -> dict:
    n = size = dirs = 0
    for _root, ds, fs in os.walk(path):
        dirs += len(ds)
        for name in fs:
            try:
                size += os.lstat(os.path.join(_root, name)).st_blocks * 512
                n += 1
            except OSError:
                pass
    return {"files": n, "dirs": dirs, "mib": size / 2**20}


def lat_stats(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p90": pct(ms, 90),
        "p99": pct(ms, 99),
        "max": max(ms),
    }


def run_scale(b: Bench, args) -> dict:
    lay = Layout(args.users, max(1, args.users // args.team_size))
    counts = sorted({int(x) for x in args.searchers.split(",") if x})
    n_conc = max(counts)
    # Searchers spread over the users (so over different teams); the first is the bench uid.
    who = tuple(sorted({(k * lay.n_users) // n_conc for k in range(n_conc)}))
    root = b.base / "scale"
    data, mnt, cfg = root / "data", root / "mnt", root / "config.yaml"
    for d in (root, mnt):
        d.mkdir(parents=True)
        os.chmod(d, 0o755)
    write_config(cfg, lay=lay, embedder=args.embedder, history=not args.no_history)
    log = lambda msg: print(f"[scale] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    load = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg())  # noqa: E731
    res: dict = {
        "users": lay.n_users,
        "teams": lay.n_teams,
        "per_user": args.per_user,
        "searchers": list(who),
        "idle_seconds": args.idle_seconds,
        "embedder": args.embedder,
        "mode": args.mode,
        "history": not args.no_history,
    }
    res["memfs"] = b.memfs_file()
    res["python"] = sys.executable
    res["git"] = subprocess.run(
        ["git", "-C", str(Path(res["memfs"]).parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(Path(res["memfs"]).parent), "status", "--porcelain", "--", "."],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if dirty:
        res["git"] += " + uncommitted changes"
    log(f"memfs imported from {res['memfs']} (commit {res['git'] or '?'})")

    log(f"generating {lay.n_users} users x {args.per_user} entries, {lay.n_teams} teams")
    c = generate(data, 0, seed=args.seed, lay=lay, per_user=args.per_user, searchers=who)
    res["corpus"] = {
        "entries": c.size,
        "private": c.n_private,
        "team": c.n_team,
        "visible_by_uid": {FIRST_UID + u: n for u, n in c.visible_by.items()},
        "generate_s": c.seconds,
        "data": dir_usage(data),
    }
    log(
        f"{c.n_private} private + {c.n_team} team entries in {c.seconds:.1f} s; "
        f"visible per searcher: {c.visible_by}"
    )
    subprocess.run(["sync"], check=False)

    def queries(seed: int, n: int) -> list[str]:
        rnd = random.Random(seed)
        out = []
        for _ in range(n):
            x = rnd.random()
            pool = c.common if x < 0.4 else c.mid if x < 0.7 else c.rare
            out.append(pool[rnd.randrange(len(pool))])
        return out

    first_q = next(w for w in c.rare if c.rare_hits[who[0]][w])
    mism: list[str] = []

    def mount_until_answer(what: str) -> None:
        res[f"{what}_load"] = load()
        n_logs = len(log_lines(data, "index: reconciled"))
        t0 = time.perf_counter()
        b.mount(mnt, data, cfg)
        t1 = time.perf_counter()
        out = b.first_search(mnt, first_q)
        t2 = time.perf_counter()
        pid = b.daemon_pid(mnt)
        res[f"{what}_mount_s"], res[f"{what}_answer_s"] = t1 - t0, t2 - t0
        res[f"{what}_proc"] = proc_status(pid)
        res[f"{what}_log"] = [reconciled(x) for x in log_lines(data, "index: reconciled")[n_logs:]]
        if b"No results" in out or not out.strip():
            mism.append(f"{what}: the first search ({first_q}) found nothing")
        log(
            f"{what}: mount returned {t1 - t0:.2f} s, first search answered {t2 - t0:.2f} s, "
            f"daemon {pid} RSS {res[f'{what}_proc']['VmRSS']:.0f} MiB; {(res[f'{what}_log'] or ['?'])[-1]}"
        )

    def search_pass(label: str, n: int) -> list[float]:
        uids = [FIRST_UID + u for u in who[:n]]
        start_at = time.time() + 1.0 + 0.3 * n  # after every worker's warm-up search
        jobs = [
            (
                uid,
                {
                    "mode": "search",
                    "mnt": str(mnt),
                    "queries": queries(uid, args.queries),
                    "start_at": start_at,
                    "prefix": f"mode:{args.mode} ",
                },
            )
            for uid in uids
        ]
        res[f"{label}_load"] = load()
        outs = b.workers(jobs)
        ms = [dt * 1000 for o in outs for _q, dt, _n in o["search"]]
        wall = max(o["t1"] for o in outs) - min(o["t0"] for o in outs)
        res[label] = lat_stats(ms) | {"qps": len(ms) / wall, "wall_s": wall}
        for uid, o in zip(uids, outs, strict=True):
            exp = c.rare_hits[uid - FIRST_UID]
            for q, _dt, total in o["search"]:
                if args.mode == "keyword" and q in exp and exp[q] != total:
                    mism.append(f"{label}: uid {uid} {q}: search found {total}, planted {exp[q]}")
        log(
            f"{label}: {len(uids)} searcher(s) x {args.queries}: p50 {res[label]['p50']:.2f} ms, "
            f"p99 {res[label]['p99']:.2f} ms, {res[label]['qps']:.0f} searches/s"
        )
        return ms

    def starting_up() -> bool:
        """The first mount's background work still runs: the embedding backfill, history's
        start-up pass (each logs a line when done)."""
        embedding = args.embedder != "none" and not log_lines(data, "index: embedded ")
        return embedding or (not args.no_history and not log_lines(data, "history.service: reconciled"))

    def during_start_up(t_mount: float) -> None:
        """Search passes (1, then N searchers, again and again) from the first answer until
        the start-up work is done: what a caller searching meanwhile waits."""
        got: dict[int, list[float]] = {n: [] for n in counts}
        t0 = time.perf_counter()
        while starting_up() and time.perf_counter() - t_mount < SEARCH_TIMEOUT:
            for n in counts:
                got[n] += search_pass("during", n)
        res.pop("during", None)
        for n, ms in got.items():
            if ms:
                res[f"during_{n}"] = lat_stats(ms) | {"seconds": time.perf_counter() - t0}
                log(
                    f"during start-up, {n} searcher(s): {len(ms)} searches, p50 "
                    f"{res[f'during_{n}']['p50']:.2f} ms, p99 {res[f'during_{n}']['p99']:.2f} ms"
                )

    log("first mount (indexes everything)")
    t_mount = time.perf_counter()
    mount_until_answer("init")
    if args.during:
        during_start_up(t_mount)
    if args.embedder != "none":
        while not log_lines(data, "index: embedded ") and time.perf_counter() - t_mount < SEARCH_TIMEOUT:
            time.sleep(0.2)
        res["init_embedded_s"] = time.perf_counter() - t_mount
        res["init_embedded_proc"] = proc_status(b.daemon_pid(mnt))
        log(f"first mount: every entry embedded {res['init_embedded_s']:.1f} s after mounting")
    import sqlite3

    db = sqlite3.connect(f"file:{data / 'state' / 'manifest.sqlite'}?mode=ro", uri=True)
    n_vec, vec_bytes = db.execute("SELECT count(*), coalesce(sum(length(vec)), 0) FROM vectors").fetchone()
    db.close()
    res["vectors"] = {"rows": n_vec, "mib": vec_bytes / 2**20}
    res["manifest_mib"] = (data / "state" / "manifest.sqlite").stat().st_size / 2**20
    log(f"vectors: {n_vec} rows, {vec_bytes / 2**20:.1f} MiB; manifest {res['manifest_mib']:.1f} MiB")
    res["index_disk"] = dir_usage(data / "index")
    res["index_layout"] = "per-scope" if (data / "index" / "private").is_dir() else "single"
    log(
        f"index: {res['index_layout']}, {res['index_disk']['files']} files, "
        f"{res['index_disk']['mib']:.0f} MiB"
    )
    for n in counts:
        search_pass(f"search_{n}", n)
    res["after_search_proc"] = proc_status(b.daemon_pid(mnt))
    res["idle_cpu"] = idle_cpu(b.daemon_pid(mnt), args.idle_seconds)
    log(f"idle daemon: {res['idle_cpu']:.1f}% of a core over {args.idle_seconds:.0f} s")

    log("umount, remount of the unchanged store")
    t0 = time.perf_counter()
    b.umount(mnt)
    res["umount_s"] = time.perf_counter() - t0
    mount_until_answer("re")
    search_pass("re_search_1", 1)
    res["re_after_search_proc"] = proc_status(b.daemon_pid(mnt))
    res["re_idle_cpu"] = idle_cpu(b.daemon_pid(mnt), args.idle_seconds)
    b.umount(mnt)
    res["mismatches"] = mism
    return res


def report_scale(r: dict) -> None:
    print()
    print(
        f"memfs scale benchmark: {r['corpus']['entries']} entries ({r['corpus']['private']} private, "
        f"{r['corpus']['team']} team) = {r['users']} users x {r['per_user']}, {r['teams']} teams; "
        f"index {r['index_layout']}"
    )
    print(
        f"memfs from {r['memfs']} (commit {r['git'] or '?'}); "
        f"searchers: uids {[FIRST_UID + u for u in r['searchers']]}"
    )
    rows = [
        ("first mount: mount returned", f"{r['init_mount_s']:.2f} s"),
        ("first mount: first search answered", f"{r['init_answer_s']:.2f} s"),
        ("  daemon RSS then", f"{r['init_proc']['VmRSS']:.0f} MiB (peak {r['init_proc']['VmHWM']:.0f})"),
    ]
    if "init_embedded_s" in r:
        e = r["init_embedded_proc"]
        rows += [
            ("first mount: every entry embedded", f"{r['init_embedded_s']:.1f} s"),
            ("  daemon RSS then", f"{e['VmRSS']:.0f} MiB (peak {e['VmHWM']:.0f})"),
        ]
    rows.append(("vectors stored", f"{r['vectors']['rows']} rows, {r['vectors']['mib']:.1f} MiB (float16)"))
    rows.append(("embedder / search mode", f"{r['embedder']} / {r['mode']}"))
    for key in sorted(k for k in r if re.fullmatch(r"during_\d+", k)):
        s, n = r[key], key.split("_")[1]
        rows.append(
            (f"during start-up, {n} searcher(s): p50 / p99", f"{s['p50']:.2f} / {s['p99']:.2f} ms ({s['n']})")
        )
    for key in sorted(k for k in r if re.fullmatch(r"search_\d+", k)):
        s, n = r[key], key.split("_")[1]
        rows.append((f"search, {n} searcher(s): p50 / p99", f"{s['p50']:.2f} / {s['p99']:.2f} ms"))
        rows.append(("  searches/s (all searchers)", f"{s['qps']:.0f}"))
    a = r["after_search_proc"]
    rows += [
        ("  daemon RSS after the searches", f"{a['VmRSS']:.0f} MiB (peak {a['VmHWM']:.0f})"),
        ("  daemon threads / fds", f"{a['Threads']} / {a['fds']}"),
        (f"  daemon CPU while idle ({r['idle_seconds']:.0f} s)", f"{r['idle_cpu']:.1f}% of a core"),
        ("umount", f"{r['umount_s']:.2f} s"),
        ("remount: mount returned", f"{r['re_mount_s']:.2f} s"),
        ("remount: first search answered", f"{r['re_answer_s']:.2f} s"),
        ("  daemon RSS then", f"{r['re_proc']['VmRSS']:.0f} MiB (peak {r['re_proc']['VmHWM']:.0f})"),
        (
            "remount, 1 searcher: p50 / p99",
            f"{r['re_search_1']['p50']:.2f} / {r['re_search_1']['p99']:.2f} ms",
        ),
        ("  daemon RSS after them", f"{r['re_after_search_proc']['VmRSS']:.0f} MiB"),
        (
            "  daemon threads / fds",
            f"{r['re_after_search_proc']['Threads']} / {r['re_after_search_proc']['fds']}",
        ),
        ("  daemon CPU while idle", f"{r['re_idle_cpu']:.1f}% of a core"),
        ("index on disk", f"{r['index_disk']['mib']:.0f} MiB in {r['index_disk']['files']} files"),
    ]
    w0 = max(len(label) for label, _ in rows)
    for label, val in rows:
        print(f"{label:<{w0}}  {val}")
    print(f"daemon log, first mount: {'; '.join(r['init_log']) or '(no reconcile line)'}")
    print(f"daemon log, remount:     {'; '.join(r['re_log']) or '(no reconcile line)'}")
    print(
        "load average at first mount / 1 searcher / remount: "
        f"{r['init_load']} / {r.get('search_1_load', '-')} / {r['re_load']}"
    )
    if r["mismatches"]:
        print(f"MISMATCH ({len(r['mismatches'])}): " + "; ".join(r["mismatches"][:10]))
    else:
        print("check: every rare word's search total = the entries planted for that searcher: ok")


# -- report ---------------------------------------------------------------------------------
def report_sizes(sizes: list[dict]) -> None:
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn) -> None:
        rows.append((label, [fn(s) for s in sizes]))

    row("entries (private / team)", lambda s: f"{s['corpus'].n_private} / {s['corpus'].n_team}")
    row(f"entries visible to uid {BENCH_UID}", lambda s: str(s["corpus"].visible))
    row("corpus generation (plain writes)", lambda s: f"{s['corpus'].seconds:.1f} s")
    row("first mount: mount returned", lambda s: f"{s['init_mount_s']:.2f} s")
    row("initial index time (1st search)", lambda s: f"{s['init_search_s']:.2f} s")
    row("search median", lambda s: f"{statistics.median(s['search_ms']):.2f} ms")
    row("search p95", lambda s: f"{pct(s['search_ms'], 95):.2f} ms")
    for k in ("common", "mid", "rare"):
        row(f"  median, {k} words", lambda s, k=k: f"{s['search_by_kind'][k]:.2f} ms")
    row("grep -rl through mount: median", lambda s: f"{statistics.median(s['grep_mnt_ms']):.1f} ms")
    row("grep -rl through mount: p95", lambda s: f"{pct(s['grep_mnt_ms'], 95):.1f} ms")
    row("grep -rl native copy: median", lambda s: f"{statistics.median(s['grep_native_ms']):.1f} ms")
    row(
        "ratio grep(mount) / search",
        lambda s: f"{statistics.median(s['grep_mnt_ms']) / statistics.median(s['search_ms']):.0f}x",
    )
    row(
        "ratio grep(native) / search",
        lambda s: f"{statistics.median(s['grep_native_ms']) / statistics.median(s['search_ms']):.1f}x",
    )
    row("umount", lambda s: f"{s['umount_s']:.2f} s")
    row("remount: mount returned", lambda s: f"{s['re_mount_s']:.2f} s")
    row("remount: first search answered", lambda s: f"{s['re_search_s']:.2f} s")
    heads = [f"{s['size']} entries" for s in sizes]
    w0 = max(len(label) for label, _ in rows)
    w = max(*(len(h) for h in heads), *(len(v) for _, vals in rows for v in vals))
    print(f"{'':<{w0}}  " + "  ".join(f"{h:>{w}}" for h in heads))
    for label, vals in rows:
        print(f"{label:<{w0}}  " + "  ".join(f"{v:>{w}}" for v in vals))
    print()
    for s in sizes:
        print(f"daemon log, {s['size']} entries:")
        for line in s["init_log"]:
            print(f"  first mount: {line}")
        for line in s["re_log"]:
            print(f"  remount:     {line}")
        if s["mismatches"]:
            print("  MISMATCH: " + "; ".join(s["mismatches"]))
        else:
            print("  check: grep hit counts (mount = native copy) and, for rare words, = search totals: ok")


def report(sizes: list[dict], writes: dict | None, args) -> None:
    print()
    print(
        f"memfs search benchmark: {N_USERS} users, {N_TEAMS} teams, ~80% private / ~20% team entries; "
        f"measured as uid {BENCH_UID} ({user_name(0)}, team t0)"
    )
    print(
        f"{args.queries} searches (40% common, 30% mid-frequency, 30% rare words), "
        f"{args.grep_reps} greps each"
    )
    print(f"load average at start / end: {args.load_start} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    if sizes:
        report_sizes(sizes)
    if writes:
        on, off = statistics.median(writes["on"]), statistics.median(writes["off"])
        print()
        print(
            f"write throughput: create+write+close of {args.write_files} entries of 1-2 KB "
            f"as uid {BENCH_UID}, median of {args.write_rounds} interleaved rounds, data in {args.write_dir}"
        )
        print(f"  index off: {off:8.0f} files/s   (rounds: {', '.join(f'{x:.0f}' for x in writes['off'])})")
        print(f"  index on:  {on:8.0f} files/s   (rounds: {', '.join(f'{x:.0f}' for x in writes['on'])})")
        nat = statistics.median(writes["native"])
        print(
            f"  native:    {nat:8.0f} files/s   (rounds: {', '.join(f'{x:.0f}' for x in writes['native'])})"
        )
        print(f"  ratio on/off: {on / off:.2f}   (off/native: {off / nat:.2f}, on/native: {on / nat:.2f})")
        if max(writes["native"]) > 2 * min(writes["native"]):
            print(
                "  note: the native rate varied more than 2x between rounds: what a create costs without "
                "memfs changed during the run (other load on the machine; on ext4 without a journal, "
                "recent mass deletions)"
            )
        print(
            f"  read-your-writes: a search found the last file {statistics.median(writes['ryw_ms']):.0f} ms "
            f"(median; rounds: {', '.join(f'{x:.0f}' for x in writes['ryw_ms'])} ms) after its close, "
            f"on attempt {'/'.join(str(t) for t in writes['ryw_tries'])}"
            + ("" if writes["ryw_found"] else "  -- NOT FOUND within 60 s")
        )
        on_s = statistics.median(writes["on_searchable"])
        print(
            f"  index on, until the last file is searchable: {on_s:.0f} files/s "
            f"(ratio to off: {on_s / off:.2f})"
        )
        ms = writes["check_search_ms"]
        verdict = (
            "ok: indexed in the background"
            if ms < 50
            else "SLOW: nothing was indexed in the background, the search indexed the backlog itself"
        )
        if not writes["check_found"]:
            verdict = "FAILED: the search did not find the last file"
        print(
            f"  background indexing check: idle search, write {writes['check_files']} files, wait 2 s, "
            f"search: {ms:.1f} ms ({verdict})"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", nargs="*", default=["10000", "100000"], help="corpus sizes (entries); none: writes only"
    )
    ap.add_argument("--queries", type=int, default=200, help="searches per size")
    ap.add_argument("--grep-reps", type=int, default=10, help="greps per size and target")
    ap.add_argument("--write-files", type=int, default=2000)
    ap.add_argument("--write-rounds", type=int, default=5)
    ap.add_argument(
        "--write-dir",
        default="/var/tmp",
        help="where the write-throughput mounts keep their data (e.g. /dev/shm to leave the disk out)",
    )
    ap.add_argument("--no-writes", action="store_true", help="skip the write-throughput comparison")
    ap.add_argument("--debug", action="store_true", help="mount with --debug (logs every call: slower)")
    sc = ap.add_argument_group("--scale: many users (replaces --sizes and the write comparison)")
    sc.add_argument("--scale", action="store_true", help="users x per-user entries, 1 and N searchers")
    sc.add_argument("--users", type=int, default=1000)
    sc.add_argument("--per-user", type=int, default=100, help="entries per user (~20%% in its team)")
    sc.add_argument("--team-size", type=int, default=10, help="users per team")
    sc.add_argument(
        "--searchers", default="1,4", help="concurrent searcher counts, each searcher its own uid"
    )
    sc.add_argument("--seed", type=int, default=42)
    sc.add_argument("--embedder", default="wordllama", choices=("wordllama", "none"))
    sc.add_argument("--mode", default="hybrid", choices=("hybrid", "keyword", "semantic"))
    sc.add_argument("--no-history", action="store_true", help="mount with history: {enabled: false}")
    sc.add_argument(
        "--during",
        action="store_true",
        help="also search from the first answer until the start-up work (embedding, history) is done",
    )
    sc.add_argument("--idle-seconds", type=float, default=5.0, help="how long to watch the idle daemon's CPU")
    sc.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--tmp", default="/var/tmp", help="where the corpus and mounts go")
    ap.add_argument("--keep", action="store_true", help="keep the data (print where) instead of deleting it")
    args = ap.parse_args()
    if args.scale and args.queries == ap.get_default("queries"):
        args.queries = 300
    sizes = [int(x) for s in args.sizes for x in s.split(",") if x]
    args.load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if os.geteuid() != 0:
        print("bench_search: run as root (it mounts memfs and switches to a test uid)", file=sys.stderr)
        return 2

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    base = Path(tempfile.mkdtemp(prefix="memfs-bench-search-", dir=args.tmp))
    os.chmod(base, 0o755)
    cleanup_dirs: list[Path] = []
    b = Bench(base, args.debug)
    t_start = time.perf_counter()
    try:
        if args.scale:
            r = run_scale(b, args)
            r["total_s"] = time.perf_counter() - t_start
            if args.out:
                Path(args.out).write_text(json.dumps(r, indent=1, default=str) + "\n")
            report_scale(r)
            print(f"\n(total run time {r['total_s']:.0f} s)")
            return 1 if r["mismatches"] else 0
        results = [run_size(b, n, args.queries, args.grep_reps) for n in sizes]
        writes = None
        if not args.no_writes:
            where = Path(tempfile.mkdtemp(prefix="memfs-bench-writes-", dir=args.write_dir))
            cleanup_dirs.append(where)
            os.chmod(where, 0o755)
            writes = run_writes(b, where, args.write_files, args.write_rounds, seed_entries=1000)
        report(results, writes, args)
        print(f"\n(total run time {time.perf_counter() - t_start:.0f} s)")
        return 0
    except KeyboardInterrupt as e:
        print(f"bench_search: interrupted ({e or 'SIGINT'}); cleaning up", file=sys.stderr)
        return 130
    finally:
        b.cleanup()
        for d in (base, *cleanup_dirs):
            if args.keep:
                print(f"bench_search: kept {d}", file=sys.stderr)
            else:
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
