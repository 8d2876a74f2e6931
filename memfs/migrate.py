"""Importers: bring existing agent memory into DATA/, idempotently.

Sources:
- dir:    a memory directory as agents keep it (MEMORY.md + entries, optional team/)
- legacy: a bot service's single global layout: memory/MEMORY.md (the named user) and
          memory/<chat_id>/MEMORY.md (users mapped by users.<name>.aliases)
- json:   a per-user JSON store: users/<user_id>/{short_term,mid_term,long_term_user}.json

Nothing is ever overwritten: an existing file with other content is kept and reported;
MEMORY.md files are merged line by line. Running an import twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import entry
from .config import Config
from .policy import Kind, Scope
from .store import SCOPE_DIRS

INDEX = "MEMORY.md"
CATEGORY_TYPES = {
    "preference": "feedback",
    "preferences": "feedback",
    "feedback": "feedback",
    "correction": "feedback",
    "project": "project",
    "task": "project",
    "profile": "user",
    "user": "user",
}


class ImportError_(Exception):
    """The source cannot be imported as asked; the message says why in one line."""


@dataclass
class Item:
    scope: Scope
    rel: str
    content: bytes
    source: str


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    written: list[Path] = field(default_factory=list)  # backing paths changed

    def summary(self, dry_run: bool) -> str:
        verb = "would create" if dry_run else "created"
        lines = [
            f"{verb} {len(self.created)}, merged {len(self.merged)} index files, skipped {len(self.skipped)}"
        ]
        for why, n in Counter(why for _, why in self.skipped).most_common():
            lines.append(f"  skipped {n}: {why}")
        return "\n".join(lines)


# -- detection ---------------------------------------------------------------------------------
def detect(src: Path) -> str:
    if (src / "users").is_dir() and any(
        (d / n).is_file()
        for d in (src / "users").iterdir()
        if d.is_dir()
        for n in ("short_term.json", "mid_term.json", "long_term_user.json")
    ):
        return "json"
    if (src / "memory").is_dir():
        return "legacy"
    return "dir"


# -- planning ----------------------------------------------------------------------------------
def _files(root: Path):
    """Regular files below root, as (relative posix path, path); symlinks are not followed."""
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath) / name
            yield p.relative_to(root).as_posix(), p


def plan_dir(src: Path, user: str, team: str | None, report: Report) -> list[Item]:
    items = []
    private = Scope(Kind.PRIVATE, user)
    for rel, p in _files(src):
        if p.is_symlink() or not p.is_file():
            report.skipped.append((str(p), "not a regular file"))
            continue
        scope, dest = private, rel
        if rel.startswith("team/"):
            if team is None:
                report.skipped.append((str(p), "team/ file but no team (give --team or users.<name>.team)"))
                continue
            scope, dest = Scope(Kind.TEAM, team), rel[len("team/") :]
        elif rel in ("team", ".memfs") or rel.startswith(".memfs/"):
            report.skipped.append((str(p), "reserved name in a memfs root"))
            continue
        items.append(Item(scope, dest, p.read_bytes(), str(p)))
    return items


def _chat_users(config: Config) -> dict[str, str]:
    return {str(alias): u.name for u in config.users.values() for alias in u.aliases}


def plan_legacy(src: Path, user: str, config: Config, report: Report) -> list[Item]:
    mem = src / "memory"
    items = []
    chats = _chat_users(config)
    for child in sorted(mem.iterdir()):
        if child.is_dir() and not child.is_symlink():
            owner = chats.get(child.name)
            if owner is None:
                report.skipped.append(
                    (str(child), f"chat {child.name} has no user (add it to users.<name>.aliases)")
                )
                continue
            items += plan_dir(child, owner, None, report)
        elif child.is_file() and not child.is_symlink():
            items.append(Item(Scope(Kind.PRIVATE, user), child.name, child.read_bytes(), str(child)))
        else:
            report.skipped.append((str(child), "not a regular file"))
    return items


def _slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "item"


def _entry(name: str, description: str, type_: str, body: str, extra: dict | None = None) -> bytes:
    meta = {"name": name, "description": description, "type": type_}
    meta.update(extra or {})
    fm = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{fm}---\n{body.rstrip()}\n".encode()


def _load_json(path: Path, report: Report):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        report.skipped.append((str(path), f"unreadable JSON: {e}"))
        return None


def _items_list(data, keys) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for k in keys:
            if isinstance(data.get(k), list):
                return data[k]
    return []


def plan_json(src: Path, user: str | None, config: Config, report: Report) -> list[Item]:
    users_dir = src / "users"
    ids = sorted(d for d in users_dir.iterdir() if d.is_dir())
    chats = _chat_users(config)
    items = []
    for d in ids:
        owner = chats.get(d.name) or (d.name if d.name in config.users else None)
        if owner is None and user is not None and len(ids) == 1:
            owner = user
        if owner is None:
            report.skipped.append((str(d), f"user id {d.name} has no user (add it to users.<name>.aliases)"))
            continue
        scope = Scope(Kind.PRIVATE, owner)
        if (d / "short_term.json").exists():
            report.skipped.append((str(d / "short_term.json"), "short-term conversation buffer, not memory"))
        long = _load_json(d / "long_term_user.json", report) if (d / "long_term_user.json").exists() else None
        if isinstance(long, dict) and isinstance(long.get("profile"), dict) and long["profile"]:
            profile = long["profile"]
            body = "\n".join(f"- **{k}**: {v}" for k, v in profile.items())
            who = profile.get("name") or owner
            items.append(
                Item(
                    scope,
                    "profile.md",
                    _entry(f"Profile of {who}", f"who {who} is and what they prefer", "user", body),
                    str(d),
                )
            )
        for i, k in enumerate(_items_list(long, ("knowledge", "facts", "items"))):
            items.append(_knowledge_item(scope, k, i, d / "long_term_user.json", "reference"))
        mid = _load_json(d / "mid_term.json", report) if (d / "mid_term.json").exists() else None
        for i, k in enumerate(_items_list(mid, ("summaries", "knowledge", "items"))):
            items.append(_knowledge_item(scope, k, i, d / "mid_term.json", "project"))
    return items


def _knowledge_item(scope: Scope, k, i: int, source: Path, default_type: str) -> Item:
    if isinstance(k, dict):
        text = str(k.get("content") or k.get("summary") or k.get("text") or k.get("fact") or "")
        topic = str(k.get("topic") or k.get("title") or "")
        category = str(k.get("category") or k.get("type") or "").lower()
        ident = str(k.get("id") or i)
        extra = {key: k[key] for key in ("created_at", "updated_at", "source") if key in k}
        tags = k.get("tags")
        if isinstance(tags, list):
            extra["tags"] = [str(t) for t in tags]
    else:
        text, topic, category, ident, extra = str(k), "", "", str(i), {}
    first = text.strip().splitlines()[0] if text.strip() else "(empty)"
    title = topic or (first[:60] + ("…" if len(first) > 60 else ""))
    type_ = CATEGORY_TYPES.get(category, default_type)
    digest = hashlib.sha1(ident.encode()).hexdigest()[:6]
    stem = "summary" if source.name == "mid_term.json" else "knowledge"
    rel = f"{stem}-{_slug(topic or first)}-{digest}.md"
    return Item(scope, rel, _entry(title, first[:120], type_, text, extra), f"{source}#{ident}")


# -- applying ----------------------------------------------------------------------------------
def _index_line(item: Item) -> str | None:
    if not item.rel.endswith(".md") or item.rel.rsplit("/", 1)[-1] == INDEX:
        return None
    e = entry.parse(item.content)
    return f"- [{e.name or item.rel}]({item.rel})" + (f" — {e.description}" if e.description else "")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.memfs-import")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _merge_index(existing: bytes, incoming: list[str]) -> bytes | None:
    """Append the lines of `incoming` that are not in `existing` yet; None if nothing to add."""
    have = set(existing.decode("utf-8", errors="replace").splitlines())
    new = [ln for ln in incoming if ln.strip() and ln not in have]
    if not new:
        return None
    prefix = existing if existing.endswith(b"\n") or not existing else existing + b"\n"
    return prefix + ("\n".join(new) + "\n").encode()


def _dest(data: Path, scope: Scope, rel: str) -> Path:
    return data / os.fsdecode(SCOPE_DIRS[scope.kind]) / scope.name / rel


def apply(
    items: list[Item], data: Path, report: Report, dry_run: bool, progress=None, add_index=False
) -> None:
    """Write the planned files under DATA/ (never over an existing one), then merge MEMORY.md lines."""
    index_lines: dict[Scope, list[str]] = {}
    for item in items:
        dest, shown = _dest(data, item.scope, item.rel), f"{item.scope}/{item.rel}"
        if item.rel == INDEX:
            text = item.content.decode("utf-8", errors="replace")
            index_lines.setdefault(item.scope, []).extend(text.splitlines())
        elif dest.exists() or dest.is_symlink():
            same = dest.is_file() and dest.read_bytes() == item.content
            report.skipped.append((shown, "already there" if same else "exists with other content (kept)"))
        else:
            if not dry_run:
                _write(dest, item.content)
                report.written.append(dest)
            report.created.append(shown)
            if add_index and (line := _index_line(item)):
                index_lines.setdefault(item.scope, []).append(line)
        if progress:
            progress()
    for scope, lines in index_lines.items():
        dest = _dest(data, scope, INDEX)
        existing = dest.read_bytes() if dest.is_file() else b""
        merged = _merge_index(existing, lines)
        if merged is None:
            report.skipped.append((f"{scope}/{INDEX}", "already there"))
            continue
        if not dry_run:
            _write(dest, merged)
            report.written.append(dest)
        (report.merged if existing else report.created).append(f"{scope}/{INDEX}")


def plan(
    fmt: str, src: Path, user: str, team: str | None, config: Config, report: Report
) -> tuple[list[Item], bool]:
    """(items, whether created entries get MEMORY.md lines)"""
    if fmt == "auto":
        fmt = detect(src)
    if fmt == "json":
        return plan_json(src, user, config, report), True
    if fmt == "legacy":
        return plan_legacy(src, user, config, report), False
    return plan_dir(src, user, team, report), False
