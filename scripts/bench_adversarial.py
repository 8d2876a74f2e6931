"""Adversarial benchmark: how much can one hostile unprivileged uid hurt another on a shared
memfs mount? Run by `scripts/bench --adversarial` (as root; the victim and the attacker run
as non-root uids through the mount).

For every selected attack: mount memfs on a fresh data dir, seed alice's memory, run the
attack's preparation as mallory (if any), then run alice's prober for N seconds alone
(baseline) and N seconds while mallory attacks, interleaved per attack. The prober
measures, each with its own latency list: `stat` of an entry by absolute path, `cat` of an
entry, a search through `.memfs/search/<word>` (and, for some attacks, `create` of a small
non-entry file and `list` of the root). Then mallory's process group is killed, the mount is asked
whether it still answers, and the mount is torn down (lazily and with a kill if it must).

This file is also the program the uids run (stdlib only, with /usr/bin/python3): it copies
itself into the world-readable temp dir and is started there with `--role`.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ALICE, BOB, MALLORY = 1001, 1002, 1666
SYS_PYTHON = "/usr/bin/python3"  # every uid can run it, unlike a python under /root
CONFIG = """\
users:
  alice: {uid: 1001}
  bob: {uid: 1002}
  mallory: {uid: 1666}
teams:
  eng:
    members: [alice, bob]
"""
TARGET_MS = 50.0
BASE_PROBES = ("stat", "cat", "search")
PROBE_PAUSE = 0.001  # between probes, so the prober itself is a light load
N_ENTRIES = 30  # alice's seeded entries e00.md .. e29.md
WORDS = (
    "deploy postgres latency kubernetes billing rollback canary migration schema index cache "
    "replica failover terraform helm oncall pager runbook incident retro budget forecast invoice "
    "ledger tabs spaces linting golang python rust review release freeze hotfix staging quota"
).split()
SEARCH_WORDS = ("deploy", "postgres", "rollback", "invoice", "canary", "terraform")
MAX_QUERY = 64 * 1024
QUERY_HANDLES = 5000
SEARCH_WORKERS = 6
MEMORY_BYTES = 10 * 1024 * 1024 - 4096  # just under the default max_file_bytes (10 MiB)
MOUNT_TIMEOUT = 60.0
ALIVE_TIMEOUT = 10.0
EXCEPTION_LINE = re.compile(r"^[\s|]*[\w.]+(Error|Exception|Exit)\b(: |$)")


# ---------------------------------------------------------------------------------------------
# Roles: what runs as alice or mallory (stdlib only, /usr/bin/python3)
# ---------------------------------------------------------------------------------------------


def _errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def _emit(event: str, **kw) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def _entry(name: str, rnd: random.Random, typ: str = "project", words: int = 80) -> bytes:
    body = " ".join(rnd.choice(WORDS) for _ in range(words))
    desc = " ".join(rnd.choice(WORDS) for _ in range(6))
    return f"---\nname: {name}\ndescription: {desc}\ntype: {typ}\n---\n{body}\n".encode()


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def role_seed(mnt: str) -> None:
    """Alice's memory: entries, MEMORY.md and a few team entries; then one search to flush."""
    rnd = random.Random(1)
    lines = []
    for i in range(N_ENTRIES):
        _write(f"{mnt}/e{i:02d}.md", _entry(f"E{i}", rnd))
        lines.append(f"- [E{i}](e{i:02d}.md) — entry {i}")
    _write(f"{mnt}/MEMORY.md", ("\n".join(lines) + "\n").encode())
    for i in range(5):
        _write(f"{mnt}/team/t{i:02d}.md", _entry(f"T{i}", rnd, "feedback"))
    with open(f"{mnt}/.memfs/search/deploy", "rb") as f:
        f.read()
    _emit("seeded")


def role_prober(mnt: str, seconds: float, kinds: list[str], hang_after: float) -> None:
    """Probe in a loop for `seconds`; a probe still in flight `hang_after` s past the end is
    reported as hung (with its time so far) by a watchdog thread, which then exits hard."""
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    errs: dict[str, dict[str, int]] = {k: {} for k in kinds}
    lock = threading.Lock()
    done = threading.Event()
    current: list = [None, 0.0]  # kind in flight, its perf_counter start
    end = time.monotonic() + seconds
    body = b"alice was here\n" * 8

    def emit(hung: str | None) -> None:
        with lock:
            if done.is_set():
                return
            done.set()
            _emit("result", lat=lat, errors=errs, hung=hung)

    def watchdog() -> None:
        while not done.wait(0.1):
            kind, t0 = current
            if kind is not None and time.monotonic() > end + hang_after:
                with lock:
                    lat[kind].append((time.perf_counter() - t0) * 1000)
                emit(kind)
                os._exit(0)

    def probe(kind: str, i: int) -> None:
        if kind == "stat":
            os.stat(f"{mnt}/e{i % N_ENTRIES:02d}.md")
        elif kind == "cat":
            with open(f"{mnt}/e{i % N_ENTRIES:02d}.md", "rb") as f:
                f.read()
        elif kind == "search":
            with open(f"{mnt}/.memfs/search/{SEARCH_WORDS[i % len(SEARCH_WORDS)]}", "rb") as f:
                f.read()
        elif kind == "create":
            # Not *.md: an entry written here would make alice's next search wait for its own
            # index commit (~20 ms), which is not mallory's doing.
            _write(f"{mnt}/probe-{i % 8}.txt", body)
        elif kind == "list":
            os.listdir(mnt)
        else:
            raise ValueError(kind)

    threading.Thread(target=watchdog, daemon=True).start()
    i = 0
    while time.monotonic() < end:
        for kind in kinds:
            current[1] = time.perf_counter()
            current[0] = kind
            err = None
            try:
                probe(kind, i)
            except OSError as e:
                err = _errname(e)
            dt = (time.perf_counter() - current[1]) * 1000
            with lock:
                current[0] = None
                lat[kind].append(dt)
                if err:
                    errs[kind][err] = errs[kind].get(err, 0) + 1
            time.sleep(PROBE_PAUSE)
        i += 1
    emit(None)


