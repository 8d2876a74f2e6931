"""memfs mcp: the memory tool and memory_search over MCP stdio, driven by the SDK's own
client, as two uids through one mount."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import ALICE, BOB, CHECKOUT, TIMEOUT
from t4_team import TEAM_CONFIG

# Runs as root: the SDK's stdio client starts `memfs mcp` as the given uid and replays calls.
CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    uid, mount, checkout = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    calls = json.loads(sys.stdin.read())
    server = StdioServerParameters(  # started in the checkout: `-m memfs` imports the one under test
        command="setpriv",
        args=[f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable, "-m", "memfs",
              "mcp", "--mount", mount],
        cwd=checkout,
    )

    async def main():
        out = []
        async with stdio_client(server) as (read, write):
            async with ClientSession(read, write) as s:
                info = (await s.initialize()).server_info
                tools = sorted(t.name for t in (await s.list_tools()).tools)
                for name, args in calls:
                    r = await s.call_tool(name, args)
                    out.append({"error": bool(r.is_error if hasattr(r, "is_error") else r.isError),
                                "text": "".join(getattr(c, "text", "") for c in r.content)})
        print(json.dumps({"tools": tools, "results": out, "server": [info.name, info.version]}))

    asyncio.run(main())
    """
)


def mcp_calls(m, uid: int, calls: list) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CLIENT, str(uid), str(m.mnt), CHECKOUT], input=json.dumps(calls),
        capture_output=True, text=True, timeout=TIMEOUT, env=m.env, cwd="/",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def mem(command: str, **kw) -> list:
    return ["memory", {"command": command, **kw}]


def test_the_server_names_its_version(shared_mnt):
    mnt = shared_mnt
    import importlib.metadata

    import memfs

    assert memfs.__version__ == importlib.metadata.version("memfs")  # one version, pyproject's
    assert mcp_calls(mnt, ALICE, [])["server"] == ["memfs", memfs.__version__]


def test_the_memory_tool_as_two_users(shared_mount):
    m = shared_mount(TEAM_CONFIG)
    out = mcp_calls(
        m,
        ALICE,
        [
            mem(
                "create",
                path="/memories/tabs.md",
                file_text="---\nname: tabs\ndescription: tabs\ntype: feedback\n---\nUse tabs.\n",
            ),
            mem("create", path="/memories/tabs.md", file_text="again"),
            mem("view", path="/memories/tabs.md"),
            mem("str_replace", path="/memories/tabs.md", old_str="Use tabs.", new_str="Use tabs, width 4."),
            mem("str_replace", path="/memories/tabs.md", old_str="nowhere", new_str="x"),
            mem("insert", path="/memories/tabs.md", insert_line=0, insert_text="<!-- kept -->"),
            mem("insert", path="/memories/tabs.md", insert_line=99, insert_text="x"),
            mem("view", path="/memories", view_range=None),
            mem("rename", old_path="/memories/tabs.md", new_path="/memories/style/tabs.md"),
            mem("view", path="/memories/nope.md"),
            mem("view", path="/etc/passwd"),
            mem("view", path="/memories/../../etc/passwd"),
            mem("create", path="/memories/team/shared.md", file_text="team note\n"),
            ["memory_search", {"query": "width", "mode": "keyword"}],
            mem("delete", path="/memories/style"),
            mem("delete", path="/memories"),
            mem("frobnicate", path="/memories"),
        ],
    )
    assert out["tools"] == ["memory", "memory_search"]
    r = out["results"]
    assert not r[0]["error"] and r[0]["text"] == "File created successfully at: /memories/tabs.md"
    assert r[1]["error"] and "File /memories/tabs.md already exists" in r[1]["text"]
    assert r[2]["text"].startswith("Here's the content of /memories/tabs.md with line numbers:")
    assert "     6\tUse tabs." in r[2]["text"]
    assert r[3]["text"].startswith("The memory file has been edited.") and "width 4" in r[3]["text"]
    assert r[4]["error"] and "did not appear verbatim in /memories/tabs.md" in r[4]["text"]
    assert r[5]["text"] == "The file /memories/tabs.md has been edited."
    assert r[6]["error"] and "Invalid `insert_line` parameter: 99" in r[6]["text"]
    assert "up to 2 levels deep in /memories" in r[7]["text"] and "/memories/tabs.md" in r[7]["text"]
    assert ".memfs" not in r[7]["text"]  # hidden items are not listed
    assert r[8]["text"] == "Successfully renamed /memories/tabs.md to /memories/style/tabs.md"
    assert r[9]["error"] and "does not exist. Please provide a valid path." in r[9]["text"]
    assert r[10]["error"] and "Path must start with /memories" in r[10]["text"]
    assert r[11]["error"] and "would escape /memories directory" in r[11]["text"]
    assert not r[12]["error"]
    hits = json.loads(r[13]["text"])["hits"]
    assert [h["path"] for h in hits] == ["/memories/style/tabs.md"]
    assert r[14]["text"] == "Successfully deleted /memories/style"
    assert r[15]["error"] and "Cannot delete the /memories directory itself" in r[15]["text"]
    assert r[16]["error"] and "Unknown command" in r[16]["text"]
    # The files are plain files of alice's memory, as written.
    assert m.run(ALICE, ["cat", "team/shared.md"]).stdout == "team note\n"
    # bob: his own memory, alice's team note (same team), never alice's private files.
    out = mcp_calls(
        m,
        BOB,
        [
            mem("view", path="/memories"),
            mem("view", path="/memories/team/shared.md"),
            ["memory_search", {"query": "team note"}],
            mem("create", path="/memories/.memfs/x", file_text="x"),
        ],
    )
    r = out["results"]
    assert "tabs" not in r[0]["text"]
    assert "team note" in r[1]["text"]
    assert all(h["path"].startswith("/memories/team/") for h in json.loads(r[2]["text"])["hits"])
    assert r[3]["error"]


