"""Pure units: entry parsing, MEMORY.md index lines, context caps and analysis, import planning."""

from __future__ import annotations

import json

from memfs import context as ctx
from memfs import entry, migrate
from memfs.config import parse
from memfs.index import display_path, doc_key, path_bytes, path_text, split_filters
from memfs.policy import Kind, Scope


def test_frontmatter_fields_and_problems():
    e = entry.parse(b"---\nname: N\ndescription: D\ntype: user\ntags: a, b\n---\nbody")
    assert (e.name, e.description, e.type, e.tags, e.body.strip(), e.problems) == (
        "N",
        "D",
        "user",
        ["a", "b"],
        "body",
        [],
    )
    assert entry.parse(b"plain").problems == ["no frontmatter (expected --- name/description/type ---)"]
    assert "frontmatter has no type" in entry.parse(b"---\nname: N\ndescription: D\n---\n").problems
    assert entry.parse(b"---\n- a list\n---\n").problems == ["frontmatter is not a mapping of keys"]
    e = entry.parse(b"---\nname: x\ntype: memo\n---\n", types=("memo",))
    assert not any("unknown type" in p for p in e.problems)


def test_aliases_are_refused_with_either_loader():
    assert "anchors are not allowed" in entry.parse(b"---\na: &x [1]\nb: *x\n---\n").problems[0]
    # A '*' or '&' in plain text takes the guarded loader but still parses.
    e = entry.parse(b"---\nname: a & b\ndescription: '*important*'\ntype: user\n---\n")
    assert (e.name, e.description, e.problems) == ("a & b", "*important*", [])


def test_index_lines_and_links():
    lines = entry.index_lines(
        "# T\n- [A](a.md) — hook a\n* [B](dir/b.md#x) - hb\n- [W](http://x) — web\ntext\n"
    )
    assert [(x.lineno, x.title, x.target, x.hook) for x in lines] == [
        (2, "A", "a.md", "hook a"),
        (3, "B", "dir/b.md#x", "hb"),
        (4, "W", "http://x", "web"),
    ]
    assert entry.resolve_link("", "dir/b.md#x") == "dir/b.md"
    assert entry.resolve_link("", "a%20b.md") == "a b.md"
    assert entry.resolve_link("", "http://x") is None
    assert entry.resolve_link("", "../../etc/passwd") is None
    assert entry.resolve_link("", "/etc/passwd") is None


def doc(rel, mtime=0, scope="private:a", problems=()):
    return ctx.Doc(rel, scope, rel, "Private", rel.upper(), f"about {rel}", "user", mtime, list(problems))


def test_fit_counts_lines_and_bytes():
    lines = ["x" * 9] * 10  # 10 bytes each with the newline
    assert ctx._fit(lines, ctx.Limits(max_lines=200, max_bytes=1000)) == 10
    assert ctx._fit(lines, ctx.Limits(max_lines=3, max_bytes=1000)) == 3
    assert ctx._fit(lines, ctx.Limits(max_lines=200, max_bytes=35)) == 3


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
    a = ctx.analyze([memo], docs, lambda s, r: False, ctx.Limits(max_lines=1))
    assert a.cuts[0].kept == 1 and a.cuts[0].cut == 2
    assert [(m.path, il.target) for m, il in a.dangling] == [("MEMORY.md", "gone.md")]
    assert [d.relpath for d in a.unindexed] == ["d.md", "c.md"]  # newest first, no MEMORY.md, no dot dirs
    text = ctx.render_context("a", [memo], a, ctx.Limits(max_lines=1), now_ns=0)
    assert "[... 2 more lines truncated ...]" in text
    assert "Entries whose index lines were cut (newest first):\n- [B.MD](b.md)" in text
    status = ctx.status_lines([memo], docs, a, ctx.Limits(max_lines=1))
    assert "MEMORY.md:3: index line points to gone.md, which does not exist" in status
    assert "c.md: no line in MEMORY.md" in status


def test_stale_entries_show_their_age():
    memo = ctx.MemoryFile("Private memory", "MEMORY.md", "private:a", "- [A](a.md) — a\n")
    now = 100 * ctx.DAY_NS
    a = ctx.analyze([memo], [doc("a.md", mtime=now - 45 * ctx.DAY_NS)], lambda s, r: True, ctx.Limits())
    assert "- a.md (45 days old)" in ctx.render_context("a", [memo], a, ctx.Limits(stale_days=30), now)
    assert "days old" not in ctx.render_context("a", [memo], a, ctx.Limits(stale_days=60), now)


