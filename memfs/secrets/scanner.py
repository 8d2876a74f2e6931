"""Find credentials in a memory entry's text, as gitleaks would, without ever keeping them.

The rules are gitleaks's (see rules.py); the steps per rule are gitleaks's detectRule:
keyword prefilter on the lowered text, every regex match, the secret taken from the rule's
secret group (else the first non-empty group, else the whole match), Shannon entropy above
the rule's threshold, then the global and the rule's allowlists. Not done: gitleaks's
decoding pass (base64, hex or percent-encoded text scanned again), path-only rules, and the
`gitleaks:allow` comment (a memory entry is not code review: an agent could add it).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from .rules import Rule, RuleSet, load

# Memory entries are a few KB; 1 MiB bounds a regex pass over a hostile write while
# covering any entry an agent writes on purpose.
MAX_SCAN_CHARS = 1 << 20


@dataclass(frozen=True)
class Finding:
    rule: str  # the gitleaks rule id
    line: int  # 1-based, where the match starts
    description: str
    redacted: str  # the secret's first 4 characters and "…": enough to find it, not to use it

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule} ({self.redacted})"


class Findings(list[Finding]):
    """scan()'s answer: the findings, and whether the text was longer than was scanned."""

    truncated: bool = False


def shannon_entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def redact(secret: str) -> str:
    return secret[:4] + "…" if len(secret) > 8 else "…"


@final
class Scanner:
    """`Scanner().scan(text)`: the credentials in text, by rule and line, never the values.

    high_confidence (the default) loads only the rules anchored on a token's own shape (see
    rules.py and scripts/bench_secrets.py for the measurement); `allow` is a list of regexes:
    a secret (or its whole match) that one of them finds is not reported, so config can
    exempt known fakes.
    """

    def __init__(
        self,
        *,
        high_confidence: bool = True,
        allow: Iterable[str] = (),
        max_chars: int = MAX_SCAN_CHARS,
        ruleset: RuleSet | None = None,
    ) -> None:
        ruleset = ruleset or load()
        self._rules = tuple(r for r in ruleset.rules if r.high_confidence or not high_confidence)
        self._global = ruleset.allowlist
        self._allow = tuple(re.compile(p) for p in allow)
        self._max_chars = max_chars
        self._keywords = sorted({k for r in self._rules for k in r.keywords})

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self._rules]

    def scan(self, text: str | bytes) -> Findings:
        if isinstance(text, bytes):
            text = text[: self._max_chars * 4].decode("utf-8", "replace")
        found = Findings()
        if len(text) > self._max_chars:
            text = text[: self._max_chars]
            found.truncated = True
        lowered = text.lower()
        present = {k for k in self._keywords if k in lowered}
        for rule in self._rules:
            if rule.keywords and present.isdisjoint(rule.keywords):
                continue
            found.extend(self._scan_rule(rule, text))
        found.sort(key=lambda f: (f.line, f.rule))
        return found

    def _scan_rule(self, rule: Rule, text: str) -> Iterable[Finding]:
        for m in rule.regex.finditer(text):
            match = m.group(0).strip("\n")
            secret = _secret_of(rule, m) or match
            if rule.entropy and shannon_entropy(secret) <= rule.entropy:
                continue
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip("\n")))
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", start)
            line = text[line_start : line_end if line_end >= 0 else len(text)]
            if self._global.allows(secret, match, line):
                continue
            if any(a.allows(secret, match, line) for a in rule.allowlists):
                continue
            if any(p.search(secret) or p.search(match) for p in self._allow):
                continue
            yield Finding(rule.id, text.count("\n", 0, start) + 1, rule.description, redact(secret))


def _secret_of(rule: Rule, m: re.Match[str]) -> str | None:
    if rule.secret_group:
        return m.group(rule.secret_group)
    return next((g for g in m.groups() if g), None)
