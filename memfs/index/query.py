"""User query text -> something Tantivy can parse at a bounded cost, plus memfs's filters.

Tantivy's parser recurses once per nesting level and per prefix operator: about 3,000
nested parentheses (or 30,000 `NOT`s) overflow a worker thread's stack and kill the
process, which no Python guard can catch. So a query is handed to the parser only when
it is small (length, terms and nesting all capped); anything larger is searched as its
plain words.
"""

from __future__ import annotations

import re

MAX_QUERY_CHARS = 64 * 1024  # what a query handle accepts
MAX_SYNTAX_CHARS = 2048  # longer text is searched as words
MAX_TERMS = 64  # tokens handed to the parser as syntax
MAX_WORDS = 1024  # plain words: the parser reads these without recursion
MAX_DEPTH = 8

_FILTER_RE = re.compile(r'(?:^|\s)(type|scope|path|tag|mode):("[^"]*"|\S+)')
MODES = ("hybrid", "keyword", "semantic")


class QueryError(ValueError):
    """A query memfs cannot run as asked (an unknown mode:); the message says why."""


_TOKEN_RE = re.compile(r"[()]|[^\s()]+")
_WORD_RE = re.compile(r"\w+")


def split_filters(text: str) -> tuple[str, dict[str, list[str]]]:
    """Pull memfs's own filters (type: scope: path: tag: mode:) out of a query."""
    filters: dict[str, list[str]] = {}

    def take(m: re.Match) -> str:
        filters.setdefault(m.group(1), []).append(m.group(2).strip('"'))
        return " "

    return _FILTER_RE.sub(take, text), filters


def _depth(text: str) -> int:
    depth = deepest = 0
    for c in text:
        if c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth = max(0, depth - 1)
    return deepest


def bounded(text: str, plain: bool = False) -> tuple[str, bool]:
    """(text safe for the Tantivy parser, whether it was reduced to plain words). `plain`
    forces words: for syntax the parser accepts but the search refuses (`body:*`)."""
    if not plain and len(text) <= MAX_SYNTAX_CHARS and _depth(text) <= MAX_DEPTH:
        tokens = _TOKEN_RE.findall(text)
        if len(tokens) <= MAX_TERMS:
            return text, False
    words: list[str] = []
    seen: set[str] = set()
    for m in _WORD_RE.finditer(text):
        w = m.group().lower()  # lower case: AND/OR/NOT/TO are words here, not operators
        if w not in seen:
            seen.add(w)
            words.append(w)
            if len(words) == MAX_WORDS:
                break
    return " ".join(words), True


def mode_of(filters: dict[str, list[str]]) -> str:
    """The ranking a query asks for (mode:keyword|semantic|hybrid; hybrid by default)."""
    modes = {m.lower() for m in filters.get("mode", [])}
    for m in modes:
        if m not in MODES:
            raise QueryError(f"unknown mode:{m} (use mode:hybrid, mode:keyword or mode:semantic)")
    if len(modes) > 1:
        raise QueryError(f"one mode per query, got {', '.join(sorted(modes))}")
    return modes.pop() if modes else "hybrid"


def words_of(text: str) -> str:
    """A query's plain words (no syntax): what the semantic side embeds."""
    return " ".join(_WORD_RE.findall(text)[:MAX_WORDS]).lower()
