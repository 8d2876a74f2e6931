"""One function per page or form. Each reads its parameters, asks `Memory` in a worker
thread (mount I/O blocks), and renders a template; failures become the page's status
code and one log line (op, user, path, errno)."""

from __future__ import annotations

import errno
import logging
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from .. import client, entry
from ..names import conflict_original, parse_version_name
from ..policy import CONTROL_NAME
from . import render
from .memory import BadPath, Memory, folder_of, rel_of, shown
from .security import Secrets, same

log = logging.getLogger("memfs.ui")

MODES = ("hybrid", "keyword", "semantic")
FILTERS = ("type", "scope", "path", "tag")
PAGE = 100  # entries listed per overview page
FEED = 200  # changes per activity page (.memfs/log holds the latest 1000)
MAX_FORM = 12 * 1024 * 1024  # bytes of a posted form: a whole entry at memfs's 10 MiB cap, escaped
CURRENT = "current"  # the file as it is now, beside its versions in a diff

_STATUS = {
    errno.ENOENT: 404, errno.ENOTDIR: 404, errno.EISDIR: 400, errno.EACCES: 403, errno.EPERM: 403,
    errno.EROFS: 403, errno.EDQUOT: 507, errno.EFBIG: 413, errno.ENOSPC: 507, errno.ENAMETOOLONG: 400,
}  # fmt: skip


class Refused(Exception):
    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code = code


def when(ns_or_stamp: int | str) -> str:
    """UTC times as pages show them."""
    if isinstance(ns_or_stamp, int):
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ns_or_stamp / 1e9))
    s = ns_or_stamp
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]} {s[9:11]}:{s[11:13]}:{s[13:15]}" if len(s) >= 15 else s


def link(to: str, **params: str) -> str:
    return f"/{to}?" + urllib.parse.urlencode(params)


