"""memfs ui on a real mount, run as two uids at once: over HTTP (the guards) and in a real
browser (Debian's chromium, headless, driven by Selenium): what each user sees, edits,
restores, and that a hostile entry stays inert. Screenshots go to $MEMFS_ARTIFACTS (or a
temp dir), never to the repository."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from conftest import ALICE, BOB, CAROL, CHECKOUT, TIMEOUT, memfs_cmd
from t4_sync import hosts, sync
from t4_team import TEAM_CONFIG

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def write(m, uid: int, rel: str, text: str) -> None:
    m.run(uid, ["sh", "-ec", 'cat > "$1"', "sh", rel], input=text)


def entry(name: str, desc: str, kind: str, body: str) -> str:
    return f"---\nname: {name}\ndescription: {desc}\ntype: {kind}\n---\n{body}\n"


class UI:
    """`memfs ui` started as a uid on a free port, and HTTP requests to it."""

    def __init__(self, m, uid: int):
        self.log = m.base / f"ui-{uid}.log"
        self.proc = subprocess.Popen(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-m", "memfs",
             "ui", "--mount", str(m.mnt)],
            cwd=CHECKOUT, env=m.env, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
        )  # fmt: skip
        self.url = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        assert self.url.startswith("http://127.0.0.1:"), self.log.read_text()
        parsed = urllib.parse.urlsplit(self.url)
        self.port = parsed.port or 0
        self.token = urllib.parse.parse_qs(parsed.query)["token"][0]
        self.cookie = f"memfs_ui_{self.port}={self.token}"
        self.base = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        h = {"Host": f"127.0.0.1:{self.port}", "Cookie": self.cookie} | (headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        data = urllib.parse.urlencode(body).encode() if body is not None else None
        if data is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
        finally:
            conn.close()

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def csrf(self, page: str = "team/deploy.md") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get("/edit?path=" + page)[2])
        assert found is not None
        return found[1]

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)
        return self.log.read_text()


@pytest.fixture
def uis(make_mount):
    m = make_mount(TEAM_CONFIG)
    m.sh(ALICE, "echo '- [Tabs](tabs.md) — how we indent' > MEMORY.md; mkdir -p team")
    write(m, ALICE, "tabs.md", entry("Tabs", "we indent with tabs", "feedback", "alice-private-tabs"))
    write(m, BOB, "car.md", entry("Car", "bob drives", "user", "bob-private-car"))
    write(m, ALICE, "team/deploy.md", entry("Deploy", "how we ship", "project", "v1"))
    started: list[UI] = []
    try:
        started += [UI(m, ALICE), UI(m, BOB)]
        yield m, started[0], started[1]
    finally:
        logs = [u.stop() for u in started]
    for text in logs:
        assert "Traceback" not in text and " ERROR " not in text, text


def test_requests_without_the_token_or_from_elsewhere_are_refused(uis):
    m, alice, bob = uis
    assert alice.get("/", headers={"Cookie": None})[0] == 403
    assert alice.get("/", headers={"Cookie": bob.cookie})[0] == 403  # bob's page's secret is not alice's
    assert alice.get("/", headers={"Host": "attacker.example"})[0] == 421
    code, head, _ = alice.get("/?token=" + alice.token, headers={"Cookie": None})
    assert code == 303 and head["set-cookie"].startswith(alice.cookie)
    code, head, page = alice.get("/")
    assert code == 200 and "alice-private" not in page and "Tabs" in page
    assert (
        "script-src" not in head["content-security-policy"]
        and "default-src 'none'" in head["content-security-policy"]
    )
    code, head, _ = alice.request("OPTIONS", "/save", headers={"Origin": "http://evil.example"})
    assert not [h for h in head if h.startswith("access-control-")]
    # a form without this run's CSRF token, or posted from another origin, changes nothing
    form = {"path": "tabs.md", "content": "overwritten"}
    assert alice.request("POST", "/save", body=form)[0] == 403
    ok = form | {"csrf": alice.csrf()}
    assert alice.request("POST", "/save", body=ok, headers={"Origin": "http://evil.example"})[0] == 403
    assert alice.request("POST", "/save", body=form | {"csrf": bob.csrf()})[0] == 403
    assert "alice-private-tabs" in m.sh(ALICE, "cat tabs.md").stdout
    # paths out of the mount, and other users' memory, are refused whatever the page is asked
    assert alice.get("/entry?path=../../../etc/passwd")[0] == 400
    assert alice.get("/entry?path=" + urllib.parse.quote(str(m.mnt / "car.md")))[0] == 400
    assert alice.get("/entry?path=.memfs/users/bob/car.md")[0] in (403, 404)
    assert alice.get("/entry?path=car.md")[0] == 404  # alice's car.md: she has none
    assert alice.get("/edit?path=.memfs/whoami")[0] == 403
    assert alice.request("POST", "/delete", body={"path": "../x", "csrf": alice.csrf()})[0] == 400
    # the command refuses, in one line, an address others could reach and a folder that is no mount
    res = m.run(ALICE, memfs_cmd("ui", "--mount", str(m.mnt), "--listen", "0.0.0.0:8080"), check=False)
    assert (res.returncode, res.stdout) == (1, "") and "only on a loopback address" in res.stderr, res.stderr
    res = m.run(ALICE, memfs_cmd("ui", "--mount", str(m.base)), check=False)
    assert res.returncode == 1 and "is not a memfs mount" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_sync_arrivals_and_a_real_conflict_copy_on_the_page(make_mount, base_dir):
    remote = base_dir / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--shared=0777", "-b", "main", str(remote)], check=True)
    a, b = hosts(make_mount, remote)
    write(a, ALICE, "team/same.md", "base\n")
    sync(a)
    sync(b, BOB)
    write(a, ALICE, "team/same.md", "alice\n")
    write(b, BOB, "team/same.md", "bob\n")
    write(b, BOB, "team/new.md", entry("New", "from host1", "project", "bob-on-host1"))
    sync(a)
    sync(b, BOB)
    sync(a)
    (copy,) = [f"team/{n}" for n in a.sh(ALICE, "ls team").stdout.split() if n.startswith("same.conflict-")]
    ui = UI(a, ALICE)
    try:
        # what arrived by sync says so, in the feed and in the file's history
        feed = ui.get("/activity?user=bob")[2]
        assert "bob (via host1)" in feed and "team/new.md" in feed
        page = ui.get("/entry?path=team/new.md")[2]
        assert '<span class="via" title="arrived by sync">bob via host1</span>' in page
        assert f'href="/conflict?path={urllib.parse.quote(copy, safe="")}"' in ui.get("/?fresh=1")[2]
        code, _, page = ui.get("/conflict?path=" + copy)
        assert code == 200 and "alice\n" in page and "bob\n" in page
        form = {
            "path": copy,
            "keep": "merge",
            "content": "alice\r\nand bob\r\n",
            "csrf": ui.csrf("team/new.md"),
        }
        code, head, _ = ui.request("POST", "/resolve", body=form)
        assert code == 303 and head["location"] == "/entry?path=team%2Fsame.md"
        assert ui.get("/conflict?path=team/same.md")[0] == 400  # not a copy
    finally:
        assert "Traceback" not in ui.stop()
    sync(a)
    sync(b, BOB)
    for m, uid in ((a, ALICE), (b, BOB)):  # the merge, on both hosts; the copy gone from both
        assert m.sh(uid, "cat team/same.md").stdout == "alice\nand bob\n"
        assert "conflict" not in m.sh(uid, "ls team").stdout


def test_entries_json_lists_what_each_caller_may_read(uis):
    m, _alice, _bob = uis
    listing = {uid: json.loads(m.sh(uid, "cat .memfs/entries.json").stdout) for uid in (ALICE, BOB, CAROL)}
    paths = {uid: sorted(e["path"] for e in v["entries"]) for uid, v in listing.items()}
    assert paths[ALICE] == ["tabs.md", "team/deploy.md"]
    assert paths[BOB] == ["car.md", "team/deploy.md"]
    assert paths[CAROL] == [".memfs/users/alice/tabs.md"]  # her read grant on alice's memory
    (tabs,) = listing[ALICE]["entries"][:1]
    assert (tabs["name"], tabs["type"], tabs["group"], tabs["problems"]) == (
        "Tabs",
        "feedback",
        "Private",
        [],
    )
    assert listing[CAROL]["groups"] == ["Private", "alice (read-only grant)"]


def test_search_filters_narrow_what_alice_may_read(uis):
    _m, alice, _bob = uis
    hits = lambda q: re.findall(r'<a href="/entry\?path=([^"]+)">', alice.get("/search?" + q)[2])  # noqa: E731
    assert hits("q=alice-private-tabs&mode=keyword&scope=private") == ["tabs.md"]
    assert hits("q=alice-private-tabs&mode=keyword&scope=team") == []
    assert hits("q=v1&mode=keyword&type=project") == ["team%2Fdeploy.md"]
    assert hits("q=v1&mode=keyword&type=feedback") == []
    assert hits("q=bob-private-car&mode=hybrid") == []  # bob's, never alice's
    assert alice.get("/search?q=x&mode=fast")[0] == 400


def test_keep_ours_or_theirs(uis):
    m, alice, _bob = uis
    copies = [f"team/deploy.conflict-host{i}-20261201T000000Z.md" for i in (1, 2)]
    for i, copy in enumerate(copies):  # named as sync names them (the real thing: the sync test)
        write(m, ALICE, copy, entry("Deploy", "how we ship", "project", f"theirs {i}"))
    assert (
        alice.request("POST", "/resolve", body={"path": copies[0], "keep": "ours", "csrf": alice.csrf()})[0]
        == 303
    )
    assert m.sh(ALICE, "cat team/deploy.md").stdout.endswith("\nv1\n")  # ours kept, the copy gone
    assert (
        alice.request("POST", "/resolve", body={"path": copies[1], "keep": "theirs", "csrf": alice.csrf()})[0]
        == 303
    )
    assert m.sh(ALICE, "cat team/deploy.md").stdout.endswith("\ntheirs 1\n")
    assert "conflict" not in m.sh(ALICE, "ls team").stdout
    assert (
        alice.request("POST", "/resolve", body={"path": copies[0], "keep": "x", "csrf": alice.csrf()})[0]
        == 400
    )


def test_delete_then_bring_it_back(uis):
    m, alice, _bob = uis
    assert "which does not exist" not in alice.get("/")[2]  # the overview is kept from here on
    code, _, _ = alice.request("POST", "/delete", body={"path": "tabs.md", "csrf": alice.csrf()})
    assert code == 303 and m.sh(ALICE, "test -e tabs.md", check=False).returncode == 1
    # the page's own change is on the overview at once: MEMORY.md's line now points nowhere
    assert "MEMORY.md:1: index line points to tabs.md, which does not exist" in alice.get("/")[2]
    code, _, page = alice.get("/entry?path=tabs.md")
    assert code == 200 and "does not exist now" in page
    version = re.findall(r'name="version" value="([^"]+)"', page)[0]
    assert (
        alice.request("POST", "/restore", body={"path": "tabs.md", "version": version, "csrf": alice.csrf()})[
            0
        ]
        == 303
    )
    assert "alice-private-tabs" in m.sh(ALICE, "cat tabs.md").stdout


# -- in a real browser -------------------------------------------------------------------
@pytest.fixture
def browsers():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install --test)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    made = []

    def browser():
        o = webdriver.ChromeOptions()
        o.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,900", "--disable-extensions", "--no-first-run"):  # fmt: skip
            o.add_argument(a)
        d = webdriver.Chrome(options=o, service=Service(CHROMEDRIVER))
        d.set_page_load_timeout(TIMEOUT)
        made.append(d)
        return d

    yield browser
    for d in made:
        d.quit()


@pytest.fixture
def artifacts(request) -> Path:
    root = os.environ.get("MEMFS_ARTIFACTS") or os.path.join(tempfile.gettempdir(), "memfs-artifacts")
    d = Path(root) / request.node.name
    d.mkdir(parents=True, exist_ok=True)
    return d


def click_and_wait(browser, element) -> None:
    """Click what leads to another page, and wait until that page replaced this one
    (a click returns before the navigation it starts)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()
    WebDriverWait(browser, TIMEOUT).until(expected_conditions.staleness_of(element))
    WebDriverWait(browser, TIMEOUT).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
    )


