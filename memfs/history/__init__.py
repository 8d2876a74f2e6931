"""History: one git repository per scope, batched attributed commits, a catalog to list versions.

The names below load on first use: the commit worker process imports only
`history.committer` (no trio, no service), ~0.1 s less per mount."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import Catalog
    from .gitrepo import Repo
    from .service import History

__all__ = ["Catalog", "History", "Repo"]
_HOME = {"Catalog": ".catalog", "Repo": ".gitrepo", "History": ".service"}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name], __name__), name)
