"""Searching the index: a caller's query over the scopes it may read, ranked by keyword
(Tantivy's BM25 per scope), by meaning (each scope's vectors) or both (fusion.py), with
snippets. Runs in worker threads; every scope is filtered inside its own query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import tantivy

from .. import entry as entry_mod
from ..layout import resolve_view_path
from ..policy import Kind, Scope
from . import fusion
from .embed import Embedder
from .query import MAX_QUERY_CHARS, QueryError, bounded, mode_of, split_filters, words_of
from .schema import TEXT_FIELDS
from .shards import Shard, Shards
from .vectors import Filter, Vectors

log = logging.getLogger("memfs.index")

BOOSTS = {"name": 3.0, "description": 2.0, "tags": 2.0}
FUSE_DEPTH = 30  # candidates each ranker hands to the fusion
INDEX_SLACK = 8  # extra keyword candidates: index files moved last must not crowd entries out
LISTING_CAP = 20_000  # entries of one scope kept listed (~0.5 KB each), see Searcher.entries


@dataclass(frozen=True)
class Hit:
    scope: Scope
    relpath: str
    score: float
    name: str
    type: str
    description: str
    snippet: str
    mtime_ns: int
    problems: list[str]
    rankers: tuple[str, ...] = ()  # which rankers found it: "keyword", "semantic"


class Searcher:
    def __init__(
        self, shards: Shards, schema: tantivy.Schema, embedder: Embedder | None, vectors: Vectors | None
    ):
        self.shards = shards
        self.schema = schema
        self.embedder = embedder
        self.vectors = vectors

    def entries(self, scopes: list[Scope]) -> list[Hit]:
        """Every indexed entry in these scopes (no ranking, no snippets). A scope's list is
        kept on its shard until the index next changes: reading every stored document back
        cost ~20 ms per 1k entries, paid by every context.md, index.md, status and
        entries.json (memfs ui's overview) of a large scope. Up to LISTING_CAP entries
        a shard: past it the list is read each time (memory stays bounded)."""
        out: list[Hit] = []
        for scope in scopes:
            shard = self.shards.get(scope)
            if shard is None:
                continue
            kept = shard.listing
            if kept is not None and kept[0] == shard.generation:
                out += kept[1]
                continue
            generation = shard.generation  # read before the index: a change after it is not missed
            searcher = shard.index.searcher()
            if not searcher.num_docs:
                continue
            result = searcher.search(tantivy.Query.all_query(), limit=searcher.num_docs, count=False)
            hits = tuple(_hit(searcher.doc(addr), 0.0, "") for _score, addr in result.hits)
            shard.listing = (generation, hits) if len(hits) <= LISTING_CAP else None
            out += hits
        return out

    def search(self, scopes: list[Scope], text: str, limit: int) -> tuple[list[Hit], int]:
        """Ranked hits in `scopes` and how many entries matched. Raises QueryError for a
        query that cannot run as asked (an unknown mode:, semantic search switched off)."""
        text, filters = split_filters(text[:MAX_QUERY_CHARS])
        mode = mode_of(filters)
        words = words_of(text)
        if mode == "semantic" and self.embedder is None:
            raise QueryError("semantic search is off on this mount (search.embedder: none)")
        if mode == "hybrid" and (self.embedder is None or not words):
            mode = "keyword"  # nothing to embed: a filter-only query lists by keyword rules
        if mode == "keyword":
            keyword, total = self._keyword(scopes, text, filters, limit + INDEX_SLACK)
            return self._hits(_capped(_index_last(keyword, lambda f: f.key)[:limit]), ("keyword",)), total
        depth = max(limit, FUSE_DEPTH)
        if mode == "semantic":
            return self._semantic_only(scopes, words, filters, depth, limit)
        keyword, total = self._keyword(scopes, text, filters, depth)
        semantic, _total = self._semantic(scopes, words, filters, depth)
        return self._fused(keyword, total, semantic, words, limit)

    def _semantic_only(self, scopes: list[Scope], words: str, filters: dict, depth: int, limit: int):
        semantic, total = self._semantic(scopes, words, filters, depth)
        semantic = _index_last([f for f in semantic if f[0] >= fusion.SEMANTIC_MIN], lambda f: f[2])
        found = [self._locate(scope, key, score, words) for score, scope, key in semantic[:limit]]
        return self._hits(_capped([f for f in found if f is not None]), ("semantic",)), total

    def _fused(self, keyword: list[_Found], total: int, semantic: list, words: str, limit: int):
        """Both rankings fused into one: the best `limit` hits, and how many matched."""
        by_key = {f.key: f for f in keyword}
        ranked = fusion.fuse([(f.key, f.score) for f in keyword], [(k, c) for c, _s, k in semantic])
        ranked = _index_last(ranked, lambda r: r[0])
        scope_of = {k: s for _c, s, k in semantic}
        out = []
        for key, score, rankers in ranked:
            f = by_key.get(key) or self._locate(scope_of[key], key, score, words)
            if f is None:
                continue
            f.score = score
            out.append((f, rankers))
            if len(out) == limit:
                break
        # Matches: keyword's, plus what only the semantic side found among its best.
        total += sum(1 for _k, _s, rankers in ranked if rankers == ("semantic",))
        _capped([f for f, _r in out])
        gens: dict = {}
        return [self._hit(f, rankers, gens) for f, rankers in out], max(total, len(out))

    # keyword -------------------------------------------------------------------
    def _keyword(self, scopes: list[Scope], text: str, filters: dict, depth: int) -> tuple[list, int]:
        words, plain = bounded(text)
        try:
            return self._keyword_in(scopes, words, filters, depth)
        except ValueError as e:  # syntax the parser takes but a search refuses (`body:*`)
            if plain:
                raise
            log.debug("query %r refused (%s); searched as words", text[:200], e)
            return self._keyword_in(scopes, bounded(text, plain=True)[0], filters, depth)

    def _keyword_in(self, scopes: list[Scope], text: str, filters: dict, depth: int) -> tuple[list, int]:
        found: list[_Found] = []
        total = 0
        for scope, wanted in _targets(scopes, filters):
            shard = self.shards.get(scope)
            if shard is None:
                continue
            must = self._filters(scope, wanted, filters)
            user_query = self._user_query(shard, text)
            if user_query is not None:
                must.append((tantivy.Occur.Must, user_query))
            searcher = shard.index.searcher()
            result = searcher.search(tantivy.Query.boolean_query(must), limit=depth, count=True)
            total += result.count  # type: ignore[attr-defined]  # tantivy's stub omits count (set by count=True)
            found += [_Found(score, scope, addr, searcher, shard, user_query) for score, addr in result.hits]
        found.sort(key=lambda f: (-f.score, str(f.scope)))
        return found[:depth], total

    def _user_query(self, shard: Shard, text: str):
        if not text.strip():
            return None
        return shard.index.parse_query_lenient(text, TEXT_FIELDS, field_boosts=BOOSTS)[0]

    # semantic ------------------------------------------------------------------
    def _semantic(self, scopes: list[Scope], words: str, filters: dict, depth: int):
        """[(cosine, scope, key)] best first, from the caller's scopes only (filters
        applied before ranking), and how many reach fusion.SEMANTIC_MIN."""
        if not words:
            return [], 0
        embedder, vectors = self.embedder, self.vectors
        assert embedder is not None and vectors is not None, "search() asks only with an embedder"
        q = embedder.embed([words])[0]
        if not q.any():
            return [], 0
        found = []
        total = 0
        for scope, wanted in _targets(scopes, filters):
            flt = _filter(scope, wanted, filters)
            best, matched = vectors.search(scope, q, depth, flt, fusion.SEMANTIC_MIN)
            total += matched
            found += [(c, scope, key) for c, key in best]
        found.sort(key=lambda f: (-f[0], f[2]))
        return found[:depth], total

    def _locate(self, scope: Scope, key: str, score: float, words: str) -> _Found | None:
        """An entry found by its vector, looked up in its scope's index by key (`words`
        mark its snippet)."""
        shard = self.shards.get(scope)
        if shard is None:
            return None
        searcher = shard.index.searcher()
        result = searcher.search(tantivy.Query.term_query(self.schema, "key", key), limit=1)
        if not result.hits:
            return None  # a vector whose entry was dropped in between
        return _Found(score, scope, result.hits[0][1], searcher, shard, self._user_query(shard, words))

    def _filters(self, scope: Scope, wanted: list[str] | None, filters: dict) -> list:
        """Must clauses of one scope's search. Each scope has its own index, so its
        statistics come from what the caller may read; the scope term is a second lock."""
        Occur, Q = tantivy.Occur, tantivy.Query
        must = [(Occur.Must, Q.term_query(self.schema, "scope", str(scope)))]
        if wanted is not None and "" not in wanted:
            paths = []
            for rel in wanted:
                paths.append((Occur.Should, Q.term_query(self.schema, "dirs", rel)))
                paths.append((Occur.Should, Q.term_query(self.schema, "relpath", rel)))
            must.append((Occur.Must, Q.boolean_query(paths)))
        for field in ("type", "tag"):
            for t in filters.get(field, []):
                must.append((Occur.Must, Q.term_query(self.schema, field, t)))
        return must

    # hits ----------------------------------------------------------------------
    def _hits(self, found: list[_Found], rankers: tuple[str, ...]) -> list[Hit]:
        gens: dict = {}
        return [self._hit(f, rankers, gens) for f in found]

    def _hit(self, f: _Found, rankers: tuple[str, ...], gens: dict) -> Hit:
        """`gens`: snippet generators by shard, shared by the hits of one search."""
        doc = f.doc()
        snippet = ""
        if f.user_query is not None:
            gen = gens.get(id(f.shard))
            if gen is None:
                gen = gens[id(f.shard)] = _snippets(f.searcher, f.user_query, self.schema)
            snippet = _markdown_snippet(gen.snippet_from_doc(doc))
        if not snippet:
            snippet = " ".join((doc.get_first("body") or "").split())[:240]
        return _hit(doc, f.score, snippet, rankers)


def _index_last(ranked: list, key_of) -> list:
    """Entries first, then index files (MEMORY.md), each in rank order: an index's hook
    lines repeat its entries' words, so it would otherwise outrank the entries it lists."""
    return sorted(ranked, key=lambda r: entry_mod.is_index(key_of(r).partition("\0")[2]))


