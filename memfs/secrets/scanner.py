"""Find credentials in a memory entry's text, as gitleaks would, without ever keeping them.

The rules are gitleaks's (see rules.py); the steps per rule are gitleaks's detectRule:
keyword prefilter on the lowered text, every regex match, the secret taken from the rule's
secret group (else the first non-empty group, else the whole match), Shannon entropy above
the rule's threshold, then the global and the rule's allowlists. Not done: gitleaks's
decoding pass (base64, hex or percent-encoded text scanned again), path-only rules, and the
`gitleaks:allow` comment (a memory entry is not code review: an agent could add it).

plugins.py runs what gitleaks leaves to others (URL passwords, secrets assigned to names,
Azure storage keys: detect-secrets plugins, tuned there). The choice and its numbers:
scripts/bench_secrets.py.

Base64: like gitleaks's decoding pass (one level here), every run of base64 at least
MIN_B64 long, across wrapped lines too, is decoded and, when it is text, scanned again; a
finding in it is reported at the run's line. Not decoded: hex, percent-encoding beyond what
UrlPassword reads, base64 inside base64, compressed data.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import dataclasses
import hashlib
import importlib
import importlib.util
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import final

from ..once import Once
from .plugins import SPECS, Filters, Plugin, Spec
from .rules import Allowlist, Rule, RuleSet, load

# Memory entries are a few KB; 1 MiB bounds a regex pass over a hostile write while
# covering any entry an agent writes on purpose.
MAX_SCAN_CHARS = 1 << 20
# One finding is enough to refuse a write; a hostile entry (1 MiB of `-----BEGIN RSA PRIVATE
# KEY-----` lines holds 8,192 matches) should not cost a line count and allowlist pass each.
MAX_FINDINGS = 100
# Base64 runs shorter than this are not decoded: the shortest credential decoded from one
# (a 20-character GitLab token) takes 28; the run may wrap over lines, as `base64` does at 76.
MIN_B64 = 28
# What a plugin reads around a keyword of its own (see _segments): any credential's
# assignment or URL fits, and a plugin's regexes cost per character read.
SEGMENT_BEFORE, SEGMENT_AFTER = 256, 1024
# Characters each plugin reads per scan, at most: a guarded write's window (128 KiB and the
# write) of ordinary text holds far fewer keyword lines; 1 MiB of `api_key=` repeated
# would cost detect-secrets's KeywordDetector ~2 s; a key past the budget is still found by the
# gitleaks rules if it has a shape of its own.
PLUGIN_CHARS = 128 * 1024
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{4,}(?:={0,2}\n?[A-Za-z0-9+/_-]{4,})*={0,2}")
# Keys the fingerprints for this process only: two findings of one secret compare equal
# (the guard asks "is this finding new?"), and a fingerprint cannot be tested against
# guesses anywhere else (never logged, never stored).
_FINGERPRINT_KEY = os.urandom(16)


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


@dataclass(frozen=True)
class _Compiled:
    """What a Scanner runs, from the rule set: made once, on its first scan."""

    rules: tuple[Rule, ...]
    allowlist: Allowlist  # gitleaks's global one
    keywords: list[str]  # every rule's, sorted: the prefilter
    filters: Filters

    @classmethod
    def of(cls, ruleset: RuleSet, high_confidence: bool) -> _Compiled:
        rules = tuple(r for r in ruleset.rules if r.high_confidence or not high_confidence)
        generic = next((r for r in ruleset.rules if r.id == "generic-api-key"), None)
        filters = Filters((ruleset.allowlist, *(generic.allowlists if generic else ())))
        return cls(rules, ruleset.allowlist, sorted({k for r in rules for k in r.keywords}), filters)


@final
class Scanner:
    """`Scanner().scan(text)`: the credentials in text, by rule and line, never the values.

    high_confidence (the default) loads only the rules anchored on a token's own shape (see
    rules.py and scripts/bench_secrets.py for the measurement); `allow` is a list of regexes:
    a secret (or its whole match) that one of them finds is not reported, so config can
    exempt known fakes; `plugins` names the plugins.py detectors to run too (SPECS);
    `decode` scans base64 runs again, decoded.
    """

    def __init__(
        self,
        *,
        high_confidence: bool = True,
        allow: Iterable[str] = (),
        max_chars: int = MAX_SCAN_CHARS,
        ruleset: RuleSet | None = None,
        plugins: Iterable[str] = tuple(SPECS),
        decode: bool = True,
    ) -> None:
        self._given = ruleset
        self._high = high_confidence
        # compiled on the first scan (_compiled; scans run in worker threads): ~0.1 CPU-s, at
        # every mount's start before, though most mounts scan nothing in the daemon
        self._ready: Once[_Compiled] = Once(lambda: _Compiled.of(self._given or load(), self._high))
        self._allow = tuple(re.compile(p) for p in allow)  # a bad pattern: an error now
        self._max_chars = max_chars
        # made on the first line that holds a plugin's keyword: detect-secrets's import
        # (requests among it) is ~0.13 CPU-s, and most mounts' memory never needs it
        self._plugins = tuple((name, SPECS[name]) for name in plugins)
        self._made: dict[str, Plugin] = {}
        if self._plugins and importlib.util.find_spec("detect_secrets") is None:
            raise ModuleNotFoundError("detect_secrets is not installed")  # at start, not at a write
        self._decode = decode

    def _compiled(self) -> _Compiled:
        return self._ready.get()

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self._compiled().rules] + [name for name, _ in self._plugins]

    def scan(self, text: str | bytes) -> Findings:
        if isinstance(text, bytes):
            text = text[: self._max_chars * 4].decode("utf-8", "replace")
        found = Findings()
        if len(text) > self._max_chars:
            text = text[: self._max_chars]
            found.truncated = True
        found.extend(self._scan_text(text, found))
        if self._decode and len(found) < MAX_FINDINGS:
            decoded, lines = _decoded(text)
            for f in self._scan_text(decoded, found) if decoded else ():
                found.append(
                    dataclasses.replace(f, line=lines[bisect.bisect_right(lines, (f.line, 1 << 62)) - 1][1])
                )
        if len(found) > MAX_FINDINGS:
            del found[MAX_FINDINGS:]
            found.truncated = True
        found.sort(key=lambda f: (f.line, f.rule))
        return found

    def _scan_text(self, text: str, found: Findings) -> Iterator[Finding]:
        c = self._compiled()
        lowered = text.lower()
        present = {k for k in c.keywords if k in lowered}
        budget = MAX_FINDINGS + 1 - len(found)
        for rule in c.rules:
            if rule.keywords and present.isdisjoint(rule.keywords):
                continue
            for finding in itertools.islice(self._scan_rule(c, rule, text), budget):
                budget -= 1
                yield finding
        for name, spec in self._plugins:
            for finding in itertools.islice(self._scan_plugin(c, name, spec, text, lowered), budget):
                budget -= 1
                yield finding

    def _scan_rule(self, c: _Compiled, rule: Rule, text: str) -> Iterable[Finding]:
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
            if c.allowlist.allows(secret, match, line):
                continue
            if any(a.allows(secret, match, line) for a in rule.allowlists):
                continue
            if any(p.search(secret) or p.search(match) for p in self._allow):
                continue
            line_no += text.count("\n", counted, start)
            counted = start
            yield Finding(rule.id, line_no, rule.description, redact(secret), fingerprint(secret))

    def _plugin(self, name: str, spec: Spec) -> Plugin:
        plugin = self._made.get(name)
        if plugin is None:
            plugin = self._made[name] = spec.make()
        return plugin

    def _scan_plugin(self, c: _Compiled, name: str, spec: Spec, text: str, lowered: str) -> Iterable[Finding]:
        line_no, counted = 1, 0
        for line_start, line in _segments(text, lowered, spec.keywords):
            plugin = self._plugin(name, spec)
            line_no += text.count("\n", counted, line_start)
            counted = line_start
            for secret in plugin.analyze_string(line):
                if c.allowlist.allows(secret, line, line):
                    continue
                if spec.filtered and c.filters.allows(secret, line, spec.by_line, spec.stopwords):
                    continue
                if any(p.search(secret) for p in self._allow):
                    continue
                yield Finding(name, line_no, plugin.secret_type, redact(secret), fingerprint(secret))


def _segments(text: str, lowered: str, keywords: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    """(start, text) of the pieces of text a plugin reads, in order: the line around each
    keyword, cut to SEGMENT_BEFORE/SEGMENT_AFTER characters of it (a hostile 1 MiB line
    would otherwise cost detect-secrets's unanchored regexes seconds), overlaps merged,
    PLUGIN_CHARS in all."""
    nexts = [lowered.find(k) for k in keywords]  # each keyword's next hit at or after pos
    pos, budget = 0, PLUGIN_CHARS
    while budget > 0:
        nexts = [
            i if i < 0 or i >= pos else lowered.find(k, pos) for i, k in zip(nexts, keywords, strict=True)
        ]
        hits = [i for i in nexts if i >= 0]
        if not hits:
            return
        hit = min(hits)
        line_start = text.rfind("\n", 0, hit) + 1
        line_end = text.find("\n", hit)
        line_end = line_end if line_end >= 0 else len(text)
        start = max(line_start, hit - SEGMENT_BEFORE, pos)
        end = min(line_end, hit + SEGMENT_AFTER, start + budget)
        yield start, text[start:end]
        budget -= end - start
        pos = end if end < line_end else line_end + 1


def _decoded(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The base64 runs of text that decode to text, one a line, and for each the pair
    (its line in the answer, its line in text), sorted: a finding's line maps back."""
    parts: list[str] = []
    lines: list[tuple[int, int]] = []
    at, counted, line_no = 1, 0, 1
    for m in _B64_RUN.finditer(text):
        run = m.group(0).replace("\n", "")
        if len(run) < MIN_B64:
            continue
        plain = _b64_text(run)
        if plain is None:
            continue
        line_no += text.count("\n", counted, m.start())
        counted = m.start()
        lines.append((at, line_no))
        parts.append(plain)
        at += plain.count("\n") + 1
    return "\n".join(parts), lines


def _b64_text(run: str) -> str | None:
    """run decoded, if it is UTF-8 text (no control characters but tab and newline)."""
    run = run.rstrip("=")
    run = run[: len(run) - len(run) % 4] if len(run) % 4 == 1 else run
    try:
        raw = base64.b64decode(run.replace("-", "+").replace("_", "/") + "=" * (-len(run) % 4))
        plain = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return None if _CONTROL.search(plain) else plain


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _secret_of(rule: Rule, m: re.Match[str]) -> str | None:
    if rule.secret_group:
        return m.group(rule.secret_group)
    return next((g for g in m.groups() if g), None)
