"""Real Claude Code (the npm package's native binary, unmodified) keeps its memory on memfs.

Claude Code runs as several uids against a local stand-in of the Messages API
(fake_anthropic.py) whose "model" follows a tool plan written in the prompt, so the file
operations are Claude Code's own: its Write (temp file + rename), Read and Edit, its
rewrite of entries with `metadata:`, and its loading of MEMORY.md into the first message
of a session. Each of the README's three ways to point it at the mount is tested: the user
setting, the managed settings for every user of a host, and the environment variable.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ALICE, BOB, CAROL
from fake_anthropic import FakeAnthropic, system_text, texts, tool_results, user_text
from t4_search import hit_paths, search
from t4_team import TEAM_CONFIG

ROOT = Path(__file__).resolve().parents[1]
# scripts/install --test puts the pinned release's native binary here; MEMFS_TEST_CLAUDE
# names another one (to try another release).
BINARIES = (
    [Path(os.environ["MEMFS_TEST_CLAUDE"])]
    if os.environ.get("MEMFS_TEST_CLAUDE")
    else sorted(
        (ROOT / ".venv" / "claude-code" / "node_modules" / "@anthropic-ai").glob("claude-code-*/claude")
    )
)
RUN_TIMEOUT = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BINARIES, reason="Claude Code not installed (scripts/install --test does it)"),
]


@pytest.fixture
def api():
    srv = FakeAnthropic()
    yield srv
    srv.close()


def claude(m, api, uid, prompt, plan=(), *, settings=None, env=None, managed=None, flags=()):
    """One `claude -p` session as `uid`, its cwd a project in its home (not on the mount).
    `settings` becomes ~/.claude/settings.json; `managed` becomes
    /etc/claude-code/managed-settings.json inside a private mount namespace only."""
    home = m.home(uid)
    proj = home / "proj"
    (home / ".claude").mkdir(exist_ok=True)
    proj.mkdir(exist_ok=True)
    user_settings = home / ".claude" / "settings.json"
    user_settings.unlink(missing_ok=True)
    if settings is not None:
        user_settings.write_text(json.dumps(settings))
    for p in (home / ".claude", proj, user_settings):
        if p.exists():
            os.chown(p, uid, uid)
    full_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        **(env or {}),
    }
    text = f"{prompt}\nPLAN: {json.dumps(list(plan))}"
    cmd = [
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
        str(BINARIES[-1]), "-p", text, *flags,
    ]  # fmt: skip
    if managed is not None:
        # An overlay on /etc seen only by this process tree: the host's /etc is untouched.
        ov = m.base / f"etc-{uid}"
        (ov / "upper" / "claude-code").mkdir(parents=True, exist_ok=True)
        (ov / "work").mkdir(exist_ok=True)
        (ov / "upper" / "claude-code" / "managed-settings.json").write_text(json.dumps(managed))
        opts = f"lowerdir=/etc,upperdir={ov / 'upper'},workdir={ov / 'work'}"
        cmd = [
            "unshare", "--mount", "--propagation", "private", "sh", "-ec",
            f'mount -t overlay overlay -o {opts} /etc; exec "$@"', "sh", *cmd,
        ]  # fmt: skip
    res = subprocess.run(
        cmd, cwd=proj, env=full_env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )  # fmt: skip
    assert res.returncode == 0, f"claude as uid {uid} failed ({res.returncode}): {res.stderr[-2000:]}"
    assert res.stdout.strip().endswith("DONE"), res.stdout[-2000:]
    last = [b for b in api.sessions(text) if len(tool_results(b)) == len(plan)]
    assert last, f"no request of this session reached the stand-in with all {len(plan)} tool results"
    return last[-1]  # a retried request repeats the same body


def first_message(body) -> str:
    return user_text(body, first_only=True)


def results(body) -> list[str]:
    """The text of each tool result, in order (what Claude Code's tools reported)."""
    return ["".join(texts(r.get("content") or [])) for r in tool_results(body)]


def write(path, content):
    return ["Write", {"file_path": str(path), "content": content}]


def entry(name, desc, type_, body):
    return f"---\nname: {name}\ndescription: {desc}\ntype: {type_}\n---\n\n{body}\n"


def test_user_setting_gives_each_uid_its_own_memory(make_mount, api):
    m = make_mount(TEAM_CONFIG)
    mnt = m.mnt
    setting = {"autoMemoryDirectory": str(mnt)}
    for uid, who, mark in ((ALICE, "alice", "QUOKKA-ALICE"), (BOB, "bob", "WOMBAT-BOB")):
        body = claude(
            m, api, uid, f"remember {who}",
            [
                write(mnt / "indent.md", entry("indent", f"{who} indents with tabs", "feedback", mark)),
                write(mnt / "MEMORY.md", f"- [Indent](indent.md) — {who} {mark}\n"),
            ],
            settings=setting,
        )  # fmt: skip
        assert "# Memory" in system_text(body) and str(mnt) in system_text(body)
        assert all("successfully" in r for r in results(body)), results(body)

    # Claude Code rewrote each entry with the type under metadata:, as 2.1 does outside team/.
    alice_entry = m.run(ALICE, ["cat", "indent.md"]).stdout
    assert "metadata:" in alice_entry and "QUOKKA-ALICE" in alice_entry and "WOMBAT" not in alice_entry
    # memfs reads that type: search, status and the index see it.
    assert hit_paths(search(m, ALICE, "mode:keyword type:feedback tabs")) == ["indent.md"]
    assert "no type" not in m.run(ALICE, ["cat", ".memfs/status"]).stdout
    assert "### feedback" in m.run(ALICE, ["cat", ".memfs/index.md"]).stdout

    # Recall: each new session starts with its own MEMORY.md and never the other's.
    a = first_message(claude(m, api, ALICE, "recall alice", settings=setting))
    b = first_message(claude(m, api, BOB, "recall bob", settings=setting))
    c = first_message(claude(m, api, CAROL, "recall carol", settings=setting))
    assert "QUOKKA-ALICE" in a and "WOMBAT" not in a
    assert "WOMBAT-BOB" in b and "QUOKKA" not in b
    assert "QUOKKA" not in c and "WOMBAT" not in c  # carol's own memory is empty

    # An update through Claude Code's Read + Edit (its own temp file + rename) lands.
    body = claude(
        m, api, ALICE, "update alice",
        [
            ["Read", {"file_path": str(mnt / "MEMORY.md")}],
            ["Edit", {"file_path": str(mnt / "MEMORY.md"), "old_string": "QUOKKA-ALICE",
                      "new_string": "QUOKKA-ALICE-2"}],
        ],
        settings=setting,
    )  # fmt: skip
    assert "QUOKKA-ALICE" in results(body)[0] and "updated successfully" in results(body)[1]
    assert "QUOKKA-ALICE-2" in first_message(claude(m, api, ALICE, "recall alice again", settings=setting))
    assert m.run(BOB, ["cat", "MEMORY.md"]).stdout == "- [Indent](indent.md) — bob WOMBAT-BOB\n"


def test_team_memory_is_shared_with_members_only(make_mount, api):
    m = make_mount(TEAM_CONFIG)
    mnt = m.mnt
    setting = {"autoMemoryDirectory": str(mnt)}
    body = claude(
        m, api, ALICE, "team note",
        [
            write(mnt / "team" / "deploy.md", entry("deploy", "how eng deploys", "project", "PLATYPUS-TEAM")),
            write(mnt / "team" / "MEMORY.md", "- [Deploy](deploy.md) — PLATYPUS-TEAM\n"),
        ],
        settings=setting,
    )  # fmt: skip
    assert all("successfully" in r for r in results(body)), results(body)
    # Claude Code reads team/MEMORY.md on demand, not at start: a member's Read finds it.
    read_team = [["Read", {"file_path": str(mnt / "team" / "MEMORY.md")}]]
    bob = claude(m, api, BOB, "team read bob", read_team, settings=setting)
    assert "PLATYPUS-TEAM" in results(bob)[0]
    assert "PLATYPUS" not in first_message(bob)
    # carol is in no team: her Read fails and shows nothing of eng's.
    carol = claude(m, api, CAROL, "team read carol", read_team, settings=setting)
    assert "PLATYPUS" not in results(carol)[0] and "PLATYPUS" not in first_message(carol)
    assert "team/deploy.md" in hit_paths(search(m, BOB, "mode:keyword type:project PLATYPUS"))
    assert hit_paths(search(m, CAROL, "mode:keyword PLATYPUS")) == []


def test_managed_settings_point_every_user_at_the_mount(make_mount, api):
    m = make_mount(TEAM_CONFIG)
    mnt = m.mnt
    elsewhere = m.base / "elsewhere"  # a user's own setting loses to the managed one
    elsewhere.mkdir(mode=0o777)
    os.chmod(elsewhere, 0o777)
    policy = {"autoMemoryDirectory": str(mnt)}
    for uid, mark in ((ALICE, "ECHIDNA-ALICE"), (BOB, "NUMBAT-BOB")):
        claude(
            m, api, uid, f"managed {uid}", [write(mnt / "MEMORY.md", f"- {mark}\n")],
            settings={"autoMemoryDirectory": str(elsewhere)}, managed=policy,
        )  # fmt: skip
    assert list(elsewhere.iterdir()) == []
    a = first_message(claude(m, api, ALICE, "managed recall alice", managed=policy))
    b = first_message(claude(m, api, BOB, "managed recall bob", managed=policy))
    assert "ECHIDNA-ALICE" in a and "NUMBAT" not in a
    assert "NUMBAT-BOB" in b and "ECHIDNA" not in b
    # Without the managed file the same session does not see the mount: the test can fail.
    assert "ECHIDNA" not in first_message(claude(m, api, ALICE, "unmanaged recall alice"))


def test_environment_variable_overrides_the_settings(make_mount, api):
    m = make_mount(TEAM_CONFIG)
    mnt = m.mnt
    elsewhere = m.base / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o777)
    env = {"CLAUDE_COWORK_MEMORY_PATH_OVERRIDE": str(mnt)}
    # A folder set by the variable is not trusted for writes as a settings one is: Claude
    # Code asks first, and a -p session cannot answer.
    body = claude(m, api, BOB, "env bob denied", [write(mnt / "MEMORY.md", "- DINGO-BOB\n")], env=env)
    assert "permission" in results(body)[0]
    # The README's allow rule (`//` = an absolute path) lets it write.
    allow = {"permissions": {"allow": [f"Edit(/{mnt}/**)"]}}
    body = claude(
        m, api, BOB, "env bob", [write(mnt / "MEMORY.md", "- DINGO-BOB\n")],
        env=env, settings={"autoMemoryDirectory": str(elsewhere), **allow},
        managed={"autoMemoryDirectory": str(elsewhere)},
    )  # fmt: skip
    assert str(mnt) in system_text(body) and str(elsewhere) not in system_text(body)
    assert all("successfully" in r for r in results(body)), results(body)
    assert m.run(BOB, ["cat", "MEMORY.md"]).stdout == "- DINGO-BOB\n"
    assert list(elsewhere.iterdir()) == []
    assert "DINGO-BOB" in first_message(claude(m, api, BOB, "env recall bob", env=env))
    assert "DINGO" not in first_message(claude(m, api, ALICE, "env recall alice", env=env))


