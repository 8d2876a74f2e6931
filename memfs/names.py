"""Every name memfs builds from data, made in one place: version names, conflict copies,
the labels and times they carry, and the one way a path's bytes are shown. Pure: no I/O.

Authors, e-mails and times in a commit are whatever its pusher wrote. Before any of them
becomes part of a name or a log line they are reduced here: labels to a safe character
set and a bounded length, times into the range a UTC stamp can show. What comes out is
one ordinary path component (confine.bad_component accepts it), and the store's gate
checks it again on the way to the disk.
"""

from __future__ import annotations

import os
import re
import time

MAX_LABEL = 40  # characters of a user or host label in a name
# 0001-01-01 .. 9999-12-31: what a %Y stamp can show; outside it gmtime raises (EOVERFLOW)
MIN_TIME, MAX_TIME = -62135596800, 253402300799
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
STAMP = re.compile(r"\d{8}T\d{6}Z")  # what stamp() makes: a version name starts with one


def label(text: str | bytes, fallback: str = "unknown") -> str:
    """A name or address from outside as a short label of letters, digits, '.', '_', '-':
    no '/', space, parenthesis or control character, never empty, '.' or '..'."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = _UNSAFE.sub("_", text).strip("._")[:MAX_LABEL].strip("._")
    return out or fallback


def host_of(email: str | bytes) -> str:
    """The host a commit says it came from: the part of its e-mail after '@', as a label."""
    if isinstance(email, bytes):
        email = email.decode("utf-8", "replace")
    return label(email.rpartition("@")[2], "remote")


def via(user: str, host: str) -> str:
    """How a change that arrived by sync is attributed: never the same as a local user's.
    Both parts are labels, so the ' (via ' mark cannot be forged inside a name."""
    return f"{label(user)} (via {label(host, 'remote')})"


def clamp_time(t: int) -> tuple[int, bool]:
    """(a time a stamp can show, whether it had to be moved there)."""
    if t < MIN_TIME:
        return MIN_TIME, True
    if t > MAX_TIME:
        return MAX_TIME, True
    return t, False


def stamp(t: int) -> str:
    """UTC time as versions and copies are named with; any int is accepted (clamped)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clamp_time(t)[0]))


def version_name(path: bytes, t: int, user: str, row: int) -> bytes:
    """<UTC time>-<user>-<short id><the file's suffix>: sorts by time, says who. The id
    counts up in each scope, so versions made in one second still sort in order. A user
    that arrived by sync shows as `alice (via hostB)`."""
    suffix = os.path.splitext(path.rpartition(b"/")[2])[1]
    who = user if _is_via(user) else label(user)
    return f"{stamp(t)}-{who}-{row % (1 << 24):06x}".encode() + suffix


_VERSION = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<user>.+)-(?P<id>[0-9a-f]{6})(?P<suffix>\.[^./]*)?$")


def parse_version_name(name: str) -> tuple[str, str, str | None] | None:
    """version_name read back: (stamp, user, the host it came from by sync or None), or
    None for a name version_name did not make."""
    m = _VERSION.match(name)
    if m is None:
        return None
    user, sep, rest = m["user"].partition(" (via ")
    if sep:
        return (m["stamp"], user, rest[:-1]) if _is_via(m["user"]) else None
    return (m["stamp"], user, None) if label(user) == user else None


def _is_via(user: str) -> bool:
    name, sep, rest = user.partition(" (via ")
    return bool(sep) and rest.endswith(")") and label(name) == name and label(rest[:-1]) == rest[:-1]


def conflict_name(path: bytes, host: str, when: int) -> bytes:
    """notes/x.md -> notes/x.conflict-<host>-<UTC time>.md: the other side's version kept
    beside ours, in the same folder, whatever `host` held."""
    folder, _, name = path.rpartition(b"/")
    root, suffix = os.path.splitext(name)
    if not root:  # '.bashrc': no suffix to keep after the mark
        root, suffix = name, b""
    copy = root + f".conflict-{label(host, 'remote')}-{stamp(when)}".encode() + suffix
    return folder + b"/" + copy if folder else copy


# What conflict_name makes, read back: the original's name is stem + suffix.
CONFLICT_COPY = re.compile(r"^(?P<stem>.*)\.conflict-(?P<host>[^/]+?)-\d{8}T\d{6}Z(?P<suffix>\.[^./]*)?$")


def conflict_original(path: str) -> tuple[str, str] | None:
    """(the file a conflict copy was kept beside, the host it came from), or None."""
    m = CONFLICT_COPY.match(path)
    return None if m is None else (m["stem"] + (m["suffix"] or ""), m["host"])


# -- paths shown as text ----------------------------------------------------------------
_ESCAPES = {"\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r"}  # as git
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}


def quote_path(path: bytes) -> str:
    """A path as a person or a client is shown it, everywhere (log lines, .memfs/log,
    search results, status, CLI output), and as commit trailers carry it: as is when
    printable UTF-8 without ' -> ', else in C-style quotes (as git quotes paths). One
    token of one line whatever the name holds (a newline cannot forge a line), and
    unambiguous: unquote_path gives the bytes back."""
    try:
        text = path.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and " -> " not in text and not text.startswith('"'):
        return text
    out = []
    for b in path:
        c = chr(b)
        if c in _ESCAPES:
            out.append("\\" + _ESCAPES[c])
        elif c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def unquote_path(token: str) -> bytes:
    if not (token.startswith('"') and token.endswith('"') and len(token) >= 2):
        return token.encode()
    out, i, s = bytearray(), 0, token[1:-1]
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            if s[i + 1] in "01234567":
                out.append(int(s[i + 1 : i + 4], 8))
                i += 4
                continue
            out += _UNESCAPES.get(s[i + 1], s[i + 1]).encode()
            i += 2
            continue
        out += s[i].encode()
        i += 1
    return bytes(out)
