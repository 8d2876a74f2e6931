"""Importers: bring existing agent memory into DATA/, idempotently.

Sources:
- dir:    a memory directory as agents keep it (MEMORY.md + entries, optional team/)
- legacy: a bot service's single global layout: memory/MEMORY.md (the named user) and
          memory/<chat_id>/MEMORY.md (users mapped by users.<name>.aliases)
- json:   a per-user JSON store: users/<user_id>/{short_term,mid_term,long_term_user}.json

Nothing is ever overwritten: an existing file with other content is kept and reported;
MEMORY.md files are merged line by line. Running an import twice changes nothing.

Root runs this on folders other users own: nothing in a source is followed (Folder), and
only --user's memory and its team's are written (_only_for); the rest is skipped, with why.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import confine, entry, layout, owners
from .config import Config
from .layout import SCOPE_DIRS
from .names import quote_path
from .policy import Kind, Scope

CATEGORY_TYPES = {
    "preference": "feedback",
    "preferences": "feedback",
    "feedback": "feedback",
    "correction": "feedback",
    "project": "project",
    "task": "project",
    "profile": "user",
    "user": "user",
}


class ImportFailed(Exception):
    """The source cannot be imported as asked; the message says why in one line."""


@dataclass
class Item:
    scope: Scope
    rel: str
    content: bytes
    source: str


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    written: list[Path] = field(default_factory=list)  # backing paths changed

    def summary(self, dry_run: bool) -> str:
        verb = "would create" if dry_run else "created"
        lines = [
            f"{verb} {len(self.created)}, merged {len(self.merged)} index files, skipped {len(self.skipped)}"
        ]
        for why, n in Counter(why for _, why in self.skipped).most_common():
            lines.append(f"  skipped {n}: {why}")
        return "\n".join(lines)


# -- reading without following ------------------------------------------------------------------
# The source may belong to someone else, who can swap any entry for a symlink at any moment (to
# /etc/shadow, to /root). So every name is opened relative to its parent's fd with O_NOFOLLOW, the
# type is checked with fstat on the fd we hold and the content read from that fd: there is no
# window between a check and a use. O_NONBLOCK: opening a fifo must not wait for a writer.
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64  # deeper folders are refused: a planted deep tree must not exhaust fds or the stack


class Refused(Exception):
    """One entry is not read (or written); the message says why, in a few words."""


def _why(e: OSError) -> str:
    return "symbolic link (not followed)" if e.errno == errno.ELOOP else e.strerror or str(e)


def _open(path: Path | str, flags: int, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """The fd and what it is (fstat on the fd itself); FileNotFoundError passes through."""
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Refused(_why(e)) from None
    return fd, os.fstat(fd)


def _folder_of(fd: int, st: os.stat_result, path: Path, limit: int | None) -> Folder:
    if not stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise Refused("not a directory")
    return Folder(fd, path, limit)


def _one_name(name: str) -> None:
    """An import target is one ordinary name in its folder (the store's gate, applied to
    the folders this importer holds open itself)."""
    raw = os.fsencode(name)
    if b"/" in raw:
        raise Refused(f"{name!r} is not one name")
    try:
        confine.check(raw)
    except OSError as e:
        raise Refused(e.strerror) from None


class Folder:
    """A directory held open by fd; names in it are opened relative to that fd, never followed.
    FileNotFoundError passes through: callers treat a missing name as absent."""

    def __init__(self, fd: int, path: Path, limit: int | None):
        self.fd, self.path, self.limit = fd, path, limit

    @classmethod
    def open(cls, path: Path, limit: int | None = None, follow: bool = False) -> Folder:
        """`path`, resolved once by the kernel; its last name is not followed unless `follow`."""
        return _folder_of(*_open(path, _OPEN & ~os.O_NOFOLLOW if follow else _OPEN), path, limit)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def dirnames(self) -> list[str]:
        """Names listed as folders (symlinks are not). A hint for planning only: subdir() checks
        again on the fd it opens."""
        with os.scandir(self.fd) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))

    def subdir(self, name: str, create: bool = False, owner: str | None = None) -> Folder:
        _one_name(name)
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=self.fd)
                if owner is not None:  # a folder this import made is --user's, as its files
                    self._record(name, owner)
        return _folder_of(*_open(name, _OPEN, self.fd), self.path / name, self.limit)

    def get(self, name: str) -> Folder | bytes:
        """A Folder (to close) for a directory, the content of a regular file; else Refused."""
        fd, st = _open(name, _OPEN, self.fd)
        if stat.S_ISDIR(st.st_mode):
            return Folder(fd, self.path / name, self.limit)
        try:
            if not stat.S_ISREG(st.st_mode):
                raise Refused("not a regular file")
            too_big = Refused(f"larger than limits.max_file_bytes ({self.limit} bytes)")
            if self.limit is not None and st.st_size > self.limit:
                raise too_big
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read() if self.limit is None else f.read(self.limit + 1)
            if self.limit is not None and len(data) > self.limit:  # it grew since fstat
                raise too_big
            return data
        finally:
            os.close(fd)

    def read(self, name: str) -> bytes:
        got = self.get(name)
        if isinstance(got, Folder):
            got.close()
            raise Refused("not a regular file")
        return got

    def walk(self, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, bytes | Refused]]:
        """(relative posix path, content or why not) for every file below, in name order."""
        for name in self.names():
            rel = prefix + name
            try:
                got = self.get(name)
            except FileNotFoundError:
                continue  # removed since it was listed
            except Refused as e:
                yield rel, e
                continue
            if isinstance(got, bytes):
                yield rel, got
                continue
            with got:
                if depth >= MAX_DEPTH:
                    yield rel, Refused(f"folders nested deeper than {MAX_DEPTH}")
                else:
                    yield from got.walk(rel + "/", depth + 1)

    def _record(self, name: str, owner: str) -> None:
        try:
            confine.setxattr_at(self.fd, os.fsencode(name), owners.ATTR, owners.encode(owner))
        except OSError as e:
            owners.unwritable(e)

    def _owner_of(self, name: str) -> str | None:
        try:
            return owners.decode(confine.getxattr_at(self.fd, os.fsencode(name), owners.ATTR))
        except OSError as e:
            owners.unreadable(e)
            return None

    def write(self, name: str, data: bytes, owner: str | None = None) -> None:
        """Replace `name` atomically with a temp file this call creates (O_EXCL: never an
        existing file or a symlink left in its place). The file records `owner` as its
        creator, or keeps the one it had (a merged MEMORY.md stays its maker's)."""
        _one_name(name)
        owner = self._owner_of(name) or owner
        tmp = f".{name}.memfs-import"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=self.fd)  # left by an interrupted import; unlink never follows
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=self.fd)
        try:
            if owner is not None:
                owners.record_fd(fd, owner)
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)