def test_claude_code_uses_memfs_mcp(make_mount, api):
    """Claude Code as an MCP client of `memfs mcp`: the memory tool acts as the caller."""
    m = make_mount(TEAM_CONFIG)
    m.run(ALICE, ["sh", "-c", "echo '- alice KOALA' > MEMORY.md"])
    m.run(BOB, ["sh", "-c", "echo '- bob EMU' > MEMORY.md"])
    config = m.base / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "memfs": {
                        "command": sys.executable,
                        "args": ["-m", "memfs", "mcp", "--mount", str(m.mnt)],
                    }
                }
            }
        )
    )
    os.chmod(config, 0o644)
    plan = [
        ["mcp__memfs__memory", {"command": "view", "path": "/memories/MEMORY.md"}],
        ["mcp__memfs__memory", {"command": "create", "path": "/memories/note.md", "file_text": "via mcp\n"}],
        ["mcp__memfs__memory", {"command": "view", "path": "/etc/passwd"}],
        ["mcp__memfs__memory_search", {"query": "KOALA", "mode": "keyword"}],
    ]
    flags = ["--mcp-config", str(config), "--allowedTools", "mcp__memfs__memory,mcp__memfs__memory_search"]
    out = {uid: results(claude(m, api, uid, f"mcp {uid}", plan, flags=flags)) for uid in (ALICE, BOB)}
    assert "KOALA" in out[ALICE][0] and "EMU" not in out[ALICE][0]
    assert "EMU" in out[BOB][0] and "KOALA" not in out[BOB][0]
    for uid in (ALICE, BOB):
        assert "File created successfully at: /memories/note.md" in out[uid][1]
        assert "Path must start with /memories" in out[uid][2]
        assert m.run(uid, ["cat", "note.md"]).stdout == "via mcp\n"
    # Plain text, as Anthropic's memory tool answers, not a {"result": ...} wrapper.
    assert out[ALICE][0].startswith("Here's the content of /memories/MEMORY.md with line numbers:\n")
    assert json.loads(out[ALICE][3])["hits"][0]["path"] == "/memories/MEMORY.md"
    assert json.loads(out[BOB][3])["hits"] == []