class Pages:
    def __init__(self, memory: Memory, run: Secrets, templates: Jinja2Templates, user: str):
        self.memory = memory
        self.run = run
        self.templates = templates
        self.user = user
        templates.env.globals.update(link=link, when=when, csrf=run.csrf, user=user, CURRENT=CURRENT)

    def _page(self, request: Request, name: str, **context) -> Response:
        return self.templates.TemplateResponse(request, name, context)

    async def guarded(self, request: Request, op: str, fn: Callable[[], Awaitable[Response]]) -> Response:
        """Run one view; map what went wrong to a status code and a log line."""
        path = request.query_params.get("path", "")
        try:
            return await fn()
        except Refused as e:
            log.warning("ui %s by %s %s: refused %d: %s", op, self.user, path, e.code, e)
            return PlainTextResponse(str(e) + "\n", status_code=e.code)
        except BadPath:
            log.warning("ui %s by %s %r: not a path in the mount", op, self.user, path)
            return PlainTextResponse("not a path in your memory\n", status_code=400)
        except OSError as e:
            code = _STATUS.get(e.errno or 0, 500)
            name = errno.errorcode.get(e.errno or 0, "?")
            log.warning("ui %s by %s %s: %s (%s)", op, self.user, path, name, e.strerror)
            return PlainTextResponse(f"{op} {path}: {e.strerror or e}\n", status_code=code)
        except (client.AnswerError, client.QueryRefused) as e:
            log.warning("ui %s by %s %s: %s", op, self.user, path, e)
            return PlainTextResponse(f"{e}\n", status_code=502)
        except Exception:  # a bug: one page fails, the server goes on serving
            log.exception("ui %s by %s %s: failed", op, self.user, path)
            return PlainTextResponse(f"{op} failed: see the log of memfs ui\n", status_code=500)

    async def _form(self, request: Request) -> dict[str, str]:
        """A posted form, only with this run's CSRF token in it."""
        if int(request.headers.get("content-length") or 0) > MAX_FORM:
            raise Refused(413, "too large")
        form = await request.form(max_files=0, max_fields=16, max_part_size=MAX_FORM)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not same(fields.get("csrf"), self.run.csrf):
            raise Refused(403, "the form's CSRF token is missing or stale: reload the page")
        return fields

    # -- pages ----------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        async def view() -> Response:
            if request.query_params.get("fresh"):  # "refresh now": wait for a new one
                self.memory.overviews.drop()
            o, taken = await run_in_threadpool(self.memory.overview)
            want_type = request.query_params.get("type")
            want_folder = request.query_params.get("folder")
            picked = [  # newest first, as the overview keeps them
                e
                for e in o.entries
                if (want_type is None or (e.get("type") or "(no type)") == want_type)
                and (want_folder is None or folder_of(e["path"]) == want_folder)
            ]
            page_no = request.query_params.get("page", "0")
            page = int(page_no) if page_no.isdigit() else 0
            memos = await run_in_threadpool(_render_memos, o.memos)
            pages = -(-len(picked) // PAGE)
            keep = {k: v for k, v in (("type", want_type), ("folder", want_folder)) if v is not None}
            return self._page(
                request, "overview.html", o=o, memos=memos, total=len(picked), taken=_clock(taken),
                entries=picked[page * PAGE : (page + 1) * PAGE], page=page, pages=pages,
                newer=link("", page=str(page - 1), **keep) if page > 0 else None,
                older=link("", page=str(page + 1), **keep) if page + 1 < pages else None,
                want_type=want_type, want_folder=want_folder, usage=_usage(o.who.get("usage") or {}),
            )  # fmt: skip

        return await self.guarded(request, "overview", view)

    async def search(self, request: Request) -> Response:
        async def view() -> Response:
            q = request.query_params.get("q", "")
            mode = request.query_params.get("mode", "hybrid")
            if mode not in MODES:
                raise Refused(400, f"mode is one of {', '.join(MODES)}")
            filters = {k: request.query_params.get(k, "").replace('"', "") for k in FILTERS}
            query = " ".join([q, *(f'{k}:"{v}"' for k, v in filters.items() if v.strip())]).strip()
            results = await run_in_threadpool(self.memory.search, query, mode) if query else None
            hits = [(shown(os.fsdecode(h.path)), h.fields) for h in results.hits] if results else []
            return self._page(
                request,
                "search.html",
                q=q,
                mode=mode,
                modes=MODES,
                filters=filters,
                results=results,
                hits=hits,
            )

        return await self.guarded(request, "search", view)

    async def entry(self, request: Request) -> Response:
        async def view() -> Response:
            rel = rel_of(request.query_params.get("path", ""))
            page = await run_in_threadpool(self._entry_page, rel)
            editable = page["text"] is not None and not rel.startswith(os.fsdecode(CONTROL_NAME) + "/")
            where = {"path": shown(rel), "conflict": conflict_original(shown(rel))}
            return self._page(request, "entry.html", editable=editable, **where, **page)

        return await self.guarded(request, "entry", view)

    async def edit(self, request: Request) -> Response:
        async def view() -> Response:
            rel = rel_of(request.query_params.get("path", ""))
            if rel.startswith(os.fsdecode(CONTROL_NAME) + "/"):
                raise Refused(403, "memfs's own files are read-only")
            data = await run_in_threadpool(self.memory.read, rel)
            text = data.decode("utf-8", errors="replace")
            return self._page(request, "edit.html", path=shown(rel), text=text)

        return await self.guarded(request, "edit", view)

    def _entry_page(self, rel: str) -> dict:
        """What the entry page shows (in a worker thread: parsing and rendering cost time)."""
        try:
            data: bytes | None = self.memory.read(rel)
        except FileNotFoundError:
            data = None  # deleted: its history can still bring it back
        versions = self.memory.history(rel)
        if data is None and not versions:
            raise FileNotFoundError(errno.ENOENT, "no such file and no history", rel)
        page: dict = {
            "text": None,
            "parsed": None,
            "body": None,
            "cut": 0,
            "versions": list(reversed(versions)),
        }
        if data is not None:
            page["text"] = data.decode("utf-8", errors="replace")
            page["parsed"] = entry.parse(data)
            page["body"], page["cut"] = render.render_entry(page["parsed"].body, folder_of(rel))
        return page

    async def diff(self, request: Request) -> Response:
        async def view() -> Response:
            rel = rel_of(request.query_params.get("path", ""))
            a, b = request.query_params.get("a", ""), request.query_params.get("b", CURRENT)

            def texts() -> tuple[str, str]:
                return (self._side(rel, a), self._side(rel, b))

            old, new = await run_in_threadpool(texts)
            d = await run_in_threadpool(render.diff, old, new)
            labels = {"a_label": _version_label(a), "b_label": _version_label(b)}
            return self._page(request, "diff.html", path=shown(rel), diff=d, **labels)

        return await self.guarded(request, "diff", view)

    def _side(self, rel: str, name: str) -> str:
        data = self.memory.read(rel) if name == CURRENT else self.memory.version(rel, name)
        return data.decode("utf-8", errors="replace")

    async def activity(self, request: Request) -> Response:
        async def view() -> Response:
            changes = await run_in_threadpool(self.memory.changes)
            who = request.query_params.get("user", "").strip()
            where = request.query_params.get("path", "").strip()
            users = sorted({c.user.partition(" (via ")[0] for c in changes})
            picked = [
                c
                for c in changes
                if (not who or c.user == who or c.user.startswith(who + " (via "))
                and (not where or where in c.path or where in (c.new_path or ""))
            ]
            page_no = request.query_params.get("page", "0")
            page = int(page_no) if page_no.isdigit() else 0
            keep = {k: v for k, v in (("user", who), ("path", where)) if v}
            more = len(picked) > (page + 1) * FEED
            return self._page(
                request, "activity.html", changes=picked[page * FEED : (page + 1) * FEED], users=users,
                who=who, where=where, older=link("activity", page=str(page + 1), **keep) if more else None,
            )  # fmt: skip

        return await self.guarded(request, "activity", view)

    async def conflict(self, request: Request) -> Response:
        async def view() -> Response:
            copy = rel_of(request.query_params.get("path", ""))
            original = self._original(copy)

            def both() -> tuple[str, str | None]:
                theirs = self.memory.read(copy).decode("utf-8", errors="replace")
                try:
                    ours: str | None = self.memory.read(original).decode("utf-8", errors="replace")
                except FileNotFoundError:
                    ours = None
                return theirs, ours

            theirs, ours = await run_in_threadpool(both)
            d = await run_in_threadpool(render.diff, ours or "", theirs)
            names = {"copy": shown(copy), "original": shown(original)}
            return self._page(request, "conflict.html", theirs=theirs, ours=ours, diff=d, **names)

        return await self.guarded(request, "conflict", view)

    @staticmethod
    def _original(copy: str) -> str:
        found = conflict_original(copy)
        if found is None:
            raise Refused(400, "not a conflict copy")
        return found[0]

    # -- forms ----------------------------------------------------------------------------
    async def save(self, request: Request) -> Response:
        async def act() -> Response:
            f = await self._form(request)
            rel = rel_of(f.get("path", ""))
            data = _textarea(f)
            await run_in_threadpool(self.memory.save, rel, data)
            log.info("ui save by %s %s (%d bytes)", self.user, shown(rel), len(data))
            return RedirectResponse(link("entry", path=shown(rel)), status_code=303)

        return await self.guarded(request, "save", act)

    async def delete(self, request: Request) -> Response:
        async def act() -> Response:
            f = await self._form(request)
            rel = rel_of(f.get("path", ""))
            await run_in_threadpool(self.memory.delete, rel)
            log.info("ui delete by %s %s", self.user, shown(rel))
            return RedirectResponse(link("entry", path=shown(rel)), status_code=303)

        return await self.guarded(request, "delete", act)

    async def restore(self, request: Request) -> Response:
        async def act() -> Response:
            f = await self._form(request)
            rel = rel_of(f.get("path", ""))
            await run_in_threadpool(self.memory.restore, rel, f.get("version", ""))
            log.info("ui restore by %s %s to %s", self.user, shown(rel), f.get("version"))
            return RedirectResponse(link("entry", path=shown(rel)), status_code=303)

        return await self.guarded(request, "restore", act)

    async def resolve(self, request: Request) -> Response:
        """A conflict copy settled: keep ours (drop the copy), theirs (the copy's bytes
        replace the file), or a merge edited on the page; the copy goes in every case."""

        async def act() -> Response:
            f = await self._form(request)
            copy = rel_of(f.get("path", ""))
            original = self._original(copy)
            keep = f.get("keep", "")

            def settle() -> None:
                if keep == "theirs":
                    self.memory.save(original, self.memory.read(copy))
                elif keep == "merge":
                    self.memory.save(original, _textarea(f))
                elif keep != "ours":
                    raise Refused(400, "keep is ours, theirs or merge")
                self.memory.delete(copy)

            await run_in_threadpool(settle)
            log.info("ui resolve by %s %s: kept %s", self.user, shown(copy), keep)
            return RedirectResponse(link("entry", path=shown(original)), status_code=303)

        return await self.guarded(request, "resolve", act)


def _textarea(form: dict[str, str]) -> bytes:
    """A posted file's content: browsers send a textarea's lines with CRLF, and a file
    keeps the LF it was written with."""
    return form.get("content", "").replace("\r\n", "\n").encode()


def _version_label(name: str) -> str:
    """A version as a person reads it: when, and who (and from where, if synced)."""
    if name == CURRENT:
        return "the file now"
    parsed = parse_version_name(name)
    if parsed is None:
        return name
    stamp, user, via = parsed
    return f"{when(stamp)} by {user}" + (f" (arrived by sync from {via})" if via else "")


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(t))


def _render_memos(memos: list) -> list:
    return [
        (m, render.render_markdown(m.text, folder_of(m.path)) if m.text is not None else None) for m in memos
    ]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _usage(u: dict) -> list[tuple[str, str, str, int]]:
    """(what, used, limit, percent) for each limit whoami reports."""
    out = []
    for key, used in u.items():
        limit = u.get(f"{key}_limit")
        if (
            not key.startswith(("private_", "team_"))
            or not isinstance(used, int)
            or not isinstance(limit, int)
        ):
            continue  # open handles: this page's own, not worth a card
        pct = min(100, round(100 * used / limit)) if limit > 0 else 0
        if key.endswith("_bytes"):
            out.append((key.replace("_", " "), _size(used), _size(limit), pct))
        else:
            out.append((key.replace("_", " "), str(used), str(limit), pct))
    return out