def test_writes_are_whole_or_nothing(make_mount):
    """A create or edit the mount refuses (EFBIG past the file cap, EDQUOT past the quota)
    leaves no partial file and no temp file behind: every command writes a temp file and
    renames it into place."""
    m = make_mount(TEAM_CONFIG + "limits: {max_file_bytes: 1M, user_bytes: 3M}\n")
    m.sh(ALICE, "for f in f1 f2; do head -c 1000000 /dev/zero | tr '\\0' y > $f.md; done")
    big = "x" * (3 << 20)  # over the 1M cap
    near = "z" * 900_000  # under the cap, over what the quota has left after two of them
    out = mcp_calls(
        m,
        ALICE,
        [
            mem("create", path="/memories/big.md", file_text=big),
            mem("create", path="/memories/n1.md", file_text=near),
            mem("create", path="/memories/n2.md", file_text=near),
            mem("create", path="/memories/keep.md", file_text="kept\n"),
            mem("str_replace", path="/memories/keep.md", old_str="kept", new_str=big),
            mem("insert", path="/memories/keep.md", insert_line=0, insert_text=big),
        ],
    )
    r = out["results"]
    assert r[0]["error"] and not r[1]["error"] and r[2]["error"], r
    assert not r[3]["error"] and r[4]["error"] and r[5]["error"], r
    names = sorted(m.sh(ALICE, "ls -A").stdout.split())
    assert names == ["f1.md", "f2.md", "keep.md", "n1.md", "team"], names
    assert m.sh(ALICE, "cat keep.md").stdout == "kept\n"
    assert m.sh(ALICE, "wc -c < n1.md").stdout.strip() == "900000"


def test_search_shows_an_odd_name_as_every_path_is_shown(shared_mount):
    """memory_search puts /memories/ before the path the mount found and quotes the whole
    path once (names.quote_path), as .memfs/log and the CLI do."""
    m = shared_mount(TEAM_CONFIG)
    m.py(ALICE, "open(b'odd\\xff\\n.md', 'w').write('an iguana called Rex')")
    out = mcp_calls(m, ALICE, [["memory_search", {"query": "iguana", "mode": "keyword"}]])
    hits = json.loads(out["results"][0]["text"])["hits"]
    assert [h["path"] for h in hits] == ['"/memories/odd\\377\\n.md"']
    assert hits[0]["score"] > 0 and "iguana" in hits[0]["snippet"]


def test_a_create_with_a_key_into_team_is_a_tool_error_that_says_why(shared_mount):
    """The secret guard refuses the write; the memory tool must say why (rule and line, not
    just 'Permission denied'), leave nothing behind, and bob must never see the key."""
    from t4_secrets import GHP, REFUSED

    m = shared_mount(TEAM_CONFIG)
    m.expect_log(REFUSED)
    out = mcp_calls(
        m,
        ALICE,
        [
            mem("create", path="/memories/team/deploy.md", file_text=f"# deploy\ntoken: {GHP}\n"),
            mem("create", path="/memories/team/ok.md", file_text="# ok\nno credentials here\n"),
        ],
    )
    r = out["results"]
    assert r[0]["error"] and "rule github-pat" in r[0]["text"] and "line 2" in r[0]["text"], r[0]
    assert GHP not in r[0]["text"] and GHP[4:12] not in r[0]["text"]
    assert not r[1]["error"], r[1]
    assert m.sh(BOB, "ls -A team").stdout.split() == ["ok.md"]  # no file, no temp file left
    assert GHP not in m.sh(BOB, "cat team/*").stdout
