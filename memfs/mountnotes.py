"""What an admin should hear when memfs mounts: which config, what it names, and memory
in DATA/ that no caller can reach under it (a mount without `config=` falls back to the
default file, and users whose uid it does not map become `uid-N` with an empty memory)."""

from __future__ import annotations

from pathlib import Path

from . import layout
from .config import Config
from .identity import Identities
from .policy import Kind

MAX_NAMED = 10


def summary(cfg: Config) -> str:
    return f"{len(cfg.users)} users, {len(cfg.teams)} teams, {len(cfg.grants)} grants"


def unreachable(data: Path, ids: Identities) -> list[str]:
    """Scopes with memory in DATA/ that no caller reaches under this config."""
    try:
        scopes = layout.scopes_in(data)
    except OSError:
        return []  # not ours to list (doctor as a user): nothing to say
    return [
        f"{'user' if s.kind is Kind.PRIVATE else 'team'} {s.name}"
        for s in scopes
        if not ids.reaches(s) and _holds_files(layout.scope_dir(data, s))
    ]


def _holds_files(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError:
        return False


def warning(data: Path, config: Path | None, ids: Identities) -> str | None:
    """One line for the admin, or None when every scope in DATA/ is reachable."""
    lost = unreachable(data, ids)
    if not lost:
        return None
    named = ", ".join(lost[:MAX_NAMED]) + (
        f" and {len(lost) - MAX_NAMED} more" if len(lost) > MAX_NAMED else ""
    )
    where = config if config is not None else "the built-in defaults"
    return (
        f"{data} holds memory of {named} that no uid reaches under {where}: "
        "mount with the config that maps them (config=FILE, --config), or add users.<name>: {uid: N}"
    )
