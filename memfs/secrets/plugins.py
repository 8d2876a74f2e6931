"""What the gitleaks rules leave to others: detect-secrets plugins, run as memfs tunes them.

gitleaks's high-confidence rules find every credential with a shape of its own; three kinds
issue 24 lists have none (scripts/bench_secrets.py: 0% each): a password in a URL, a
secret assigned to a name (`.env` lines, `SECRET_KEY = "..."`) and a connection string.
detect-secrets (Yelp, Apache-2.0, a dependency) covers them:
  - AzureStorageKeyDetector: `AccountKey=<88 base64>`, as shipped.
  - KeywordDetector with the regexes detect-secrets itself uses for config files (`.env`,
    `.ini`, YAML: a value after `=` or `:`, quoted or not) on every line: a memory entry's
    code blocks and `.env` snippets are config files without the name that would pick them.
    Its value then passes detect-secrets's own false-positive filters (templates, `$VAR`,
    `os.environ[...]`, UUIDs, ids, sequences) and gitleaks's for its generic-api-key rule
    (global and rule allowlists: placeholders, stopwords, names made of letters and dots),
    and must hold a digit or a symbol: `password: hunter` is prose, not a credential.
  - PrivateKeyDetector: a PEM armour's BEGIN line, so a key sent in pieces is refused at
    its first line, not only at its END (the body's lines alone are base64 like any other).
  - UrlPassword replaces BasicAuthDetector: the same `scheme://user:password@` but with RFC
    3986's userinfo grammar, whose sub-delimiters (`!$&'()*+,;=`) BasicAuthDetector refuses
    (it assumes they would break the URL; they do not, and most human passwords hold one:
    it found 35% of the benchmark's URL passwords, this 100%). No maintained rule set has
    one; it is the only regex memfs writes.
Each runs per line on the lines that hold one of its keywords (the prefilter), through the
plugin's own `analyze_string`.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, final

from .rules import Allowlist

# RFC 3986 3.2.1: userinfo = *( unreserved / pct-encoded / sub-delims / ":" ), and the
# scheme grammar of 3.1. A password of a placeholder's shape (`${PW}`, `<password>`,
# `****`) is dropped by the filters below, as a keyword value would be.
_USERINFO = r"[A-Za-z0-9._~%!$&'()*+,;=-]"
_URL_PASSWORD = re.compile(rf"\b[A-Za-z][A-Za-z0-9+.-]*://{_USERINFO}+:({_USERINFO}+)@", re.ASCII)
_NOT_ONLY_LETTERS = set(string.digits + string.punctuation)


class Plugin(Protocol):
    secret_type: str

    def analyze_string(self, string: str) -> Iterable[str]: ...


@final
class UrlPassword:
    secret_type = "Password in a URL"

    def analyze_string(self, string: str) -> Iterable[str]:
        return (m.group(1) for m in _URL_PASSWORD.finditer(string))


@final
class _TunedKeyword:
    """detect-secrets's KeywordDetector with its config-file regexes (see the docstring)."""

    def __init__(self) -> None:
        from detect_secrets.plugins import keyword

        self._plugin = keyword.KeywordDetector()
        self._regexes = keyword.CONFIG_DENYLIST_REGEX_TO_GROUP
        self.secret_type = self._plugin.secret_type

    def analyze_string(self, string: str) -> Iterable[str]:
        for secret in self._plugin.analyze_string(string, self._regexes):
            # Its config value runs to the line's end; a value is one token (a quoted one
            # ends at the quote, which the regex already cut).
            token = secret.split(maxsplit=1)[0].rstrip(";,") if secret.strip() else ""
            if token:
                yield token


@dataclass(frozen=True)
class Spec:
    keywords: tuple[str, ...]  # lower case; the plugin runs on the lines holding one
    make: Callable[[], Plugin]
    filtered: bool  # its values pass Filters (else its own regex is the whole test)
    by_line: bool = False  # and Filters's tests of the line around the value
    # gitleaks's generic-key stopwords allow a value holding one ("conf", "vim", "hub"...):
    # right for a bare `key = value`, wrong for a value the syntax marks as a password
    # (1% of random 15-character URL passwords held one and passed, measured)
    stopwords: bool = True


def _detect_secrets(module: str, name: str) -> Callable[[], Plugin]:
    def make() -> Plugin:
        plugin: Plugin = getattr(importlib.import_module(module), name)()
        return plugin

    return make


# detect-secrets's KeywordDetector DENYLIST, reduced to the substrings its regexes need.
_KEYWORD_WORDS = ("key", "pass", "pwd", "secret", "contrase")

SPECS: dict[str, Spec] = {
    "UrlPassword": Spec(("://",), UrlPassword, filtered=True, stopwords=False),
    "AzureStorageKeyDetector": Spec(
        ("accountkey=",),
        _detect_secrets("detect_secrets.plugins.azure_storage_key", "AzureStorageKeyDetector"),
        filtered=False,
    ),
    "KeywordDetector": Spec(_KEYWORD_WORDS, _TunedKeyword, filtered=True, by_line=True),
    # The armour's first line alone: gitleaks's private-key rule needs BEGIN to END, so a
    # key written in small pieces would land line by line until its END line.
    "PrivateKeyDetector": Spec(
        ("private key", "putty-user-key"),
        _detect_secrets("detect_secrets.plugins.private_key", "PrivateKeyDetector"),
        filtered=False,
    ),
}


@final
class Filters:
    """The false-positive filters a keyword or URL value passes: detect-secrets's heuristics
    and gitleaks's allowlists for its generic-api-key rule (handed in from the loaded set)."""

    def __init__(self, allowlists: Iterable[Allowlist]) -> None:
        self._h: Any = None  # detect-secrets's heuristics, imported at the first value to judge
        self._allowlists = tuple(allowlists)

    def allows(self, secret: str, line: str, by_line: bool, stopwords: bool = True) -> bool:
        if self._h is None:
            from detect_secrets.filters import heuristic

            self._h = heuristic
        h = self._h
        if by_line and (h.is_indirect_reference(line) or h.is_likely_id_string(secret, line)):
            return True
        return (
            not _NOT_ONLY_LETTERS.intersection(secret)
            or h.is_templated_secret(secret)
            or h.is_prefixed_with_dollar_sign(secret)
            or h.is_not_alphanumeric_string(secret)
            or h.is_sequential_string(secret)
            or h.is_potential_uuid(secret)
            or (stopwords and any(a.allows(secret, secret, line) for a in self._allowlists))
        )
