"""The gitleaks rule set (vendored `gitleaks.toml`, MIT) compiled for Python's `re`.

gitleaks writes its rules for Go's RE2; the few features Python spells differently are
translated here, once, when the rules load:
  - a flag group in mid-pattern (`p8e-(?i)[a-z0-9]{32}`) applies to the rest of its group
    in Go; Python accepts global flags only at the start, so it becomes `p8e-(?i:[a-z0-9]{32})`;
  - `\\z` (end of text) is Python's `\\Z`;
  - POSIX classes inside brackets (`[[:alnum:]]`) are spelled out;
  - every pattern compiles with re.ASCII: RE2's `\\w`, `\\d`, `\\s` and `\\b` are ASCII.
With prose=True, the end-of-token test that 151 rules share (a quote, a space, `;`, a
literal `\\n`, or the end) also takes the punctuation that ends a token in prose or a URL
(`.`, `,`, `:`, `!`, `?`, `)`, `]`, `}`, `>`, `&`, `@`): gitleaks reads code, memory
entries are mostly sentences ("my key is sk-ant-....") and the benchmark lost a fifth of
the prefixed tokens to a full stop or a URL's `&` without it.
A leading lazy `[\\w.-]{0,50}?` (gitleaks's semi-generic template puts one or two before the
keyword) is dropped: it can match nothing, so it never decides whether a rule matches, only
how far left the match starts; in Python's backtracking `re` it costs 50 x 50 steps at every
position (17.9 s for 1 MiB of base64 in `sumologic-access-id`; the whole scan is 0.3 s without).
Rules that gitleaks applies only to some file paths (`.php`, `.tf`, `.yaml`, `nuget.config`,
`.p12`) never match a memory entry (`*.md`) and are not loaded.

High confidence: the rules that anchor on a fixed token prefix or armour (`ghp_`, `AKIA`,
`sk-ant-api03-`, `-----BEGIN ... PRIVATE KEY`, a JWT's `ey...ey`), where a match is the
credential's own shape. Left out: `generic-api-key` (a keyword then any long value), the
vendor rules that gitleaks builds with its semi-generic template (`adobe ... = <32 hex>`: a
vendor's name near a value of a common shape), and `curl-auth-*`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

RULES_FILE = Path(__file__).with_name("gitleaks.toml")

# gitleaks's generateSemiGenericRegex: "<keyword> ... = <value>", the vendor rules whose only
# anchor is a vendor name near a value of a common shape.
_SEMI_GENERIC = "(?i)[\\w.-]{0,50}?(?:"
_LAZY_PREFIX = "[\\w.-]{0,50}?"
_LOW_CONFIDENCE = frozenset({"generic-api-key", "curl-auth-header", "curl-auth-user"})
# gitleaks's token terminator (its generateUniqueTokenRegex), and memfs's for prose.
_TERMINATOR = "(?:[\\x60'\"\\s;]|\\\\[nr]|$)"
_PROSE_TERMINATOR = "(?:[\\x60'\"\\s;.,:!?)\\]}>&@]|\\\\[nr]|$)"
_POSIX_CLASSES = {
    "[:alnum:]": "a-zA-Z0-9",
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:lower:]": "a-z",
    "[:upper:]": "A-Z",
    "[:xdigit:]": "0-9a-fA-F",
    "[:space:]": "\\t\\n\\v\\f\\r ",
    "[:word:]": "\\w",
}


@dataclass(frozen=True)
class Allowlist:
    """One of gitleaks's allowlists, reduced to what applies to text (no paths or commits)."""

    target: str  # "secret", "match" or "line": what `regexes` are tried on
    regexes: tuple[re.Pattern[str], ...]
    stopwords: tuple[str, ...]  # lower case; allowed when the secret contains one
    all_of: bool  # condition = "AND": every check given must hold

    def allows(self, secret: str, match: str, line: str) -> bool:
        target = {"match": match, "line": line}.get(self.target, secret)
        checks = []
        if self.regexes:
            checks.append(any(r.search(target) for r in self.regexes))
        if self.stopwords:
            low = secret.lower()
            checks.append(any(w in low for w in self.stopwords))
        return all(checks) if self.all_of else any(checks)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    regex: re.Pattern[str]
    keywords: tuple[str, ...]  # lower case; the rule runs only on text holding one
    entropy: float  # the secret's Shannon entropy must exceed it (0: no check)
    secret_group: int  # 0: the first non-empty group, or the whole match
    allowlists: tuple[Allowlist, ...]
    high_confidence: bool


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    allowlist: Allowlist  # gitleaks's global one