def role_alive(mnt: str) -> None:
    os.stat(f"{mnt}/e00.md")
    os.listdir(mnt)
    with open(f"{mnt}/.memfs/whoami", "rb") as f:
        f.read()
    _emit("alive")


def role_write_check(mnt: str) -> None:
    try:
        _write(f"{mnt}/after-attack.md", b"---\nname: after\ntype: project\n---\nstill writable\n")
        _emit("write", ok=True, error=None)
    except OSError as e:
        _emit("write", ok=False, error=_errname(e))


class Attacker:
    """Mallory's side: counters reported as JSON lines, `ready` when the attack is in place."""

    def __init__(self, mnt: str, params: dict):
        self.mnt = mnt
        self.params = params
        self.w = 0
        self.rnd = random.Random(1666)
        self.ops = 0
        self.errors: dict[str, int] = {}
        self.extra: dict[str, float] = {}
        self._last = 0.0

    def emit(self, event: str, **kw) -> None:
        _emit(event, w=self.w, **kw)

    def ready(self) -> None:
        self.tick(0, force=True)
        self.emit("ready")

    def tick(self, n: int = 1, force: bool = False) -> None:
        self.ops += n
        now = time.monotonic()
        if force or now - self._last > 0.5:
            self._last = now
            self.emit("progress", ops=self.ops, errors=self.errors, extra=self.extra)

    def error(self, e: OSError) -> None:
        name = _errname(e)
        self.errors[name] = self.errors.get(name, 0) + 1
        self.tick(0)

    def fork(self, n: int) -> None:
        """Become n workers (w = 0..n-1); all stay in the process group the bench kills."""
        for i in range(1, n):
            if os.fork() == 0:
                self.w, self.ops, self.errors, self.extra = i, 0, {}, {}
                self.rnd = random.Random(1666 + i)
                return


FIELDS = ("name", "description", "type", "tag", "tags", "path", "scope", "owner", "body", "key", "updated")


