"""The agent views: caps, fences, the analysis of MEMORY.md against the entries."""

from __future__ import annotations

from memfs import context as ctx


def doc(rel, mtime=0, scope="private:a", problems=()):
    return ctx.Doc(rel, scope, rel, "Private", rel.upper(), f"about {rel}", "user", mtime, list(problems))


def test_fit_counts_lines_and_bytes():
    lines = ["x" * 9] * 10  # 10 bytes each with the newline
    assert ctx._fit(lines, ctx.ContextLimits(max_lines=200, max_bytes=1000)) == 10
    assert ctx._fit(lines, ctx.ContextLimits(max_lines=3, max_bytes=1000)) == 3
    assert ctx._fit(lines, ctx.ContextLimits(max_lines=200, max_bytes=35)) == 3


def test_fence_cannot_be_closed_from_inside():
    assert ctx._fence("plain") == "```"
    assert ctx._fence("has ```` four") == "`````"


def test_analysis_cut_dangling_unindexed():
    memo = ctx.MemoryFile(
        "Private memory", "MEMORY.md", "private:a", "- [A](a.md) — a\n- [B](b.md) — b\n- [G](gone.md) — g\n"
    )
    docs = [
        doc("a.md", 1),
        doc("b.md", 3),
        doc("c.md", 2),
        doc("d.md", 5),
        doc(".git/x.md", 9),
        doc("MEMORY.md"),
    ]
    a = ctx.analyze([memo], docs, lambda s, r: False, ctx.ContextLimits(max_lines=1))
    assert a.cuts[0].kept == 1 and a.cuts[0].cut == 2
    assert [(m.path, il.target) for m, il in a.dangling] == [("MEMORY.md", "gone.md")]
    assert [d.relpath for d in a.unindexed] == ["d.md", "c.md"]  # newest first, no MEMORY.md, no dot dirs
    text = ctx.render_context("a", [memo], a, ctx.ContextLimits(max_lines=1), now_ns=0)
    assert "[... 2 more lines truncated ...]" in text
    assert "Entries whose index lines were cut (newest first):\n- [B.MD](b.md)" in text
    status = ctx.status_lines([memo], docs, a, ctx.ContextLimits(max_lines=1))
    assert "MEMORY.md:3: index line points to gone.md, which does not exist" in status
    assert "c.md: no line in MEMORY.md" in status


def test_stale_entries_show_their_age():
    memo = ctx.MemoryFile("Private memory", "MEMORY.md", "private:a", "- [A](a.md) — a\n")
    now = 100 * ctx.DAY_NS
    a = ctx.analyze(
        [memo], [doc("a.md", mtime=now - 45 * ctx.DAY_NS)], lambda s, r: True, ctx.ContextLimits()
    )
    assert "- a.md (45 days old)" in ctx.render_context("a", [memo], a, ctx.ContextLimits(stale_days=30), now)
    assert "days old" not in ctx.render_context("a", [memo], a, ctx.ContextLimits(stale_days=60), now)
