"""Search: one Tantivy index and one set of vectors per scope, kept in step with the files."""

import os

# numpy's BLAS would start a thread per core for a 256-float dot product: the daemon's
# threads are bounded by its own limiters.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ..layout import resolve_view_path  # noqa: E402
from . import embed  # noqa: E402
from .committer import IndexUnavailable  # noqa: E402
from .query import QueryError, split_filters  # noqa: E402
from .scan import scan_entries, walk_entries  # noqa: E402
from .schema import doc_key, is_entry, path_bytes, path_text  # noqa: E402
from .search import Hit  # noqa: E402
from .service import Index, IndexBusy  # noqa: E402

__all__ = [
    "Hit",
    "Index",
    "IndexBusy",
    "IndexUnavailable",
    "QueryError",
    "embed",
    "doc_key",
    "is_entry",
    "path_bytes",
    "path_text",
    "resolve_view_path",
    "scan_entries",
    "split_filters",
    "walk_entries",
]
