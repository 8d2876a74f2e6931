"""History: one git repository per scope, batched attributed commits, a catalog to list versions."""

from .catalog import Catalog, quote_path
from .gitrepo import Repo
from .service import History

__all__ = ["Catalog", "History", "Repo", "quote_path"]