def _top(src: Folder, name: str) -> Folder:
    """The folder a format is built on (memory/, users/): without it the source is not that format."""
    try:
        return src.subdir(name)
    except (Refused, FileNotFoundError) as e:
        raise ImportFailed(f"source {src.path} has no {name}/ folder ({_reason(e)})") from None


# -- detection ---------------------------------------------------------------------------------
JSON_FILES = {"short_term.json", "mid_term.json", "long_term_user.json"}


def detect(src: Folder) -> str:
    """The format, from names only: the planner then opens what it reads without following."""
    dirs = src.dirnames()
    if "users" in dirs:
        with contextlib.suppress(Refused, FileNotFoundError), src.subdir("users") as users:
            for name in users.dirnames():
                with contextlib.suppress(Refused, FileNotFoundError), users.subdir(name) as d:
                    if JSON_FILES & set(d.names()):
                        return "json"
    return "legacy" if "memory" in dirs else "dir"


# -- planning ----------------------------------------------------------------------------------
def plan_dir(src: Folder, user: str, team: str | None, report: Report) -> list[Item]:
    items = []
    private = Scope(Kind.PRIVATE, user)
    for rel, got in src.walk():
        shown = _shown(src.path / rel)
        if isinstance(got, Refused):
            report.skipped.append((shown, str(got)))
            continue
        scope, dest = private, rel
        if rel.startswith("team/"):
            if team is None:
                report.skipped.append((shown, "team/ file but no team (give --team or users.<name>.team)"))
                continue
            scope, dest = Scope(Kind.TEAM, team), rel[len("team/") :]
        elif rel in ("team", ".memfs") or rel.startswith(".memfs/"):
            report.skipped.append((shown, "reserved name in a memfs root"))
            continue
        items.append(Item(scope, dest, got, shown))
    return items


