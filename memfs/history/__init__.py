"""History: one git repository per scope, batched attributed commits, a catalog to list versions."""

from .catalog import Catalog
from .gitrepo import Repo
from .service import History

__all__ = ["Catalog", "History", "Repo"]