def go_to_python(pattern: str, prose: bool = False) -> str:
    """Translate an RE2 pattern as gitleaks writes them to Python's `re` syntax."""
    if prose:
        pattern = pattern.replace(_TERMINATOR, _PROSE_TERMINATOR)
    pattern = _drop_leading_lazy_prefix(pattern)
    pattern = pattern.replace("\\z", "\\Z")
    for posix, spelled in _POSIX_CLASSES.items():
        pattern = pattern.replace(posix, spelled)
    return _scope_inline_flags(pattern)


def _drop_leading_lazy_prefix(pattern: str) -> str:
    for head, keep in ((_LAZY_PREFIX, ""), ("(?i)" + _LAZY_PREFIX, "(?i)"), ("(?i:" + _LAZY_PREFIX, "(?i:")):
        if pattern.startswith(head):
            return _drop_leading_lazy_prefix(keep + pattern[len(head) :])
    return pattern


def _scope_inline_flags(pattern: str) -> str:
    """`a(?i)b` -> `a(?i:b)`: a bare flag group after the start covers the rest of its group."""
    out: list[str] = []
    closers: list[int] = []  # per open group: how many scoped groups to close with it
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            # A ']' right after '[' or '[^' is a literal, in RE2 as in Python.
            j = i + 1
            if pattern.startswith("^", j):
                out.append("^")
                j += 1
            if pattern.startswith("]", j):
                out.append("]")
                j += 1
            i = j
            continue
        flags = re.match(r"\(\?([a-zA-Z]+)\)", pattern[i:])
        if flags and i > 0:
            out.append(f"(?{flags.group(1)}:")
            if closers:
                closers[-1] += 1
            else:
                closers.append(1)  # the pattern's top level: closed at the end
            i += flags.end()
            continue
        if c == "(":
            closers.append(0)
        elif c == ")" and closers:
            out.append(")" * closers.pop())
        out.append(c)
        i += 1
    out.append(")" * sum(closers))
    return "".join(out)


def _allowlist(raw: dict) -> Allowlist:
    return Allowlist(
        target=raw.get("regexTarget", "secret"),
        regexes=tuple(re.compile(go_to_python(r), re.ASCII) for r in raw.get("regexes", ())),
        stopwords=tuple(w.lower() for w in raw.get("stopwords", ())),
        all_of=raw.get("condition", "OR").upper() == "AND",
    )


def _high_confidence(raw: dict) -> bool:
    return raw["id"] not in _LOW_CONFIDENCE and not raw["regex"].startswith(_SEMI_GENERIC)


def load(path: Path = RULES_FILE, prose: bool = True) -> RuleSet:
    with open(path, "rb") as f:
        config = tomllib.load(f)
    rules = []
    for raw in config["rules"]:
        if "path" in raw or "regex" not in raw:
            continue
        rules.append(
            Rule(
                id=raw["id"],
                description=raw["description"],
                regex=re.compile(go_to_python(raw["regex"], prose), re.ASCII),
                keywords=tuple(k.lower() for k in raw.get("keywords", ())),
                entropy=float(raw.get("entropy", 0.0)),
                secret_group=int(raw.get("secretGroup", 0)),
                allowlists=tuple(_allowlist(a) for a in raw.get("allowlists", ())),
                high_confidence=_high_confidence(raw),
            )
        )
    return RuleSet(tuple(rules), _allowlist(config.get("allowlist", {})))