def _capped(found: list[_Found]) -> list[_Found]:
    """Scores that never rise down the list: an index file moved after the entries shows
    at most the score of the hit above it."""
    for above, f in zip(found, found[1:], strict=False):
        f.score = min(f.score, above.score)
    return found


class _Found:
    """One candidate of a search: where its document is, and how it scored."""

    def __init__(self, score: float, scope: Scope, addr, searcher, shard: Shard, user_query):
        self.score = score
        self.scope = scope
        self.addr = addr
        self.searcher = searcher
        self.shard = shard
        self.user_query = user_query
        self._doc = None

    def doc(self):
        if self._doc is None:
            self._doc = self.searcher.doc(self.addr)
        return self._doc

    @property
    def key(self) -> str:
        return self.doc().get_first("key") or ""


def _filter(scope: Scope, wanted: list[str] | None, filters: dict) -> Filter | None:
    """The semantic side's type:/tag:/path: filters for one scope (None: none), the same
    rules as the keyword side's Must clauses."""
    types = frozenset(filters.get("type", []))
    tags = frozenset(filters.get("tag", []))
    prefixes = None
    if wanted is not None and "" not in wanted:
        prefixes = tuple(f"{scope}\0{rel}" for rel in wanted)
    if not types and not tags and prefixes is None:
        return None
    return Filter(types, tags, prefixes)


