"""YAML config -> a typed, validated Config. A bad config is one clear error at start."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024

# Names become directory names under DATA/, so keep them to a portable, path-safe set.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
UID_NAME_RE = re.compile(r"uid-[0-9]+")  # the name memfs gives a uid with no other name

DEFAULT_CONFIG_TEXT = """\
# memfs configuration. Every key is optional; see README.md for the full reference.
#
# users:                      # memory users; a uid not listed here uses its passwd name (or uid-N)
#   alice: {uid: 1001}
#   bob: {uid: 1002, team: eng}
# teams:
#   eng:
#     members: [alice, bob]   # user names from `users:` or passwd
#     group: eng              # optional: every member of this Unix group too
# grants:
#   - {reader: bob, owner: alice}   # bob may read alice's private memory, never write it
# unknown_uids: allow         # allow | deny: deny gives uids not under `users:` EACCES everywhere
# daemon: {user: memfs}       # who serves requests, runs git and owns DATA/ (root only mounts)
#   admin_group: memfs-admin  # its members (and root) see every user's state: memfs status --all
# metrics: {listen: "127.0.0.1:9464"}  # Prometheus /metrics (off by default); or a socket path
# limits:                     # fair shares; a caller over one gets the error, never the others
#   max_file_bytes: 10M       # one file (EFBIG)
#   user_bytes: 1G            # one user's private memory (EDQUOT)
#   user_files: 100000        # files and folders in it (EDQUOT)
#   team_bytes: 4G
#   team_files: 400000
#   open_files: 1024          # handles one uid holds open (EMFILE)
#   open_queries: 64          # of those, .memfs/ files (search results, query handles)
# index:
#   enabled: true             # false: no search index (no .memfs/search)
# search:
#   embedder: wordllama       # semantic search, offline: wordllama | none (keyword only) | fastembed
#   dim: 256                  # wordllama: 64, 128 or 256
#   model: BAAI/bge-small-en-v1.5   # fastembed: a model already on disk
#   cache_dir: /var/lib/memfs-models # fastembed: where that model is (nothing is downloaded)
# sync:                       # teams.<t>.remote / users.<u>.remote: a git URL or path to sync with
#   interval: 5               # seconds between fetches; pushes follow local commits
# history:                   # every change kept in git, per scope: .memfs/history/, .memfs/log
#   enabled: true
#   batch_seconds: 2          # changes are committed in batches, one commit per user
#   keep_days: 365            # older versions are pruned (the file as it was then stays)
#   max_bytes: 1G             # per scope (default: its quota): past it the oldest versions go first
#   prune_seconds: 60         # a scope past max_bytes is pruned (to 3/4 of it) at most this often
#   max_events: 50000         # changes in one batch past which it is committed as one walk of the scope
#   email: "{user}@{hostname}"  # commit author's email
# memory:
#   types: [user, feedback, project, reference]
# secrets:                    # credentials never land where others (or a remote) read them
#   guard: [team, synced]     # scopes whose writes are refused with a secret: team, synced | all | off
#   allow: []                 # regexes: a secret they match is not one (known fakes)
#   private: flag             # private memory without a remote: flag (status) | refuse
# context:                    # .memfs/context.md
#   max_lines: 200            # per MEMORY.md; the cut is marked, never silent
#   max_bytes: 25000
#   stale_days: 30            # older entries show their age
"""


class ConfigError(Exception):
    """The config cannot be used; the message names the problem in one line."""


@dataclass(frozen=True)
class MetricsConf:
    """Where /metrics is served (Prometheus exposition format): "HOST:PORT", a unix socket
    path (starts with /), or None (off, the default)."""

    listen: str | None = None


@dataclass(frozen=True)
class UserConf:
    name: str
    uid: int  # shown as the owner of the user's files: `uid`, else the first of `uids`
    team: str | None = None
    aliases: tuple[str, ...] = ()
    remote: str | None = None  # a git URL or path: this user's private memory follows them
    # every uid that acts as this user, as inclusive (first, last) ranges: `uid` and `uids`
    # (a sandbox's or container's mapped range, or several accounts of one person)
    uids: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.uids:
            object.__setattr__(self, "uids", ((self.uid, self.uid),))


@dataclass(frozen=True)
class TeamConf:
    name: str
    members: tuple[str, ...] = ()
    group: str | None = None
    remote: str | None = None  # a git URL or path the team's memory syncs with


@dataclass(frozen=True)
class Grant:
    reader: str
    owner: str


@dataclass(frozen=True)
class Limits:
    """Fair shares: what one caller may take of what all callers share."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    user_bytes: int = 1 << 30  # bytes stored in one user's private memory (EDQUOT past it)
    user_files: int = 100_000  # files and folders in it
    team_bytes: int = 4 << 30
    team_files: int = 400_000
    open_files: int = 1024  # handles (files, folders, control files) one uid holds open (EMFILE)
    open_queries: int = 64  # of those, .memfs/ control handles (search results, queries)


