"""Randomized model checking: memfs against a native directory, op by op, as several uids.

A seeded driver (`random.Random(seed)`) generates long random sequences of file-system
operations (create, write at random offsets and past EOF, truncate up and down, rename of
files and directories including over existing ones and across the private/team boundary,
also with renameat2(RENAME_NOREPLACE), unlink, mkdir, rmdir of empty and non-empty folders,
read, listdir, stat, and operations through file handles kept open across steps: write,
read, ftruncate, fsync, close) by alice (1001), bob (1002) and carol (1003);
alice and bob share the team `eng`, carol is in no team.

Every operation runs twice in ONE long-lived root helper (`/usr/bin/python3`) that switches
its effective uid with `os.seteuid` (saved uid stays 0, as in t4_isolation's SWITCHER): once
on the mount, once on a native mirror under the test's temp dir:

    memfs  MNT/<rel>                    native  native/<uid>/<rel>
    memfs  MNT/team/<rel>               native  native/team-eng/<rel>   (alice, bob)
    memfs  MNT/team/<rel> as carol      native  native/noteam/<rel>     (never exists: ENOENT)

After every step the two results must agree (return value or errno name), and so must the
state (type, size, link count, content or listing) of every path the step touched and of
their parents, and what an open handle reads; every 10 steps and at the end the whole tree
of every uid is compared, and at the end memfs's backing store must equal the native mirror
byte for byte. Isolation is checked on everything memfs returns: data is written as tokens
`<uid:step>`, and a uid may only ever read tokens of uids that can legitimately reach it
(carol: only her own; alice and bob: their own and each other's, through the team); a
listing never shows another uid's `mine-<uid>.md` or `.memfs`; the root lists `team` exactly
for members; memfs shows private files owned by the caller, and team files owned by their
creator exactly as the native mirror does (issue 26: compared like sizes).
(Bob's private bytes reaching alice would also be a difference from her native mirror.)

Differences by design, and how the model treats them (see README):
- not generated: symlinks, hard links, fifos, chmod, over-long names, `team`/`.memfs` as
  targets, RENAME_EXCHANGE;
- the size cap (`limits.max_file_bytes`, 64 KiB here: short write, then EFBIG) is matched on
  the native side by RLIMIT_FSIZE, which has the same semantics;
- modes shown differ from the native files, and so do private owners (a file a teammate moved
  into their private folder is theirs on memfs): memfs checks those on its own;
- a handle whose file a teammate moved into their private folder: memfs checks calls that
  carry a caller against the file's scope now, so fstat/read/ftruncate there may get EACCES
  depending on the kernel's attribute cache; the driver then compares only what answered and
  closes the handle (see `Model.drop_foreign_handle`).

Reproduce a failure: the message names the seed, the step and the op; run

    MEMFS_MODEL_SEED=<seed> MEMFS_MODEL_STEPS=<steps> .venv/bin/python -m pytest tests/t5_model.py -q

(`MEMFS_MODEL_SEED` takes one seed or a comma-separated list; the run is deterministic for a
seed and a step count: each seed starts from a fresh mount and empty mirrors). Defaults: seeds
1, 2, 3 with 800 steps each. A soak run: `MEMFS_SOAK=1` (20 seeds x 5000 steps unless
`MEMFS_MODEL_SEED` / `MEMFS_MODEL_STEPS` say otherwise).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import select
import subprocess
from pathlib import Path

import pytest
from conftest import SYS_PYTHON, TIMEOUT

ALICE, BOB, CAROL = 1001, 1002, 1003
UIDS = (ALICE, BOB, CAROL)
TEAM = (ALICE, BOB)  # members of eng
USER_NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol"}
MODEL_CONFIG = """
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  carol: {uid: 1003}
teams:
  eng: {members: [alice, bob]}
limits:
  max_file_bytes: 65536
"""
CAP = 65536  # as limits.max_file_bytes; the native side gets it as RLIMIT_FSIZE

SOAK = os.environ.get("MEMFS_SOAK", "") not in ("", "0")
_SEEDS_ENV = os.environ.get("MEMFS_MODEL_SEED", "")
SEEDS = [int(s) for s in _SEEDS_ENV.split(",") if s.strip()] or (list(range(1, 21)) if SOAK else [1, 2, 3])
STEPS = int(os.environ.get("MEMFS_MODEL_STEPS") or (5000 if SOAK else 800))
FULL_EVERY = 10  # steps between whole-tree comparisons
IDENTITY_EVERY = 50  # steps between inode identity checks (each drops the kernel's caches)

# Relative paths: a small pool, so that collisions (rename over, rmdir of a non-empty folder,
# a file where a folder is expected) happen often. MINE is each uid's own name.
MINE = "MINE"
PRIVATE_PATHS = [
    "a.md",
    "b.md",
    MINE,
    "n.txt",
    "d1",
    "d2",
    "d1/c.md",
    "d1/a.md",
    "d1/d3",
    "d1/d3/e.md",
    "d2/c.md",
]
TEAM_PATHS = ["team/x.md", "team/a.md", "team/d1", "team/d2", "team/d1/c.md", "team/d1/d3", "team/d1/d3/e.md"]
HANDLE_SLOTS = 2  # open handles a uid may hold across steps
TOKEN = re.compile(r"<(\d+):\d+>")
MINE_NAME = re.compile(r"mine-(\d+)\.md")
ERRNAMES = set(errno.errorcode.values())

# The helper: root, one process for the whole run. It receives one JSON line per step,
# {"uid": U, "calls": [[op, args...], ...]}, runs every call with the effective uid U and
# answers one JSON line: per call ["ok", value] or ["err", "ENOENT"].
HELPER = r"""
import ctypes, errno, json, os, resource, signal, stat, sys

