"""Semantic and hybrid search through the mount: meaning, not words, under the same rules."""

from __future__ import annotations

import subprocess

import pytest
from conftest import ALICE, BOB, CAROL, DAVE, TIMEOUT, memfs_cmd, wait_for
from t4_search import entry, hit_paths, search, search_json, write
from t4_team import TEAM_CONFIG

CAROLINE = {
    "caroline-pet.md": entry(
        "caroline-guinea-pig", "Caroline has a guinea pig named Oscar.", "user", "Caroline's guinea pig"
    ),
    "caroline-job.md": entry(
        "caroline-nurse", "Caroline works as a nurse at St. Mary's.", "user", "Caroline's job"
    ),
    "caroline-home.md": entry(
        "caroline-lisbon", "Caroline grew up in Lisbon.", "user", "where Caroline grew up"
    ),
    "billing-port.md": entry(
        "billing-port", "The billing service listens on port 8443.", "reference", "port"
    ),
}


@pytest.fixture
def tm(shared_mount):
    """This file's tests share one mount (conftest.shared_mount)."""
    return shared_mount(TEAM_CONFIG)


def seed(m, uid, files: dict[str, str], prefix: str = "") -> None:
    for name, text in files.items():
        write(m, uid, prefix + name, text)


def paths_and_rankers(m, uid, query: str) -> list[tuple[str, list[str]]]:
    return [(h["path"], h["rankers"]) for h in search_json(m, uid, query)["hits"]]


def test_a_question_finds_its_answer_by_meaning(tm):
    seed(tm, ALICE, CAROLINE)
    hits = paths_and_rankers(tm, ALICE, "what is Caroline's job?")
    assert hits[0] == ("caroline-job.md", ["keyword", "semantic"])
    # No word in common at all: keyword finds nothing, meaning does (in every mode that
    # uses it), and says so.
    write(tm, ALICE, "oscar.md", "Oscar the guinea pig eats hay and carrots.\n")
    guinea_pigs = {"oscar.md", "caroline-pet.md"}
    assert "No results." in search(tm, ALICE, "mode:keyword which animal")
    semantic = paths_and_rankers(tm, ALICE, "mode:semantic which animal")
    assert {p for p, _r in semantic[:2]} == guinea_pigs and semantic[0][1] == ["semantic"]
    # Hybrid, with nothing matched by keyword, lists only confident semantic hits.
    assert {p for p, _r in paths_and_rankers(tm, ALICE, "which animal")} <= guinea_pigs
    hybrid = paths_and_rankers(tm, ALICE, "what does my pet eat")
    assert hybrid[0] == ("oscar.md", ["keyword", "semantic"]) and hybrid[1][0] == "caroline-pet.md"
    # Each mode says who found what; keyword mode is keyword only.
    assert all(r == ["keyword"] for _p, r in paths_and_rankers(tm, ALICE, "mode:keyword Caroline"))
    assert all(r == ["semantic"] for _p, r in paths_and_rankers(tm, ALICE, "mode:semantic Caroline"))
    out = search(tm, ALICE, "what is Caroline's job?")
    assert hit_paths(out)[0] == "caroline-job.md" and "- found by: keyword, semantic" in out
    # Exact words still win where they are the point: a port number.
    assert hit_paths(search(tm, ALICE, "8443"))[0] == "billing-port.md"


def test_nonsense_finds_nothing(tm):
    seed(tm, ALICE, CAROLINE)
    for q in ("zyzzyva", "qwrtpl xkcd", "mode:hybrid zyzzyva"):
        assert "No results." in search(tm, ALICE, q), q
    assert search_json(tm, ALICE, "zyzzyva")["total"] == 0


def test_semantic_side_only_sees_what_the_caller_may_read(tm):
    """bob's private entry is the perfect answer to alice's question, and never shows."""
    write(tm, BOB, "secret-pet.md", entry("bob-pet", "Caroline has a guinea pig named Oscar.", "user"))
    write(
        tm, ALICE, "unrelated.md", entry("deploy", "Deploys go out on Tuesdays after the standup.", "project")
    )
    for mode in ("semantic", "hybrid"):
        got = search_json(tm, ALICE, f"mode:{mode} what pet does Caroline have")
        assert all("secret" not in h["path"] for h in got["hits"]), mode
        assert got["total"] <= 1
    # Team memory: members find it by meaning, a non-member never.
    write(tm, BOB, "team/pets.md", entry("team-pet", "The office cat is called Pixel.", "project"))
    assert "team/pets.md" in [p for p, _r in paths_and_rankers(tm, ALICE, "mode:semantic office cat name")]
    assert all("pets" not in p for p, _r in paths_and_rankers(tm, DAVE, "mode:semantic office cat name"))
    # A grant reader sees the owner's entries (read-only), under the owner's path.
    write(tm, ALICE, "tea.md", entry("tea", "Alice drinks green tea every morning.", "user"))
    carol = [p for p, _r in paths_and_rankers(tm, CAROL, "mode:semantic a drink in the morning")]
    assert carol and carol[0].endswith("alice/tea.md")
    assert all(
        "alice" not in p for p, _r in paths_and_rankers(tm, DAVE, "mode:semantic a drink in the morning")
    )


