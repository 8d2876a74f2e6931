"""memfs ui without a mount: untrusted markdown made inert, the request guard, paths from
requests, and the names and log lines the pages read back."""

from __future__ import annotations

import os
import threading
import time
from html.parser import HTMLParser

import pytest

from memfs import client
from memfs.names import conflict_name, conflict_original, parse_version_name, version_name
from memfs.ui import render
from memfs.ui.app import ListenError, parse_listen
from memfs.ui.cache import Snapshot
from memfs.ui.memory import BadPath, rel_of, shown
from memfs.ui.security import CSP, Guard, Secrets, hosts_for

HOSTILE = """# Title <script>document.title='pwned'</script>

<img src=x onerror="document.title='pwned'">
[click](javascript:document.title='pwned') [data](data:text/html;base64,PHNjcmlwdD4=)
<a href="javascript:alert(1)">raw</a> <iframe src="https://evil.example/"></iframe>
[ok](https://example.com/x) [sib](tabs.md) [up](../../etc/passwd)
"""


class Elements(HTMLParser):
    """Every element and attribute a browser would build from some HTML."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def test_hostile_markdown_renders_inert():
    html = render.render_markdown(HOSTILE + "<javascript:alert(1)> <vbscript:msgbox(1)>", "team")
    found = Elements(html).found
    assert {tag for tag, _ in found} <= render.TAGS and not {"script", "iframe", "img"} & {
        t for t, _ in found
    }
    for tag, attrs in found:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for a in ("href", "src"):
            assert not (attrs.get(a) or "").lower().startswith(("javascript:", "data:", "vbscript:")), attrs
    assert "&lt;script&gt;" in html  # shown as text, not dropped: a person sees what was written
    hrefs = [attrs.get("href") for tag, attrs in found if tag == "a"]
    assert hrefs == ["https://example.com/x", "/entry?path=team%2Ftabs.md", "#"], hrefs
    assert all(attrs.get("rel") == "noopener noreferrer nofollow" for tag, attrs in found if tag == "a")


def test_a_diff_counts_and_caps_lines():
    d = render.diff("a\nb\nc\n", "a\nB\nc\nd\n")
    assert [(x.kind, x.text) for x in d.lines if x.kind != "same"] == [
        ("hunk", "@@ -1,3 +1,4 @@"), ("del", "-b"), ("add", "+B"), ("add", "+d"),
    ]  # fmt: skip
    assert (d.added, d.removed, d.hidden) == (2, 1, 0)
    old = "".join(f"line {i}\n" for i in range(20_000))  # lines are read after the inputs' temporaries
    d = render.diff(old, old.replace("line 12345\n", "changed\n"))
    assert [x.text for x in d.lines if x.kind in ("add", "del")] == ["-line 12345", "+changed"]
    assert [x.text for x in d.lines if x.kind == "same"] == [
        f" line {i}" for i in (12342, 12343, 12344, 12346, 12347, 12348)
    ]
    big = render.diff("", "x\n" * (render.MAX_DIFF_LINES + 50))
    assert len(big.lines) == render.MAX_DIFF_LINES and big.added == render.MAX_DIFF_LINES + 50
    assert big.hidden == 51  # the hunk line counts too


def test_version_names_and_conflict_copies_read_back():
    assert parse_version_name(version_name(b"team/x.md", 1_700_000_000, "alice", 7).decode()) == (
        "20231114T221320Z", "alice", None,
    )  # fmt: skip
    synced = version_name(b"x.md", 0, "bob (via hostB)", 1).decode()
    assert parse_version_name(synced) == ("19700101T000000Z", "bob", "hostB")
    # a name someone made to look like a synced version is not read as one
    assert parse_version_name("19700101T000000Z-bob (via x/y)-000001.md") is None
    assert parse_version_name("notes.md") is None
    copy = conflict_name(b"notes/x.md", "hostB", 0).decode()
    assert conflict_original(copy) == ("notes/x.md", "hostB")
    assert conflict_original("notes/x.md") is None


def test_log_lines_read_as_changes():
    text = (
        "2026-12-02T07:00:00Z bob (via hostB) M team/x.md\n"
        '2026-12-02T06:59:00Z alice R a.md -> "odd\\nname.md"\n'
        "2026-12-02T06:58:00Z alice P team/x.md version 20261202T065800Z-alice-000001.md\n"
        "garbage\n"
    )
    c = client.parse_changes(text)
    assert [(x.user, x.op, x.path, x.new_path) for x in c] == [
        ("bob (via hostB)", "M", "team/x.md", None),
        ("alice", "R", "a.md", '"odd\\nname.md"'),
        ("alice", "P", "team/x.md", "20261202T065800Z-alice-000001.md"),
    ]


def test_paths_from_requests_stay_inside_the_mount():
    assert rel_of("team/x.md") == "team/x.md"
    odd = os.fsencode("a\nb.md") + b"\xff"
    assert os.fsencode(rel_of(shown(os.fsdecode(odd)))) == odd  # quoted names come back exact
    for bad in ("", "/etc/passwd", "../x", "team/../../x", "a//b", "./a", "a/.", '"a\\000b"', "x" * 5000):
        with pytest.raises(BadPath):
            rel_of(bad)


def test_listen_only_on_loopback():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen("localhost:9") == ("127.0.0.1", 9)
    for bad in ("0.0.0.0:80", "10.0.0.1:80", "example.com:80", "127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(ListenError):
            parse_listen(bad)


# -- the guard, called as an ASGI app ------------------------------------------------------
async def _call(guard: Guard, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    path, _, query = path.partition("?")
    scope = {
        "type": "http", "method": method, "path": path, "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "client": ("127.0.0.1", 1),
    }  # fmt: skip
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await guard(scope, receive, send)
    start = sent[0]
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], head, b"".join(m.get("body", b"") for m in sent[1:])


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"page"})


@pytest.fixture
def guard(checklogs):
    checklogs.expect(r"^refused ")
    run = Secrets(8765, hosts_for("127.0.0.1", 8765))
    return Guard(_ok, run), run


async def test_the_guard_lets_through_only_the_token_holder_on_our_host(guard):
    g, run = guard
    host = {"Host": "127.0.0.1:8765"}
    code, head, _ = await _call(g, "GET", "/", host)
    assert code == 403 and head["content-security-policy"] == CSP
    code, _, _ = await _call(g, "GET", "/?token=" + run.token, {"Host": "evil.example:8765"})
    assert code == 421  # DNS rebinding: the right token at a foreign name is still refused
    code, head, _ = await _call(g, "GET", "/entry?path=x.md&token=" + run.token, host)
    assert code == 303 and head["location"] == "/entry?path=x.md"  # the token leaves the address bar
    assert head["set-cookie"].startswith(f"{run.cookie}={run.token};") and "HttpOnly" in head["set-cookie"]
    assert "SameSite=Strict" in head["set-cookie"]
    cookie = {"Cookie": f"{run.cookie}={run.token}"}
    code, head, body = await _call(g, "GET", "/", host | cookie)
    assert (code, body) == (200, b"page") and "access-control-allow-origin" not in head
    assert head["x-frame-options"] == "DENY" and head["referrer-policy"] == "same-origin"
    assert (await _call(g, "GET", "/", host | {"Cookie": f"{run.cookie}=guess"}))[0] == 403
    assert (await _call(g, "GET", "/", {"Host": "localhost:8765"} | cookie))[0] == 200
    assert (await _call(g, "GET", "/", {"Host": "127.0.0.1:8766"} | cookie))[0] == 421
    code, head, _ = await _call(g, "GET", "//evil.example/?token=" + run.token, host)
    assert head["location"] == "/evil.example/"  # never a protocol-relative redirect


async def test_the_guard_refuses_forms_from_elsewhere(guard):
    g, run = guard
    ours = {"Host": "127.0.0.1:8765", "Cookie": f"{run.cookie}={run.token}"}
    assert (await _call(g, "POST", "/save", ours | {"Origin": "http://127.0.0.1:8765"}))[0] == 200
    assert (await _call(g, "POST", "/save", ours | {"Origin": "http://evil.example"}))[0] == 403
    assert (await _call(g, "POST", "/save", ours | {"Origin": "http://127.0.0.1:9999"}))[0] == 403
    assert (await _call(g, "POST", "/save", ours | {"Sec-Fetch-Site": "cross-site"}))[0] == 403
    assert (await _call(g, "POST", "/save", ours | {"Sec-Fetch-Site": "same-site"}))[0] == 403


def test_an_entry_past_the_render_cap_renders_its_start():
    small, cut = render.render_entry("# hi\n", "")
    assert cut == 0 and "<h1>hi</h1>" in small
    text = "line of text\n" * (render.MAX_RENDERED // 13 + 100)
    html, cut = render.render_entry(text, "")
    assert 0 < cut < 13 * 101 + 13 and html.count("line of text") == (len(text) - cut) // 13


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_overview_snapshot_is_rebuilt_in_the_background_and_dropped_on_a_change():
    builds: list[int] = []
    gate = threading.Event()

    def build() -> int:
        builds.append(len(builds))
        if len(builds) > 1:
            gate.wait(10)  # a slow rebuild: requests meanwhile get the old value at once
        return len(builds)

    clock = Clock()
    snap = Snapshot(build, max_age=5, clock=clock)
    try:
        assert snap.get()[0] == 1 and snap.get()[0] == 1  # built once, in the caller's thread
        clock.now = 6
        assert snap.get()[0] == 1 and snap.get()[0] == 1  # old: shown, one rebuild started
        gate.set()
        deadline = time.monotonic() + 10
        while snap.get()[0] != 2:
            assert time.monotonic() < deadline, "the background rebuild never landed"
            time.sleep(0.01)
        assert len(builds) == 2
        snap.drop()  # a change made from the page: the next request builds anew, and waits for it
        assert snap.get()[0] == 3
    finally:
        snap.close()


def test_a_request_before_the_first_snapshot_waits_for_the_one_being_built():
    builds: list[int] = []
    gate = threading.Event()

    def build() -> int:
        builds.append(1)
        gate.wait(10)
        return len(builds)

    snap = Snapshot(build, max_age=5, clock=Clock())
    try:
        snap.start()
        waiter = threading.Thread(target=lambda: builds.append(snap.get()[0] * 100))
        waiter.start()
        gate.set()
        waiter.join(10)
        assert builds == [1, 100]  # one build, not a second one for the first request
    finally:
        snap.close()