_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(where: str, value: object, minimum: int = 1) -> int:
    """A byte count: an integer or a string like "512M" or "2GiB"."""
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if m is None:
            raise ConfigError(f"{where}: expected a size like 1048576, 512M or 2GiB, got {value!r}")
        value = int(m.group(1)) * _UNITS[m.group(2).upper()]
    return _int(where, value, minimum)


@dataclass(frozen=True)
class IndexConf:
    enabled: bool = True


@dataclass(frozen=True)
class SearchConf:
    embedder: str = "wordllama"  # wordllama | none | fastembed
    dim: int = 256  # wordllama's dimensions (a prefix of its 256)
    model: str = ""  # fastembed: the model's name
    cache_dir: str | None = None  # fastembed: the folder holding it


@dataclass(frozen=True)
class HistoryConf:
    enabled: bool = True
    batch_seconds: float = 2.0
    keep_days: float = 365.0
    # per scope, versions' bytes; None: the scope's quota (limits.user_bytes / team_bytes),
    # so history is never a way around it
    max_bytes: int | None = None
    # a scope past max_bytes is pruned at most this often, down to 3/4 of it (a prune
    # rewrites the scope's commits and repacks it: cost grows with what is kept, not pruned)
    prune_seconds: float = 60.0
    email: str = "{user}@{hostname}"
    # changes in one scope's batch past which the batch becomes one walk of the scope (a
    # flood: 100k creates); the list of events would cost more than the walk
    max_events: int = 50_000


@dataclass(frozen=True)
class SyncConf:
    interval: float = 5.0  # seconds between checks of an active scope; pushes follow local commits
    # A scope with no change seen (here or arriving) for active_for seconds is checked ever
    # less often, doubling up to idle_interval, and idle checks of all scopes together are
    # paced at idle_checks per second: idle cost stays flat however many scopes (bench_sync).
    active_for: float = 300.0
    idle_interval: float = 300.0
    idle_checks: float = 2.0
    ssh_key: str | None = None  # the daemon's own ssh identity for ssh remotes
    known_hosts: str | None = None  # and the host keys it trusts (strict checking)


@dataclass(frozen=True)
class MemoryConf:
    types: tuple[str, ...] = ("user", "feedback", "project", "reference")


@dataclass(frozen=True)
class ContextConf:
    max_lines: int = 200
    max_bytes: int = 25_000
    stale_days: int = 30  # older entries show their age in context.md


GUARD_KINDS = ("team", "synced")  # what secrets.guard may list


@dataclass(frozen=True)
class SecretsConf:
    """The secret guard (issue 24): which scopes refuse a write that brings a credential."""

    guard: tuple[str, ...] = GUARD_KINDS  # of GUARD_KINDS; ("all",) every scope; () off
    allow: tuple[str, ...] = ()  # regexes handed to secrets.Scanner(allow=...)
    private: str = "flag"  # flag | refuse: private scopes no other rule guards


@dataclass(frozen=True)
class Config:
    users: dict[str, UserConf] = field(default_factory=dict)
    teams: dict[str, TeamConf] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    unknown_uids: str = "allow"
    limits: Limits = field(default_factory=Limits)
    index: IndexConf = field(default_factory=IndexConf)
    memory: MemoryConf = field(default_factory=MemoryConf)
    context: ContextConf = field(default_factory=ContextConf)
    history: HistoryConf = field(default_factory=HistoryConf)
    sync: SyncConf = field(default_factory=SyncConf)
    search: SearchConf = field(default_factory=SearchConf)
    source: str = "<default>"
    daemon_user: str = "memfs"  # the unprivileged user the daemon serves as (root only mounts)
    secrets: SecretsConf = field(default_factory=SecretsConf)
    admin_group: str | None = None  # its members see every user's state (memfs status --all)
    metrics: MetricsConf = field(default_factory=lambda: MetricsConf())


