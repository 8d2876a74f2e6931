"""Search: one Tantivy index per scope, kept in step with the files."""

from ..layout import resolve_view_path
from .query import split_filters
from .scan import scan_entries, walk_entries
from .schema import display_path, doc_key, is_entry, path_bytes, path_text
from .service import Hit, Index, IndexBusy, IndexUnavailable

__all__ = [
    "Hit",
    "Index",
    "IndexBusy",
    "IndexUnavailable",
    "display_path",
    "doc_key",
    "is_entry",
    "path_bytes",
    "path_text",
    "resolve_view_path",
    "scan_entries",
    "split_filters",
    "walk_entries",
]
