"""Memory entries: frontmatter parsing and validation. Imports nothing of memfs.

Bad content never loses data: whatever parses is used, the rest is reported as a
problem, and the file is stored and indexed as written.
"""

from __future__ import annotations

import datetime
import posixpath
import re
import urllib.parse
from dataclasses import dataclass, field

import frontmatter
import yaml

DEFAULT_TYPES = ("user", "feedback", "project", "reference")
INDEX_NAME = "MEMORY.md"  # a scope's index: one line per entry, no frontmatter; not an entry
MAX_FRONTMATTER = 64 * 1024  # bytes of YAML parsed; larger blocks are flagged, not parsed


MAX_DEPTH = 64  # nesting levels of frontmatter YAML; deeper is flagged, not parsed
MAX_EVENTS = 5000  # YAML events (scalars, collections) in a frontmatter; a real one has < 100
MAX_TAGS = 100

# libyaml: ~6x faster than the pure-Python parser, which holds the GIL long enough to
# slow every other caller's requests.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = (str, int, float, bool, datetime.date)


def _simple(fm: str) -> bool:
    """Cheap and conservative: can this YAML hold no alias and no deep nesting? Then the
    event scan is skipped (it costs as much as the load, holding the GIL)."""
    if "&" in fm or "*" in fm or fm.count("[") + fm.count("{") > MAX_DEPTH or fm.count("\n") > 200:
        return False
    return all(len(ln) - len(ln.lstrip()) < MAX_DEPTH and ln.count("- ") < 8 for ln in fm.splitlines())


# Quoted scalars and comments hold brackets that open nothing; dropped before counting.
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"\\]|\\.)*\"|(?:^|(?<=\s))#[^\n]*")
_BRACKET = re.compile(r"[\[\]{}]")
_BLOCK_INDICATORS = re.compile(r"^[ \t]*(?:[-?:][ \t]+)+", re.MULTILINE)