def _targets(scopes: list[Scope], filters: dict) -> list[tuple[Scope, list[str] | None]]:
    """The scopes a search runs in (scope: and path: narrow the caller's), each with the
    folders its path: filters name (None: no path filter)."""
    allowed = list(scopes)
    for f_scope in filters.get("scope", []):
        kind = {"private": Kind.PRIVATE, "team": Kind.TEAM}.get(f_scope)
        allowed = [s for s in allowed if s.kind is kind]
    if "path" not in filters:
        return [(s, None) for s in allowed]
    wanted: dict[Scope, list[str]] = {}
    for prefix in filters["path"]:
        scope, rel = resolve_view_path(prefix, scopes)
        if scope is not None:
            wanted.setdefault(scope, []).append(rel)
    return [(s, wanted[s]) for s in allowed if s in wanted]


def _snippets(searcher, query, schema):
    gen = tantivy.SnippetGenerator.create(searcher, query, schema, "body")
    gen.set_max_num_chars(240)
    return gen


def _hit(doc, score: float, snippet: str, rankers: tuple[str, ...] = ()) -> Hit:
    return Hit(
        scope=Scope.parse(doc.get_first("scope") or ""),
        relpath=doc.get_first("relpath") or "",
        score=float(score),
        name=doc.get_first("name") or "",
        type=doc.get_first("type") or "",
        description=doc.get_first("description") or "",
        snippet=snippet,
        mtime_ns=doc.get_first("mtime") or 0,
        problems=doc.get_all("problems"),
        rankers=rankers,
    )


def _markdown_snippet(snippet) -> str:
    html = snippet.to_html()
    if not html:
        return ""
    text = html.replace("<b>", "**").replace("</b>", "**")
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#x27;", "'"), ("&amp;", "&")):
        text = text.replace(ent, ch)
    return " ".join(text.split())
