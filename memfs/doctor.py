"""memfs doctor: one line per check, OK or what to do."""

from __future__ import annotations

import calendar
import concurrent.futures
import os
import pwd
import random
import shutil
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import client, layout, mountnotes, mounttable
from . import config as config_mod
from .identity import Identities
from .index import manifest, scan_entries

ANSWER_TIMEOUT = 5.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # reported, but not broken

    def line(self) -> str:
        mark = "OK  " if self.ok and not self.warn else ("WARN" if self.ok else "FAIL")
        return f"{mark} {self.name}: {self.detail}"

    def as_dict(self) -> dict:
        return asdict(self)


def _fuse() -> Check:
    if not os.path.exists("/dev/fuse"):
        return Check("fuse", False, "/dev/fuse is missing: load the fuse module (modprobe fuse)")
    if shutil.which("fusermount3") is None:
        return Check("fuse", False, "fusermount3 is missing: apt-get install fuse3")
    return Check("fuse", True, "/dev/fuse and fusermount3 present")


def _config(path: Path | None) -> Check:
    try:
        cfg = config_mod.load(path) if path is not None else config_mod.Config()
        Identities(cfg)
    except config_mod.ConfigError as e:
        return Check("config", False, f"{e}: fix the config, then remount")
    src = str(path) if path is not None else "built-in defaults"
    return Check("config", True, f"{src}: {mountnotes.summary(cfg)}")


def _owner(config: Path | None) -> tuple[str, int | None]:
    """(the daemon user's name, its uid; None if it does not exist) from the config."""
    try:
        name = (config_mod.load(config) if config is not None else config_mod.Config()).daemon_user
    except config_mod.ConfigError:
        name = config_mod.Config().daemon_user
    try:
        return name, pwd.getpwnam(name).pw_uid
    except KeyError:
        return name, None


def _data(data: Path, config: Path | None = None) -> Check:
    user, uid = _owner(config)
    try:
        st = data.stat()
    except FileNotFoundError:
        return Check("data", False, f"{data} does not exist: memfs mount creates it")
    except OSError as e:
        return Check("data", False, f"{data}: {e.strerror}")
    if not stat.S_ISDIR(st.st_mode):
        return Check("data", False, f"{data} is not a directory")
    if uid is None:
        return Check(
            "data", False, f"the daemon user {user} does not exist: useradd --system --user-group {user}"
        )
    if st.st_uid not in (uid, 0):  # root's: written by an older root daemon, handed over at mount
        return Check("data", False, f"{data} is owned by uid {st.st_uid}: memfs mount hands it to {user}")
    if st.st_mode & 0o077:
        return Check(
            "data",
            False,
            f"{data} is mode {stat.S_IMODE(st.st_mode):o}: others can bypass memfs; chmod 700 {data}",
        )
    if not os.access(data, os.R_OK | os.X_OK):
        return Check("data", True, f"{data} is {user}'s, mode 700 (run doctor as root to check inside it)")
    if st.st_uid != uid:
        return Check("data", True, f"{data} is root's, mode 700: the next mount hands it to {user}")
    missing = [d for d in layout.TOP_DIRS if not (data / d).is_dir()]
    if missing:
        return Check("data", False, f"{data} lacks {', '.join(missing)}: mount memfs once to create them")
    return Check("data", True, f"{data} is {user}'s, mode 700")


