"""Caller uid -> Principal (user, team, grants), resolved once per uid and cached."""

from __future__ import annotations

import bisect
import grp
import pwd
from dataclasses import dataclass

from .config import NAME_RE, Config, ConfigError
from .policy import Kind, Principal, Scope


@dataclass(frozen=True)
class Team:
    name: str
    gid: int | None  # the Unix group shown as owner group of team files, if any
    members: frozenset[str]


def _passwd_by_uid(uid: int):
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def _uid_of_fallback(user: str) -> int | None:
    """N for the fallback name uid-N."""
    return int(user[4:]) if user.startswith("uid-") and user[4:].isdigit() else None


def _passwd_by_name(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


class Identities:
    """Maps uids to memory users and users to their team and grants.

    Built once from the config at mount time; every config error that needs the
    passwd/group databases to see (unknown member, ambiguous team) is raised here,
    before the daemon starts.
    """

    def __init__(self, config: Config):
        self.config = config
        # (uid, gid) -> its principal, made once: fs_base._principal reads it on every
        # request before calling principal() (one call fewer a request)
        self.known: dict[tuple[int, int], Principal] = {}
        # the same for callers mapped to a memory user only: a handler that finds its
        # caller here needs no further check (fs_base's callers, one dict lookup)
        self.mapped: dict[tuple[int, int], Principal] = {}
        # scope -> shown_owner(scope), filled by it: read directly per request (fs_base._attrs)
        self.owners: dict[Scope, tuple[int, int, bool]] = {}
        self._uids: dict[str, int] = {}
        self.teams = {t.name: self._team(t) for t in config.teams.values()}
        member_of: dict[str, list[str]] = {}
        for team in self.teams.values():
            for m in team.members:
                member_of.setdefault(m, []).append(team.name)
        self._team_of = self._choose_teams(member_of)
        # every configured uid range, sorted (config.parse refused overlaps): a bisect per new uid
        ranges = sorted((first, last, u.name) for u in config.users.values() for first, last in u.uids)
        self._range_starts = [r[0] for r in ranges]
        self._ranges = ranges
        self._readable: dict[str, set[str]] = {}
        for i, g in enumerate(config.grants):
            for key in ("reader", "owner"):
                if not self.known_user(getattr(g, key)):
                    raise ConfigError(f"grants[{i}].{key}: unknown user {getattr(g, key)!r}")
            self._readable.setdefault(g.reader, set()).add(g.owner)

    def _team(self, t) -> Team:
        """A team's members: those listed, plus every member of its Unix group if it has one."""
        members = set()
        for m in t.members:
            if not self.known_user(m):
                raise ConfigError(f"teams.{t.name}.members: unknown user {m!r}")
            members.add(m)
        gid = None
        if t.group is not None:
            try:
                g = grp.getgrnam(t.group)
            except KeyError:
                raise ConfigError(f"teams.{t.name}.group: no Unix group {t.group!r}") from None
            gid = g.gr_gid
            members.update(n for n in g.gr_mem if self.known_user(n))
            members.update(p.pw_name for p in pwd.getpwall() if p.pw_gid == gid)
        return Team(t.name, gid, frozenset(members))

    def _choose_teams(self, member_of: dict[str, list[str]]) -> dict[str, str]:
        """The one team shown as team/ for each member: the only one, or users.<name>.team."""
        users = self.config.users
        for u in users.values():
            if u.team is not None and u.team not in member_of.get(u.name, []):
                raise ConfigError(f"users.{u.name}.team: {u.name} is not a member of team {u.team!r}")
        team_of = {}
        for user, teams in member_of.items():
            chosen = users[user].team if user in users else None
            if chosen is None and len(teams) > 1:
                raise ConfigError(
                    f"user {user!r} is in teams {', '.join(sorted(teams))}: "
                    f"set users.{user}.team to the one shown as team/"
                )
            team_of[user] = chosen or teams[0]
        return team_of

    def team_of(self, user: str) -> str | None:
        return self._team_of.get(user)

    def known_user(self, name: str) -> bool:
        return name in self.config.users or _passwd_by_name(name) is not None

    def configured_user(self, uid: int) -> str | None:
        """The config user whose `uid`/`uids` hold this uid, if any."""
        i = bisect.bisect_right(self._range_starts, uid) - 1
        if i >= 0 and uid <= self._ranges[i][1]:
            return self._ranges[i][2]
        return None

    def user_name(self, uid: int) -> str | None:
        conf = self.config
        configured = self.configured_user(uid)
        if configured is not None:
            return configured
        if conf.unknown_uids == "deny":
            return None
        pw = _passwd_by_uid(uid)
        # A passwd name that a config user already claims (with another uid) is not this uid's.
        if pw is not None and NAME_RE.fullmatch(pw.pw_name) and pw.pw_name not in conf.users:
            return pw.pw_name
        name = f"uid-{uid}"
        # parse() lets a config user be called uid-N only with uid N, handled above.
        return None if name in conf.users else name

    def reaches(self, scope: Scope) -> bool:
        """Some caller can act as this scope's owner (a team: the config names it), so its
        memory on disk is reachable through the mount."""
        if scope.kind is Kind.TEAM:
            return scope.name in self.teams
        if scope.name in self.config.users:
            return True
        pw = _passwd_by_name(scope.name)
        uid = pw.pw_uid if pw is not None else _uid_of_fallback(scope.name)
        return uid is not None and self.user_name(uid) == scope.name

    def is_fallback(self, p: Principal) -> bool:
        """The caller is `uid-N`: neither the config nor passwd names its uid."""
        return p.user is not None and p.user not in self.config.users and _uid_of_fallback(p.user) == p.uid

    def uid_gid(self, user: str) -> tuple[int, int]:
        """The uid/gid shown as owner of a user's private files."""
        if user in self.config.users:
            uid = self.config.users[user].uid
            pw = _passwd_by_uid(uid)
            return uid, (pw.pw_gid if pw else uid)
        pw = _passwd_by_name(user)
        if pw is not None:
            return pw.pw_uid, pw.pw_gid
        if (n := _uid_of_fallback(user)) is not None:
            return n, n
        return 0, 0

    def uid_of(self, user: str) -> int:
        """The uid a memory user name stands for (0, root, for a name this host does not
        know: a creator recorded by another host's user, say)."""
        uid = self._uids.get(user)
        if uid is None:
            uid = self._uids[user] = self.uid_gid(user)[0]
        return uid

    def shown_owner(self, scope: Scope) -> tuple[int, int, bool]:
        """(uid, gid, team_has_group) shown as owner of a scope's files: the user for a
        private scope; root and the team's Unix group (if any) for a team (its folder, and
        files with no recorded creator: fs_base._owner)."""
        owner = self.owners.get(scope)
        if owner is None:
            if scope.kind is Kind.PRIVATE:
                owner = (*self.uid_gid(scope.name), True)
            else:
                team = self.teams.get(scope.name)
                gid = team.gid if team is not None else None
                owner = (0, gid or 0, gid is not None)
            self.owners[scope] = owner
        return owner

    def name_of(self, uid: int) -> str:
        """The memory user a uid acts as, for authorship (uid-N when it maps to none)."""
        return self.principal(uid, uid).user or f"uid-{uid}"

    def principal(self, uid: int, gid: int) -> Principal:
        p = self.known.get((uid, gid))
        if p is None:
            user = self.user_name(uid)
            team = self.team_of(user) if user else None
            readable = frozenset(self._readable.get(user, ())) if user else frozenset()
            p = Principal(uid=uid, gid=gid, user=user, team=team, readable=readable)
            self.known[(uid, gid)] = p
            if user is not None:
                self.mapped[(uid, gid)] = p
        return p
