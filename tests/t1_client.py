"""The .memfs/ protocol's answers read as values (memfs/client.py), without a mount."""

from __future__ import annotations

import pytest

from memfs import client

TWO_SCOPES = """\
- scope: private:alice
  remote: /srv/alice.git
  last_sync: null
  commits_waiting: 2
  error: 'git fetch failed: no such repository'
  last_round: null
- scope: team:eng
  remote: /srv/eng.git
  last_sync: '2026-11-21T12:01:02Z'
  commits_waiting: 0
  error: null
  last_round: {files: 1, removed: 0, merged: 0, conflicts: [], refused: []}
"""


def test_a_sync_fails_when_any_scope_failed():
    answer = client.parse_sync(TWO_SCOPES)
    assert [s["scope"] for s in answer.scopes] == ["private:alice", "team:eng"]
    assert answer.failed == ["private:alice"] and answer.text == TWO_SCOPES
    # a path or message that merely holds the words is no answer (no substring tests)
    assert client.parse_sync(TWO_SCOPES.replace("'git fetch", "'error: null; git fetch")).failed


def test_a_sync_answer_that_is_not_a_list_of_scopes_is_refused():
    assert client.parse_sync("[]\n").scopes == [] and client.parse_sync("").scopes == []
    for text in ("error: null\n", "- just text\n", "[unclosed\n"):
        with pytest.raises(client.AnswerError):
            client.parse_sync(text)


def test_control_paths_are_under_the_control_tree(tmp_path):
    assert client.control_path(tmp_path, client.HISTORY, "a/b.md") == tmp_path / ".memfs/history/a/b.md"
    assert not client.is_mount(tmp_path)
