"""Pure parts of semantic search: the embedder, the per-scope vector matrix, the fusion."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memfs.index import embed, fusion
from memfs.index.embed import WordLlama
from memfs.index.query import QueryError, mode_of, split_filters, words_of
from memfs.index.vectors import Filter, ScopeVectors


@pytest.fixture(scope="module")
def wl():
    return WordLlama()


def test_embeddings_are_unit_rows_and_independent_of_the_batch(wl):
    texts = ["Caroline has a guinea pig named Oscar.", "", "   ", "port 8443", "x" * 100_000]
    together = wl.embed(texts)
    assert together.shape == (5, 256) and together.dtype == np.float32
    norms = np.linalg.norm(together, axis=1)
    assert np.allclose(norms[[0, 3, 4]], 1.0, atol=1e-5) and not together[1].any() and not together[2].any()
    alone = np.vstack([wl.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.array_equal(wl.embed(texts), together)  # deterministic
    assert wl.embed([]).shape == (0, 256)


def test_a_big_text_in_a_batch_changes_nothing(wl):
    """64 texts next to a 1 MB one: no padding to the longest (GBs), same vectors."""
    texts = ["short note"] * 64 + ["word " * 200_000]
    out = wl.embed(texts)
    assert np.allclose(out[0], wl.embed(["short note"])[0], atol=1e-6)
    assert np.allclose(out[-1], wl.embed(["word " * 200_000])[0], atol=1e-5)


def test_meaning_is_closer_than_words(wl):
    doc, other = wl.embed(
        ["Alice drinks green tea every morning.", "The billing service listens on port 8443."]
    )
    q = wl.embed(["a drink in the morning"])[0]
    assert q @ doc > 0.4 > q @ other


def test_wordllama_reads_its_model_at_the_first_embed_once_even_from_many_threads(monkeypatch):
    """Reading the model (~0.17 CPU-s) was every mount's start; now it is the first embed's,
    and threads embedding at once share one load."""
    loads = []
    real = WordLlama._load

    def slow_load(self):
        loads.append(1)
        time.sleep(0.05)  # a wide window for a second thread to load too
        return real(self)

    monkeypatch.setattr(WordLlama, "_load", slow_load)
    lazy = WordLlama()
    assert loads == [] and lazy.dim == 256 and lazy.id == "wordllama-l2_supercat-256"
    out: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: out.append(lazy.embed(["green tea"]))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [1] and len(out) == 8 and all(np.array_equal(o, out[0]) for o in out)


def test_an_idle_model_is_let_go_and_read_again_at_the_next_embed():
    """The daemon embeds queries only; a quiet spell gives back the model's memory."""
    model = WordLlama()
    assert not model.release_if_idle(0)  # nothing loaded yet
    first = model.embed(["green tea"])
    assert not model.release_if_idle(3600)  # used just now
    assert model.release_if_idle(0) and not model.release_if_idle(0)
    assert np.array_equal(model.embed(["green tea"]), first)


def test_a_missing_model_file_stops_the_mount_at_start(monkeypatch):
    """Read lazily, the model is still looked for at start: the mount fails with one line."""
    monkeypatch.setattr(embed, "WORDLLAMA_WEIGHTS", "weights/gone.safetensors")
    with pytest.raises(embed.EmbedderError, match=r"search\.embedder: cannot load WordLlama .*gone"):
        WordLlama()


def test_smaller_dims_are_prefixes():
    small = WordLlama(64)
    assert small.dim == 64 and small.id.endswith("-64") and small.embed(["tea"]).shape == (1, 64)


def test_modes():
    assert mode_of(split_filters("what pet")[1]) == "hybrid"
    assert mode_of(split_filters("mode:Semantic what pet")[1]) == "semantic"
    text, filters = split_filters('mode:keyword type:user "x y"')
    assert mode_of(filters) == "keyword" and text.strip() == '"x y"'
    with pytest.raises(QueryError, match="unknown mode:fuzzy"):
        mode_of(split_filters("mode:fuzzy a")[1])
    with pytest.raises(QueryError, match="one mode per query"):
        mode_of(split_filters("mode:keyword mode:semantic a")[1])
    assert words_of('What (pet) AND "Caroline"?') == "what pet and caroline"


def ranked(*pairs):
    return list(pairs)


def test_fusion_rewards_agreement_and_reports_rankers():
    kw = ranked(("a", 9.0), ("b", 5.0), ("c", 1.0))
    sem = ranked(("b", 0.8), ("d", 0.5), ("a", 0.3))
    out = fusion.fuse(kw, sem)
    keys = [k for k, _s, _r in out]
    assert keys[0] == "b"  # second for keyword, first for meaning: both agree it is good
    assert dict((k, r) for k, _s, r in out) == {
        "a": ("keyword", "semantic"),
        "b": ("keyword", "semantic"),
        "c": ("keyword",),
        "d": ("semantic",),
    }
    assert all(0.0 <= s <= 1.0 for _k, s, _r in out)


