"""The .memfs/ protocol, for clients (the CLI, memfs log/restore, doctor, the MCP server):
the one place that knows the control files' names, how to ask them, and how their answers
read as Python values. It works through the mount, as the calling user: the daemon applies
the caller's access rules, as it does for `cat`. What each file serves is the daemon's
(control.py, history/view.py, sync/service.py).

Failures to reach a file are the OSError of the file call (FileNotFoundError when `mount`
is not a memfs mount, or the file is not served there); an answer that does not parse is
an AnswerError."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .names import STAMP, parse_version_name, quote_path, unquote_path
from .policy import CONTROL_NAME

CONTROL = os.fsdecode(CONTROL_NAME)  # in every caller's root, not listed by readdir
WHOAMI = "whoami"  # YAML: who the daemon takes the caller for
STATUS = "status"  # text: one warning per line
QUERY, QUERY_JSON = "query", "query.json"  # write a query, read its results (markdown, JSON)
SYNC = "sync"  # YAML: a list, one mapping per synced scope; write to it to sync now
LOG = "log"  # text: one change per line, newest first
HISTORY = "history"  # history/<path>/<version>: a file's versions, read-only
REFRESH = "refresh"  # root only: backing paths changed behind the daemon's back
ADMIN = "admin.json"  # JSON: every user's and team's state (root and daemon.admin_group)
PURGE = "purge"  # write a path, then version names (or *); read YAML: what was purged
PURGE_ALL = "*"
ENTRIES = "entries.json"  # JSON: every entry the caller may read (index.md's, as data)

_CHUNK = 65536


class AnswerError(ValueError):
    """The daemon answered something this client does not understand."""


class QueryRefused(Exception):
    """A search the daemon refused (a bad query); the message says why."""


def control_path(mount: Path, *names: str) -> Path:
    return mount.joinpath(CONTROL, *names)


def is_mount(mount: Path) -> bool:
    return control_path(mount).is_dir()


def answers(mount: Path) -> None:
    """Ask the daemon the cheapest question (stat of whoami): returns once it answered."""
    os.stat(control_path(mount, WHOAMI))


def _ask(path: Path, request: bytes) -> bytes:
    """Write a request to a control file, then read the whole answer from the same handle."""
    with open(path, "r+b", buffering=0) as f:
        f.write(request)
        return b"".join(iter(lambda: f.read(_CHUNK), b""))


# -- search ------------------------------------------------------------------------------
def search(mount: Path, query: str, mode: str | None = None, as_json: bool = False) -> bytes:
    """Results of one query as the daemon renders them (markdown, or JSON text)."""
    request = (f"mode:{mode} {query}" if mode else query).encode()
    return _ask(control_path(mount, QUERY_JSON if as_json else QUERY), request)


@dataclass
class Hit:
    path: bytes  # as the caller sees it under the mount; shown again by names.quote_path
    fields: dict  # the rest of the hit as the daemon gave it: score, name, type, snippet...


@dataclass
class Results:
    total: int
    hits: list[Hit]


def search_results(mount: Path, query: str, mode: str | None = None) -> Results:
    """One query's results as values (raises QueryRefused when the daemon refused it)."""
    try:
        answer = json.loads(search(mount, query, mode, as_json=True))
        if "error" in answer:
            raise QueryRefused(str(answer["error"]))
        hits = [Hit(unquote_path(h.pop("path")), h) for h in answer["hits"]]
        return Results(int(answer["total"]), hits)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AnswerError(f"the daemon's search results were not understood: {e}") from None


# -- sync --------------------------------------------------------------------------------
@dataclass
class SyncAnswer:
    text: str  # as the daemon wrote it, for a person
    scopes: list[dict]  # one mapping per synced scope: scope, remote, last_sync, error...

    @property
    def failed(self) -> list[str]:
        """The scopes whose sync failed (their `error` is set)."""
        return [str(s.get("scope")) for s in self.scopes if s.get("error")]


def parse_sync(text: str) -> SyncAnswer:
    bad = AnswerError("the daemon's answer to sync was not understood")
    try:
        scopes = yaml.safe_load(text)
    except yaml.YAMLError:
        raise bad from None
    if scopes is None:  # an empty answer: no scope has a remote
        scopes = []
    if not isinstance(scopes, list) or not all(isinstance(s, dict) for s in scopes):
        raise bad
    return SyncAnswer(text, scopes)


def sync(mount: Path) -> SyncAnswer:
    """Sync the caller's scopes with their remotes now; what each scope did."""
    return parse_sync(_ask(control_path(mount, SYNC), b"sync\n").decode(errors="replace"))


def sync_state(mount: Path) -> SyncAnswer:
    """The caller's synced scopes as the daemon last saw them (nothing is synced)."""
    return parse_sync(control_path(mount, SYNC).read_text(errors="replace"))


# -- history -----------------------------------------------------------------------------
def log(mount: Path) -> str:
    """The latest changes the caller may read, one per line (paths by names.quote_path)."""
    return control_path(mount, LOG).read_text(errors="replace")


def versions(mount: Path, rel: str) -> list[os.DirEntry]:
    """A file's versions, oldest first (raises FileNotFoundError when it has no history,
    NotADirectoryError when `rel` names no file's history)."""
    with os.scandir(control_path(mount, HISTORY, rel)) as it:
        found = [e for e in it if e.is_file() and STAMP.match(e.name)]
    return sorted(found, key=lambda e: e.name)


