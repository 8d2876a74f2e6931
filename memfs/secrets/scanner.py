"""Find credentials in a memory entry's text, as gitleaks would, without ever keeping them.

The rules are gitleaks's (see rules.py); the steps per rule are gitleaks's detectRule:
keyword prefilter on the lowered text, every regex match, the secret taken from the rule's
secret group (else the first non-empty group, else the whole match), Shannon entropy above
the rule's threshold, then the global and the rule's allowlists. Not done: gitleaks's
decoding pass (base64, hex or percent-encoded text scanned again), path-only rules, and the
`gitleaks:allow` comment (a memory entry is not code review: an agent could add it).

Two detect-secrets plugins (Yelp, Apache-2.0, a dependency) cover what no high-confidence
gitleaks rule looks at: BasicAuthDetector (`scheme://user:password@host`, so database URLs
too) and AzureStorageKeyDetector (`AccountKey=<88 base64>`). They run through their own
per-line API, `analyze_string(line)`, on the lines that hold their keyword; that is ~20 µs
an entry on the benchmark. Their import (requests among it, 0.13 CPU-s) waits for the first
line that holds a keyword, so a mount whose memory holds none never pays it. Its
KeywordDetector measured +2.1 points for 6x the time and 1 s per hostile MiB: not loaded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, final

from .rules import Rule, RuleSet, load

# Memory entries are a few KB; 1 MiB bounds a regex pass over a hostile write while
# covering any entry an agent writes on purpose.
MAX_SCAN_CHARS = 1 << 20
# One finding is enough to refuse a write; a hostile entry (1 MiB of `-----BEGIN RSA PRIVATE
# KEY-----` lines holds 8,192 matches) should not cost a line count and allowlist pass each.
MAX_FINDINGS = 100
# detect-secrets plugins: (module, class, keyword a line must hold, in lower case).
PLUGINS = {
    "BasicAuthDetector": ("detect_secrets.plugins.basic_auth", "://"),
    "AzureStorageKeyDetector": ("detect_secrets.plugins.azure_storage_key", "accountkey="),
}
# Keys the fingerprints for this process only: two findings of one secret compare equal
# (the guard asks "is this finding new?"), and a fingerprint cannot be tested against
# guesses anywhere else (never logged, never stored).
_FINGERPRINT_KEY = os.urandom(16)


class _Plugin(Protocol):
    secret_type: str

    def analyze_string(self, string: str) -> Iterable[str]: ...


@dataclass(frozen=True)
class Finding:
    rule: str  # the gitleaks rule id, or the detect-secrets plugin's class name
    line: int  # 1-based, where the match starts
    description: str
    redacted: str  # the secret's first 4 characters and "…": enough to find it, not to use it
    # a keyed hash of the secret (fingerprint()): the same secret twice, not its value
    fingerprint: str = field(default="", repr=False)

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule} ({self.redacted})"


class Findings(list[Finding]):
    """scan()'s answer: the findings, and whether the text was longer than was scanned."""

    truncated: bool = False  # the text was longer than max_chars, or had > MAX_FINDINGS


def shannon_entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def fingerprint(secret: str) -> str:
    return hashlib.blake2b(secret.encode(), key=_FINGERPRINT_KEY, digest_size=12).hexdigest()


def redact(secret: str) -> str:
    return secret[:4] + "…" if len(secret) > 8 else "…"


@final
class Scanner:
    """`Scanner().scan(text)`: the credentials in text, by rule and line, never the values.

    high_confidence (the default) loads only the rules anchored on a token's own shape (see
    rules.py and scripts/bench_secrets.py for the measurement); `allow` is a list of regexes:
    a secret (or its whole match) that one of them finds is not reported, so config can
    exempt known fakes; `plugins` names the detect-secrets plugins to run too (PLUGINS).
    """

    def __init__(
        self,
        *,
        high_confidence: bool = True,
        allow: Iterable[str] = (),
        max_chars: int = MAX_SCAN_CHARS,
        ruleset: RuleSet | None = None,
        plugins: Iterable[str] = tuple(PLUGINS),
    ) -> None:
        ruleset = ruleset or load()
        self._rules = tuple(r for r in ruleset.rules if r.high_confidence or not high_confidence)
        self._global = ruleset.allowlist
        self._allow = tuple(re.compile(p) for p in allow)
        self._max_chars = max_chars
        self._keywords = sorted({k for r in self._rules for k in r.keywords})
        self._plugins = tuple((name, PLUGINS[name][1]) for name in plugins)
        if self._plugins and importlib.util.find_spec("detect_secrets") is None:
            raise ModuleNotFoundError("detect_secrets is not installed")  # at start, not at a write

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self._rules] + [name for name, _ in self._plugins]

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
            for finding in self._scan_rule(rule, text):
                if len(found) >= MAX_FINDINGS:
                    found.truncated = True
                    break
                found.append(finding)
        for name, keyword in self._plugins:
            for finding in self._scan_plugin(name, keyword, text, lowered):
                if len(found) >= MAX_FINDINGS:
                    found.truncated = True
                    break
                found.append(finding)
        found.sort(key=lambda f: (f.line, f.rule))
        return found

    def _scan_rule(self, rule: Rule, text: str) -> Iterable[Finding]:
        counted, line_no = 0, 1  # lines counted up to `counted`: matches come in order
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
            line_no += text.count("\n", counted, start)
            counted = start
            yield Finding(rule.id, line_no, rule.description, redact(secret), fingerprint(secret))

    def _scan_plugin(self, name: str, keyword: str, text: str, lowered: str) -> Iterable[Finding]:
        start, line_no, counted = lowered.find(keyword), 1, 0
        if start < 0:
            return
        plugin = _plugin(name)
        while start >= 0:
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", start)
            line_end = line_end if line_end >= 0 else len(text)
            line = text[line_start:line_end]
            line_no += text.count("\n", counted, line_start)
            counted = line_start
            for secret in plugin.analyze_string(line):
                if self._global.allows(secret, line, line):
                    continue
                if any(p.search(secret) for p in self._allow):
                    continue
                yield Finding(name, line_no, plugin.secret_type, redact(secret), fingerprint(secret))
            start = lowered.find(keyword, line_end)


@functools.cache  # one stateless instance per process, made at its first use
def _plugin(name: str) -> _Plugin:
    module = importlib.import_module(PLUGINS[name][0])
    plugin: _Plugin = getattr(module, name)()
    return plugin


def _secret_of(rule: Rule, m: re.Match[str]) -> str | None:
    if rule.secret_group:
        return m.group(rule.secret_group)
    return next((g for g in m.groups() if g), None)