def _chat_users(config: Config) -> dict[str, str]:
    return {str(alias): u.name for u in config.users.values() for alias in u.aliases}


def plan_legacy(src: Folder, user: str, config: Config, report: Report) -> list[Item]:
    items = []
    chats = _chat_users(config)
    with _top(src, "memory") as mem:
        for name in mem.names():
            shown = _shown(mem.path / name)
            try:
                got = mem.get(name)
            except FileNotFoundError:
                continue
            except Refused as e:
                report.skipped.append((shown, str(e)))
                continue
            if isinstance(got, bytes):
                items.append(Item(Scope(Kind.PRIVATE, user), name, got, shown))
                continue
            with got:
                owner = chats.get(name)
                if owner is None:
                    report.skipped.append(
                        (shown, f"chat {name} has no user (add it to users.<name>.aliases)")
                    )
                    continue
                items += plan_dir(got, owner, None, report)
    return items


def _slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "item"


def _entry(name: str, description: str, type_: str, body: str, extra: dict | None = None) -> bytes:
    meta = {"name": name, "description": description, "type": type_}
    meta.update(extra or {})
    fm = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{fm}---\n{body.rstrip()}\n".encode()


def _load_json(d: Folder, name: str, report: Report):
    """The parsed file; None when it is absent or unusable (then reported)."""
    try:
        return json.loads(d.read(name))
    except FileNotFoundError:
        return None
    except Refused as e:
        report.skipped.append((_shown(d.path / name), str(e)))
    except (OSError, ValueError) as e:
        report.skipped.append((_shown(d.path / name), f"unreadable JSON: {e}"))
    return None


# What the json format reads, and nothing else (README, "Import and doctor"): every other
# top-level key of these files is reported, and an item without a text field is reported
# rather than made an empty entry. Never dropped silently.
LONG_TERM_LISTS = ("knowledge", "knowledge_base", "assistant_knowledge", "facts", "items")
MID_TERM_LISTS = ("summaries", "sessions", "knowledge", "items")
TEXT_FIELDS = ("content", "summary", "text", "fact", "knowledge", "memory")
TITLE_FIELDS = ("topic", "title")
KIND_FIELDS = ("category", "type")
RESERVED = {"name", "description", "type"}  # frontmatter keys the importer sets itself


