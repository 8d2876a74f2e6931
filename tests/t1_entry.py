"""Entries: frontmatter parsing and its guards, MEMORY.md index lines and links."""

from __future__ import annotations

from memfs import entry


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


def test_deep_yaml_nesting_is_flagged_not_parsed():
    # ~30,000 levels overflowed a thread's stack inside libyaml's object builder (SIGSEGV).
    for fm in (
        "a: " + "[" * 30000 + "]" * 30000,
        "a: " + "{x: " * 12000 + "1" + "}" * 12000,
        "- " * 30000 + "x",
    ):
        e = entry.parse(f"---\nname: n\n{fm}\n---\nbody\n".encode())
        # memfs's own verdict, whatever depth the installed libyaml stops at by itself.
        assert any("nests deeper than" in p for p in e.problems), e.problems
        assert (e.name, e.body.strip()) == ("", "body")
    ok = entry.parse(b"---\nname: n\ndescription: d\ntype: user\nx: " + b"[" * 60 + b"]" * 60 + b"\n---\n")
    assert ok.problems == []
    # Brackets inside quotes or comments open nothing.
    quoted = "'" + "[" * 100 + "'"
    for fm in (f"x: {quoted}", f'x: "{"{" * 100}"', f"x: 1 # {'[' * 100}"):
        e = entry.parse(f"---\nname: n\ndescription: d\ntype: user\n{fm}\n---\n".encode())
        assert e.problems == [] and e.name == "n", (fm, e.problems)


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


def test_claude_code_metadata_type():
    """Claude Code 2.1 keeps the type under metadata:; a top-level type wins; the rest of
    its metadata is searchable words."""
    cc = (
        b'---\nname: prefer-tabs\ndescription: "bob indents with tabs"\nmetadata:\n'
        b"  node_type: memory\n  type: feedback\n  originSessionId: b8f2cca5-9e1d\n---\nTabs.\n"
    )
    e = entry.parse(cc)
    assert e.type == "feedback" and e.problems == []
    assert "node_type memory" in e.extra and "originSessionId b8f2cca5-9e1d" in e.extra
    e = entry.parse(b"---\nname: x\ndescription: y\ntype: user\nmetadata: {type: feedback}\n---\nb\n")
    assert e.type == "user"
    e = entry.parse(b"---\nname: x\ndescription: y\nmetadata: [type, feedback]\n---\nb\n")
    assert e.type == "" and "frontmatter has no type" in e.problems
    deep = b"---\nname: x\ndescription: y\ntype: user\nm: " + b"{a: " * 50 + b"1" + b"}" * 50 + b"\n---\n"
    assert entry.parse(deep).type == "user"  # nesting is walked only a few levels down
