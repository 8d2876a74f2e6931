"""Keyword and semantic rankings -> one ranking. Pure; every constant here was chosen by
scripts/bench_recall.py (agent-memory questions, three seeds), which prints the effect.

Scores, not ranks, are fused: each side's candidates are min-max scaled to 0..1 within
this search (so neither BM25's unbounded scale nor the embedder's cosine range decides),
then weighted. Naive reciprocal-rank fusion, kept as the baseline, throws the scores'
confidence away and measured below semantic alone on recall@1.
"""

from __future__ import annotations

KEYWORD_WEIGHT = 0.4  # measured best of 0.2..0.6: 0.4 beat both sides on every seed
# Cosine below which the semantic side finds nothing (WordLlama: 95% of the answers in
# the benchmark scored above 0.22; random words against any entry stay near 0.1-0.25).
SEMANTIC_MIN = 0.2
# With no keyword match at all, a semantic-only hit must be this close to count: the
# query may simply have no answer here. Measured: 1.4% of 300 random one-to-three-word
# queries that matched no word reached 0.3 (the best was "viol Nouvelle" at 0.40), while
# a real question with no word in common ("which animal" for a guinea pig) scores ~0.32.
SEMANTIC_ALONE = 0.3
RRF_K = 60

Ranked = list[tuple[str, float]]  # (key, score), best first


def rrf(keyword: Ranked, semantic: Ranked, k: int = RRF_K):
    """Naive reciprocal-rank fusion, both sides weighted alike (the comparison baseline)."""
    scores: dict[str, float] = {}
    rankers: dict[str, list[str]] = {}
    for name, ranked in (("keyword", keyword), ("semantic", semantic)):
        for rank, (key, _score) in enumerate(ranked):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank + 1)
            rankers.setdefault(key, []).append(name)
    order = sorted(scores, key=lambda key: (-scores[key], key))
    return [(key, scores[key], tuple(rankers[key])) for key in order]


def _scaled(ranked: Ranked) -> dict[str, float]:
    if not ranked:
        return {}
    hi, lo = ranked[0][1], ranked[-1][1]
    return {key: (s - lo) / (hi - lo) if hi > lo else 1.0 for key, s in ranked}


def fuse(keyword: Ranked, semantic: Ranked, weight: float = KEYWORD_WEIGHT):
    """[(key, score 0..1, rankers)] best first. Both sides are scaled over all their
    candidates; then an entry only the semantic side found must reach SEMANTIC_MIN
    (SEMANTIC_ALONE when nothing matched by keyword) to be listed at all."""
    kw, sem = _scaled(keyword), _scaled(semantic)
    floor = SEMANTIC_MIN if keyword else SEMANTIC_ALONE
    cosine = dict(semantic)
    keys = kw.keys() | {key for key in sem if cosine[key] >= floor}
    scores = {key: weight * kw.get(key, 0.0) + (1 - weight) * sem.get(key, 0.0) for key in keys}
    order = sorted(scores, key=lambda key: (-scores[key], key))
    return [
        (key, scores[key], tuple(n for n, side in (("keyword", kw), ("semantic", sem)) if key in side))
        for key in order
    ]