def test_filters_apply_inside_the_semantic_ranking(tm):
    seed(tm, ALICE, CAROLINE)
    tm.sh(ALICE, "mkdir projects")
    write(
        tm,
        ALICE,
        "projects/pets-feedback.md",
        entry("pets-style", "Say 'animal companion'.", "feedback", tags=["style"]),
    )
    write(
        tm,
        BOB,
        "team/pets.md",
        entry("team-pet", "The office cat is called Pixel.", "project", tags=["office"]),
    )
    q = "what pet does Caroline have"
    for mode in ("semantic", "hybrid"):
        typed = paths_and_rankers(tm, ALICE, f"mode:{mode} type:feedback {q}")
        assert [p for p, _r in typed] in ([], ["projects/pets-feedback.md"]), mode
        tagged = paths_and_rankers(tm, ALICE, f"mode:{mode} tag:office {q}")
        assert [p for p, _r in tagged] in ([], ["team/pets.md"]), mode
        under = [p for p, _r in paths_and_rankers(tm, ALICE, f"mode:{mode} path:projects {q}")]
        assert all(p.startswith("projects/") for p in under), mode
        team = [p for p, _r in paths_and_rankers(tm, ALICE, f"mode:{mode} scope:team {q}")]
        assert all(p.startswith("team/") for p in team), mode
    assert (
        paths_and_rankers(tm, ALICE, "mode:semantic type:feedback animal")[0][0]
        == "projects/pets-feedback.md"
    )


def test_semantic_read_your_writes_rename_and_unlink(tm):
    seed(tm, ALICE, {k: v for k, v in CAROLINE.items() if k != "caroline-pet.md"})
    q = "mode:semantic which animal"
    tm.sh(ALICE, "printf 'Oscar the guinea pig eats hay.\\n' > hay.md")
    assert paths_and_rankers(tm, ALICE, q)[0][0] == "hay.md"
    tm.sh(ALICE, "mkdir -p pets && mv hay.md pets/oscar.md")
    assert paths_and_rankers(tm, ALICE, q)[0][0] == "pets/oscar.md"
    tm.sh(ALICE, "mv pets animals")
    assert paths_and_rankers(tm, ALICE, q)[0][0] == "animals/oscar.md"
    tm.sh(ALICE, "printf 'The billing database is Postgres 16.\\n' > animals/oscar.md")
    assert all(p != "animals/oscar.md" for p, _r in paths_and_rankers(tm, ALICE, q)[:1])
    tm.sh(ALICE, "rm -r animals")
    assert all("animals" not in p for p, _r in paths_and_rankers(tm, ALICE, q))


def test_modes_errors_and_the_cli(tm):
    seed(tm, ALICE, CAROLINE)
    out = search(tm, ALICE, "mode:fuzzy Caroline")
    assert "Error: unknown mode:fuzzy" in out and not hit_paths(out)
    assert "unknown mode:fuzzy" in search_json(tm, ALICE, "mode:fuzzy Caroline")["error"]
    assert "one mode per query" in search(tm, ALICE, "mode:keyword mode:semantic Caroline")
    mount = str(tm.mnt)
    res = tm.run(ALICE, memfs_cmd("search", "--mount", mount, "--mode", "semantic", "--json", "which animal"))
    import json

    hits = json.loads(res.stdout)["hits"]
    assert hits and all(h["rankers"] == ["semantic"] for h in hits)
    res = tm.run(ALICE, memfs_cmd("search", "--mount", mount, "--mode", "fuzzy", "x"), check=False)
    assert res.returncode == 2 and "invalid choice" in res.stderr


NO_EMBEDDER = TEAM_CONFIG + "search: {embedder: none}\n"


def test_embedder_none_is_keyword_search(make_mount):
    m = make_mount(NO_EMBEDDER)
    seed(m, ALICE, CAROLINE)
    assert "semantic search is off" in search(m, ALICE, "mode:semantic Caroline")
    hits = paths_and_rankers(m, ALICE, "Caroline")
    assert len(hits) == 3 and all(r == ["keyword"] for _p, r in hits)
    assert "No results." in search(m, ALICE, "which animal")


