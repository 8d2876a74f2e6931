"""Load: several processes per uid across three uids create, read, rename, append and search
for a bounded time. No lost update, no unexpected error, and a separate prober's stat keeps
being answered (its p50/p99 are printed and written to the test's base dir, not asserted).

MEMFS_LOAD_SECONDS (default 8) sets the duration; raise it for a local soak run."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import ALICE, BOB, CAROL, SYS_PYTHON
from t4_team import TEAM_CONFIG

SECONDS = float(os.environ.get("MEMFS_LOAD_SECONDS", "8"))
PROCS_PER_UID = 3

WORKER = r"""
import errno, json, os, sys, time
uid, k, seconds, team = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
tag = f"u{uid}p{k}"
os.makedirs(f"load/{tag}", exist_ok=True)
log = os.open(f"load/{tag}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
shared = os.open("team/shared.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if team else None
ops, errors, files = 0, [], {}
deadline = time.monotonic() + seconds
i = 0
while time.monotonic() < deadline:
    try:
        name = f"load/{tag}/e{i}.md"
        body = f"---\nname: {tag} {i}\ndescription: load\ntype: project\n---\nzorilla{tag} {i}\n"
        with open(name, "w") as f:
            f.write(body)
        if open(name).read() != body:
            errors.append(f"read back differs: {name}")
        if i % 3 == 0:
            new = f"load/{tag}/r{i}.md"
            os.rename(name, new)
            name = new
        files[name] = body
        if i % 4 == 0 and len(files) > 1:
            old = next(iter(files))
            os.unlink(old)
            del files[old]
        line = f"{tag} {i}\n".encode()
        os.write(log, line)
        if shared is not None:
            os.write(shared, line)
        if i % 10 == 0:
            res = open(f".memfs/search/zorilla{tag}").read()
            if "No results." in res:
                errors.append(f"search found nothing for {tag} at {i}")
        ops += 1
    except OSError as e:
        errors.append(f"{errno.errorcode.get(e.errno, e.errno)} at op {i}: {e}")
    i += 1
print(json.dumps({"tag": tag, "ops": ops, "errors": errors, "files": files}))
"""

PROBER = r"""
import json, os, sys, time
open("probe.md", "w").write("probe")
path = os.path.abspath("probe.md")
seconds = float(sys.argv[1])
lat = []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    t = time.perf_counter()
    os.stat(path)  # an absolute path: one trip through the per-caller root each time
    lat.append(time.perf_counter() - t)
    time.sleep(0.002)
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6
print(json.dumps({"n": len(lat), "p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": lat[-1] * 1e6}))
"""


@pytest.mark.slow
@pytest.mark.timeout(SECONDS * 10 + 120)
def test_load_across_uids(make_mount, base_dir):
    m = make_mount(TEAM_CONFIG)
    for uid in (ALICE, BOB, CAROL):
        m.sh(uid, "mkdir -p load")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}

    def start(uid, args):
        return subprocess.Popen(
            ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(m.mnt), SYS_PYTHON, "-c", *args],
            user=uid,
            group=uid,
            extra_groups=[],
            env=env,
            cwd="/",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    workers = []
    for uid in (ALICE, BOB, CAROL):
        for k in range(PROCS_PER_UID):
            team = "1" if uid in (ALICE, BOB) else "0"
            workers.append((uid, start(uid, [WORKER, str(uid), str(k), str(SECONDS), team])))
    prober = start(CAROL, [PROBER, str(SECONDS)])
    results = []
    try:
        for uid, w in workers:
            out, err = w.communicate(timeout=SECONDS * 5 + 60)
            assert w.returncode == 0, err
            results.append((uid, json.loads(out)))
        pout, perr = prober.communicate(timeout=SECONDS * 5 + 60)
        assert prober.returncode == 0, perr
    finally:
        for _, w in workers:
            w.kill()
        prober.kill()
    probe = json.loads(pout)
    total = sum(r["ops"] for _, r in results)
    report = {"seconds": SECONDS, "processes": len(workers), "ops": total, "stat_probe": probe}
    (base_dir / "load-report.json").write_text(json.dumps(report))
    print(f"\nload: {json.dumps(report)}")
    assert [e for _, r in results for e in r["errors"]] == []
    assert probe["n"] > 0 and total > 0
    # No lost update: every file each worker kept is there with its bytes, every logged line too.
    for uid, r in results:
        user = {ALICE: "alice", BOB: "bob", CAROL: "carol"}[uid]
        b = m.backing(user)
        for name, body in r["files"].items():
            assert (b / name).read_text() == body, name
        kept = {p.relative_to(b).as_posix() for p in (b / "load" / r["tag"]).iterdir()}
        assert kept == set(r["files"])
        lines = (b / "load" / f"{r['tag']}.log").read_text().splitlines()
        assert lines == [f"{r['tag']} {i}" for i in range(len(lines))] and len(lines) >= r["ops"]
    shared = (m.data / "teams" / "eng" / "shared.log").read_text().splitlines()
    for uid, r in results:
        if uid in (ALICE, BOB):
            mine = [ln for ln in shared if ln.startswith(r["tag"] + " ")]
            assert len(mine) == len(
                (m.backing("alice" if uid == ALICE else "bob") / "load" / f"{r['tag']}.log")
                .read_text()
                .splitlines()
            ), r["tag"]