def test_fusion_floors_for_semantic_only_hits():
    sem = ranked(("x", 0.35), ("y", 0.25), ("z", 0.1))
    # Nothing matched by keyword: only confident meaning counts.
    assert [k for k, _s, _r in fusion.fuse([], sem)] == ["x"]
    # With keyword matches, meaning adds what reaches SEMANTIC_MIN.
    keys = [k for k, _s, _r in fusion.fuse(ranked(("k", 2.0)), sem)]
    assert set(keys) == {"k", "x", "y"}
    assert fusion.fuse([], []) == []


@settings(max_examples=200, deadline=None)
@given(
    kw=st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.floats(0.01, 50)), max_size=8, unique_by=lambda t: t[0]
    ),
    sem=st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.floats(-1, 1)), max_size=8, unique_by=lambda t: t[0]
    ),
)
def test_fusion_is_a_deterministic_ranking_of_its_inputs(kw, sem):
    kw = sorted(kw, key=lambda t: -t[1])
    sem = sorted(sem, key=lambda t: -t[1])
    out = fusion.fuse(kw, sem)
    keys = [k for k, _s, _r in out]
    assert len(keys) == len(set(keys))
    assert {k for k, _ in kw} <= set(keys) <= {k for k, _ in kw} | {k for k, _ in sem}
    scores = [s for _k, s, _r in out]
    assert scores == sorted(scores, reverse=True)
    assert out == fusion.fuse(kw, sem)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "drop", "under"]), st.integers(0, 12), st.integers(0, 3)),
        max_size=60,
    )
)
@example(ops=[("put", 1, 1), ("put", 1, 3)])  # retagged: ("a", "b") -> ("b",)
@example(ops=[("put", 1, 0), ("put", 2, 1), ("drop", 1, 0)])  # a row moved into a hole
def test_scope_matrix_matches_a_plain_dict(ops):
    """Rows swapped out on delete, grown on insert, retyped and retagged on rewrite: the
    matrix and its filters always answer like a dict filtered row by row."""
    sv = ScopeVectors(4)
    model: dict[str, tuple[np.ndarray, str, tuple[str, ...]]] = {}
    rng = np.random.default_rng(0)
    for op, n, flavour in ops:
        key = f"s\0d{n % 3}/f{n}.md" if n != 12 else "s\0d0"  # a file named like a folder
        if op == "put":
            v = rng.normal(size=4).astype(np.float32)
            v /= np.linalg.norm(v)
            type_, tags = ("user", "project")[flavour % 2], (("a",), ("a", "b"), (), ("b",))[flavour]
            sv.put(key, type_, tags, v)
            model[key] = (v, type_, tags)
        elif op == "drop":
            sv.drop(key)
            model.pop(key, None)
        else:
            prefix = f"s\0d{n % 3}/"
            sv.drop_under(prefix)
            model = {k: v for k, v in model.items() if not k.startswith(prefix)}
    assert sorted(sv.keys) == sorted(model) == sv.sorted_keys and len(sv.pos) == len(model)
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    best, passed = sv.top(q, 50, None, -2.0)
    assert np.allclose(
        [s for s, _k in best], sorted((float(v @ q) for v, _t, _g in model.values()), reverse=True)
    )
    assert passed == len(model)
    filters = [
        (Filter(prefixes=("s\0d0",)), lambda k, t, g: k == "s\0d0" or k.startswith("s\0d0/")),
        (
            Filter(prefixes=("s\0d1", "s\0d2/f5.md")),
            lambda k, t, g: k.startswith("s\0d1/") or k == "s\0d2/f5.md",
        ),
        (Filter(types=frozenset({"user"})), lambda k, t, g: t == "user"),
        (Filter(types=frozenset({"user", "project"})), lambda k, t, g: False),
        (Filter(types=frozenset({"nope"})), lambda k, t, g: False),
        (Filter(tags=frozenset({"a", "b"})), lambda k, t, g: {"a", "b"} <= set(g)),
        (Filter(tags=frozenset({"a"})), lambda k, t, g: "a" in g),
        (
            Filter(frozenset({"project"}), frozenset({"b"}), ("s\0d1",)),
            lambda k, t, g: t == "project" and "b" in g and k.startswith("s\0d1/"),
        ),
    ]
    for flt, keep in filters:
        got = {k for _s, k in sv.top(q, 50, flt, -2.0)[0]}
        assert got == {k for k, (_v, t, g) in model.items() if keep(k, t, g)}, flt