def _answers(mnt: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(client.answers, mnt).result(timeout=ANSWER_TIMEOUT)


def _mount(mnt: Path) -> tuple[Check, bool]:
    fstype = mounttable.fstype(mnt)
    if fstype is None:
        return Check("mount", False, f"nothing is mounted at {mnt}: memfs mount {mnt}"), False
    if fstype != "fuse.memfs":
        return Check("mount", False, f"{mnt} is a {fstype} mount, not memfs"), False
    try:
        _answers(mnt)
    except concurrent.futures.TimeoutError:
        return Check("mount", False, f"{mnt} does not answer within {ANSWER_TIMEOUT:.0f}s"), False
    except PermissionError:  # alive, but refuses this caller: nothing to clear
        detail = f"{mnt} answers, but refuses uid {os.getuid()} (unknown_uids: deny)"
        return Check("mount", True, detail, warn=True), False
    except OSError as e:
        return Check("mount", False, f"{mnt}: {e.strerror}: run memfs mount {mnt} again to clear it"), False
    return Check("mount", True, f"{mnt} answers"), True


def _status(mnt: Path) -> Check:
    where = client.control_path(mnt, client.STATUS)
    try:
        lines = client.status(mnt)
    except OSError as e:
        return Check("status", False, f"cannot read {where}: {e.strerror}")
    if not lines:
        return Check("status", True, "no warnings in your memory")
    return Check("status", True, f"{len(lines)} warnings in your memory: cat {where}", warn=True)


def _remotes(mnt: Path) -> Check:
    """Every synced scope's remote as the daemon last reached it: every scope for root (or
    daemon.admin_group), the caller's own otherwise. Fails while any remote fails."""
    try:
        try:
            scopes = [
                {"scope": s["scope"], **s["sync"]} for s in client.admin(mnt)["scopes"] if s.get("sync")
            ]
        except PermissionError:
            scopes = [
                {"scope": s["scope"], "last_ok": _epoch(s.get("last_sync")), **s}
                for s in client.sync_state(mnt).scopes
            ]
    except FileNotFoundError:
        return Check("sync", True, "no remote configured")
    except (OSError, client.AnswerError) as e:
        return Check("sync", False, f"cannot read the sync state: {getattr(e, 'strerror', None) or e}")
    if not scopes:
        return Check("sync", True, "no remote configured")
    now = time.time()
    failing = [s for s in scopes if s.get("error")]
    waiting = sum(int(s.get("commits_waiting") or 0) for s in scopes)
    oks = [s["last_ok"] for s in scopes if s.get("last_ok")]
    oldest = f"{now - min(oks):.0f} s ago" if len(oks) == len(scopes) else "never, for some"
    detail = f"{len(scopes)} remotes, last success at worst {oldest}, {waiting} commits waiting"
    if failing:
        f = failing[0]
        more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
        return Check("sync", False, f"{len(failing)} of {detail}; {f['scope']}: {f['error']}{more}")
    return Check("sync", True, f"all {detail}")


def _epoch(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def _index(data: Path, sample: int = 20) -> Check:
    if not manifest.path_of(data).exists():
        return Check("index", False, "no index yet: mount memfs (it indexes at start) or run memfs reindex")
    try:
        import tantivy

        docs = sum(
            tantivy.Index.open(str(layout.index_dir(data, scope))).searcher().num_docs
            for scope in layout.scopes_in(layout.index_root(data))
        )
        summary = manifest.summary(data)
    except Exception as e:  # a damaged index is a finding, not a crash
        return Check("index", False, f"cannot read the index: {e}: run memfs reindex (unmounted)")
    known = summary.known
    files = scan_entries(data).found
    fix = "remount (reconcile) or run memfs reindex (unmounted)"
    if not (docs == len(known) == len(files)):
        return Check(
            "index", False, f"{docs} indexed, {len(known)} in manifest, {len(files)} entries on disk: {fix}"
        )
    keys = random.Random(0).sample(sorted(files), min(sample, len(files)))
    stale = [k for k in keys if known.get(k) != files[k][2:]]
    if stale:
        return Check("index", False, f"{len(stale)} of {len(keys)} sampled entries are stale: {fix}")
    if summary.orphans:
        return Check("index", False, f"{summary.orphans} vectors of entries no longer indexed: {fix}")
    note = ""
    if summary.embedder != "none":
        note = f"; {summary.vectors} embedded by {summary.embedder}"
        if summary.vectors < docs:
            note += f" ({docs - summary.vectors} waiting: embedded in the background while mounted)"
    return Check("index", True, f"{docs} entries indexed, matching the files ({len(keys)} sampled){note}")


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def _history(data: Path, strict: bool = False) -> Check:
    """History's disk use and versions; each scope's branch compared with its files (every
    file, when strict: after an unmount nothing may be left uncommitted)."""
    from .history.catalog import Catalog, catalog_file
    from .history.gitrepo import Repo

    scopes = layout.history_scopes(data)
    if not scopes:
        return Check("history", True, "no history yet (history off, or nothing written)")
    versions = behind = 0
    try:
        for scope in scopes:
            gitdir = layout.history_dir(data, scope)
            if catalog_file(gitdir).exists():
                with Catalog.reading(gitdir) as cat:
                    versions += cat.stats()[0]
            if strict:
                behind += len(_uncommitted(Repo(gitdir), layout.scope_dir(data, scope)))
    except Exception as e:  # a damaged repository is a finding, not a crash
        return Check("history", False, f"cannot read the history: {e}")
    size = _du(layout.history_root(data))
    detail = f"{len(scopes)} scopes, {versions} versions, {size / (1 << 20):.1f} MiB on disk"
    if behind:
        return Check("history", False, f"{detail}; {behind} files differ from their last commit")
    return Check("history", True, detail)


def _uncommitted(repo, folder: Path) -> list[bytes]:
    import pygit2

    head = {p: raw for p, _mode, raw in repo.files(repo.head_tree())}
    disk = {}
    root = os.fsencode(folder)
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            if stat.S_ISREG(os.lstat(full).st_mode):
                with open(full, "rb") as fh:
                    disk[os.path.relpath(full, root)] = pygit2.hash(fh.read()).raw
    return sorted(p for p in head.keys() | disk.keys() if head.get(p) != disk.get(p))


MAX_SHOWN = 200  # findings listed; the count says how many more


def secrets(data: Path, config: Path | None, only: str | None = None) -> tuple[Check, list[str]]:
    """Scan every scope's files and history (or one scope, `only`) for secrets: the check,
    and one line per finding (path, version, line, rule; never the secret)."""
    from .policy import Scope
    from .secrets import audit
    from .secrets.scanner import Scanner
    from .store import Store

    try:
        cfg = config_mod.load(config) if config is not None else config_mod.Config()
        scopes = sorted(set(layout.scopes_in(data)) | set(layout.history_scopes(data)), key=str)
        if only is not None:
            scopes = [s for s in scopes if s == Scope.parse(only)]
    except (config_mod.ConfigError, OSError, ValueError) as e:
        return Check("secrets", False, f"cannot scan: {e}"), []
    scanner, tally = Scanner(allow=cfg.secrets.allow), audit.Tally()
    lines: list[str] = []
    store = Store(data, cfg.limits.max_file_bytes)
    n = 0
    for scope in scopes:
        for found in [
            *audit.current_files(store, scope, scanner, tally),
            *audit.history(data, scope, scanner, tally),
        ]:
            n += 1
            if len(lines) < MAX_SHOWN:
                lines.append(str(found))
    scanned = f"{len(scopes)} scopes: {tally.files} files, {tally.versions} versions ({tally.blobs} distinct)"
    if not n:
        return Check("secrets", True, f"none found in {scanned}"), []
    more = f" ({n - len(lines)} more not listed)" if n > len(lines) else ""
    fix = "remove them from the files, then memfs purge PATH --version V for each version"
    return Check("secrets", False, f"{n} found in {scanned}{more}: {fix}"), lines


def run(mnt: Path | None, data: Path | None, config: Path | None) -> list[Check]:
    checks = [_fuse(), _config(config)]
    if data is not None:
        checks.append(_data(data, config))
    if mnt is None and data is not None:
        checks.append(Check("mount", True, f"{data} is not mounted now", warn=True))
    if mnt is not None:
        mcheck, alive = _mount(mnt)
        checks.append(mcheck)
        if alive:
            checks.append(_status(mnt))  # reading it also applies pending index updates
            checks.append(_remotes(mnt))
    if data is not None and os.access(data, os.R_OK | os.X_OK):
        checks.append(_index(data))
        checks.append(_history(data))
    return checks
