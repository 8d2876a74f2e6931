"""Memory entries: frontmatter parsing and validation. Imports nothing of memfs.

Bad content never loses data: whatever parses is used, the rest is reported as a
problem, and the file is stored and indexed as written.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass, field

import frontmatter
import yaml

DEFAULT_TYPES = ("user", "feedback", "project", "reference")
MAX_FRONTMATTER = 64 * 1024  # bytes of YAML parsed; larger blocks are flagged, not parsed


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases: an alias bomb cannot blow up memory or time."""

    def fetch_alias(self):
        raise yaml.scanner.ScannerError(None, None, "YAML aliases are not allowed", self.get_mark())

    def fetch_anchor(self):
        raise yaml.scanner.ScannerError(None, None, "YAML anchors are not allowed", self.get_mark())


_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SPLITTER = frontmatter.YAMLHandler()


@dataclass
class Entry:
    name: str = ""
    description: str = ""
    type: str = ""
    tags: list[str] = field(default_factory=list)
    body: str = ""
    fields: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    has_frontmatter: bool = False


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return str(value)


def parse(data: bytes, types: tuple[str, ...] = DEFAULT_TYPES) -> Entry:
    e = Entry()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        e.problems.append("content is not valid UTF-8 text")
    if "\0" in text:
        text = text.replace("\0", "")
        e.problems.append("content has NUL bytes (binary?)")
    if not _SPLITTER.detect(text):
        e.body = text
        e.problems.append("no frontmatter (expected --- name/description/type ---)")
        return e
    try:
        fm, body = _SPLITTER.split(text)
    except ValueError:
        e.body = text
        e.problems.append("frontmatter is not closed with ---")
        return e
    e.has_frontmatter = True
    e.body = body
    if len(fm.encode()) > MAX_FRONTMATTER:
        e.problems.append(f"frontmatter larger than {MAX_FRONTMATTER} bytes: not parsed")
        return e
    # libyaml's loader is ~6x faster, but it cannot refuse aliases: use it only on text that
    # cannot hold an anchor or alias (no '&' or '*'), the pure-Python guard otherwise.
    loader = _FastLoader if "&" not in fm and "*" not in fm else _NoAliasLoader
    try:
        meta = yaml.load(fm, Loader=loader)  # noqa: S506 (both are SafeLoader variants)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        e.problems.append(f"frontmatter is not valid YAML{where}: {getattr(err, 'problem', None) or err}")
        return e
    except RecursionError:
        e.problems.append("frontmatter nests too deeply")
        return e
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        e.problems.append("frontmatter is not a mapping of keys")
        return e
    e.fields = {str(k): v for k, v in meta.items()}
    e.name = _text(meta.get("name"))
    e.description = _text(meta.get("description"))
    e.type = _text(meta.get("type"))
    tags = meta.get("tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.replace(",", " ").split()]
    if isinstance(tags, list):
        e.tags = [_text(t) for t in tags if _text(t)]
    for key in ("name", "description", "type"):
        if not getattr(e, key):
            e.problems.append(f"frontmatter has no {key}")
    if e.type and e.type not in types:
        e.problems.append(f"unknown type {e.type!r} (allowed: {', '.join(types)})")
    return e


# -- MEMORY.md index lines: "- [Title](file.md) — hook" ------------------------------------

_INDEX_LINE = re.compile(
    r"^\s*[-*+]\s+\[(?P<title>[^\]]*)\]\((?P<target>[^)\s]+)\)\s*(?:[—–:-]+\s*(?P<hook>.*))?$"
)


@dataclass
class IndexLine:
    lineno: int  # 1-based
    title: str
    target: str  # as written
    hook: str


def index_lines(text: str) -> list[IndexLine]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        m = _INDEX_LINE.match(line)
        if m:
            out.append(IndexLine(i, m["title"].strip(), m["target"], (m["hook"] or "").strip()))
    return out


def resolve_link(base_dir: str, target: str) -> str | None:
    """A link in a MEMORY.md -> a path relative to the scope root; None if it leaves it."""
    if "://" in target or target.startswith(("mailto:", "#")):
        return None
    target = urllib.parse.unquote(target.split("#", 1)[0])
    path = posixpath.normpath(posixpath.join(base_dir, target)) if base_dir else posixpath.normpath(target)
    if path.startswith("../") or path == ".." or path.startswith("/"):
        return None
    return path