def _items_of(data, keys, where: str, report: Report) -> list:
    """The items under the first of `keys` holding a list (or, like MemoryOS's mid-term
    `sessions`, a mapping of id -> item); the file's other keys are reported as not read."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        if data is not None:
            report.skipped.append((where, f"not a JSON object or list ({type(data).__name__}): not read"))
        return []
    found: list = []
    used = None
    for k in keys:
        v = data.get(k)
        if isinstance(v, list):
            found, used = v, k
            break
        if isinstance(v, dict):
            found, used = (
                [
                    dict(item, id=item.get("id", i)) if isinstance(item, dict) else item
                    for i, item in v.items()
                ],
                k,
            )
            break
    for k in data:
        if k != used and k != "profile":
            report.skipped.append((f"{where}#{k}", f"key not read (memfs reads {', '.join(keys)})"))
    return found


def plan_json(src: Folder | Path, user: str | None, config: Config, report: Report) -> list[Item]:
    if isinstance(src, Path):  # called on its own rather than through plan()
        with Folder.open(src, config.limits.max_file_bytes) as root:
            return plan_json(root, user, config, report)
    chats = _chat_users(config)
    items = []
    with _top(src, "users") as users:
        ids = users.dirnames()
        for name in ids:
            shown = _shown(users.path / name)
            owner = chats.get(name) or (name if name in config.users else None)
            if owner is None and user is not None and len(ids) == 1:
                owner = user
            if owner is None:
                report.skipped.append((shown, f"user id {name} has no user (add it to users.<name>.aliases)"))
                continue
            try:
                d = users.subdir(name)
            except FileNotFoundError:
                continue
            except Refused as e:
                report.skipped.append((shown, str(e)))
                continue
            with d:
                items += _plan_json_user(d, Scope(Kind.PRIVATE, owner), report)
    return items


def _plan_json_user(d: Folder, scope: Scope, report: Report) -> list[Item]:
    items = []
    if "short_term.json" in d.names():
        report.skipped.append(
            (_shown(d.path / "short_term.json"), "short-term conversation buffer, not memory")
        )
    long = _load_json(d, "long_term_user.json", report)
    long_where = _shown(d.path / "long_term_user.json")
    if isinstance(long, dict) and (profile := _profile(long.get("profile"), scope, d.path)) is not None:
        items.append(profile)
    for i, k in enumerate(_items_of(long, LONG_TERM_LISTS, long_where, report)):
        items += _knowledge_item(scope, k, i, d.path / "long_term_user.json", "reference", report)
    mid = _load_json(d, "mid_term.json", report)
    mid_where = _shown(d.path / "mid_term.json")
    for i, k in enumerate(_items_of(mid, MID_TERM_LISTS, mid_where, report)):
        items += _knowledge_item(scope, k, i, d.path / "mid_term.json", "project", report)
    return items


def _profile(profile, scope: Scope, where: Path) -> Item | None:
    """profile.md from a profile given as a mapping (one line per key) or as text."""
    if not profile:
        return None
    if isinstance(profile, dict):
        body = "\n".join(f"- **{k}**: {v}" for k, v in profile.items())
        who = profile.get("name") or scope.name
    else:
        body = profile if isinstance(profile, str) else yaml.safe_dump(profile, allow_unicode=True)
        who = scope.name
    meta = _entry(f"Profile of {who}", f"who {who} is and what they prefer", "user", body)
    return Item(scope, "profile.md", meta, _shown(where))


def _fields(k: dict) -> tuple[str, str, str, dict] | None:
    """(text, title, category, other fields) of an object item; None if it has no text."""
    field_ = next((f for f in TEXT_FIELDS if isinstance(k.get(f), str) and k[f].strip()), None)
    if field_ is None:
        return None
    topic = str(next((k[f] for f in TITLE_FIELDS if k.get(f)), ""))
    category = str(next((k[f] for f in KIND_FIELDS if k.get(f)), "")).lower()
    used = {field_, "id", *TITLE_FIELDS, *KIND_FIELDS, *RESERVED}
    # Everything else the item holds goes into the frontmatter, so nothing is lost.
    extra = {key: v for key, v in k.items() if key not in used}
    if isinstance(extra.get("tags"), list):
        extra["tags"] = [str(t) for t in extra["tags"]]
    return k[field_], topic, category, extra


def _knowledge_item(scope: Scope, k, i: int, source: Path, default_type: str, report: Report) -> list[Item]:
    """The entry for one item, or none (reported) when it holds no text memfs knows."""
    ident = str(k.get("id") if isinstance(k, dict) and k.get("id") is not None else i)
    where = f"{_shown(source)}#{ident}"
    got = _fields(k) if isinstance(k, dict) else (k, "", "", {}) if isinstance(k, str) and k.strip() else None
    if got is None:
        keys = ", ".join(map(str, k)) if isinstance(k, dict) else type(k).__name__
        report.skipped.append((where, f"no text in any of {', '.join(TEXT_FIELDS)} ({keys}): not imported"))
        return []
    text, topic, category, extra = got
    first = text.strip().splitlines()[0]
    title = topic or (first[:60] + ("…" if len(first) > 60 else ""))
    type_ = CATEGORY_TYPES.get(category, default_type)
    digest = hashlib.sha1(ident.encode()).hexdigest()[:6]
    stem = "summary" if source.name == "mid_term.json" else "knowledge"
    rel = f"{stem}-{_slug(topic or first)}-{digest}.md"
    return [Item(scope, rel, _entry(title, first[:120], type_, text, extra), where)]


# -- applying ----------------------------------------------------------------------------------
def _index_line(item: Item) -> str | None:
    if not item.rel.endswith(".md") or entry.is_index(item.rel):
        return None
    e = entry.parse(item.content)
    return f"- [{e.name or item.rel}]({item.rel})" + (f" — {e.description}" if e.description else "")


def _is_heading(line: str) -> bool:
    return line.startswith("# ")


def _merge_index(existing: bytes, incoming: list[str]) -> bytes | None:
    """Append the lines of `incoming` that are not in `existing` yet; None if nothing to add.
    One heading: the source's `# Memory` is dropped when the file already has content
    (appended, it would be a second title mid-file)."""
    text = existing.decode("utf-8", errors="replace")
    have = set(text.splitlines())
    titled = bool(text.strip())
    new = []
    for ln in incoming:
        if not ln.strip() or ln in have:
            continue
        if _is_heading(ln):
            if titled:
                continue
            titled = True
        new.append(ln)
        have.add(ln)
    if not new:
        return None
    prefix = existing if existing.endswith(b"\n") or not existing else existing + b"\n"
    return prefix + ("\n".join(new) + "\n").encode()


def _dest(data: Path, scope: Scope, rel: str) -> Path:
    return layout.scope_dir(data, scope) / rel


def _folder(data: Path, scope: Scope, rel: str, create: bool, owner: str | None = None) -> Folder:
    """The folder that holds `rel`, walked down from DATA/ one name at a time: memfs makes no
    symlinks there, so one found on the way is refused rather than written through."""
    folder = Folder.open(data, follow=True)  # DATA/ itself is the admin's choice
    names = (os.fsdecode(SCOPE_DIRS[scope.kind]), scope.name, *rel.split("/")[:-1])
    for depth, name in enumerate(names):
        with folder:  # closes the parent once the child is open; the top two are memfs's
            folder = folder.subdir(name, create, owner if depth >= 2 else None)
    return folder


def _existing(data: Path, scope: Scope, rel: str) -> bytes | None:
    """What `rel` holds under DATA/, None if it is not there yet."""
    try:
        with _folder(data, scope, rel, create=False) as folder:
            return folder.read(rel.rsplit("/", 1)[-1])
    except FileNotFoundError:
        return None


def _write(data: Path, scope: Scope, rel: str, content: bytes, owner: str | None) -> None:
    with _folder(data, scope, rel, create=True, owner=owner) as folder:
        folder.write(rel.rsplit("/", 1)[-1], content, owner)


def _create(data: Path, item: Item, dry_run: bool, owner: str | None) -> str | None:
    """Write a new file; None when it is (or would be) created, else why not."""
    try:
        existing = _existing(data, item.scope, item.rel)
        if existing is None and not dry_run:
            _write(data, item.scope, item.rel, item.content, owner)
    except Refused as e:
        return f"{e} in DATA/ (nothing written)"
    if existing is None:
        return None
    return "already there" if existing == item.content else "exists with other content (kept)"


def apply(
    items: list[Item],
    data: Path,
    report: Report,
    dry_run: bool,
    progress=None,
    add_index=False,
    owner: str | None = None,
) -> None:
    """Write the planned files under DATA/ (never over an existing one), then merge MEMORY.md
    lines. What it creates records `owner` (--user) as its creator (owners.py)."""
    index_lines: dict[Scope, list[str]] = {}
    for item in items:
        shown = _shown(f"{item.scope}/{item.rel}")
        if item.rel == entry.INDEX_NAME:
            text = item.content.decode("utf-8", errors="replace")
            index_lines.setdefault(item.scope, []).extend(text.splitlines())
        elif why := _create(data, item, dry_run, owner):
            report.skipped.append((shown, why))
        else:
            if not dry_run:
                report.written.append(_dest(data, item.scope, item.rel))
            report.created.append(shown)
            if add_index and (line := _index_line(item)):
                index_lines.setdefault(item.scope, []).append(line)
        if progress:
            progress()
    for scope, lines in index_lines.items():
        shown = f"{scope}/{entry.INDEX_NAME}"
        try:
            existing = _existing(data, scope, entry.INDEX_NAME) or b""
            merged = _merge_index(existing, lines)
            if merged is not None and not dry_run:
                _write(data, scope, entry.INDEX_NAME, merged, owner)
        except Refused as e:
            report.skipped.append((shown, f"{e} in DATA/ (nothing written)"))
            continue
        if merged is None:
            report.skipped.append((shown, "already there"))
            continue
        if not dry_run:
            report.written.append(_dest(data, scope, entry.INDEX_NAME))
        (report.merged if existing else report.created).append(shown)


def _shown(path: Path | str) -> str:
    """A source or destination path as the report prints it (names.quote_path): a name
    that is not UTF-8 is quoted, never a surrogate that print() cannot encode."""
    return quote_path(os.fsencode(path))


def _reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def _only_for(user: str, team: str | None, items: list[Item], report: Report) -> list[Item]:
    """What goes to --user's private memory or its team. Whoever owns the source names its
    folders: a users/alice/ (or alice's chat id) in a source imported for mallory must not
    reach alice."""
    allowed = {Scope(Kind.PRIVATE, user)} | ({Scope(Kind.TEAM, team)} if team else set())
    kept = []
    for item in items:
        if item.scope in allowed:
            kept.append(item)
        else:
            owner = f"{'user' if item.scope.kind is Kind.PRIVATE else 'team'} {item.scope.name}"
            report.skipped.append((item.source, f"belongs to {owner}, not --user {user}"))
    return kept


def _owner_of_source(src: Path, user: str, config: Config) -> str | None:
    """Why `src` is not `user`'s to import, if a folder on its path is a chat or user id
    that users.<u>.aliases gives to another user (`kai/memory --user alice`)."""
    chats = _chat_users(config)
    for name in src.parts:
        owner = chats.get(name)
        if owner is not None and owner != user:
            return f"folder {name} in {src} is the id of user {owner} (users.{owner}.aliases)"
    return None


def plan(
    fmt: str, src: Path, user: str, team: str | None, config: Config, report: Report, claim: bool = False
) -> tuple[list[Item], bool]:
    """(items for `user` and `team` only, whether created entries get MEMORY.md lines).
    A source that belongs to another user by its path is refused unless `claim`."""
    if not claim and (why := _owner_of_source(src, user, config)):
        raise ImportFailed(f"{why}: import it with --user that user, or add --claim to give it to {user}")
    try:
        root = Folder.open(src, config.limits.max_file_bytes)
    except (Refused, FileNotFoundError) as e:
        raise ImportFailed(f"source {src} is not a directory ({_reason(e)})") from None
    with root:
        if fmt == "auto":
            fmt = detect(root)
        if fmt == "json":
            items, add_index = plan_json(root, user, config, report), True
        elif fmt == "legacy":
            items, add_index = plan_legacy(root, user, config, report), False
        else:
            items, add_index = plan_dir(root, user, team, report), False
    return _keep_secrets_out(_only_for(user, team, items, report), config, report), add_index


def _keep_secrets_out(items: list[Item], config: Config, report: Report) -> list[Item]:
    """An import is one more way content arrives: what would bring a credential into a
    scope the secret guard refuses it in (team and synced scopes by default) is skipped
    and reported by line and rule, never the secret, like a refused write."""
    from .secrets.guard import Policy
    from .secrets.scanner import Scanner
    from .sync.service import remotes

    policy = Policy(conf=config.secrets, remotes=remotes(config))
    if not any(policy.refuses(item.scope) for item in items):
        return items
    scanner = Scanner(allow=config.secrets.allow)
    kept = []
    for item in items:
        found = scanner.scan(item.content) if policy.refuses(item.scope) else []
        if found:
            f = found[0]
            report.skipped.append(
                (item.source, f"a secret at line {f.line} (rule {f.rule}): {item.scope} never holds one")
            )
        else:
            kept.append(item)
    return kept
