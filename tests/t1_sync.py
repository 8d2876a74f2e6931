"""sync/pace.py (when each scope is checked) and sync/transport.py's reading of git's
failures: pure, with the words git and ssh really print (captured on this box)."""

from __future__ import annotations

from memfs.config import SyncConf
from memfs.policy import Kind, Scope
from memfs.sync.pace import Pace
from memfs.sync.transport import Transport, control_path, explain, server_of

A, B, C = (Scope(Kind.TEAM, n) for n in ("a", "b", "c"))
CONF = SyncConf(interval=5, active_for=60, idle_interval=300, idle_checks=1)


def pace(n: int = 3, servers: dict | None = None) -> Pace:
    scopes = [Scope(Kind.TEAM, f"t{i}") for i in range(n)]
    return Pace(CONF, servers or dict.fromkeys(scopes, "ssh://git@h:"))


def test_idle_checks_are_paced_together_whatever_the_scope_count():
    p = pace(1000)
    for s in p.servers:  # the startup round: every scope once, then idle
        p.done(s, 0.0, changed=False)
    checks = 0
    for t in range(300, 400):  # all are due from 300 s on: one check a second
        for s in p.due(float(t), set()):
            p.done(s, float(t), changed=False)
            checks += 1
    assert 99 <= checks <= 101


def test_active_scope_every_interval_then_backs_off():
    p = pace(1)
    (s,) = p.servers
    p.done(s, 0.0, changed=True)
    assert p.next_at[s] == 5.0
    p.done(s, 59.0, changed=False)  # still within active_for
    assert p.next_at[s] == 64.0
    p.done(s, 80.0, changed=False)  # 20 s past it: the wait grows with the quiet time
    assert p.next_at[s] == 100.0
    p.done(s, 1000.0, changed=False)
    assert p.next_at[s] == 1300.0  # capped at idle_interval


def test_a_caller_reaching_a_stale_scope_makes_it_due_and_active():
    p = pace(1)
    (s,) = p.servers
    p.done(s, 0.0, changed=False)
    assert not p.opened(s, 3.0)  # checked within the interval
    assert p.opened(s, 10.0)
    assert p.due(10.0, set()) == [s]
    p.done(s, 10.0, changed=False)
    assert p.next_at[s] == 15.0  # active now: every interval


def test_a_down_server_is_probed_once_per_interval_and_its_scopes_run_when_it_answers():
    p = Pace(CONF, {A: "s1", B: "s1", C: "s2"})
    assert set(p.due(0.0, {A, B, C})) == {A, B, C}  # the startup round
    p.failed(A, 0.0, "unreachable: Connection refused", server=True)
    p.failed(B, 0.0, "unreachable: Connection refused", server=True)
    p.done(C, 0.0, changed=False)
    assert p.server_error(B) == "unreachable: Connection refused"
    assert p.due(4.9, {A, B}) == []  # a commit waiting does not hammer a down server
    probe = p.due(5.0, {A, B})
    assert len(probe) == 1  # one probe for the server, not one per scope
    p.failed(probe[0], 5.0, "unreachable: Connection refused", server=True)
    assert p.due(9.0, set()) == []
    probe = p.due(10.0, set())
    assert len(probe) == 1
    p.done(probe[0], 10.0, changed=False)  # it answers: the rest runs at once, not later
    assert p.due(10.0, set()) == [s for s in (A, B) if s not in probe]
    assert p.server_error(A) is None


def test_a_scopes_own_failure_backs_off_doubling():
    p = pace(1)
    (s,) = p.servers
    assert p.failed(s, 0.0, "no repository: x", server=False) == 10
    assert p.due(9.0, {s}) == []  # a commit waiting does not cut the wait short
    assert p.due(10.0, {s}) == [s]
    assert p.failed(s, 10.0, "no repository: x", server=False) == 20
    for _ in range(10):
        delay = p.failed(s, 10.0, "no repository: x", server=False)
    assert delay == 300


