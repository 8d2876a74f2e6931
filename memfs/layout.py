"""The one place that knows DATA's layout: where each scope's files and search index live.

DATA/private/<user>/...   DATA/teams/<team>/...   the files, as callers wrote them
DATA/index/private/<user>/  DATA/index/teams/<team>/   one search index per scope
DATA/history/private/<user>.git  DATA/history/teams/<team>.git   one git repository per scope
DATA/state/               manifest, logs: never the only copy of an entry
DATA/state/kept/          versions history keeps until their batch commits
DATA/state/seed.sock      the worker seed's socket while mounted (prefork.py)
"""

from __future__ import annotations

import os
from pathlib import Path

from .policy import Kind, Principal, Scope

TEAM_VIEW = "team"  # where a caller sees its team's scope
GRANT_VIEW = ".memfs/users"  # where a grant reader sees an owner's private scope

SCOPE_DIRS = {Kind.PRIVATE: b"private", Kind.TEAM: b"teams"}
KIND_OF_DIR = {v: k for k, v in SCOPE_DIRS.items()}
TOP_DIRS = ("private", "teams", "index", "history", "state")


def scope_dir(data: Path, scope: Scope) -> Path:
    return data / os.fsdecode(SCOPE_DIRS[scope.kind]) / scope.name


def index_root(data: Path) -> Path:
    return data / "index"


def index_dir(data: Path, scope: Scope) -> Path:
    return index_root(data) / os.fsdecode(SCOPE_DIRS[scope.kind]) / scope.name


def history_root(data: Path) -> Path:
    return data / "history"


def history_dir(data: Path, scope: Scope) -> Path:
    """A scope's repository: beside its folder, never in it (no .git in anyone's view)."""
    return history_root(data) / os.fsdecode(SCOPE_DIRS[scope.kind]) / f"{scope.name}.git"


def own_numbers_file(data: Path) -> Path:
    """Inode numbers memfs gave files whose backing number was taken (own_numbers.py)."""
    return data / "state" / "inode-numbers.log"


def legacy_own_numbers_file(data: Path) -> Path:
    """The same table as older versions saved it (JSON, rewritten whole): read once, then removed."""
    return data / "state" / "inode-numbers.json"


def spool_dir(data: Path) -> Path:
    return data / "state" / "kept"


def seed_socket(data: Path) -> Path:
    """Where the worker seed listens (prefork.py): inside DATA/ (0700, the daemon user's),
    so only the daemon's uid and root can reach it; replaced at each mount."""
    return data / "state" / "seed.sock"


def history_scopes(data: Path) -> list[Scope]:
    found = []
    for kind, sub in SCOPE_DIRS.items():
        top = history_root(data) / os.fsdecode(sub)
        try:
            names = sorted(os.listdir(top))
        except FileNotFoundError:
            continue
        found += [Scope(kind, n[:-4]) for n in names if n.endswith(".git")]
    return found


def scopes_in(base: Path) -> list[Scope]:
    """The scopes with a folder under base (DATA/ or DATA/index/). Raises OSError if a
    kind's folder exists but cannot be listed: the caller must not read that as 'empty'."""
    found = []
    for kind, sub in SCOPE_DIRS.items():
        top = base / os.fsdecode(sub)
        try:
            names = os.listdir(top)
        except FileNotFoundError:
            continue
        found += [Scope(kind, n) for n in sorted(names) if (top / n).is_dir()]
    return found


def view_path(p: Principal, scope: Scope, rel: str) -> str:
    """A path of a scope as this caller sees it under the mount (rel already printable)."""
    if scope.kind is Kind.TEAM:
        return f"{TEAM_VIEW}/{rel}"
    if scope.name == p.user:
        return rel
    return f"{GRANT_VIEW}/{scope.name}/{rel}"


def resolve_view_path(prefix: str, scopes: list[Scope]) -> tuple[Scope | None, str]:
    """The inverse: a path prefix as the caller sees it -> (one of its scopes, relative
    prefix); None where it names no scope the caller can read."""
    prefix = prefix.strip("/")
    private = next((s for s in scopes if s.kind is Kind.PRIVATE), None)
    team = next((s for s in scopes if s.kind is Kind.TEAM), None)
    if prefix == TEAM_VIEW or prefix.startswith(TEAM_VIEW + "/"):
        return team, prefix[len(TEAM_VIEW) + 1 :]
    if prefix.startswith(GRANT_VIEW + "/"):
        owner, _, rel = prefix[len(GRANT_VIEW) + 1 :].partition("/")
        grant = Scope(Kind.PRIVATE, owner)
        return (grant if grant in scopes and grant != private else None), rel
    return private, prefix
