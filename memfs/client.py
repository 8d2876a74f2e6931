"""Asking a live mount through its .memfs/ files, as the calling user (the CLI, the MCP
server): the daemon applies the caller's access rules, as it does for `cat`."""

from __future__ import annotations

from pathlib import Path


def search(mount: Path, query: str, mode: str | None = None, as_json: bool = False) -> bytes:
    """Results of one query through a query handle (raises OSError; FileNotFoundError
    when `mount` is not a memfs mount)."""
    handle = mount / ".memfs" / ("query.json" if as_json else "query")
    with open(handle, "r+b", buffering=0) as f:
        f.write((f"mode:{mode} {query}" if mode else query).encode())
        return b"".join(iter(lambda: f.read(65536), b""))
