"""When each synced scope is checked next: pure (every time is given), so the rules are
tested without a remote.

- Active (a change seen here, local or arriving, or a caller reaching the scope, within
  `active_for`): checked every `interval`.
- Idle: checked ever less often, the wait growing with the quiet time up to
  `idle_interval`; and idle checks of all scopes together are paced at `idle_checks` per
  second (oldest first), so an idle daemon's cost does not grow with its scope count.
- A caller reaching a scope not checked within `interval` makes it due now.
- A server that is down (unreachable, refusing the key or the login) is probed through one
  of its scopes once per interval; its other scopes wait, and run as soon as a probe gets
  through. A scope's own failure (no repository, rejected, disk full) backs off, doubling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import SyncConf
from ..policy import Scope

MAX_BACKOFF = 300.0
NEVER = float("-inf")


@dataclass
class Down:
    error: str
    probe_at: float


@dataclass
class Pace:
    conf: SyncConf
    servers: dict[Scope, str]  # scope -> the server it shares a connection and outages with
    next_at: dict[Scope, float] = field(default_factory=dict)
    checked_at: dict[Scope, float] = field(default_factory=dict)
    active_at: dict[Scope, float] = field(default_factory=dict)
    failures: dict[Scope, int] = field(default_factory=dict)
    down: dict[str, Down] = field(default_factory=dict)
    held: set[Scope] = field(default_factory=set)  # due while their server was down
    tokens: float = 1.0
    tokens_at: float = 0.0

    def __post_init__(self) -> None:
        for scope in self.servers:
            self.next_at.setdefault(scope, 0.0)
            self.checked_at.setdefault(scope, NEVER)
            self.active_at.setdefault(scope, NEVER)

    def active(self, scope: Scope, now: float) -> bool:
        return now - self.active_at[scope] < self.conf.active_for

    def due(self, now: float, wanted: set[Scope]) -> list[Scope]:
        """The scopes to sync now: wanted (a local commit) or due, their server up, idle
        ones as the idle pace allows; one probe per down server whose time has come."""
        c = self.conf
        self.tokens = min(max(1.0, c.idle_checks), self.tokens + (now - self.tokens_at) * c.idle_checks)
        self.tokens_at = now
        out: list[Scope] = []
        for scope in sorted(self.servers, key=self.next_at.__getitem__):
            urgent = scope in wanted or scope in self.held
            if self.next_at[scope] > now and (not urgent or self.failures.get(scope)):
                continue  # a scope backing off waits, even with a commit to push
            d = self.down.get(self.servers[scope])
            if d is not None:
                if d.probe_at <= now:
                    d.probe_at = float("inf")  # one probe per server until it answers
                    out.append(scope)
                else:
                    self.held.add(scope)
                continue
            if urgent or self.active(scope, now) or self.failures.get(scope):
                out.append(scope)
            elif self.tokens >= 1:
                self.tokens -= 1
                out.append(scope)
        return out

    def opened(self, scope: Scope, now: float) -> bool:
        """A caller reached the scope: it is active; due now if not checked within interval."""
        if scope not in self.servers:
            return False
        self.active_at[scope] = now
        if now - self.checked_at[scope] < self.conf.interval or self.next_at[scope] <= now:
            return False
        self.next_at[scope] = now
        return True

    def done(self, scope: Scope, now: float, changed: bool) -> None:
        """A round went through: the server is up, the scope's next check set by its pace."""
        c = self.conf
        self.checked_at[scope] = now
        self.failures.pop(scope, None)
        self.held.discard(scope)
        self.down.pop(self.servers[scope], None)
        if changed:
            self.active_at[scope] = now
        quiet = now - self.active_at[scope] - c.active_for
        wait = c.interval if quiet < 0 else min(c.idle_interval, max(c.interval, quiet))
        self.next_at[scope] = now + wait

    def failed(self, scope: Scope, now: float, error: str, server: bool) -> float:
        """A round failed; the seconds until the scope is tried again."""
        self.checked_at[scope] = now
        if server:
            self.down[self.servers[scope]] = Down(error, now + self.conf.interval)
            self.held.add(scope)
            self.next_at[scope] = now + self.conf.interval
            return self.conf.interval
        self.down.pop(self.servers[scope], None)  # it answered: up, if this repository is not
        n = self.failures[scope] = self.failures.get(scope, 0) + 1
        delay = min(MAX_BACKOFF, self.conf.interval * 2**n)
        self.next_at[scope] = now + delay
        return delay

    def server_error(self, scope: Scope) -> str | None:
        """The error of the scope's server while it is down (its scopes wait for it)."""
        d = self.down.get(self.servers.get(scope, ""))
        return d.error if d is not None else None
