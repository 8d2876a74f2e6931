"""Randomized model of sync: three hosts and two uids write, append, rename and delete in
the team folder in a seeded random order, syncing now and then; after a final round of
syncs every host holds the same tree, and every version any writer closed is somewhere:
in a file, a conflict copy, or the history. MEMFS_SYNC_SEED / MEMFS_SYNC_STEPS reproduce."""

from __future__ import annotations

import json
import os
import random
import subprocess

import pytest
from conftest import ALICE, BOB, SYS_PYTHON, memfs_cmd

from memfs import client

CONFIG = """
users:
  alice: {{uid: 1001}}
  bob: {{uid: 1002}}
teams:
  eng: {{members: [alice, bob], remote: {remote}}}
sync: {{interval: 3600}}
"""

DUMP = r"""
import json, os, sys
root = sys.argv[1]
out = {}
for top in ("team", ".memfs/history/team"):
    for d, dirs, files in os.walk(os.path.join(root, top)):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, errors="replace").read()
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [int(os.environ.get("MEMFS_SYNC_SEED", 0)) or s for s in (1, 2)])
def test_hosts_converge_and_lose_nothing(make_mount, base_dir, seed):
    rnd = random.Random(seed)
    remote = base_dir / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)], check=True)
    hosts = [
        make_mount(CONFIG.format(remote=remote), sub=f"h{i}", env={"MEMFS_HOST": f"h{i}"}) for i in range(3)
    ]
    names = [f"n{i}.md" for i in range(5)]
    closed: set[str] = set()
    steps = int(os.environ.get("MEMFS_SYNC_STEPS", 60))
    for step in range(steps):
        m = rnd.choice(hosts)
        uid = rnd.choice((ALICE, BOB))
        name, other = rnd.choice(names), rnd.choice(names)
        op = rnd.choice(("write", "write", "append", "rename", "delete", "sync", "sync"))
        text = f"{m.base.name}-{uid}-{step}\n"
        if op == "write":
            m.sh(uid, f"printf '{text}' > team/{name}")
            closed.add(text)
        elif op == "append":
            res = m.sh(
                uid, f"test -f team/{name} && printf '{text}' >> team/{name} && cat team/{name}", check=False
            )
            if res.returncode == 0:
                closed.add(res.stdout)
        elif op == "rename":
            m.sh(uid, f"test -f team/{name} && mv team/{name} team/{other} || true")
        elif op == "delete":
            m.sh(uid, f"rm -f team/{name}")
        else:
            m.run(uid, memfs_cmd("sync", "--mount", str(m.mnt)))
    for _ in range(2):  # quiescence: every host fetches what every other pushed
        for m in hosts:
            out = m.run(ALICE, memfs_cmd("sync", "--mount", str(m.mnt))).stdout
            assert not client.parse_sync(out).failed, out
    dumps = [json.loads(m.run(ALICE, [SYS_PYTHON, "-c", DUMP, str(m.mnt)]).stdout) for m in hosts]
    trees = [{p: t for p, t in d.items() if p.startswith("team/")} for d in dumps]
    assert trees[0] == trees[1] == trees[2], f"seed {seed}: hosts differ"
    everywhere = set()
    for d in dumps:
        everywhere |= set(d.values())
    lost = sorted(closed - everywhere)
    assert not lost, f"seed {seed}: versions lost: {lost}"