def test_claude_code_loads_the_first_200_lines_of_memory_md(make_mount, api):
    """What the README says Claude Code reads of MEMORY.md at start, checked."""
    m = make_mount(TEAM_CONFIG)
    m.run(ALICE, ["sh", "-c", 'for i in $(seq 1 300); do echo "- line-$i-MARK"; done > MEMORY.md'])
    first = first_message(claude(m, api, ALICE, "long index", settings={"autoMemoryDirectory": str(m.mnt)}))
    assert "- line-1-MARK" in first and "- line-200-MARK" in first
    assert "line-250-MARK" not in first and "\n- line-201-MARK\n" not in first
    assert "(limit: 200)" in first  # and it tells the model what was cut


def _fake_key(kind: str) -> str:
    r = random.Random()
    b62 = string.ascii_letters + string.digits
    if kind == "github-pat":
        return "ghp_" + "".join(r.choice(b62) for _ in range(36))
    return "postgres://app:" + "".join(r.choice(b62) for _ in range(12)) + "-&3@db-1.internal:5432/billing"


# Claude Code 2.1 scans what its Write puts in team/ itself and refuses prefixed tokens
# (its message below); a database URL's password it lets through, and memfs refuses it.
SHOWN = {
    "github-pat": "Content contains potential secrets (GitHub PAT) and cannot be written to team memory",
    "url-password": "EACCES: permission denied",
}


@pytest.mark.parametrize("kind", sorted(SHOWN))
def test_a_key_written_into_team_fails_in_claude_code(make_mount, api, kind):
    """The secret guard as Claude Code meets it: its Write of an entry holding a key into
    team/ fails (the tool result is an error the model reads), nothing is left in team/,
    and a teammate never reads the key."""
    m = make_mount(TEAM_CONFIG)
    m.expect_log(r"refused: a secret at line \d+ \(rule [\w-]+\)")
    key = _fake_key(kind)
    setting = {"autoMemoryDirectory": str(m.mnt)}
    content = entry("ci", "the release database", "reference", f"Use {key} for releases.")
    body = claude(
        m, api, ALICE, f"team key {kind}", [write(m.mnt / "team" / "ci.md", content)], settings=setting
    )
    shown = results(body)[0]
    assert tool_results(body)[0].get("is_error") and SHOWN[kind] in shown, (shown, tool_results(body))
    seen = m.run(BOB, ["sh", "-c", "ls -a team; cat team/*; grep -r . ."], check=False).stdout
    assert key not in seen and "ci.md" not in seen
    assert [p.name for p in (m.data / "teams" / "eng").iterdir() if "ci.md" in p.name] == []
