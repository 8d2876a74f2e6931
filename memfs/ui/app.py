"""The page's routes and its server: Starlette behind security.Guard, served by uvicorn
on one loopback socket; the URL with the run's token goes to stdout, once."""

from __future__ import annotations

import importlib
import ipaddress
import socket
import sys
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import client, pauses
from .memory import Memory
from .security import Guard, Secrets, hosts_for
from .views import Pages

HERE = Path(__file__).parent


class ListenError(ValueError):
    """--listen names no address this page may serve on; the message says why."""


READY_WAIT = 60.0  # seconds `memfs ui` waits for its first overview before printing the URL


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (or [v6]:PORT) on a loopback address only: the page is one person's."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else text
    try:
        number = int(port) if sep else 0
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ListenError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765") from None
    if not loopback:
        raise ListenError(f"--listen {text!r}: memfs ui serves only on a loopback address")
    if not 0 <= number < 65536:
        raise ListenError(f"--listen {text!r}: no such port")
    return ("127.0.0.1" if host == "localhost" else host), number


def build(mount: Path, run: Secrets, user: str, ready: float = 0.0) -> Guard:
    """The app. ready: seconds to wait for the first overview (the URL is printed after:
    the first visit then answers from it, not after the daemon's ~1 s at 10k entries)."""
    memory = Memory(mount)
    memory.overviews.start()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)  # compiled now, not on a page's first visit
    # anyio imports its event loop backend at the first run_in_threadpool: ~60 ms of the
    # first visit's answer, paid here instead
    importlib.import_module("anyio._backends._asyncio")
    pages = Pages(memory, run, Jinja2Templates(env=env), user)
    routes = [
        Route("/", pages.overview),
        Route("/search", pages.search),
        Route("/entry", pages.entry),
        Route("/edit", pages.edit),
        Route("/diff", pages.diff),
        Route("/activity", pages.activity),
        Route("/conflict", pages.conflict),
        Route("/save", pages.save, methods=["POST"]),
        Route("/delete", pages.delete, methods=["POST"]),
        Route("/restore", pages.restore, methods=["POST"]),
        Route("/resolve", pages.resolve, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    pauses.tune()
    memory.overviews.wait(ready)
    pauses.started()
    return Guard(Starlette(routes=routes), run)


def serve(mount: Path, listen: str) -> None:
    """Serve until interrupted. Raises ListenError, or OSError when the mount cannot be
    read or the address cannot be bound."""
    import uvicorn

    host, port = parse_listen(listen)
    user = str(client.whoami(mount).get("user") or "?")  # also: is it a memfs mount at all
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    port = sock.getsockname()[1]
    run = Secrets(port, hosts_for(host, port))
    shown_host = f"[{host}]" if ":" in host else host
    app = build(mount, run, user, ready=READY_WAIT)
    print(f"http://{shown_host}:{port}/?token={run.token}", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()