os.setgroups([])
os.umask(0)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past RLIMIT_FSIZE: EFBIG, not a signal
NATIVE = os.environ["NATIVE"] + "/"
CAP = int(os.environ["CAP"])
HANDLES = {}


def as_uid(uid):
    os.seteuid(0)
    os.setegid(uid)
    os.seteuid(uid)


def dec(s):
    return s.encode("latin-1")


def enc(b):
    return b.decode("latin-1")


def read_all(fd):
    out, off = [], 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            return b"".join(out)
        out.append(b)
        off += len(b)


def probe(p):
    st = os.lstat(p)
    if stat.S_ISDIR(st.st_mode):
        return ["d", None, st.st_nlink, st.st_uid, sorted(os.listdir(p))]
    if stat.S_ISREG(st.st_mode):
        fd = os.open(p, os.O_RDONLY)
        try:
            return ["f", st.st_size, st.st_nlink, st.st_uid, enc(read_all(fd))]
        finally:
            os.close(fd)
    return ["?", oct(st.st_mode), st.st_nlink, st.st_uid, None]


def walk(root, skip_team):
    out = {}

    def rec(rel):
        pr = probe(root + "/" + rel if rel else root)
        out[rel] = pr
        if pr[0] == "d":
            for n in pr[4]:
                if not (skip_team and rel == "" and n == "team"):
                    rec(rel + "/" + n if rel else n)

    rec("")
    return out


def inos(root, skip_team):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel + "/"
        if skip_team and rel == "" and "team" in dirs:
            dirs.remove("team")
        for n in dirs + files:
            out[rel + n] = os.lstat(os.path.join(dirpath, n)).st_ino
    return out


def ino(p):
    return os.lstat(p).st_ino


CREATE_FLAGS = {"plain": 0, "excl": os.O_EXCL, "trunc": os.O_TRUNC}
HOPEN_FLAGS = {"rw": 0, "append": os.O_APPEND, "creat": os.O_CREAT, "trunc": os.O_TRUNC}


def create(p, how, data):
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | CREATE_FLAGS[how], 0o666)
    try:
        return os.write(fd, dec(data))
    finally:
        os.close(fd)


def write(p, off, data, append):
    fd = os.open(p, os.O_WRONLY | (os.O_APPEND if append else 0))
    try:
        return os.write(fd, dec(data)) if append else os.pwrite(fd, dec(data), off)
    finally:
        os.close(fd)


def ftruncate(p, n):
    fd = os.open(p, os.O_WRONLY)
    try:
        os.ftruncate(fd, n)
    finally:
        os.close(fd)


def read(p, off, size):
    fd = os.open(p, os.O_RDONLY)
    try:
        return enc(os.pread(fd, size, off))
    finally:
        os.close(fd)


def stat_(p):
    st = os.stat(p)
    kind = "d" if stat.S_ISDIR(st.st_mode) else "f" if stat.S_ISREG(st.st_mode) else "?"
    return [kind, st.st_size if kind == "f" else None, st.st_nlink, st.st_uid]


def fd_of(h):
    if h not in HANDLES:
        raise OSError(errno.EBADF, "no such handle")
    return HANDLES[h]


LIBC = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_NOREPLACE = -100, 1


def rename_noreplace(a, b):
    # What coreutils mv tries first.
    if LIBC.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_NOREPLACE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def hopen(h, p, how):
    if how == "dir":  # a folder held open: it may be removed while held (its number stays busy)
        HANDLES[h] = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        return
    HANDLES[h] = os.open(p, os.O_RDWR | HOPEN_FLAGS[how], 0o666)


def hwrite(h, off, data, append):
    fd = fd_of(h)
    return os.write(fd, dec(data)) if append else os.pwrite(fd, dec(data), off)