@dataclass
class Version:
    name: str  # the file name under history/<path>/
    stamp: str  # UTC, as names.stamp makes it
    user: str  # who made it: a local user, or the user a synced commit names
    via: str | None  # the host it arrived from by sync; None for a change made here
    size: int


def history(mount: Path, rel: str) -> list[Version]:
    """A file's versions, oldest first, with who made each (versions() raises the same)."""
    out = []
    for e in versions(mount, rel):
        parsed = parse_version_name(e.name)
        if parsed is not None:
            out.append(Version(e.name, *parsed, size=e.stat().st_size))
    return out


def read_version(mount: Path, rel: str, name: str) -> bytes:
    return control_path(mount, HISTORY, rel, name).read_bytes()


@dataclass
class Change:
    time: str  # 2026-11-21T12:01:02Z
    user: str  # "alice", or "alice (via hostB)" for a change that arrived by sync
    op: str  # one letter: A(dded), M(odified), D(eleted), R(enamed), P(urged)
    path: str  # as the caller sees it (names.quote_path)
    new_path: str | None  # a rename's target; a purge's version name


_CHANGE = re.compile(r"^(\S+) (\S+(?: \(via \S+\))?) (\S) (.+?)(?: (->|version) (.+))?$")


def changes(mount: Path) -> list[Change]:
    """.memfs/log as values, newest first."""
    return parse_changes(log(mount))


def parse_changes(text: str) -> list[Change]:
    """A line that does not parse is left out."""
    out = []
    for line in text.splitlines():
        m = _CHANGE.match(line)
        if m is not None:
            out.append(Change(m[1], m[2], m[3], m[4], m[6]))
    return out


def purge(mount: Path, rel: str, versions: list[str] | None) -> dict:
    """Purge versions of a file (None: every version but what a file holds now) from its
    scope's history, as the calling user. A refusal is the OSError of the read: EACCES
    (not the caller's to purge), ENOENT (no such file history or version), EBUSY (that
    content is what a file holds now)."""
    tokens = [PURGE_ALL] if versions is None else [quote_path(os.fsencode(v)) for v in versions]
    request = "".join(t + "\n" for t in [quote_path(os.fsencode(rel)), *tokens]).encode()
    text = _ask(control_path(mount, PURGE), request).decode(errors="replace")
    try:
        answer = yaml.safe_load(text)
    except yaml.YAMLError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("purged"), list):
        raise AnswerError("the daemon's answer to purge was not understood")
    return answer


# -- the rest ----------------------------------------------------------------------------
def whoami(mount: Path) -> dict:
    """Who the daemon takes the caller for, and its usage against its limits."""
    try:
        info = yaml.safe_load(control_path(mount, WHOAMI).read_text())
    except yaml.YAMLError:
        info = None
    if not isinstance(info, dict):
        raise AnswerError(f"{WHOAMI}: not a mapping")
    return info


def entries(mount: Path) -> dict:
    """Every entry the caller may read: {"groups": [...], "entries": [{path, group, name,
    description, type, mtime_ns, problems}]} (paths as names.quote_path shows them)."""
    try:
        data = json.loads(control_path(mount, ENTRIES).read_bytes())
    except ValueError:
        raise AnswerError(f"{ENTRIES}: not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise AnswerError(f"{ENTRIES}: no list of entries")
    return data


def replace(mount: Path, rel: str, data: bytes) -> None:
    """Put a file's whole content in place as the caller: a temp file beside it, then a
    rename over it, so a reader never sees half a file."""
    target = mount / rel
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def status(mount: Path) -> list[str]:
    """The warnings about the caller's memory, one per item."""
    return control_path(mount, STATUS).read_text().splitlines()


def admin(mount: Path) -> dict:
    """Every user's and team's state (root, or daemon.admin_group): fleet.Snapshot as a dict.
    PermissionError for anyone else."""
    text = control_path(mount, ADMIN).read_bytes()
    try:
        snap = json.loads(text)
    except ValueError:
        raise AnswerError(f"{ADMIN}: not JSON") from None
    if not isinstance(snap, dict) or not isinstance(snap.get("scopes"), list):
        raise AnswerError(f"{ADMIN}: no list of scopes")
    return snap


def refusal(mount: Path, rel: str) -> str | None:
    """Why the secret guard refused the caller's write to `rel` (a path from the mount's
    root), from its `.memfs/status` line `<path>:<line>: <op> refused at <time>: <why>`:
    "line N: <why>", or None if it did not (or status cannot be read)."""
    try:
        lines = status(mount)
    except OSError:
        return None
    prefix = quote_path(os.fsencode(rel)) + ":"
    for ln in reversed(lines):
        line_no, sep, rest = ln[len(prefix) :].partition(": ")
        if ln.startswith(prefix) and sep and " refused at " in rest:
            return f"line {line_no}: {rest.partition(': ')[2]}"
    return None


def refresh(mount: Path, paths: list[bytes]) -> None:
    """Tell a live mount (as root) which backing files changed behind its back."""
    with open(control_path(mount, REFRESH), "wb") as f:
        f.write(b"".join(p + b"\n" for p in paths))
