"""The one place that knows DATA's layout: where each scope's files and search index live.

DATA/private/<user>/...   DATA/teams/<team>/...   the files, as callers wrote them
DATA/index/private/<user>/  DATA/index/teams/<team>/   one search index per scope
DATA/state/               manifest, logs: never the only copy of an entry
"""

from __future__ import annotations

import os
from pathlib import Path

from .policy import Kind, Scope

SCOPE_DIRS = {Kind.PRIVATE: b"private", Kind.TEAM: b"teams"}
KIND_OF_DIR = {v: k for k, v in SCOPE_DIRS.items()}
TOP_DIRS = ("private", "teams", "index", "state")


def scope_dir(data: Path, scope: Scope) -> Path:
    return data / os.fsdecode(SCOPE_DIRS[scope.kind]) / scope.name


def index_root(data: Path) -> Path:
    return data / "index"


def index_dir(data: Path, scope: Scope) -> Path:
    return index_root(data) / os.fsdecode(SCOPE_DIRS[scope.kind]) / scope.name


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