def test_index_paths_round_trip_any_bytes():
    for raw in (b"plain.md", b"\xff\xfe.md", "ünï.md".encode()):
        assert path_bytes(path_text(raw)) == raw
    assert path_text(b"\xff.md") != path_text(b"\\xff.md")
    assert display_path(path_text(b"a\nb.md")) == "a\\nb.md"
    assert doc_key(Scope(Kind.TEAM, "eng"), b"x.md") == "team:eng\0x.md"


def test_split_filters():
    text, f = split_filters('tabs type:feedback path:"team/a b" tag:x scope:team')
    assert text.split() == ["tabs"]
    assert f == {"type": ["feedback"], "path": ["team/a b"], "tag": ["x"], "scope": ["team"]}


def test_json_import_plan(tmp_path):
    u = tmp_path / "users" / "42"
    u.mkdir(parents=True)
    (u / "long_term_user.json").write_text(
        json.dumps(
            {
                "profile": {"name": "Al"},
                "knowledge": [{"id": 1, "content": "Uses vim.", "category": "preference"}],
            }
        )
    )
    cfg = parse({"users": {"al": {"uid": 1001, "aliases": [42]}}})
    report = migrate.Report()
    items = migrate.plan_json(tmp_path, None, cfg, report)
    assert sorted(i.rel.split("-")[0] for i in items) == ["knowledge", "profile.md"]
    k = next(i for i in items if i.rel.startswith("knowledge"))
    assert k.scope == Scope(Kind.PRIVATE, "al") and b"type: feedback" in k.content
    # The same input gives the same names: that is what makes a second import a no-op.
    assert [i.rel for i in migrate.plan_json(tmp_path, None, cfg, migrate.Report())] == [i.rel for i in items]


def test_merge_index_appends_only_new_lines():
    assert migrate._merge_index(b"- a\n", ["- a", "- b"]) == b"- a\n- b\n"
    assert migrate._merge_index(b"- a", ["- b"]) == b"- a\n- b\n"
    assert migrate._merge_index(b"- a\n- b\n", ["- b", ""]) is None


def test_deep_yaml_nesting_is_flagged_not_parsed():
    # ~30,000 levels overflowed a thread's stack inside libyaml's object builder (SIGSEGV).
    for fm in (
        "a: " + "[" * 30000 + "]" * 30000,
        "a: " + "{x: " * 12000 + "1" + "}" * 12000,
        "- " * 30000 + "x",
    ):
        e = entry.parse(f"---\n{fm}\n---\nbody\n".encode())
        assert any("nests deeper than" in p for p in e.problems), e.problems
    ok = entry.parse(b"---\nname: n\ndescription: d\ntype: user\nx: " + b"[" * 60 + b"]" * 60 + b"\n---\n")
    assert ok.problems == []


def test_non_scalar_fields_are_not_text():
    e = entry.parse(b"---\nname: [a, b]\ndescription: {x: 1}\ntype: user\ntags: [ok, [no], {n: 1}]\n---\n")
    assert (e.name, e.description, e.tags) == ("", "", ["ok"])
    assert "frontmatter has no name" in e.problems


def test_frontmatter_values_python_cannot_build_are_flagged():
    for fm in ("n: " + "9" * 5000, "d: 2024-02-31", "? [a, b]\n: v"):
        e = entry.parse(f"---\nname: x\n{fm}\n---\nbody\n".encode())
        assert e.body.strip() == "body" and any("frontmatter" in p for p in e.problems), (fm, e.problems)


def test_frontmatter_with_too_many_values_is_flagged_not_parsed():
    fm = "name: big\n" + "".join(f"k{i}: {{a: [{i}, {i}], b: null}}\n" for i in range(2000))
    e = entry.parse(f"---\n{fm}---\nbody\n".encode())
    assert any("more than 5000 YAML values" in p for p in e.problems), e.problems
    small = "name: n\ndescription: d\ntype: user\n" + "".join(f"k{i}: v\n" for i in range(150))
    assert entry.parse(f"---\n{small}---\n".encode()).problems == []
