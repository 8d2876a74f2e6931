"""What sync refused to take from a scope's remote, kept for the scope's members'
`.memfs/status` until a later arrival of that path is written: `.memfs/sync` shows only the
last round, and a refusal (a secret pushed, a file over the cap) should not vanish from
view with the next round that brings nothing."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

from .. import layout
from ..names import quote_path, unquote_path
from ..policy import Principal, Scope

MAX_KEPT = 50  # per scope, newest kept: a push of 50,000 refused files is no 50,000-line status


class Refusals:
    """Touched on the trio loop only (after each apply), read there by status."""

    def __init__(self) -> None:
        self._kept: dict[Scope, OrderedDict[str, tuple[str, str, int]]] = {}

    def note(self, scope: Scope, remote: str, refused: Iterable[dict], written: Iterable[bytes]) -> None:
        """A round's refusals (dicts as `.memfs/sync` shows them) and the paths it wrote."""
        kept = self._kept.setdefault(scope, OrderedDict())
        for path in written:
            kept.pop(quote_path(path), None)
        for r in refused:
            kept.pop(r["path"], None)
            kept[r["path"]] = (remote, r["reason"], int(time.time()))
        while len(kept) > MAX_KEPT:
            kept.popitem(last=False)

    def lines(self, p: Principal, scopes: Iterable[Scope]) -> list[str]:
        out = []
        for scope in scopes:
            for path, (remote, reason, when) in self._kept.get(scope, {}).items():
                at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
                shown = quote_path(layout.view_path(p, scope, "").encode() + unquote_path(path))
                out.append(f"{shown}: not taken from {remote} at {at}: {reason}; the remote still holds it")
        return out
