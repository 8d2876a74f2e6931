"""How a log line names a request: the caller and the path, as that caller sees it."""

from __future__ import annotations

from . import layout
from .inodes import Node
from .names import quote_path
from .numbers import ROOT_INODE
from .policy import Principal


def subject(
    p: Principal | None,
    uid: int | None,
    node: Node | None,
    name: bytes | None,
    number: int | None,
) -> str:
    """`uid=1001(alice) notes/x.md`; `#N` for a number memfs no longer knows."""
    who = "uid=?" if uid is None else f"uid={uid}({p.user if p is not None and p.user else 'unmapped'})"
    if node is not None and p is not None and p.user is not None:
        where = layout.view_path(p, node.scope, "").encode() + node.path
    elif node is not None:
        where = f"{node.scope}/".encode() + node.path
    elif number == ROOT_INODE or number is None:
        where = b""
    else:
        where = b"#%d" % number
    if name is not None:
        where = where.rstrip(b"/") + b"/" + name if where else name
    return f"{who} {quote_path(where) if where else '.'}"