HOSTILE = """---
name: Hostile <script>document.title='pwned-name'</script>
description: <img src=x onerror="document.title='pwned-desc'">
type: reference
---
# Notes <script>document.title='pwned'</script>

<img src=x onerror="document.title='pwned-img'">
[click me](javascript:document.title='pwned-link')
<a href="javascript:document.title='pwned-raw'">raw</a>
<iframe src="/?x=1"></iframe><form action="/delete" method="post"><button>go</button></form>
"""


@pytest.mark.slow
def test_two_users_in_the_browser(uis, browsers, artifacts):
    from selenium.webdriver.common.by import By

    m, alice, bob = uis
    a, b = browsers(), browsers()
    a.get(alice.url)
    b.get(bob.url)
    assert a.current_url == alice.base + "/"  # the token traded for a cookie, gone from the bar
    a.save_screenshot(str(artifacts / "alice-overview.png"))
    page_a, page_b = a.page_source, b.page_source
    assert "Tabs" in page_a and "Car" not in page_a and "car.md" not in page_a
    assert "car.md" in page_b and "tabs.md" not in page_b
    a.get(alice.base + "/search?q=bob-private-car&mode=keyword")
    assert "car.md" not in a.page_source and "0 of 0 results" in a.page_source
    a.get(alice.base + "/search?q=alice-private-tabs&mode=keyword")
    hits = a.find_elements(By.CSS_SELECTOR, "ol.hits li")
    assert len(hits) == 1 and "tabs.md" in hits[0].text and "keyword" in hits[0].text  # the ranker is shown

    # bob changes team memory with plain files; alice's feed shows it, filtered by user
    write(m, BOB, "team/deploy.md", entry("Deploy", "how we ship", "project", "v2 by bob"))
    write(m, BOB, "team/hostile.md", HOSTILE)
    a.get(alice.base + "/activity?user=bob")
    rows = [r.text for r in a.find_elements(By.CSS_SELECTOR, "table.feed tr")[1:]]
    assert any("bob" in r and "team/deploy.md" in r and "changed" in r for r in rows), rows
    assert all("alice" not in r.split()[1] for r in rows), rows
    a.save_screenshot(str(artifacts / "alice-activity.png"))

    # a hostile entry: shown as text, nothing runs, no element it asked for exists
    a.get(alice.base + "/entry?path=team/hostile.md")
    assert a.title == "team/hostile.md · memfs"
    rendered = a.find_element(By.ID, "rendered")
    assert "<script>" in rendered.text or "document.title" in rendered.text
    for css in ("script", "iframe", "img", "form", "a[href^='javascript']"):
        assert not rendered.find_elements(By.CSS_SELECTOR, css), css
    assert not a.find_elements(By.CSS_SELECTOR, "a[href^='javascript'], [onerror]")
    a.save_screenshot(str(artifacts / "alice-hostile.png"))

    # alice edits the team entry on its page: a version attributed to her
    a.get(alice.base + "/entry?path=team/deploy.md")
    click_and_wait(a, a.find_element(By.ID, "edit"))
    box = a.find_element(By.NAME, "content")
    box.clear()
    box.send_keys(
        "---\nname: Deploy\ndescription: how we ship\ntype: project\n---\nv3 by alice in the page\n"
    )
    click_and_wait(a, a.find_element(By.NAME, "save"))
    assert a.current_url == alice.base + "/entry?path=team%2Fdeploy.md", a.page_source
    assert m.sh(BOB, "cat team/deploy.md").stdout.endswith("v3 by alice in the page\n")  # LF, not CRLF
    times = [li.text for li in a.find_elements(By.CSS_SELECTOR, "ol.timeline li")]
    assert len(times) == 3 and " alice " in times[0] and " bob " in times[1] and " alice " in times[2], times

    # a diff between two versions, then restore the oldest: a fourth version, by alice
    click_and_wait(a, a.find_element(By.CSS_SELECTOR, "ol.timeline li:nth-child(2) a"))  # bob's "changes"
    dels = [e.text for e in a.find_elements(By.CSS_SELECTOR, "pre.diff .del")]
    adds = [e.text for e in a.find_elements(By.CSS_SELECTOR, "pre.diff .add")]
    assert dels == ["-v1"] and adds == ["+v2 by bob"], (dels, adds)
    a.save_screenshot(str(artifacts / "alice-diff.png"))
    a.get(alice.base + "/entry?path=team/deploy.md")
    click_and_wait(a, a.find_elements(By.NAME, "restore")[-1])
    assert m.sh(BOB, "cat team/deploy.md").stdout.endswith("\nv1\n")
    times = [li.text for li in a.find_elements(By.CSS_SELECTOR, "ol.timeline li")]
    assert len(times) == 4 and " alice " in times[0], times
    a.save_screenshot(str(artifacts / "alice-entry.png"))
    # bob's page sees alice's restore as hers, in his feed and in the file's history
    b.get(bob.base + "/activity?path=team/deploy.md")
    assert "alice" in b.find_elements(By.CSS_SELECTOR, "table.feed tr")[1].text