REFUSED = """ssh: connect to host 127.0.0.1 port 1: Connection refused\r
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""
HOSTKEY = """Could not create directory '/nonexistent/.ssh' (No such file or directory).\r
No ED25519 host key is known for [127.0.0.1]:40123 and you have requested strict checking.\r
Host key verification failed.\r
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""
AUTH = "root@127.0.0.1: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n"
REJECTED = """To /srv/r.git
 ! [rejected]        main -> main (fetch first)
error: failed to push some refs to '/srv/r.git'
hint: Updates were rejected because the remote contains work that you do not
"""
FULL = "error: unable to write file objects/ab/cd: No space left on device\nfatal: unpack failed\n"
GONE = "fatal: '/srv/gone.git' does not appear to be a git repository\nfatal: Could not read from remote\n"


def test_git_failures_say_what_broke_in_gits_own_first_meaningful_line():
    cases = [
        (REFUSED, "unreachable: ssh: connect to host 127.0.0.1 port 1: Connection refused"),
        (HOSTKEY, "host key: No ED25519 host key is known for [127.0.0.1]:40123"),
        (AUTH, "authentication: root@127.0.0.1: Permission denied (publickey)."),
        (REJECTED, "rejected: ! [rejected]        main -> main (fetch first)"),
        (FULL, "disk full: unable to write file objects/ab/cd: No space left on device"),
        (GONE, "no repository: '/srv/gone.git' does not appear to be a git repository"),
        ("fatal: Could not read from remote repository.\n", "unreachable: the connection ended with no"),
        (
            "Could not chdir to home directory /nonexistent: No such file or directory\n"
            "fatal: Could not read from remote repository.\n",
            "unreachable: the connection ended with no",  # sshd's chatter, then the session died
        ),
        (
            "send-pack: unexpected disconnect while reading sideband packet\n"
            "fatal: the remote end hung up unexpectedly\n",
            "unreachable: send-pack: unexpected disconnect",  # sshd stopped mid-push
        ),
        (
            "fatal: the remote end hung up upon initial contact\n",
            "unreachable: the remote end hung up upon initial contact",  # sshd dropping sessions
        ),
        ("", "unreachable: git fetch failed: the connection ended with no reason given"),
        ("To ssh://h/r.git\n", "unreachable: git fetch failed: the connection ended"),
    ]
    for stderr, said in cases:
        assert str(explain(stderr, "git fetch failed")).startswith(said), stderr


def test_scopes_share_a_server_by_user_host_and_port():
    assert server_of("ssh://git@h:22/a.git") == server_of("ssh://git@h:22/b.git")
    assert server_of("git@h:a.git") == server_of("git@h:team/b.git") != server_of("ssh://git@h:22/a.git")
    assert server_of("/srv/a.git") != server_of("/srv/b.git")  # a path is its own


def test_a_probe_that_reaches_the_server_but_fails_on_its_repository_frees_the_rest():
    p = Pace(CONF, {A: "s1", B: "s1"})
    p.failed(A, 0.0, "unreachable: x", server=True)
    (probe,) = p.due(5.0, {A, B})
    p.failed(probe, 5.0, "no repository: gone", server=False)  # the server answered
    (other,) = {A, B} - {probe}
    assert p.due(5.0, {A, B}) == [other] and p.server_error(other) is None


def test_only_ssh_remotes_get_a_folder_for_shared_connections(tmp_path):
    config, state = tmp_path / "gitconfig", tmp_path / "state"
    state.mkdir()
    t = Transport.make(config, state, None, None, ["/srv/a.git", "git://h/b.git", "https://h/c.git"])
    assert t.control_dir is None and "ControlPath" not in t.env["GIT_SSH_COMMAND"]
    assert not control_path(state).exists()
    t = Transport.make(config, state, None, None, ["/srv/a.git", "git@h:team/b.git"])
    assert t.control_dir == control_path(state) and t.control_dir.is_dir()
    t.close([])
    assert not control_path(state).exists()  # gone with the daemon