def test_changing_the_embedder_embeds_again_in_the_background(make_mount):
    m = make_mount(TEAM_CONFIG)
    seed(m, ALICE, CAROLINE)
    m.stop()
    m.config.write_text(TEAM_CONFIG + "search: {embedder: wordllama, dim: 64}\n")
    m.start()
    wait_for(lambda: "index: embedded 4 entries" in m.log(), "the re-embedding to finish", TIMEOUT)
    assert "embedder changed from wordllama-l2_supercat-256 to wordllama-l2_supercat-64" in m.log()
    assert paths_and_rankers(m, ALICE, "mode:semantic which animal")[0][0] == "caroline-pet.md"
    m.stop()  # none: vectors dropped; back to wordllama: embedded again
    m.config.write_text(NO_EMBEDDER)
    m.start()
    m.stop()
    m.config.write_text(TEAM_CONFIG)
    m.start()
    wait_for(lambda: m.log().count("index: embedded 4 entries") == 2, "the second re-embedding", TIMEOUT)
    assert paths_and_rankers(m, ALICE, "mode:semantic which animal")[0][0] == "caroline-pet.md"


def test_entries_written_behind_memfs_and_reindex(make_mount):
    m = make_mount(TEAM_CONFIG)
    m.stop()
    root = m.data / "private" / "alice"
    root.mkdir(parents=True, exist_ok=True)
    for name, text in CAROLINE.items():
        (root / name).write_text(text)
    m.start()  # reconcile indexes them; the backfill embeds them
    wait_for(lambda: "index: embedded 4 entries" in m.log(), "the backfill", TIMEOUT)
    assert paths_and_rankers(m, ALICE, "mode:semantic which animal")[0][0] == "caroline-pet.md"
    m.stop()
    res = subprocess.run(
        memfs_cmd("reindex", "--data", str(m.data), "--config", str(m.config), "--quiet"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert res.returncode == 0, res.stderr
    m.start()  # reindex embedded everything: nothing left for a backfill
    assert paths_and_rankers(m, ALICE, "mode:semantic which animal")[0][0] == "caroline-pet.md"
    assert m.log().count("index: embedding ") == 1


def test_a_bad_embedder_config_is_one_clear_error(make_mount):
    m = make_mount(
        TEAM_CONFIG
        + "search: {embedder: fastembed, model: BAAI/bge-small-en-v1.5, cache_dir: /nonexistent}\n",
        start=False,
    )
    res = m.start(check=False)
    m.expect_log(r"search\.embedder: fastembed is not installed|search\.model: fastembed cannot load", 1)
    assert res.returncode != 0
    assert "search." in res.stderr and "fastembed" in res.stderr and "Traceback" not in res.stderr


def test_a_hostile_uid_cannot_spoil_semantic_search_for_others(tm):
    """dave floods his memory with a 9 MB entry, 400 near-duplicates of alice's answer
    and giant queries; alice's semantic answers stay hers and right."""
    write(tm, ALICE, "tea.md", entry("tea", "Alice drinks green tea every morning.", "user"))
    dave = (
        "import os\n"
        "words = ' '.join(f'w{i} tea morning drink' for i in range(450_000))\n"
        "open('huge.md', 'w').write(words[: 9 * 1024 * 1024])\n"
        "for i in range(400):\n"
        "    open(f'tea{i}.md', 'w').write('Alice drinks green tea every morning.')\n"
        "os.makedirs(b'odd\\xff', exist_ok=True)\n"  # names that are not UTF-8, with a newline
        "open(b'odd\\xff/tea\\n\\xfe.md', 'w').write('Dave keeps an iguana called Rex.')\n"
        "open(b'\\x01\\x7f.md', 'wb').write(b'\\xff\\xfe tea \\x00 morning')\n"
    )
    tm.py(DAVE, dave)
    big = " ".join(f"tea{i}" for i in range(7_000))  # ~48 KB of words (a query handle takes 64 KiB)
    for q in (big, "mode:semantic " + big):
        assert search_json(tm, DAVE, q)["hits"]  # answered, not refused or crashed
    got = paths_and_rankers(tm, ALICE, "mode:semantic a drink in the morning")
    assert got == [("tea.md", ["semantic"])]
    assert [p for p, _r in paths_and_rankers(tm, ALICE, "a drink in the morning")] == ["tea.md"]
    assert search_json(tm, DAVE, "mode:semantic a drink in the morning")["total"] >= 400
    odd = search_json(tm, DAVE, "mode:semantic iguana called Rex")["hits"]
    assert odd[0]["path"] == '"odd\\377/tea\\n\\376.md"'  # found by meaning, shown quoted