def hprobe(h):
    fd = fd_of(h)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # sizes and link counts of folders differ by design
            return [["dir"], "EISDIR"]
        meta = [st.st_size, st.st_nlink]
    except OSError as e:
        meta = errno.errorcode[e.errno]
    try:
        data = enc(read_all(fd))
    except OSError as e:
        data = errno.errorcode[e.errno]
    return [meta, data]


OPS = {
    "create": create,
    "write": write,
    "truncate": os.truncate,
    "ftruncate": ftruncate,
    "open_trunc": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)),
    "rename": os.rename,
    "rename_noreplace": rename_noreplace,
    "unlink": os.unlink,
    "mkdir": lambda p: os.mkdir(p, 0o777),
    "rmdir": os.rmdir,
    "read": read,
    "listdir": lambda p: sorted(os.listdir(p)),
    "stat": stat_,
    "probe": probe,
    "walk": walk,
    "inos": inos,
    "ino": ino,
    "hopen": hopen,
    "hwrite": hwrite,
    "hread": lambda h, off, size: enc(os.pread(fd_of(h), size, off)),
    "htrunc": lambda h, n: os.ftruncate(fd_of(h), n),
    "hfsync": lambda h: os.fsync(fd_of(h)),
    "hclose": lambda h: os.close(fd_of(h)) or HANDLES.pop(h) and None,
    "hprobe": hprobe,
    "hwhere": lambda h: os.readlink(f"/proc/self/fd/{fd_of(h)}").removesuffix(" (deleted)"),
}

