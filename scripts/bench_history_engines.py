"""Which git engine should memfs's history use? Measures the one thing history does on
every batch (write the changed files' blobs, rebuild the trees above them, commit, move
the branch) and the one thing a reader does (read a version's bytes by blob id), with the
git CLI (plumbing, one fast-import per batch), pygit2 (libgit2) and dulwich.

    .venv/bin/python scripts/bench_history_engines.py [--files N] [--batches B]

Prints per-batch latency (p50/p99), CPU per batch and blob-read latency for each engine,
on a scope of N files spread over folders of 100, and on one flat folder of N files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def _files(n: int, flat: bool) -> list[bytes]:
    return [(b"" if flat else b"d%03d/" % (i // 100)) + b"entry-%06d.md" % i for i in range(n)]


def _content(path: bytes, v: int) -> bytes:
    return b"---\nname: %s\ntype: project\n---\nversion %d of %s\n" % (path, v, path) + b"x" * 600


class CLI:
    name = "git CLI (fast-import)"

    def __init__(self, d: str):
        self.d = d
        subprocess.run(["git", "init", "-q", "--bare", d], check=True)
        self.n = 0

    def commit(self, changes: dict[bytes, bytes]) -> None:
        self.n += 1
        out = [b"commit refs/heads/main\n", b"committer bench <b@h> %d +0000\n" % (1_700_000_000 + self.n)]
        msg = b"batch"
        out.append(b"data %d\n%s\n" % (len(msg), msg))
        if self.n > 1:
            out.append(b"from refs/heads/main^0\n")
        for path, data in changes.items():
            out.append(b'M 100644 inline "%s"\ndata %d\n%s\n' % (path, len(data), data))
        subprocess.run(
            ["git", "--git-dir", self.d, "fast-import", "--quiet", "--force"],
            input=b"".join(out),
            check=True,
        )

    def blob_of(self, path: bytes) -> str:
        r = subprocess.run(["git", "--git-dir", self.d, "rev-parse", b"main:" + path], capture_output=True)
        return r.stdout.decode().strip()

    def read(self, oid: str) -> bytes:
        return subprocess.run(
            ["git", "--git-dir", self.d, "cat-file", "blob", oid], capture_output=True, check=True
        ).stdout


class Pygit2:
    name = "pygit2"

    def __init__(self, d: str):
        import pygit2

        self.g = pygit2
        self.r = pygit2.init_repository(d, bare=True)
        self.head = None

    def _tree(self, base, changes: dict[bytes, object]):
        tb = self.r.TreeBuilder(base) if base is not None else self.r.TreeBuilder()
        for name, sub in changes.items():
            n = name.decode()
            if isinstance(sub, dict):
                old = base[n] if base is not None and n in base else None
                tb.insert(
                    n, self._tree(self.r[old.id] if old is not None else None, sub), self.g.GIT_FILEMODE_TREE
                )
            else:
                tb.insert(n, self.r.create_blob(sub), self.g.GIT_FILEMODE_BLOB)
        return tb.write()

    def commit(self, changes: dict[bytes, bytes]) -> None:
        tree = self._tree(self.r[self.head].tree if self.head else None, _nest(changes))
        sig = self.g.Signature("bench", "b@h")
        self.head = self.r.create_commit(
            "refs/heads/main", sig, sig, "batch", tree, [self.head] if self.head else []
        )

    def blob_of(self, path: bytes):
        return self.r[self.head].tree[path.decode()].id

    def read(self, oid) -> bytes:
        return self.r[oid].data


class Dulwich:
    name = "dulwich"

    def __init__(self, d: str):
        from dulwich.objects import Blob, Commit, Tree
        from dulwich.repo import Repo

        self.Blob, self.Tree, self.Commit = Blob, Tree, Commit
        self.r = Repo.init_bare(d, mkdir=True)
        self.store = self.r.object_store
        self.head = None

    def _tree(self, base, changes):
        t = base if base is not None else self.Tree()  # read fresh from the store: ours to change
        for name, sub in changes.items():
            if isinstance(sub, dict):
                old = None
                if base is not None and name in base:
                    old = self.store[base[name][1]]
                t.add(name, 0o040000, self._tree(old, sub))
            else:
                b = self.Blob.from_string(sub)
                self.store.add_object(b)
                t.add(name, 0o100644, b.id)
        self.store.add_object(t)
        return t.id

    def commit(self, changes: dict[bytes, bytes]) -> None:
        base = self.store[self.store[self.head].tree] if self.head else None
        c = self.Commit()
        c.tree = self._tree(base, _nest(changes))
        c.parents = [self.head] if self.head else []
        c.author = c.committer = b"bench <b@h>"
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.message = b"batch"
        self.store.add_object(c)
        self.r.refs[b"refs/heads/main"] = c.id
        self.head = c.id

    def blob_of(self, path: bytes):
        from dulwich.object_store import tree_lookup_path

        return tree_lookup_path(self.store.__getitem__, self.store[self.head].tree, path)[1]

    def read(self, oid) -> bytes:
        return self.store[oid].data


def _nest(changes: dict[bytes, bytes]) -> dict:
    root: dict = {}
    for path, data in changes.items():
        *dirs, leaf = path.split(b"/")
        node = root
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = data
    return root


def _cpu() -> float:
    """CPU of this process and of the git processes it ran."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(engine_cls, files: list[bytes], batches: int, per_batch: int) -> dict:
    d = tempfile.mkdtemp(prefix="hist-bench-")
    try:
        e = engine_cls(os.path.join(d, "r.git"))
        # the initial import: every file once, in chunks of 1,000
        for i in range(0, len(files), 1000):
            e.commit({p: _content(p, 0) for p in files[i : i + 1000]})
        lat, cpu = [], []
        for b in range(batches):
            chosen = [files[(b * 7919 + k * 104729) % len(files)] for k in range(per_batch)]
            changes = {p: _content(p, b + 1) for p in chosen}
            t0, c0 = time.perf_counter(), _cpu()
            e.commit(changes)
            lat.append(time.perf_counter() - t0)
            cpu.append(_cpu() - c0)
        oid = e.blob_of(files[len(files) // 2])
        reads = []
        for _ in range(50):
            t0 = time.perf_counter()
            e.read(oid)
            reads.append(time.perf_counter() - t0)
        return {
            "p50": statistics.median(lat) * 1e3,
            "p99": _pct(lat, 0.99) * 1e3,
            "cpu": statistics.mean(cpu) * 1e3,
            "read": statistics.median(reads) * 1e3,
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--per-batch", type=int, default=10)
    a = ap.parse_args()
    print(f"{a.batches} batches of {a.per_batch} changed files, scope of {a.files} files")
    print(
        f"{'engine':24} {'layout':8} {'batch p50':>10} {'p99':>8} {'cpu/batch':>10} {'read blob':>10}  (ms)"
    )
    for flat in (False, True):
        for cls in (CLI, Pygit2, Dulwich):
            r = run(cls, _files(a.files, flat), a.batches, a.per_batch)
            layout = "flat" if flat else "100/dir"
            cols = f"{r['p50']:10.2f} {r['p99']:8.2f} {r['cpu']:10.2f} {r['read']:10.2f}"
            print(f"{cls.name:24} {layout:8} {cols}")


if __name__ == "__main__":
    main()
