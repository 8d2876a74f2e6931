"""How a log line names a request: the caller and the path, as that caller sees it."""

from __future__ import annotations

from collections.abc import Callable

from .index.schema import display_path, path_text
from .inodes import Node
from .numbers import ROOT_INODE
from .policy import Principal


def subject(
    p: Principal | None,
    uid: int | None,
    node: Node | None,
    name: bytes | None,
    number: int | None,
    view_path: Callable,
) -> str:
    """`uid=1001(alice) notes/x.md`; `#N` for a number memfs no longer knows."""
    who = "uid=?" if uid is None else f"uid={uid}({p.user if p is not None and p.user else 'unmapped'})"
    if node is not None and p is not None and p.user is not None:
        where = view_path(p, node.scope, path_text(node.path))
    elif node is not None:
        where = f"{node.scope}/{display_path(path_text(node.path))}"
    elif number == ROOT_INODE:
        where = ""
    else:
        where = "" if number is None else f"#{number}"
    if name is not None:
        shown = display_path(path_text(name))
        where = f"{where.rstrip('/')}/{shown}" if where else shown
    return f"{who} {where or '.'}"