for line in sys.stdin:
    req = json.loads(line)
    as_uid(req["uid"])
    out = []
    for name, *args in req["calls"]:
        # memfs caps file sizes like RLIMIT_FSIZE would (README): the native side gets the rlimit.
        native = str(args[0]).startswith((NATIVE, "n"))
        soft = CAP if native else resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))
        try:
            out.append(["ok", OPS[name](*args)])
        except OSError as e:
            out.append(["err", errno.errorcode.get(e.errno, str(e.errno))])
    as_uid(0)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class Helper:
    """The root helper process: one request (a list of calls as one uid) per step."""

    def __init__(self, native: Path):
        self.proc = subprocess.Popen(
            [SYS_PYTHON, "-c", HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "NATIVE": str(native), "CAP": str(CAP)},
        )

    def call(self, uid: int, calls: list) -> list:
        self.proc.stdin.write(json.dumps({"uid": uid, "calls": calls}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            raise AssertionError(f"no answer from the helper in {TIMEOUT} s: memfs hung?")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=TIMEOUT)
            raise AssertionError(f"helper died: {self.proc.stderr.read()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ModelFailure(AssertionError):
    pass


class Model:
    """Generates the steps, runs them on both sides through the helper, compares."""

    def __init__(self, helper: Helper, mnt: Path, native: Path, seed: int, steps: int):
        self.helper = helper
        self.mnt = str(mnt)
        self.native = native
        self.seed = seed
        self.steps = steps
        self.rng = random.Random(seed)
        self.step = 0
        self.history: list[str] = []
        self.state: dict[str, str] = {}  # what exists for the uid of the step being generated
        self.ops: list[tuple] = []  # every step run, as (uid, op, rels, extra, slot)
        self.handles: dict[int, list[int]] = {uid: [] for uid in UIDS}  # open slots per uid
        # (uid, slot) of handles whose file has been in another uid's private tree since it
        # was opened: a removed file's path (readlink) follows its folder's later moves, so
        # where it is now cannot tell that memfs last saw it out of the holder's reach
        self.strays: set[tuple[int, int]] = set()
        self.counts: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}
        native.mkdir(mode=0o755)
        for uid in UIDS:
            d = native / str(uid)
            d.mkdir(mode=0o700)
            os.chown(d, uid, uid)
        (native / "team-eng").mkdir()
        os.chmod(native / "team-eng", 0o777)  # both members create, rename and remove there

    # -- paths ------------------------------------------------------------------
    def resolve(self, uid: int, rel: str) -> str:
        return rel.replace(MINE, f"mine-{uid}.md")

    def mpath(self, rel: str) -> str:
        return f"{self.mnt}/{rel}" if rel else self.mnt

    def npath(self, uid: int, rel: str) -> str:
        if rel == "team" or rel.startswith("team/"):
            base = self.native / ("team-eng" if uid in TEAM else "noteam")
            rest = rel[len("team") + 1 :]
        else:
            base, rest = self.native / str(uid), rel
        return f"{base}/{rest}" if rest else str(base)

    # -- generation -----------------------------------------------------------
    def native_state(self, uid: int) -> dict[str, str]:
        """What exists now for `uid` ('f' or 'd' per relative path), read from the native mirror
        as root. A deterministic function of the steps so far, so a seed replays exactly."""
        roots = [("", self.native / str(uid))] + (
            [("team/", self.native / "team-eng")] if uid in TEAM else []
        )
        state = {}
        for prefix, root in roots:
            for dirpath, dirs, files in os.walk(root):
                rel = os.path.relpath(dirpath, root)
                rel = "" if rel == "." else rel + "/"
                state.update({prefix + rel + d: "d" for d in dirs})
                state.update({prefix + rel + f: "f" for f in files})
        return state

    def pick_path(self, uid: int, want: str | None = None, how: str = "any") -> str:
        """A relative path from the pool. `want` 'f' or 'd' biases toward files or folders;
        `how` 'existing' toward paths that exist, 'fresh' toward new names in existing folders,
        so that most steps do something (and some still hit a missing parent)."""
        rng = self.rng
        team_share = 0.35 if uid in TEAM else 0.1
        pool = [self.resolve(uid, p) for p in (TEAM_PATHS if rng.random() < team_share else PRIVATE_PATHS)]
        if want is not None and rng.random() < 0.85:
            pool = [p for p in pool if _file_name(p) == (want == "f")]
        state = self.state
        if how == "existing":
            cands = [p for p in pool if p in state and (want is None or state[p] == want)]
        elif how == "fresh":
            cands = [p for p in pool if p not in state and (_parent(p) in state or _parent(p) == "")]
        else:
            cands = []
        if cands and rng.random() < 0.8:
            return rng.choice(cands)
        return rng.choice(pool)

    def data(self, uid: int) -> str:
        return f"<{uid}:{self.step}>" * self.rng.choice((1, 1, 2, 3, 7, 40))

    def offset(self) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return 0
        if r < 0.7:
            return rng.randint(0, 60)
        if r < 0.93:
            return rng.randint(0, 9000)  # holes across page boundaries
        return rng.choice((rng.randint(60000, 70000), rng.randint(CAP - 300, CAP + 10)))  # the cap

    def generate(self) -> tuple[int, str, list[str], list, int | None]:
        """(uid, op, relative paths, extra args, handle slot)."""
        rng = self.rng
        uid = rng.choice(UIDS)
        self.state = self.native_state(uid)
        ops = [
            ("create", 12),
            ("write", 16),
            ("truncate", 6),
            ("ftruncate", 3),
            ("open_trunc", 2),
            ("rename", 14),
            ("rename_noreplace", 4),
            ("unlink", 8),
            ("mkdir", 10),
            ("rmdir", 8),
            ("read", 8),
            ("listdir", 6),
            ("stat", 4),
            ("hopen", 3),
            ("hwrite", 5),
            ("hread", 3),
            ("htrunc", 1),
            ("hfsync", 1),
            ("hclose", 2),
        ]
        op = rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        slots = self.handles[uid]
        if op.startswith("h") and op != "hopen" and not slots:
            op = "hopen"
        if op == "hopen" and len(slots) >= HANDLE_SLOTS:
            op = "hclose"
        if op == "create":
            how = rng.choice(("plain", "excl", "trunc"))
            path = self.pick_path(uid, "f", rng.choice(("fresh", "existing")))
            return uid, op, [path], [how, self.data(uid)], None
        if op == "write":
            append = rng.random() < 0.2
            path = self.pick_path(uid, "f", "existing")
            return uid, op, [path], [self.offset(), self.data(uid), append], None
        if op in ("truncate", "ftruncate"):
            return uid, op, [self.pick_path(uid, "f", "existing")], [self.offset()], None
        if op == "open_trunc":
            return uid, op, [self.pick_path(uid, "f", "existing")], [], None
        if op in ("rename", "rename_noreplace"):
            src = self.pick_path(uid, None, "existing")
            kind = self.state.get(src, "f" if _file_name(src) else "d")
            dst = self.pick_path(uid, kind, rng.choice(("fresh", "existing", "any")))
            return uid, op, [src, dst], [], None
        if op in ("unlink", "read"):
            extra = [self.offset() if rng.random() < 0.3 else 0, rng.choice((1 << 20, 1, 100, 5000))]
            return uid, op, [self.pick_path(uid, "f", "existing")], extra if op == "read" else [], None
        if op == "mkdir":
            return uid, op, [self.pick_path(uid, "d", "fresh")], [], None
        if op == "rmdir":
            return uid, op, [self.pick_path(uid, "d", "existing")], [], None
        if op == "listdir":
            return uid, op, [rng.choice(("", "team", self.pick_path(uid, "d", "existing")))], [], None
        if op == "stat":
            return uid, op, [self.pick_path(uid, None, "existing")], [], None
        if op == "hopen":
            slot = min(set(range(HANDLE_SLOTS)) - set(slots))
            if rng.random() < 0.25:  # a folder held open, then maybe removed: new files may
                # get its backing inode number while memfs still shows it (identity checks)
                return uid, op, [self.pick_path(uid, "d", "existing")], ["dir"], slot
            how = rng.choice(("rw", "append", "creat", "trunc"))
            return uid, op, [self.pick_path(uid, "f", "existing")], [how], slot
        slot = rng.choice(sorted(slots))
        if op == "hwrite":
            return uid, op, [], [self.offset(), self.data(uid), rng.random() < 0.2], slot
        if op == "hread":
            return uid, op, [], [self.offset() if rng.random() < 0.3 else 0, rng.choice((1 << 20, 7))], slot
        if op == "htrunc":
            return uid, op, [], [self.offset()], slot
        if op == "hfsync":
            return uid, op, [], [], slot
        return uid, "hclose", [], [], slot

    # -- checking -------------------------------------------------------------
    def fail(self, what: str) -> None:
        recent = "\n".join(self.history[-25:])
        steps = min(self.step + 1, self.steps)  # a failure in the final check: the same run
        raise ModelFailure(
            f"seed={self.seed} step={self.step}: {what}\n"
            f"last steps:\n{recent}\n"
            f"reproduce: MEMFS_MODEL_SEED={self.seed} MEMFS_MODEL_STEPS={steps} "
            ".venv/bin/python -m pytest tests/t5_model.py -q"
        )

    def allowed_tokens(self, uid: int) -> set[str]:
        return {str(u) for u in TEAM} if uid in TEAM else {str(uid)}

    def check_isolation(self, uid: int, rel: str, kind: str, value) -> None:
        """Nothing memfs returned to `uid` may carry another uid's data or names."""
        if kind == "data":
            bad = {t for t in TOKEN.findall(value) if t not in self.allowed_tokens(uid)}
            if bad:
                self.fail(f"LEAK: uid {uid} read data of uid(s) {sorted(bad)} at {rel!r}")
        elif kind == "names":
            bad = {u for u in MINE_NAME.findall(" ".join(value)) if u != str(uid)}
            if bad or ".memfs" in value:
                self.fail(f"LEAK: uid {uid} listed {value} at {rel!r}")

    def normalize_probe(self, uid: int, rel: str, res: list, memfs: bool) -> list:
        """Drop what legitimately differs (owner, the root's `team` entry); check it on memfs."""
        if res[0] != "ok":
            return res
        kind, size, nlink, owner, payload = res[1]
        in_team = rel == "team" or rel.startswith("team/")
        if memfs:
            if not in_team and owner != uid:
                self.fail(f"memfs shows {rel!r} owned by {owner} to uid {uid}, expected {uid}")
            if kind == "f":
                self.check_isolation(uid, rel, "data", payload)
            elif kind == "d":
                self.check_isolation(uid, rel, "names", payload)
                if rel == "":
                    if ("team" in payload) != (uid in TEAM):
                        self.fail(f"root listing of uid {uid}: {payload}")
                    payload = [n for n in payload if n != "team"]
        return ["ok", [kind, size, nlink, owner if in_team else None, payload]]

    def compare(self, what: str, m, n) -> None:
        if m != n:
            self.fail(f"{what}: memfs={_short(m)} native={_short(n)}")

    def run_step(self, step: tuple | None = None) -> None:
        uid, op, rels, extra, slot = step or self.generate()
        self.ops.append((uid, op, rels, extra, slot))
        self.counts[op] = self.counts.get(op, 0) + 1
        desc = f"  step {self.step}: uid {uid} {op} {rels} {_short(extra, 60)}" + (
            f" handle {slot}" if slot is not None else ""
        )
        self.history.append(desc)
        hm, hn = f"m{uid}-{slot}", f"n{uid}-{slot}"
        if slot is not None and op != "hopen" and ((uid, slot) in self.strays or self.foreign(uid, hn)):
            self.drop_foreign_handle(uid, slot)
            return
        if slot is not None:
            m_call = [op, hm, *[self.mpath(r) for r in rels], *extra]
            n_call = [op, hn, *[self.npath(uid, r) for r in rels], *extra]
        else:
            m_call = [op, *[self.mpath(r) for r in rels], *extra]
            n_call = [op, *[self.npath(uid, r) for r in rels], *extra]
        touched = []
        for r in rels:
            for p in (r, _parent(r)):
                if p not in touched:
                    touched.append(p)
        calls = [m_call, n_call]
        for r in touched:
            calls += [["probe", self.mpath(r)], ["probe", self.npath(uid, r)]]
        after_handle = slot is not None and op != "hclose"
        if after_handle:
            calls += [["hprobe", hm], ["hprobe", hn]]
        identity = op.startswith("rename") and rels[0] != rels[1]
        if identity:  # which file each name is, before the rename
            before = self.helper.call(uid, [["ino", m_call[1]], ["ino", n_call[1]]])
        out = self.helper.call(uid, calls)
        m, n = out[0], out[1]
        if identity:
            after = self.helper.call(uid, [["ino", m_call[2]], ["ino", n_call[2]]])
            self.check_rename_identity(rels, before, after)
        if op == "stat":  # private owners differ by design: check memfs's; team owners compare
            in_team = rels[0] == "team" or rels[0].startswith("team/")
            if m[0] == "ok":
                if not in_team and m[1][3] != uid:
                    self.fail(f"stat {rels[0]!r} as {uid}: owner {m[1][3]}")
                m = ["ok", m[1][:4] if in_team else m[1][:3]]
            if n[0] == "ok":
                n = ["ok", n[1][:4] if in_team else n[1][:3]]
        if m[0] == "ok" and op in ("read", "hread"):
            self.check_isolation(uid, str(rels), "data", m[1])
        if m[0] == "ok" and op == "listdir":
            self.check_isolation(uid, rels[0], "names", m[1])
            if rels[0] == "":
                if ("team" in m[1]) != (uid in TEAM):
                    self.fail(f"root listing of uid {uid}: {m[1]}")
                m = ["ok", [x for x in m[1] if x != "team"]]
        self.compare(f"result of {op} {rels}", m, n)
        outcome = f"{op}:{m[1] if m[0] == 'err' else 'ok'}"
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if op == "hopen" and m[0] == "ok" and slot not in self.handles[uid]:
            self.handles[uid].append(slot)
            self.strays.discard((uid, slot))
        if op == "hclose" and slot in self.handles[uid]:
            self.handles[uid].remove(slot)
        if op.startswith("rename") and m[0] == "ok":
            self.note_strays()
        for i, r in enumerate(touched):
            pm = self.normalize_probe(uid, r, out[2 + 2 * i], True)
            pn = self.normalize_probe(uid, r, out[3 + 2 * i], False)
            self.compare(f"state of {r!r} after {op}", pm, pn)
        if after_handle:
            pm, pn = out[-2], out[-1]
            if pm[0] == "ok" and pm[1][1] not in ERRNAMES:
                self.check_isolation(uid, f"handle {slot}", "data", pm[1][1])
            self.compare(f"state through handle {slot} after {op}", pm, pn)

    def check_rename_identity(self, rels: list[str], before: list, after: list) -> None:
        """st_ino follows the file: the destination name is the source file on memfs exactly
        when it is on the native side (a done rename, a refused one, or one that failed)."""
        (mb, nb), (ma, na) = before, after
        if mb[0] != nb[0] or ma[0] != na[0]:
            self.fail(f"inode lookups around rename {rels}: memfs={mb, ma} native={nb, na}")
        if mb[0] == "ok" and ma[0] == "ok" and (mb[1] == ma[1]) != (nb[1] == na[1]):
            self.fail(f"rename {rels}: the file behind the new name changed identity on one side only")

    def check_identity(self) -> None:
        """Two names are the same file on memfs exactly when they are natively (every uid's
        tree and the team's, at once), and memfs's numbers survive the kernel forgetting
        every inode (drop_caches)."""

        def snapshot() -> tuple[dict, dict]:
            mem, nat = {}, {}
            for uid in UIDS:
                calls = [["inos", self.mnt, True], ["inos", self.npath(uid, ""), False]]
                if uid in TEAM:
                    calls += [["inos", self.mpath("team"), False], ["inos", self.npath(uid, "team"), False]]
                out = self.helper.call(uid, calls)
                for i in range(0, len(out), 2):
                    base = "" if i == 0 else "team/"
                    if out[i][0] != "ok" or out[i + 1][0] != "ok":
                        self.fail(f"inode walk as {uid}: {out[i]} {out[i + 1]}")
                    owner = "team" if base else str(uid)
                    mem.update({(owner, base + r): v for r, v in out[i][1].items()})
                    nat.update({(owner, base + r): v for r, v in out[i + 1][1].items()})
            return mem, nat

        mem, nat = snapshot()
        pairs = {(mem[k], nat[k]) for k in mem.keys() & nat.keys()}
        if len({m for m, _ in pairs}) != len(pairs) or len({n for _, n in pairs}) != len(pairs):
            self.fail(f"inode numbers do not match file identity: {_short(sorted(pairs), 800)}")
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        again, _ = snapshot()
        if again != mem:
            moved = {
                k: (mem.get(k), again.get(k)) for k in mem.keys() | again.keys() if mem.get(k) != again.get(k)
            }
            self.fail(f"st_ino changed across drop_caches: {_short(moved, 800)}")

    def foreign(self, uid: int, hn: str) -> bool:
        """Is the file behind this native handle now (or last) in another uid's private tree?
        Only a team member can do that, by moving a team file into its own private folder."""
        (res,) = self.helper.call(uid, [["hwhere", hn]])
        if res[0] != "ok":
            return False  # no such handle (a minimized script dropped its open): EBADF both sides
        rel = os.path.relpath(res[1], self.native)
        owner = rel.split("/", 1)[0]
        return owner.isdigit() and int(owner) != uid

    def note_strays(self) -> None:
        """After a rename: every open handle whose file is now in another uid's private tree."""
        for uid, slots in self.handles.items():
            for slot in slots:
                if self.foreign(uid, f"n{uid}-{slot}"):
                    self.strays.add((uid, slot))

    def drop_foreign_handle(self, uid: int, slot: int) -> None:
        """A handle whose file a teammate moved into their private folder. As designed, the
        decision made at open stays in the handle for read/write (no caller on those calls),
        while calls that carry a caller are checked against the file's scope now: EACCES for
        fstat, ftruncate, and for read or an O_APPEND write whenever the kernel first asks for
        fresh attributes (getattr). Which one fails depends on the kernel's attribute cache, and
        a native directory never fails there, so the driver compares what answered and closes."""
        hm, hn = f"m{uid}-{slot}", f"n{uid}-{slot}"
        self.history[-1] += "  -> file moved out of reach: probe and close instead"
        self.counts["hdrop"] = self.counts.get("hdrop", 0) + 1
        pm, pn, cm, cn = self.helper.call(
            uid, [["hprobe", hm], ["hprobe", hn], ["hclose", hm], ["hclose", hn]]
        )
        if pm[0] != "ok" or pn[0] != "ok":
            self.fail(f"probe of foreign handle {slot}: memfs={pm} native={pn}")
        # Each may be EACCES, or answered (from the kernel's caches): then it must be right.
        if pm[1][0] != "EACCES":
            self.compare(f"fstat of foreign handle {slot}", pm[1][0], pn[1][0])
        if pm[1][1] != "EACCES":
            self.check_isolation(uid, f"foreign handle {slot}", "data", pm[1][1])
            self.compare(f"content through foreign handle {slot}", pm[1][1], pn[1][1])
        self.compare(f"close of foreign handle {slot}", cm, cn)
        self.handles[uid].remove(slot)
        self.strays.discard((uid, slot))

    def full_check(self) -> None:
        """Every uid's whole tree (and the team's) on both sides; carol has no team."""
        for uid in UIDS:
            calls = [["walk", self.mnt, True], ["walk", self.npath(uid, ""), False]]
            if uid in TEAM:
                calls += [["walk", self.mpath("team"), False], ["walk", self.npath(uid, "team"), False]]
            else:
                calls += [["stat", self.mpath("team")], ["listdir", self.mpath("team")]]
            out = self.helper.call(uid, calls)
            trees = []
            for res, base, memfs in ((out[0], "", True), (out[1], "", False)) + (
                ((out[2], "team", True), (out[3], "team", False)) if uid in TEAM else ()
            ):
                if res[0] != "ok":
                    self.fail(f"walk of {base!r} as {uid}: {res}")
                trees.append(
                    {
                        rel: self.normalize_probe(uid, _join(base, rel), ["ok", pr], memfs)
                        for rel, pr in res[1].items()
                    }
                )
            for i in range(0, len(trees), 2):
                m, n = trees[i], trees[i + 1]
                if m != n:
                    diff = {k: (m.get(k), n.get(k)) for k in sorted(set(m) | set(n)) if m.get(k) != n.get(k)}
                    self.fail(f"whole tree of uid {uid} differs: {_short(diff, 2000)}")
            if uid not in TEAM and out[2:] != [["err", "ENOENT"], ["err", "ENOENT"]]:
                self.fail(f"team/ for uid {uid} (in no team): {out[2:]}")

    def close_handles(self) -> None:
        for uid in UIDS:
            calls = []
            for slot in self.handles[uid]:
                calls += [["hclose", f"m{uid}-{slot}"], ["hclose", f"n{uid}-{slot}"]]
            if calls:
                out = self.helper.call(uid, calls)
                self.compare(f"closing handles of {uid}", out[0::2], out[1::2])
            self.handles[uid] = []

    def run(self, script: list[tuple] | None = None) -> None:
        """The seeded random run, or the given steps (a regression or a minimized run)."""
        if script is not None:
            self.steps = len(script)
        for step in range(self.steps):
            self.step = step
            self.run_step(script[step] if script is not None else None)
            if self.step % FULL_EVERY == FULL_EVERY - 1:
                self.full_check()
            if self.step % IDENTITY_EVERY == IDENTITY_EVERY - 1:
                self.check_identity()
        self.step = self.steps
        self.history.append("  (end: closing handles, full comparison)")
        self.close_handles()
        self.full_check()


def _file_name(rel: str) -> bool:
    """In the pool, files have a dot in their name (x.md, n.txt) and folders do not."""
    return "." in rel.rpartition("/")[2]


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def _join(base: str, rel: str) -> str:
    return f"{base}/{rel}" if base and rel else base or rel


def _short(v, limit: int = 400) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + f"...({len(s)} chars)"


def _tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for a folder), as root sees it on disk."""
    if not root.exists():
        return {}
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d))] = None
        for f in files:
            out[os.path.normpath(os.path.join(rel, f))] = Path(dirpath, f).read_bytes()
    return out


def run_model(make_mount, base_dir: Path, seed: int, steps: int, script: list | None = None) -> Model:
    """A fresh mount and empty mirrors; the seeded run (or `script`); then the backing store."""
    m = make_mount(MODEL_CONFIG)
    helper = Helper(base_dir / "native")
    try:
        model = Model(helper, m.mnt, base_dir / "native", seed, steps)
        model.run(script)
    finally:
        helper.close()
    # What memfs stored is exactly what the native mirror holds.
    for uid in UIDS:
        stored, mirror = _tree(m.backing(USER_NAMES[uid])), _tree(base_dir / "native" / str(uid))
        assert stored == mirror, f"seed={seed}: backing store of uid {uid} differs from the mirror"
    stored, mirror = _tree(m.data / "teams" / "eng"), _tree(base_dir / "native" / "team-eng")
    assert stored == mirror, f"seed={seed}: backing store of team eng differs from the mirror"
    assert "Traceback" not in m.log(), m.log()
    return model


@pytest.mark.slow
@pytest.mark.timeout(max(180, STEPS // 20))
@pytest.mark.parametrize("seed", SEEDS)
def test_random_ops_match_native(make_mount, base_dir, seed):
    model = run_model(make_mount, base_dir, seed, STEPS)
    # The run must have exercised what it claims to: successes and collisions alike.
    if STEPS >= 400:
        for outcome in ("rename:ok", "rmdir:ENOTEMPTY", "write:ok", "hwrite:ok", "unlink:ok", "mkdir:EEXIST"):
            assert model.outcomes.get(outcome, 0) > 0, (outcome, model.outcomes)


# Minimized from seed 3: bob makes private a team file that alice holds open. memfs then
# answers alice's fstat/read on that handle with EACCES or (once the kernel has fresh
# attributes, e.g. after bob's own stat) with bob's data; the driver accepts either.
DEMOTED_WHILE_OPEN = [
    (ALICE, "create", ["team/x.md"], ["trunc", "<1001:0>"], None),
    (ALICE, "hopen", ["team/x.md"], ["rw"], 0),
    (BOB, "rename", ["team/x.md", "team/a.md"], [], None),
    (BOB, "rename", ["team/a.md", "mine-1002.md"], [], None),
    (ALICE, "hwrite", [], [44, "<1001:4>", False], 0),
    (ALICE, "listdir", ["team"], [], None),
]


# Seed 425, minimized: bob's handle on a team file alice moved into her private folder and
# removed there; then she moved the folder into the team. The removed file's native path
# (readlink) now reads team/d2/c.md, while memfs last saw it in alice's private memory.
REMOVED_WHILE_PRIVATE = [
    (ALICE, "create", ["team/a.md"], ["excl", "<1001:0>"], None),
    (BOB, "hopen", ["team/a.md"], ["trunc"], 0),
    (ALICE, "mkdir", ["d2"], [], None),
    (ALICE, "rename", ["team/a.md", "d2/c.md"], [], None),
    (ALICE, "unlink", ["d2/c.md"], [], None),
    (ALICE, "rename", ["d2", "team/d2"], [], None),
    (BOB, "hfsync", [], [], 0),
]


def test_handle_on_a_file_removed_while_private(make_mount, base_dir):
    model = run_model(make_mount, base_dir, 0, 0, REMOVED_WHILE_PRIVATE)
    assert model.counts.get("hdrop") == 1 and model.handles[BOB] == []


def test_handle_on_a_file_a_teammate_made_private(make_mount, base_dir):
    model = run_model(make_mount, base_dir, 0, 0, DEMOTED_WHILE_OPEN)
    assert model.counts.get("hdrop") == 1 and model.handles[ALICE] == []


def test_the_checker_catches_a_divergence(make_mount, base_dir):
    """The harness is not vacuous: a file that only the native side has is reported, with
    the seed, the step and how to reproduce."""
    m = make_mount(MODEL_CONFIG)
    helper = Helper(base_dir / "native")
    try:
        model = Model(helper, m.mnt, base_dir / "native", 5, 30)
        helper.call(BOB, [["create", model.npath(BOB, "stray.md"), "plain", "<1002:0>"]])
        with pytest.raises(ModelFailure) as exc:
            model.run()
    finally:
        helper.close()
    msg = str(exc.value)
    assert msg.startswith("seed=5 step=") and "stray.md" in msg, msg
    assert "reproduce: MEMFS_MODEL_SEED=5 MEMFS_MODEL_STEPS=" in msg, msg