def _hostile_query(rnd: random.Random) -> str:
    n = rnd.randint(100, 4000)
    k = rnd.randrange(11)
    if k == 0:
        q = "(" * n + "x" + ")" * n
    elif k == 1:
        q = rnd.choice(["(", "NOT ", "-", "+-", "((a OR ", "[a TO ", "{"]) * n + "x"
    elif k == 2:
        q = '"' * n + ' a b "' + "x" * 10 if rnd.random() < 0.5 else " ".join(f'"{w} x' for w in WORDS * 50)
    elif k == 3:
        q = ":".join(rnd.choice(FIELDS) for _ in range(n)) + ":x"
    elif k == 4:
        boosts = ["1e308", "-1", "0", "NaN", "inf", "2", "99999999999999999999"]
        q = " ".join(f"x~{rnd.randint(0, 9)}^{rnd.choice(boosts)}" for _ in range(n))
    elif k == 5:
        q = " ".join(rnd.choice(["*", "a*", "*a*", "?*", "x*y*z*", "*:*"]) for _ in range(n))
    elif k == 6:
        q = " ".join(
            f"{rnd.choice(FIELDS)}:{rnd.choice('[{')}{rnd.choice(['a', '*', '0', ''])} TO "
            f"{rnd.choice(['z', '*', '9', '[b TO c]'])}{rnd.choice(']}')}"
            for _ in range(n // 4)
        )
    elif k == 7:
        q = rnd.choice(
            [
                f"{rnd.choice(FIELDS)}:/" + "(a|b)*" * (n // 10) + "/",
                "/" + ".*" * n + "/",
                "/" + "(" * 500 + "a" + ")" * 500 + "/",
                "path:/" + "a" * 2000 + ".*/",
                "/[" + "a-z" * n + "]{1000}/",
            ]
        )
    elif k == 8:  # an AND/OR/NOT chain of 10k terms
        ops = [" AND ", " OR ", " AND NOT ", " ", " +", " -", " NOT "]
        q = "x".join(rnd.choice(ops) for _ in range(10_000))
    elif k == 9:
        q = "".join(rnd.choice('(+-"[]{}^~*?:\\/&|!<>= ') for _ in range(rnd.randint(1000, MAX_QUERY)))
    else:
        q = " OR ".join(
            f"{rnd.choice(FIELDS)}:({'(' * 50}{rnd.choice(WORDS)}{')' * 50})" for _ in range(n // 20)
        )
    return q.encode()[:MAX_QUERY].decode(errors="ignore")


def attack_deep_query(a: Attacker) -> None:
    a.ready()
    paths = [f"{a.mnt}/.memfs/query", f"{a.mnt}/.memfs/query.json"]
    deep = "(" * 3000 + "x" + ")" * 3000
    i = 0
    while True:
        q = deep if i % 4 == 0 else _hostile_query(a.rnd)
        try:
            with open(paths[i % 2], "r+b", buffering=0) as f:
                f.write(q.encode())
                a.extra["result_bytes"] = len(f.read())
            a.tick()
        except OSError as e:
            a.error(e)
        i += 1


def attack_big_memory(a: Attacker) -> None:
    a.ready()
    parts, size, i = [], 0, 0
    while size < MEMORY_BYTES:
        r = i % 20
        if r < 11:
            line = f"- [x](x{i}.md) — hook\n"
        elif r < 16:
            line = "x\n"
        elif r < 18:
            line = f"## s{i}\n"
        elif r == 18:
            line = f"- [t](team/t{i}.md) — t\n"
        else:
            line = "- [u](.memfs/users/alice/e00.md) — peek\n"
        parts.append(line)
        size += len(line.encode())
        i += 1
    try:
        _write(f"{a.mnt}/MEMORY.md", "".join(parts).encode())
        a.extra["memory_lines"] = i
    except OSError as e:
        a.error(e)
    a.tick(force=True)
    while True:
        for name in ("context.md", "status", "index.md"):
            try:
                with open(f"{a.mnt}/.memfs/{name}", "rb") as f:
                    a.extra[f"{name}_bytes"] = len(f.read())
                a.tick()
            except OSError as e:
                a.error(e)


def prep_big_dir(a: Attacker) -> None:
    n = a.params["big_dir_files"]
    d = f"{a.mnt}/big"
    os.makedirs(d, exist_ok=True)
    a.fork(2)
    for i in range(a.w, n, 2):
        try:
            os.close(os.open(f"{d}/f{i:06d}", os.O_WRONLY | os.O_CREAT, 0o600))
            a.tick()
        except OSError as e:
            a.error(e)
    a.tick(0, force=True)


def attack_big_dir(a: Attacker) -> None:
    d = f"{a.mnt}/big"
    a.fork(2)
    a.ready()
    held: list = []
    fds: list[int] = []
    i = 0
    while True:
        try:
            it = os.scandir(d)
            for _ in range(a.rnd.randint(1, 3000)):
                if next(it, None) is None:
                    break
            held.append(it)
            if len(held) > 40:
                held.pop(0).close()
            fds.append(os.open(d, os.O_RDONLY | os.O_DIRECTORY))
            if len(fds) > 200:
                os.close(fds.pop(0))
            if i % 4 == a.w:
                a.extra["listed"] = len(os.listdir(d))
            a.tick()
        except OSError as e:
            a.error(e)
        i += 1


def attack_open_files(a: Attacker) -> None:
    paths = [f"{a.mnt}/hold-{i:02d}.txt" for i in range(16)]
    for p in paths:
        _write(p, b"x\n")
    a.fork(2)
    _raise_nofile()
    fds: list[int] = []
    in_row = 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            fds.append(os.open(paths[len(fds) % len(paths)], os.O_RDONLY))
            in_row = 0
            a.tick()
        except OSError as e:
            a.error(e)
            if e.errno in (errno.EMFILE, errno.ENFILE):
                break
            in_row += 1
            if in_row >= 200:
                break
    a.extra["held"] = len(fds)
    a.ready()


def attack_yaml_flood(a: Attacker) -> None:
    a.ready()
    i = 0
    while True:
        fm = _yaml_bomb(a.rnd, i)
        try:
            _write(f"{a.mnt}/y{i % 200:03d}.md", f"---\n{fm}\n---\nyaml flood body {i}\n".encode())
            a.tick()
            if i % 25 == 0:
                with open(f"{a.mnt}/.memfs/status", "rb") as f:
                    f.read()
                with open(f"{a.mnt}/.memfs/search/yaml", "rb") as f:
                    f.read()
        except OSError as e:
            a.error(e)
        i += 1


def _yaml_bomb(rnd: random.Random, i: int) -> str:
    """Frontmatter (< 64 KiB) built to make a YAML loader or whatever walks its result work."""
    k = i % 8
    if k == 0:  # billion laughs
        s = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        return s + "name: *i\ndescription: *h\ntags: *g\ntype: project"
    if k == 1:  # merge-key chain
        s = "a0: &a0 {k0: v}\n" + "".join(f"a{j}: &a{j} {{<<: *a{j - 1}, k{j}: v}}\n" for j in range(1, 1500))
        return s + "name: *a1499\ntype: project"
    if k == 2:  # deep flow nesting
        n = rnd.randint(1000, 16000)
        return "name: deep\ntags: " + "[" * n + "]" * n
    if k == 3:  # deep block nesting
        return "name: block\nx:\n" + "".join(" " * j + "- \n" for j in range(1, 250))
    if k == 4:  # thousands of aliases to one anchor
        return "a: &a " + "y" * 60 + "\ntags: [" + ",".join(["*a"] * 6000) + "]\nname: *a"
    if k == 5:  # numbers and tags that conversions choke on
        return (
            f"name: {'9' * 5000}\ndescription: !!binary {'QUFB' * 2000}\n"
            f"type: !!set {{a, b}}\nupdated: !!timestamp 9999-99-99\ntags: !!float {'1' * 4000}e999\n"
            "x: !!python/object/apply:os.system ['true']"
        )
    if k == 6:  # many keys with unhashable/odd values in the fields memfs reads
        return (
            "name: [a, {b: c}]\ndescription: {x: [1, 2]}\ntype: [user, feedback]\ntags: {a: b}\n"
            + "".join(f"k{j}: {{a: [{j}, {j}], b: null}}\n" for j in range(2000))
        )
    return "\n".join(f"k{j}: &k{j} [*k{j - 1}, *k{j - 1}]" if j else "k0: &k0 [x, x]" for j in range(60))


def attack_query_handles(a: Attacker) -> None:
    _raise_nofile()
    payload = (" ".join(a.rnd.choice(WORDS) for _ in range(12000)).encode() * 2)[:MAX_QUERY]
    fds: list[int] = []
    in_row = 0
    for _ in range(a.params["query_handles"]):
        try:
            fd = os.open(f"{a.mnt}/.memfs/query", os.O_RDWR)
            fds.append(fd)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            in_row = 0
            a.tick()
        except OSError as e:
            a.error(e)
            if e.errno in (errno.EMFILE, errno.ENFILE):
                break
            in_row += 1
            if in_row >= 200:
                break
    a.extra["held"] = len(fds)
    a.ready()


def attack_disk_fill(a: Attacker) -> None:
    a.ready()
    cap = a.params["fill_cap"]
    chunk = b"z" * (1 << 20)
    total, files, reason = 0, 0, "cap reached"
    while total < cap and reason == "cap reached":
        try:
            fd = os.open(f"{a.mnt}/fill-{files:05d}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            a.error(e)
            reason = _errname(e)
            break
        files += 1
        written = 0
        try:
            while total < cap:
                n = os.write(fd, chunk[: cap - total])
                written += n
                total += n
                a.extra["bytes"] = total
                a.tick()
        except OSError as e:
            a.error(e)
            if e.errno != errno.EFBIG or written == 0:  # EFBIG: the per-file cap, go on
                reason = _errname(e)
        finally:
            try:
                os.close(fd)
            except OSError as e:
                a.error(e)
                reason = _errname(e)
    a.extra["files"] = files
    a.tick(0, force=True)
    a.emit("filled", bytes=total, files=files, reason=reason)


def attack_search_flood(a: Attacker) -> None:
    rnd = random.Random(7)
    for i in range(200):
        try:
            _write(f"{a.mnt}/m{i:03d}.md", _entry(f"M{i}", rnd))
        except OSError as e:
            a.error(e)
    a.fork(a.params["search_workers"])
    a.ready()
    queries = [*WORDS, "a*", "e*", "*", "postgres~2", '"deploy rollback"', "type:project", " OR ".join(WORDS)]
    while True:
        q = urllib.parse.quote(a.rnd.choice(queries), safe="")[:255]
        try:
            with open(f"{a.mnt}/.memfs/search/{q}", "rb") as f:
                f.read()
            a.tick()
        except OSError as e:
            a.error(e)


def attack_rename_storm(a: Attacker) -> None:
    levels = [c * 250 for c in "abcd"]
    src, dst = f"{a.mnt}/{levels[0]}", f"{a.mnt}/{'A' * 250}"
    path = src
    rnd = random.Random(3)
    for lvl in levels[1:]:
        path = f"{path}/{lvl}"
        os.makedirs(path, exist_ok=True)
        for j in range(2):
            _write(f"{path}/n{j}.md", _entry(f"N{j}", rnd))
    for j in range(4):
        _write(f"{path}/deep{j}.md", _entry(f"D{j}", rnd))
    a.extra["path_bytes"] = len(path.encode())
    a.ready()
    inner, inner2 = levels[1], "B" * 250
    while True:
        try:
            os.rename(src, dst)
            src, dst = dst, src
            if a.ops % 10 == 0:
                os.rename(f"{src}/{inner}", f"{src}/{inner2}")
                inner, inner2 = inner2, inner
            a.tick()
        except OSError as e:
            a.error(e)
            time.sleep(0.001)


def attack_history_churn(a: Attacker) -> None:
    """Rewrite a 9 MB file of random bytes (git cannot compress it) in place, in a loop:
    every close is a version for history to hash, compress and commit."""
    path = f"{a.mnt}/churn.md"
    a.ready()
    while True:
        try:
            _write(path, os.urandom(9 << 20))
            a.extra["versions"] = a.ops + 1
            a.tick()
        except OSError as e:
            a.error(e)
            time.sleep(0.01)


KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789"


def attack_secret_stream(a: Attacker) -> None:
    """Into a guarded scope (mallory's team red): one-line entries each holding a fake key
    (refused at the write, logged, quarantined), alternating with 10 MiB files of prose
    written in 128 KiB writes (each write's window scanned before it is stored)."""
    prose = (b"the deploy notes say the canary runs first and the rollback waits for the pager\n" * 140)[
        : 128 << 10
    ]
    a.ready()
    n = 0
    while True:
        n += 1
        key = "ghp_" + "".join(
            random.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789") for _ in range(36)
        )
        try:
            _write(f"{a.mnt}/team/key{n % 50}.md", f"token for ci: {key}\n".encode())
        except OSError as e:  # EACCES: the guard refused it, as it should
            a.extra["refused"] = a.extra.get("refused", 0) + (e.errno == errno.EACCES)
        try:
            fd = os.open(f"{a.mnt}/team/big{n % 3}.md", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for _ in range(80):  # 10 MiB
                    os.write(fd, prose)
            finally:
                os.close(fd)
            a.tick()
        except OSError as e:
            a.error(e)
            time.sleep(0.01)


def _git(*args: str, cwd: str, data: bytes | None = None) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=True)
    return r.stdout.decode().strip()


def _git(*args: str, cwd: str, env: dict, data: bytes | None = None) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=True, env=env)
    return r.stdout.decode().strip()


def attack_sync_bomb(a: Attacker) -> None:
    """Push, round after round, a commit whose tree holds a fresh blob of zeros (git
    compresses it to almost nothing) under 3 names, 200 small files, and a forged author,
    e-mail and time; then ask the daemon to sync. Every round is new input for the host."""
    work = tempfile.mkdtemp(prefix="mallory-")
    conf = work + ".gitconfig"
    with open(conf, "w") as f:  # the remote is root's: git 2.39 trusts it only from a global config
        f.write(
            "[safe]\n\tdirectory = *\n[user]\n\tname = alice\n\temail = m@/../../../private/alice/PWNED\n"
        )
    env = dict(os.environ, GIT_CONFIG_GLOBAL=conf)
    _git("clone", "-q", a.params["remote"], work, cwd="/tmp", env=env)
    mib = a.params["bomb_mib"]
    a.ready()
    i = 0
    while True:
        i += 1
        try:
            _git("fetch", "-q", "origin", cwd=work, env=env)
            try:
                parent = _git("rev-parse", "origin/main", cwd=work, env=env)
            except subprocess.CalledProcessError:
                parent = ""
            zeros = _git(
                "hash-object", "-w", "--stdin", cwd=work, env=env, data=b"\0" * (mib << 20) + b"%d" % i
            )
            small = _git("hash-object", "-w", "--stdin", cwd=work, env=env, data=b"x %d\n" % i)
            lines = "".join(f"100644 blob {zeros}\tbomb{i}-{k}.md\n" for k in range(3))
            lines += "".join(f"100644 blob {small}\tsmall{i}-{k}.md\n" for k in range(200))
            tree = _git("mktree", cwd=work, env=env, data=lines.encode())
            # written raw: git commit-tree refuses this date
            who = "alice <m@/../../../private/alice/PWNED> 99999999999999999 +0000"
            head = f"tree {tree}\n" + (f"parent {parent}\n" if parent else "")
            raw = f"{head}author {who}\ncommitter {who}\n\nbomb\n".encode()
            commit = _git(
                "hash-object", "-t", "commit", "--literally", "-w", "--stdin", cwd=work, env=env, data=raw
            )
            _git("push", "-q", "-f", "origin", f"{commit}:refs/heads/main", cwd=work, env=env)
            with open(f"{a.mnt}/.memfs/sync", "wb") as f:
                f.write(b"sync\n")
            a.extra["rounds"] = i
            a.tick()
        except (OSError, subprocess.CalledProcessError) as e:
            a.error(e if isinstance(e, OSError) else OSError(errno.EIO, str(e)))
            time.sleep(0.1)


def role_attack(mnt: str, name: str, phase: str, params: dict) -> None:
    a = Attacker(mnt, params)
    spec = ATTACKS[name]
    fn = spec.prep if phase == "prep" else spec.fn
    assert fn is not None
    fn(a)
    a.tick(0, force=True)
    if phase == "prep":
        if a.w:
            os._exit(0)
        while True:  # the parent waits for its prep workers, then says it is done
            try:
                os.wait()
            except ChildProcessError:
                break
        a.emit("done")
        return
    while True:  # hold what the attack opened until the bench kills the process group
        time.sleep(3600)


# ---------------------------------------------------------------------------------------------
# The attack table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    fn: Callable[[Attacker], None]
    workers: int | str = 1  # ready events to wait for (a name: taken from params)
    prep: Callable[[Attacker], None] | None = None
    extra_probes: tuple[str, ...] = ()
    ready_timeout: float = 30.0
    what: str = ""
    config: str = ""  # added to CONFIG for this attack's mount ({remote}: team red's remote)


ATTACKS: dict[str, Attack] = {
    "deep_query": Attack(
        attack_deep_query, what="3000-deep parens and random Tantivy syntax via .memfs/query"
    ),
    "big_memory": Attack(
        attack_big_memory, what="10 MiB MEMORY.md, then context.md/status/index.md in a loop"
    ),
    "big_dir": Attack(
        attack_big_dir,
        workers=2,
        prep=prep_big_dir,
        what="100k-file folder; 40 held partial scandirs + 200 dir fds + full listings",
    ),
    "open_files": Attack(
        attack_open_files,
        workers=2,
        extra_probes=("create", "list"),
        ready_timeout=90.0,
        what="2 processes open files until EMFILE and hold them",
    ),
    "yaml_flood": Attack(attack_yaml_flood, what="entries with YAML alias/merge/nesting bombs in a loop"),
    "query_handles": Attack(
        attack_query_handles, ready_timeout=120.0, what="thousands of .memfs/query handles, 64 KiB each, held"
    ),
    "disk_fill": Attack(attack_disk_fill, extra_probes=("create",), what="write until an error or the cap"),
    "search_flood": Attack(attack_search_flood, workers="search_workers", what="parallel search loops"),
    "rename_storm": Attack(attack_rename_storm, what="mv a 4 x 250-byte-deep folder back and forth"),
    "history_churn": Attack(attack_history_churn, what="rewrite a 9 MB random file in place, in a loop"),
    "secret_stream": Attack(
        attack_secret_stream,
        config="  red: {{members: [mallory]}}\n",  # under CONFIG's teams: a guarded scope of mallory's
        what="fake keys into a guarded team scope (refused) and 10 MiB files in 128 KiB writes, in a loop",
    ),
    "sync_bomb": Attack(
        attack_sync_bomb,
        ready_timeout=60.0,
        config="  red: {{members: [mallory], remote: {remote}}}\n",  # under CONFIG's teams:
        what="push zero-blob bombs (3 names each), 200 small files, forged author and time; sync",
    ),
}


# ---------------------------------------------------------------------------------------------
# The bench (root)
# ---------------------------------------------------------------------------------------------

LIVE: list[Proc] = []  # every process group started, killed in the end whatever happens


class Proc:
    """A role run as a uid in its own session; stdout JSON lines collected by a thread."""

    def __init__(self, script: Path, uid: int, role: list[str], log: Path):
        env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        with open(log, "ab") as err:
            self.p = subprocess.Popen(
                [SYS_PYTHON, str(script), *role],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd="/",
                env=env,
                user=uid,
                group=uid,
                extra_groups=[],
                start_new_session=True,
            )
        self.log = log
        self.events: list[dict] = []
        self.cond = threading.Condition()
        LIVE.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()
        with self.cond:
            self.events.append({"event": "eof"})
            self.cond.notify_all()

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> list[dict]:
        """The first `count` events named `event`, or fewer when the process ended or time ran out."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [e for e in self.events if e["event"] == event]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0 or any(e["event"] == "eof" for e in self.events):
                    return got[:count]
                self.cond.wait(min(left, 0.5))

    def progress(self) -> tuple[int, dict[str, int], dict[str, float]]:
        """Mallory's counters: the last progress line per worker, summed."""
        last: dict[int, dict] = {}
        with self.cond:
            for e in self.events:
                if e["event"] == "progress":
                    last[e.get("w", 0)] = e
        ops, errors, extra = 0, {}, {}
        for e in last.values():
            ops += e["ops"]
            for k, v in e["errors"].items():
                errors[k] = errors.get(k, 0) + v
            for k, v in e["extra"].items():
                extra[k] = extra.get(k, 0) + v if k in ("held", "bytes", "files") else max(extra.get(k, 0), v)
        return ops, errors, extra

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL the whole process group; True when the leader is gone within `timeout`."""
        if self in LIVE:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        if self in LIVE:
            LIVE.remove(self)
        return True

    def stderr_tail(self, n: int = 3) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])


def mounted(mnt: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(mnt) for line in f)


class Mount:
    """One memfs daemon with its own data dir, config and run dir (like tests/conftest.py)."""

    def __init__(self, base: Path, name: str):
        self.mnt = base / "mnt"
        self.data = base / f"data-{name}"
        self.run_dir = base / f"run-{name}"
        self.config = base / "config.yaml"
        self.env = dict(os.environ, MEMFS_RUN_DIR=str(self.run_dir))
        self.pid: int | None = None

    def memfs(self, *args: str, timeout: float = MOUNT_TIMEOUT) -> tuple[int, str]:
        try:
            r = subprocess.run(
                [sys.executable, "-m", "memfs", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            return r.returncode, (r.stderr.strip() or r.stdout.strip())
        except subprocess.TimeoutExpired:
            return -1, f"memfs {args[0]} timed out after {timeout:.0f}s"

    def start(self) -> str | None:
        rc, out = self.memfs("mount", str(self.mnt), "--data", str(self.data), "--config", str(self.config))
        if rc != 0:
            return out.splitlines()[-1] if out else f"exit {rc}"
        for f in self.run_dir.glob("*.pid"):
            self.pid = int(f.read_text().split()[0])
        time.sleep(0.5)  # a daemon that dies during start-up is a failed mount, not an attack's effect
        if not (mounted(self.mnt) and self.daemon_alive()):
            return f"the daemon exited right after mounting; log: {self.log_errors()[1] or '(nothing)'}"
        return None

    def daemon_alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def daemon_stats(self) -> tuple[float, float, int]:
        """RSS and peak RSS in MiB and open fds of the daemon (zeros when it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                kib = {
                    k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f) if k in ("VmRSS", "VmHWM")
                }
            return kib["VmRSS"] / 1024, kib["VmHWM"] / 1024, len(os.listdir(f"/proc/{self.pid}/fd"))
        except (OSError, KeyError, ValueError):
            return 0.0, 0.0, 0

    def log_errors(self) -> tuple[int, str]:
        """How many error lines the daemon logged, and the most telling recent one."""
        try:
            lines = (self.data / "state" / "memfs.log").read_text(errors="replace").splitlines()
        except OSError:
            return 0, ""
        n, telling = 0, ""
        for ln in lines:
            if " ERROR " in ln or " CRITICAL " in ln or "Fatal Python" in ln:
                n, telling = n + 1, ln
            elif EXCEPTION_LINE.search(ln):
                telling = ln
        return n, telling.strip(" |")[:200]

    def kill_daemon(self) -> None:
        if self.pid is not None and self.daemon_alive():
            try:
                os.kill(self.pid, signal.SIGKILL)  # closes /dev/fuse: callers blocked on it get ENOTCONN
            except ProcessLookupError:
                pass

    def stop(self) -> str:
        """Always leaves no mount and no daemon behind; says how it got there."""
        how = "umount"
        rc, out = self.memfs("umount", str(self.mnt), timeout=45)
        if rc != 0 or mounted(self.mnt) or self.daemon_alive():
            how = f"umount failed ({out.splitlines()[-1] if out else rc}); lazy unmount + kill"
            self.kill_daemon()
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while mounted(self.mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        return how


@dataclass
class Result:
    name: str
    kinds: list[str]
    base: dict = field(default_factory=dict)
    under: dict = field(default_factory=dict)
    daemon: str = "?"
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def fmt3(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.median(xs):.2f}/{pct(xs, 0.99):.2f}/{max(xs):.1f}"


def fmt_num(key: str, v: float) -> str:
    if key == "bytes" or (key.endswith("_bytes") and v >= 1 << 20):
        return f"{v / 2**20:.1f}MiB"
    return f"{int(v):,}" if v == int(v) else f"{v:g}"


def fmt_errors(errs: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(errs.items()))


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path):
        self.args = args
        self.base = base
        self.script = base / "bench_adversarial.py"
        shutil.copy(__file__, self.script)
        os.chmod(self.script, 0o644)
        (base / "config.yaml").write_text(CONFIG)
        (base / "mnt").mkdir()
        os.chmod(base / "mnt", 0o755)
        self.params = {
            "big_dir_files": args.big_dir_files,
            "query_handles": args.query_handles,
            "fill_cap": args.fill_cap_mib << 20,
            "search_workers": args.search_workers,
            "remote": str(base / "red.git"),
            "bomb_mib": args.bomb_mib,
        }
        self.stuck: list[Proc] = []  # processes a kill could not end yet (blocked on the mount)

    def proc(self, uid: int, role: list[str], tag: str) -> Proc:
        return Proc(self.script, uid, role, self.base / f"{tag}.stderr")

    def run_role(
        self, uid: int, role: list[str], tag: str, event: str, timeout: float
    ) -> tuple[list[dict], Proc]:
        """Run a role to its end (or kill it at `timeout`); return its `event` lines."""
        p = self.proc(uid, role, tag)
        got = p.wait_for(event, timeout=timeout)
        if not p.kill(timeout=5):
            self.stuck.append(p)
        return got, p

    def probe(self, mnt: Path, kinds: list[str], tag: str) -> tuple[dict, str | None]:
        s = self.args.seconds
        role = ["--role", "prober", "--mnt", str(mnt), "--seconds", str(s), "--kinds", ",".join(kinds)]
        role += ["--hang-after", str(self.args.hang_after)]
        got, p = self.run_role(ALICE, role, tag, "result", s + self.args.hang_after + 20)
        if not got:
            return {k: {"lat": [], "errors": {}} for k in kinds}, f"prober gave no result ({p.stderr_tail()})"
        r = got[0]
        return {k: {"lat": r["lat"][k], "errors": r["errors"][k]} for k in kinds}, r["hung"]

    def alive(self, m: Mount, tag: str) -> bool:
        got, _ = self.run_role(ALICE, ["--role", "alive", "--mnt", str(m.mnt)], tag, "alive", ALIVE_TIMEOUT)
        return bool(got)

    def run_attack(self, name: str) -> Result:
        spec = ATTACKS[name]
        kinds = [*BASE_PROBES, *spec.extra_probes]
        res = Result(name, kinds)
        self.stuck: list[Proc] = []
        m = Mount(self.base, name)
        mnt = str(m.mnt)
        if spec.config:
            remote = self.base / "red.git"
            shutil.rmtree(remote, ignore_errors=True)
            subprocess.run(
                ["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)], check=True
            )
        m.config.write_text(CONFIG + spec.config.format(remote=self.base / "red.git"))
        err = m.start()
        if err:
            res.daemon = "mount failed"
            res.failures.append(f"mount failed: {err}")
            m.stop()
            return res
        attacker: Proc | None = None
        try:
            got, p = self.run_role(ALICE, ["--role", "seed", "--mnt", mnt], f"{name}-seed", "seeded", 120)
            if not got:
                res.failures.append(f"seeding alice failed: {p.stderr_tail(1)}")
                res.daemon = "ok" if self.alive(m, f"{name}-alive") else "no answer before the attack"
                return res
            role = ["--role", "attack", "--mnt", mnt, "--attack", name, "--params", json.dumps(self.params)]
            if spec.prep:
                t0 = time.monotonic()
                log(f"{name}: preparing as mallory")
                got, p = self.run_role(MALLORY, [*role, "--phase", "prep"], f"{name}-prep", "done", 900)
                ops, errs, _ = p.progress()
                res.notes.append(
                    f"prep: {ops} ops in {time.monotonic() - t0:.0f}s {fmt_errors(errs)}".rstrip()
                )
                if not got:
                    res.notes.append(f"prep did not finish: {p.stderr_tail()}")
            log(f"{name}: baseline {self.args.seconds:g}s")
            res.base, hung = self.probe(m.mnt, kinds, f"{name}-base")
            if hung:
                res.failures.append(f"baseline probe hung: {hung}")
            rss0, _, fds0 = m.daemon_stats()
            attacker = self.proc(MALLORY, [*role, "--phase", "attack"], f"{name}-attack")
            workers = spec.workers if isinstance(spec.workers, int) else self.params[spec.workers]
            t0 = time.monotonic()
            ready = attacker.wait_for("ready", workers, spec.ready_timeout)
            if len(ready) < workers:
                res.notes.append(
                    f"only {len(ready)}/{workers} attack workers ready after {time.monotonic() - t0:.0f}s"
                    f" {attacker.stderr_tail(1)}".rstrip()
                )
            elif time.monotonic() - t0 > 1:
                res.notes.append(f"attack in place after {time.monotonic() - t0:.0f}s")
            log(f"{name}: under attack {self.args.seconds:g}s")
            res.under, hung = self.probe(m.mnt, kinds, f"{name}-under")
            if hung:
                res.failures.append(f"a {hung} probe hung (> {self.args.hang_after:g}s)")
            rss1, peak, fds1 = m.daemon_stats()
            if name == "disk_fill":
                filled = attacker.wait_for("filled", 1, 120)
                if filled:
                    f = filled[0]
                    res.notes.append(
                        f"mallory wrote {f['bytes'] / 2**20:.0f} MiB in {f['files']} files,"
                        f" stopped: {f['reason']}"
                    )
                else:
                    res.notes.append("mallory's fill did not end within 120s after the window")
                got, _ = self.run_role(
                    ALICE, ["--role", "write-check", "--mnt", mnt], f"{name}-write", "write", ALIVE_TIMEOUT
                )
                ok = bool(got) and got[0]["ok"]
                res.notes.append(
                    f"alice's write afterwards: {'ok' if ok else (got[0]['error'] if got else 'hung')}"
                )
                if not ok:
                    res.failures.append("alice could not write after the fill")
            ops, errs, extra = attacker.progress()
            did = f"mallory: {ops} ops"
            if errs:
                did += f", errors {fmt_errors(errs)}"
            if extra:
                did += ", " + ", ".join(f"{k}={fmt_num(k, v)}" for k, v in sorted(extra.items()))
            res.notes.append(did)
            res.notes.append(
                f"daemon, window start -> end: RSS {rss0:.0f} -> {rss1:.0f} MiB (peak {peak:.0f}),"
                f" fds {fds0} -> {fds1}"
            )
            if not attacker.kill(timeout=15):
                res.notes.append("mallory's processes did not die within 15s (blocked on the mount)")
                self.stuck.append(attacker)
            attacker = None
            if self.alive(m, f"{name}-alive"):
                res.daemon = "survived"
            elif m.daemon_alive() and mounted(m.mnt):
                res.daemon = "HUNG (alive, no answer)"
                res.failures.append("the mount stopped answering")
            else:
                res.daemon = "DIED"
                res.failures.append("the daemon died")
            n, last = m.log_errors()
            if n:
                res.notes.append(f"daemon log: {n} error lines, last: {last}")
            return res
        finally:
            if attacker is not None and not attacker.kill(timeout=15):
                self.stuck.append(attacker)
            how = m.stop()
            if how != "umount":
                res.notes.append(how)
            for p in self.stuck:  # freed by the unmount and the daemon's death
                if not p.kill(timeout=10):
                    res.notes.append(f"a process (pid {p.p.pid}) is still blocked after the unmount")
            shutil.rmtree(m.data, ignore_errors=True)

    def judge(self, r: Result) -> None:
        for k in r.kinds:
            u = r.under.get(k)
            if not u:
                continue
            if u["lat"] and pct(u["lat"], 0.99) >= TARGET_MS:
                r.failures.append(f"{k} p99 {pct(u['lat'], 0.99):.1f} ms")
            if u["errors"]:
                r.failures.append(f"{k} errors {fmt_errors(u['errors'])}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def print_report(results: list[Result], seconds: float, load: tuple[float, float]) -> None:
    print(
        f"\nprober (uid {ALICE}) latency in ms, p50/p99/max: {seconds:g}s alone,"
        f" then {seconds:g}s under attack"
    )
    print(f"by mallory (uid {MALLORY}); each attack on a fresh mount")
    print(f"load average (1 min) at start {load[0]:.2f}, at end {load[1]:.2f}; {os.cpu_count()} cores\n")
    hdr = (
        f"{'attack':<14} {'probe':<7} {'baseline p50/p99/max':>22} {'attack p50/p99/max':>24} "
        f"{'p99 x':>8} {'n base/att':>11}  errors under attack"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        for k in r.kinds:
            b, u = r.base.get(k, {"lat": [], "errors": {}}), r.under.get(k, {"lat": [], "errors": {}})
            ratio = f"{pct(u['lat'], 0.99) / pct(b['lat'], 0.99):.1f}" if b["lat"] and u["lat"] else "-"
            n = f"{len(b['lat'])}/{len(u['lat'])}"
            print(
                f"{r.name:<14} {k:<7} {fmt3(b['lat']):>22} {fmt3(u['lat']):>24} {ratio:>8} {n:>11}  "
                f"{fmt_errors(u['errors'])}"
            )
        print(f"{'':<14} daemon: {r.daemon}")
        for note in r.notes:
            print(f"{'':<14} {note}")
    print(f"\ntarget: prober p99 < {TARGET_MS:g} ms during every attack")
    for r in results:
        verdict = "PASS" if not r.failures else "FAIL"
        why = "" if not r.failures else ": " + "; ".join(r.failures)
        print(f"  {r.name:<14} {verdict}{why}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="prober window, alone and under attack")
    ap.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma list of: {','.join(ATTACKS)}")
    ap.add_argument("--hang-after", type=float, default=10.0, help="a probe this late past the window: hung")
    ap.add_argument("--big-dir-files", type=int, default=100_000)
    ap.add_argument("--query-handles", type=int, default=QUERY_HANDLES)
    ap.add_argument("--search-workers", type=int, default=SEARCH_WORKERS)
    ap.add_argument("--bomb-mib", type=int, default=256, help="sync_bomb: MiB of zeros per pushed blob")
    ap.add_argument("--fill-cap-mib", type=int, default=2048, help="disk_fill stops here at the latest")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    # Internal: what runs as alice or mallory.
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--mnt", help=argparse.SUPPRESS)
    ap.add_argument("--kinds", help=argparse.SUPPRESS)
    ap.add_argument("--attack", help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.role:
        roles = {
            "seed": lambda: role_seed(args.mnt),
            "prober": lambda: role_prober(args.mnt, args.seconds, args.kinds.split(","), args.hang_after),
            "alive": lambda: role_alive(args.mnt),
            "write-check": lambda: role_write_check(args.mnt),
            "attack": lambda: role_attack(args.mnt, args.attack, args.phase, json.loads(args.params)),
        }
        roles[args.role]()
        return 0

    names = [n.strip() for n in args.attacks.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        print(
            f"bench_adversarial: unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACKS)}",
            file=sys.stderr,
        )
        return 2
    if os.geteuid() != 0:
        print(
            "bench_adversarial: run as root (sudo scripts/bench --adversarial): it switches uids",
            file=sys.stderr,
        )
        return 2
    base = Path(tempfile.mkdtemp(prefix="memfs-adv-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    bench = Bench(args, base)
    results: list[Result] = []
    t_start = time.monotonic()
    load0 = os.getloadavg()[0]
    try:
        for name in names:
            log(f"{name}: {ATTACKS[name].what}")
            r = bench.run_attack(name)
            bench.judge(r)
            results.append(r)
            log(f"{name}: daemon {r.daemon}; {'PASS' if not r.failures else 'FAIL'}")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    finally:
        for p in list(LIVE):
            p.kill(timeout=5)
        if mounted(base / "mnt"):
            subprocess.run(["fusermount3", "-uz", str(base / "mnt")], capture_output=True, timeout=30)
        if not mounted(base / "mnt"):
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"{base / 'mnt'} is still mounted; left {base} in place")
    print_report(results, args.seconds, (load0, os.getloadavg()[0]))
    print(f"\n(total {time.monotonic() - t_start:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
