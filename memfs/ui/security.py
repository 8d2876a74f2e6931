"""Who may talk to the page: the person who started `memfs ui`, from their own browser.

127.0.0.1 is reachable by every local user, and a web page from anywhere can make the
browser send requests to it, so each request must pass, in order:
- its `Host` is the address the page was started on (a DNS-rebinding page's Host is its
  own name): else 421;
- it carries the run's secret: in the printed URL once (`?token=`, then answered with a
  cookie and a redirect that drops it from the address bar), in the cookie after: else 403;
- a form post carries the run's CSRF token (checked by `views.form`, which reads the
  body), comes from our own origin when the browser says where it comes from (`Origin`,
  `Sec-Fetch-Site`), and is never cross-site.
Every answer carries a Content-Security-Policy that allows no script at all, no frames,
and forms only to this page; no CORS header is ever sent, so other origins read nothing.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

log = logging.getLogger("memfs.ui")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # no Referer leaves for another site; `no-referrer` would make our own forms arrive with
    # `Origin: null` and be refused
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),  # memory content stays out of the disk cache
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD")


@dataclass
class Secrets:
    """One run's secrets and the names it answers to."""

    port: int
    hosts: set[str] = field(default_factory=set)  # Host header values accepted
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def cookie(self) -> str:
        # Cookies are scoped by host name, not port: the port in the name keeps two runs
        # (two users) on one host from overwriting each other's cookie.
        return f"memfs_ui_{self.port}"

    def origins(self) -> set[str]:
        return {f"http://{h}" for h in self.hosts}


def hosts_for(address: str, port: int) -> set[str]:
    """The Host values a browser sends for this listening address."""
    names = {address}
    if address in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return {f"{n}:{port}" for n in names}


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Guard:
    """ASGI middleware in front of every route."""

    def __init__(self, app: ASGIApp, run: Secrets):
        self.app = app
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self._refusal(scope, headers)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        if refused is not None:
            code, why = refused
            client = scope.get("client") or ("?", 0)
            log.warning("refused %s %s from %s:%s: %s", scope["method"], scope["path"], *client, why)
            await _plain(send_with_headers, code, why)
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:  # the printed URL: trade the token for a cookie, drop it from the URL
            rest = urllib.parse.urlencode({k: v for k, v in query.items() if k != "token"}, doseq=True)
            here = "/" + urllib.parse.quote(scope["path"].lstrip("/"))  # never `//host`: no open redirect
            await _redirect(send_with_headers, here + ("?" + rest if rest else ""), self._cookie())
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        if headers.get("host") not in self.run.hosts:
            return 421, "this page answers only to the address memfs ui printed"
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header: as if none
            cookie = SimpleCookie()
        held = cookie.get(self.run.cookie)
        if not same(held.value if held else None, self.run.token) and not same(
            (query.get("token") or [None])[0], self.run.token
        ):
            return 403, "no valid token: open the URL memfs ui printed"
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin not in self.run.origins():
                return 403, f"a form from another origin ({origin}) is refused"
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "a cross-site request is refused"
        return None

    def _cookie(self) -> bytes:
        return f"{self.run.cookie}={self.run.token}; Path=/; HttpOnly; SameSite=Strict".encode()


async def _plain(send: Send, code: int, text: str) -> None:
    body = (text + "\n").encode()
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, cookie: bytes) -> None:
    head = [(b"location", location.encode()), (b"set-cookie", cookie), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": head})
    await send({"type": "http.response.body", "body": b""})