def _keys(where: str, value: object, allowed: set[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    return value


def _mapping(where: str, value: object) -> dict:
    """A mapping whose keys are names the user chooses (users:, teams:)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of names, got {type(value).__name__}")
    return value


def _name(where: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not a valid name (letters, digits, _ . -)")
    return value


def _int(where: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _name_list(where: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list")
    return tuple(_name(f"{where}[{i}]", v) for i, v in enumerate(value))


def parse(data: object, source: str = "<string>") -> Config:
    top = _keys(
        "config",
        data,
        {"users", "teams", "grants", "unknown_uids", "limits", "index", "memory", "context", "history"}
        | {"sync", "search", "daemon", "secrets", "metrics"},
    )
    users = _users(top.get("users"))
    teams = _teams(top.get("teams"))
    for u in users.values():
        if u.team is not None and u.team not in teams:
            raise ConfigError(f"users.{u.name}.team: no team named {u.team!r} under teams:")
    unknown = top.get("unknown_uids", "allow")
    if unknown not in ("allow", "deny"):
        raise ConfigError(f"unknown_uids: expected 'allow' or 'deny', got {unknown!r}")
    ix = _keys("index", top.get("index"), {"enabled"})
    enabled = ix.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"index.enabled: expected true or false, got {enabled!r}")
    daemon = _keys("daemon", top.get("daemon"), {"user", "admin_group"})
    daemon_user = _name("daemon.user", daemon.get("user", "memfs"))
    admin_group = daemon.get("admin_group")
    if admin_group is not None:
        admin_group = _name("daemon.admin_group", admin_group)
    return Config(
        users,
        teams,
        _grants(top.get("grants")),
        unknown,
        _limits(top.get("limits")),
        IndexConf(enabled),
        _memory(top.get("memory")),
        _context(top.get("context")),
        _history(top.get("history")),
        _sync(top.get("sync"), users, teams, top.get("history")),
        _search(top.get("search")),
        source,
        daemon_user,
        _secrets(top.get("secrets")),
        admin_group,
        _metrics(top.get("metrics")),
    )


def _metrics(value: object) -> MetricsConf:
    listen = _keys("metrics", value, {"listen"}).get("listen")
    if listen is None:
        return MetricsConf()
    if not isinstance(listen, str) or not listen:
        raise ConfigError(f'metrics.listen: expected "HOST:PORT" or a socket path, got {listen!r}')
    if not listen.startswith("/"):
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f'metrics.listen: expected "HOST:PORT" or a socket path, got {listen!r}')
    return MetricsConf(listen)


def _user(name: str, spec: object) -> UserConf:
    spec = _keys(f"users.{name}", spec, {"uid", "uids", "team", "aliases", "remote"})
    if "uid" not in spec and not spec.get("uids"):
        raise ConfigError(f"users.{name}: missing required key 'uid' (or 'uids')")
    ranges = []
    if "uid" in spec:
        ranges.append(_uid_range(f"users.{name}.uid", _int(f"users.{name}.uid", spec["uid"])))
    raw_uids = spec.get("uids") or []
    if not isinstance(raw_uids, list):
        raise ConfigError(f'users.{name}.uids: expected a list of uids and ranges like "100000-165535"')
    ranges += [_uid_range(f"users.{name}.uids[{i}]", v) for i, v in enumerate(raw_uids)]
    uid = ranges[0][0]
    if UID_NAME_RE.fullmatch(name) and name != f"uid-{uid}":
        raise ConfigError(f"users.{name}: the name {name!r} is what memfs calls uid {name[4:]}")
    team = spec.get("team")
    if team is not None:
        team = _name(f"users.{name}.team", team)
    raw_aliases = spec.get("aliases") or []
    if not isinstance(raw_aliases, list):
        raise ConfigError(f"users.{name}.aliases: expected a list")
    aliases = tuple(str(a) for a in raw_aliases)
    remote = _remote(f"users.{name}.remote", spec.get("remote"))
    return UserConf(name, uid, team, aliases, remote, tuple(dict.fromkeys(ranges)))


MAX_UID = 2**32 - 2  # (uid_t)-1 is "no uid"


def _uid_range(where: str, value: object) -> tuple[int, int]:
    """1001 or "100000-165535" (inclusive) -> (first, last)."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+)\s*-\s*([0-9]+)\s*", value)
        if m is None:
            raise ConfigError(f'{where}: expected a uid or a range like "100000-165535", got {value!r}')
        first, last = int(m.group(1)), int(m.group(2))
        if first > last or last > MAX_UID:
            raise ConfigError(f"{where}: {value!r} is not a range of uids (first <= last <= {MAX_UID})")
        if first == 0:  # root acting as a memory user is said with `uid: 0`, never inside a range
            raise ConfigError(f"{where}: {value!r} holds uid 0 (root): give uid 0 alone, if at all")
        return first, last
    uid = _int(where, value)
    if uid > MAX_UID:
        raise ConfigError(f"{where}: {uid} is not a uid")
    return uid, uid


def _shown_range(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _users(value: object) -> dict[str, UserConf]:
    users: dict[str, UserConf] = {}
    for name, spec in _mapping("users", value).items():
        name = _name("users", name)
        users[name] = _user(name, spec)
    # One uid acts as one user: an overlap is an error that names both claims.
    claims = sorted((r, u.name) for u in users.values() for r in u.uids)
    for (a, a_user), (b, b_user) in itertools.pairwise(claims):
        if b[0] <= a[1]:
            same = "twice" if a_user == b_user else f"by users {a_user!r} and {b_user!r}"
            raise ConfigError(
                f"users.{b_user}: uid {_shown_range((b[0], min(a[1], b[1])))} is claimed {same} "
                f"({_shown_range(a)} and {_shown_range(b)})"
            )
    return users


def _teams(value: object) -> dict[str, TeamConf]:
    teams: dict[str, TeamConf] = {}
    for tname, spec in _mapping("teams", value).items():
        tname = _name("teams", tname)
        spec = _keys(f"teams.{tname}", spec, {"members", "group", "remote"})
        group = spec.get("group")
        if group is not None and not isinstance(group, str):
            raise ConfigError(f"teams.{tname}.group: expected a Unix group name")
        members = _name_list(f"teams.{tname}.members", spec.get("members"))
        remote = _remote(f"teams.{tname}.remote", spec.get("remote"))
        teams[tname] = TeamConf(name=tname, members=members, group=group, remote=remote)
    return teams


def _grants(value: object) -> tuple[Grant, ...]:
    raw = value or []
    if not isinstance(raw, list):
        raise ConfigError("grants: expected a list of {reader: NAME, owner: NAME}")
    grants = []
    for i, g in enumerate(raw):
        g = _keys(f"grants[{i}]", g, {"reader", "owner"})
        for key in ("reader", "owner"):
            if key not in g:
                raise ConfigError(f"grants[{i}]: missing required key {key!r}")
        grants.append(
            Grant(_name(f"grants[{i}].reader", g["reader"]), _name(f"grants[{i}].owner", g["owner"]))
        )
    return tuple(grants)


def _limits(value: object) -> Limits:
    dl = Limits()
    sizes = {"max_file_bytes", "user_bytes", "team_bytes"}
    counts = {"user_files", "team_files", "open_files", "open_queries"}
    lim = _keys("limits", value, sizes | counts)
    return Limits(
        **{k: _size(f"limits.{k}", lim.get(k, getattr(dl, k))) for k in sizes},
        **{k: _int(f"limits.{k}", lim.get(k, getattr(dl, k)), 1) for k in counts},
    )


def _memory(value: object) -> MemoryConf:
    mem = _keys("memory", value, {"types"})
    if "types" not in mem:
        return MemoryConf()
    types = _name_list("memory.types", mem["types"])
    if not types:
        raise ConfigError("memory.types: give at least one type")
    return MemoryConf(types)


def _context(value: object) -> ContextConf:
    ctx = _keys("context", value, {"max_lines", "max_bytes", "stale_days"})
    d = ContextConf()
    return ContextConf(
        max_lines=_int("context.max_lines", ctx.get("max_lines", d.max_lines), 1),
        max_bytes=_int("context.max_bytes", ctx.get("max_bytes", d.max_bytes), 1),
        stale_days=_int("context.stale_days", ctx.get("stale_days", d.stale_days), 0),
    )


def _number(where: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{where}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _abs_path(where: str, value: object) -> str | None:
    """A file the daemon user reads (ssh's key, known hosts): absolute, no option-like text."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "\n \t\"'"):
        raise ConfigError(f"{where}: expected an absolute path without spaces or quotes, got {value!r}")
    return value


def _remote(where: str, value: object) -> str | None:
    """A git URL or a local path; credentials stay git's own (ssh keys, helpers), never here."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or value.startswith("-") or "\n" in value:
        raise ConfigError(f"{where}: expected a git URL or a path, got {value!r}")
    if re.match(r"[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", value):
        raise ConfigError(f"{where}: no passwords in the config: use git's credential helpers or ssh keys")
    return value


def _sync(value: object, users, teams, history) -> SyncConf:
    s = _keys("sync", value, {"interval", "active_for", "idle_interval", "idle_checks", "ssh"})
    d = SyncConf()
    ssh = _keys("sync.ssh", s.get("ssh"), {"key", "known_hosts"})
    conf = SyncConf(
        interval=_number("sync.interval", s.get("interval", d.interval), 0.2),
        active_for=_number("sync.active_for", s.get("active_for", d.active_for), 0),
        idle_interval=_number("sync.idle_interval", s.get("idle_interval", d.idle_interval), 0.2),
        idle_checks=_number("sync.idle_checks", s.get("idle_checks", d.idle_checks), 0.01),
        ssh_key=_abs_path("sync.ssh.key", ssh.get("key")),
        known_hosts=_abs_path("sync.ssh.known_hosts", ssh.get("known_hosts")),
    )
    remotes = [u.name for u in users.values() if u.remote] + [t.name for t in teams.values() if t.remote]
    if remotes and isinstance(history, dict) and history.get("enabled") is False:
        raise ConfigError("sync needs history: remotes are set but history.enabled is false")
    return conf


def _search(value: object) -> SearchConf:
    s = _keys("search", value, {"embedder", "dim", "model", "cache_dir"})
    d = SearchConf()
    embedder = s.get("embedder", d.embedder)
    if embedder not in ("wordllama", "none", "fastembed"):
        raise ConfigError(f"search.embedder: expected wordllama, none or fastembed, got {embedder!r}")
    dim = _int("search.dim", s.get("dim", d.dim), 1)
    if embedder == "wordllama" and dim not in (64, 128, 256):
        raise ConfigError(f"search.dim: wordllama offers 64, 128 or 256 dimensions, got {dim}")
    model = s.get("model", d.model)
    if not isinstance(model, str) or (embedder == "fastembed" and not model.strip()):
        raise ConfigError("search.model: fastembed needs the name of a model on disk")
    cache_dir = s.get("cache_dir", d.cache_dir)
    if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir.startswith("/")):
        raise ConfigError(f"search.cache_dir: expected an absolute path, got {cache_dir!r}")
    return SearchConf(embedder, dim, model, cache_dir)


def _secrets(value: object) -> SecretsConf:
    s = _keys("secrets", value, {"guard", "allow", "private"})
    d = SecretsConf()
    guard = s.get("guard", list(d.guard))
    if guard is False:  # YAML reads a bare `off` as false
        guard = "off"
    if guard in ("all", "off"):
        kinds: tuple[str, ...] = ("all",) if guard == "all" else ()
    elif isinstance(guard, list) and all(g in GUARD_KINDS for g in guard):
        kinds = tuple(dict.fromkeys(guard))
    else:
        raise ConfigError(f"secrets.guard: expected a list of team, synced, or all, or off; got {guard!r}")
    allow = s.get("allow") or []
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError("secrets.allow: expected a list of regular expressions")
    for i, pattern in enumerate(allow):
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"secrets.allow[{i}]: not a regular expression: {e}") from None
    private = s.get("private", d.private)
    if private not in ("flag", "refuse"):
        raise ConfigError(f"secrets.private: expected flag or refuse, got {private!r}")
    return SecretsConf(kinds, tuple(allow), private)


def _history(value: object) -> HistoryConf:
    h = _keys(
        "history",
        value,
        {"enabled", "batch_seconds", "keep_days", "max_bytes", "prune_seconds", "email", "max_events"},
    )
    d = HistoryConf()
    enabled = h.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise ConfigError(f"history.enabled: expected true or false, got {enabled!r}")
    email = h.get("email", d.email)
    if not isinstance(email, str) or any(c in email for c in "<>\n"):
        raise ConfigError(f"history.email: expected a template like '{{user}}@{{hostname}}', got {email!r}")
    try:
        email.format(user="u", hostname="h")
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"history.email: only {{user}} and {{hostname}} may be used, got {email!r}"
        ) from None
    return HistoryConf(
        enabled=enabled,
        batch_seconds=_number("history.batch_seconds", h.get("batch_seconds", d.batch_seconds), 0.05),
        keep_days=_number("history.keep_days", h.get("keep_days", d.keep_days), 0),
        max_bytes=None if h.get("max_bytes") is None else _size("history.max_bytes", h["max_bytes"]),
        prune_seconds=_number("history.prune_seconds", h.get("prune_seconds", d.prune_seconds), 0),
        email=email,
        max_events=int(_number("history.max_events", h.get("max_events", d.max_events), 1)),
    )


def load(path: Path | None) -> Config:
    """Load `path`; None or a missing default means the built-in defaults."""
    if path is None:
        return Config()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse(data, str(path))


def ensure_default(path: Path) -> None:
    """Create a commented default config if there is none yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_CONFIG_TEXT)
