"""Untrusted memory text -> HTML that cannot act: teammates' agents wrote it.

Two layers, so neither alone has to be perfect: markdown-it renders with raw HTML off
(a `<script>` in an entry comes out as text), then nh3 (ammonia) keeps only the tags,
attributes and URL schemes listed here. The page's Content-Security-Policy (security.py)
forbids every script anyway.
"""

from __future__ import annotations

import functools
import posixpath
import urllib.parse
from dataclasses import dataclass

import nh3
import pygit2
from markdown_it import MarkdownIt
from pygit2.enums import DiffOption

_md = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "em",
    "strong", "del", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
SCHEMES = {"http", "https", "mailto"}
MAX_RENDERED = 64 * 1024  # characters of an entry rendered (1 MB took 0.65 s); the rest is shown as source
RENDERED_KEPT = 8  # entries' renderings kept (each at most MAX_RENDERED characters of source)
MAX_DIFF_LINES = 4000  # shown of one diff; the rest is counted (a 1 MB rewrite stays one page)


def render_markdown(text: str, base: str = "") -> str:
    """An entry's markdown as sanitized HTML. A relative link (`tabs.md` in MEMORY.md)
    becomes a link to that entry's page, resolved against the folder `base`."""

    def attribute(tag: str, attr: str, value: str) -> str | None:
        if tag == "a" and attr == "href":
            return entry_link(value, base)
        return value

    return nh3.clean(
        _md.render(text),
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=SCHEMES,
        link_rel="noopener noreferrer nofollow",
        attribute_filter=attribute,
    )


@functools.lru_cache(maxsize=RENDERED_KEPT)
def render_entry(text: str, base: str) -> tuple[str, int]:
    """(the HTML of an entry's first MAX_RENDERED characters, how many more there are).
    The last few are kept: an entry is shown again and again while nothing changes it, and
    rendering 64 KiB took most of a 1 MB entry's page (~20 ms)."""
    if len(text) <= MAX_RENDERED:
        return render_markdown(text, base), 0
    head = text[:MAX_RENDERED]
    head = head[: head.rfind("\n") + 1] or head  # whole lines: no construct cut in half
    return render_markdown(head, base), len(text) - len(head)


def entry_link(href: str, base: str) -> str:
    """A link as written in an entry: absolute ones stay (nh3 judges their scheme), a
    relative one points at the entry page of the file it names."""
    parsed = urllib.parse.urlsplit(href)
    if parsed.scheme or parsed.netloc or not parsed.path or href.startswith("/"):
        return href
    target = posixpath.normpath(posixpath.join(base, urllib.parse.unquote(parsed.path)))
    if target.startswith("../") or target == "..":
        return "#"
    return "/entry?" + urllib.parse.urlencode({"path": target})


@dataclass
class DiffLine:
    kind: str  # "add", "del", "hunk", "same"
    text: str


@dataclass
class Diff:
    lines: list[DiffLine]
    added: int
    removed: int
    hidden: int  # lines past MAX_DIFF_LINES, not shown


def diff(old: str, new: str) -> Diff:
    """A unified diff of two texts, as lines to colour (escaped by the template). libgit2's
    (through pygit2, which history already uses): half the time of difflib's on a 1 MB
    entry with five changed lines (11 vs 20 ms)."""
    out: list[DiffLine] = []
    added = removed = hidden = 0
    a, b = old.encode(), new.encode()  # held here: the patch's lines point into these buffers
    patch = pygit2.Patch.create_from(a, b, flag=DiffOption.FORCE_TEXT, context_lines=3)
    for hunk in patch.hunks:
        lines = [DiffLine("hunk", hunk.header.rstrip("\n"))]
        # '<', '>', '=' note a missing newline at the end of a side: not a line of text
        lines += [
            DiffLine(_KINDS[ln.origin], ln.origin + ln.content.rstrip("\n"))
            for ln in hunk.lines
            if ln.origin in _KINDS
        ]
        for line in lines:
            added += line.kind == "add"
            removed += line.kind == "del"
            if len(out) < MAX_DIFF_LINES:
                out.append(line)
            else:
                hidden += 1
    return Diff(out, added, removed, hidden)


_KINDS = {"+": "add", "-": "del", " ": "same"}