def _nesting(fm: str) -> int:
    """An upper bound on the frontmatter's nesting, from its text alone: flow brackets
    outside quotes, and block indicators (`- - - x`) opened on one line. Measured before
    any YAML library sees the text, so the verdict does not hang on a library's own limit
    (PyYAML 6.0.4's libyaml stops at its own depth, with its own wording)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_QUOTED.sub("", fm)):
        depth = depth + 1 if m.group() in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    lines = (m.group().count("-") + m.group().count("?") for m in _BLOCK_INDICATORS.finditer(fm))
    return max(deepest, max(lines, default=0))


def _refusal(fm: str) -> str | None:
    """Why this YAML must not be loaded, judged from its text and then from libyaml's flat
    event stream: aliases (a billion laughs is small as a graph, huge once walked), deep
    nesting (building the objects recurses in C: ~30,000 levels overflow a thread's stack)
    and sheer size (its parsing holds the GIL that every caller's requests need)."""
    if _nesting(fm) > MAX_DEPTH:
        return f"frontmatter nests deeper than {MAX_DEPTH} levels: not parsed"
    depth = 0
    for n, ev in enumerate(yaml.parse(fm, Loader=_Loader)):
        if n > MAX_EVENTS:
            return f"frontmatter has more than {MAX_EVENTS} YAML values: not parsed"
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
            return "frontmatter is not valid YAML: YAML anchors are not allowed"
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return f"frontmatter nests deeper than {MAX_DEPTH} levels: not parsed"
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
    return None


_SPLITTER = frontmatter.YAMLHandler()
MAX_EXTRA_KEYS = 100  # per mapping or list of other frontmatter indexed
MAX_EXTRA_CHARS = 16_384


@dataclass
class Entry:
    name: str = ""
    description: str = ""
    type: str = ""
    tags: list[str] = field(default_factory=list)
    body: str = ""
    problems: list[str] = field(default_factory=list)
    extra: str = ""  # other frontmatter keys and values, as words to search


def _words(value, skip=(), depth: int = 0):
    """Keys and scalar values of other frontmatter (nested too, bounded), to index."""
    if depth > 4:
        return
    if isinstance(value, dict):
        for k, v in list(value.items())[:MAX_EXTRA_KEYS]:
            if k in skip:
                continue
            yield str(k)
            yield from _words(v, (), depth + 1)
    elif isinstance(value, list):
        for v in value[:MAX_EXTRA_KEYS]:
            yield from _words(v, (), depth + 1)
    elif _text(value):
        yield _text(value)


def _text(value) -> str:
    """A scalar as text; anything else (a list, a mapping) is not a name or a type."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, _SCALARS):
        return str(value)
    return ""


def parse(data: bytes, types: tuple[str, ...] = DEFAULT_TYPES) -> Entry:
    e = Entry()
    text = _decode(data, e.problems)
    fm = _split(text, e)
    if fm is None:
        return e
    meta, problem = _load(fm)
    if problem is not None:
        e.problems.append(problem)
        return e
    _take_fields(e, meta, types)
    return e


def _decode(data: bytes, problems: list[str]) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        problems.append("content is not valid UTF-8 text")
    if "\0" in text:
        text = text.replace("\0", "")
        problems.append("content has NUL bytes (binary?)")
    return text


def _split(text: str, e: Entry) -> str | None:
    """The frontmatter to parse (the body goes into `e`); None if there is none to parse."""
    e.body = text
    if not _SPLITTER.detect(text):
        e.problems.append("no frontmatter (expected --- name/description/type ---)")
        return None
    try:
        fm, e.body = _SPLITTER.split(text)
    except ValueError:
        e.problems.append("frontmatter is not closed with ---")
        return None
    if len(fm.encode()) > MAX_FRONTMATTER:
        e.problems.append(f"frontmatter larger than {MAX_FRONTMATTER} bytes: not parsed")
        return None
    return fm


def _load(fm: str) -> tuple[dict, str | None]:
    """(the frontmatter's keys, or the problem that kept it from being read)."""
    try:
        refused = None if _simple(fm) else _refusal(fm)
        meta = None if refused else yaml.load(fm, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        return {}, f"frontmatter is not valid YAML{where}: {getattr(err, 'problem', None) or err}"
    except (ValueError, OverflowError, TypeError) as err:  # a 5,000-digit int, an odd date, a list as a key
        return {}, f"frontmatter cannot be read: {str(err)[:200]}"
    if refused:
        return {}, refused
    if meta is None:
        return {}, None
    if not isinstance(meta, dict):
        return {}, "frontmatter is not a mapping of keys"
    return meta, None


def _take_fields(e: Entry, meta: dict, types: tuple[str, ...]) -> None:
    e.name = _text(meta.get("name"))
    e.description = _text(meta.get("description"))
    e.type = _text(meta.get("type"))
    nested = meta.get("metadata")
    if not e.type and isinstance(nested, dict):
        # Claude Code 2.1 writes `metadata: {type: feedback, node_type: memory, ...}`; a
        # top-level type wins. Nothing is written back into the user's file.
        e.type = _text(nested.get("type"))
    e.extra = " ".join(_words(meta, skip=("name", "description", "type", "tags")))[:MAX_EXTRA_CHARS]
    tags = meta.get("tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.replace(",", " ").split()]
    if isinstance(tags, list):
        e.tags = [_text(t) for t in tags[:MAX_TAGS] if _text(t)]
    for key in ("name", "description", "type"):
        if not getattr(e, key):
            e.problems.append(f"frontmatter has no {key}")
    if e.type and e.type not in types:
        e.problems.append(f"unknown type {e.type!r} (allowed: {', '.join(types)})")


def is_index(relpath: str) -> bool:
    """Whether a path names an index (MEMORY.md) rather than an entry."""
    return relpath.rsplit("/", 1)[-1] == INDEX_NAME


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
    if not target or "\0" in target:  # no file can have this name
        return None
    path = posixpath.normpath(posixpath.join(base_dir, target)) if base_dir else posixpath.normpath(target)
    if path.startswith("../") or path == ".." or path.startswith("/"):
        return None
    return path
