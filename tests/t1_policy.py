"""memfs.policy (pure rules) and memfs.identity (uid -> Principal)."""

from __future__ import annotations

import errno
import stat

import pytest

from memfs import policy
from memfs.config import ConfigError, parse
from memfs.identity import Identities
from memfs.policy import Access, Kind, Principal, Scope

NO_PASSWD_UID = 4000123  # a uid with no passwd entry on any sane test machine

ALICE = Principal(uid=1001, gid=1001, user="alice", team="eng", readable=frozenset({"carol"}))
UNMAPPED = Principal(uid=4000, gid=4000, user=None)

ALICE_PRIVATE = Scope(Kind.PRIVATE, "alice")
BOB_PRIVATE = Scope(Kind.PRIVATE, "bob")
CAROL_PRIVATE = Scope(Kind.PRIVATE, "carol")  # alice has a read grant on carol
ENG = Scope(Kind.TEAM, "eng")
OPS = Scope(Kind.TEAM, "ops")
ALL_SCOPES = [ALICE_PRIVATE, BOB_PRIVATE, CAROL_PRIVATE, ENG, OPS]


# -- access -----------------------------------------------------------------------


def test_own_private_is_write():
    assert policy.access(ALICE, ALICE_PRIVATE) is Access.WRITE


def test_granted_owner_is_read():
    assert policy.access(ALICE, CAROL_PRIVATE) is Access.READ


def test_other_private_is_none():
    assert policy.access(ALICE, BOB_PRIVATE) is Access.NONE


def test_own_team_is_write():
    assert policy.access(ALICE, ENG) is Access.WRITE


def test_other_team_is_none():
    assert policy.access(ALICE, OPS) is Access.NONE


def test_no_team_means_no_team_access():
    loner = Principal(uid=1002, gid=1002, user="bob")
    assert policy.access(loner, ENG) is Access.NONE
    assert loner.team_scope is None


def test_a_grant_on_a_team_name_gives_nothing():
    p = Principal(uid=1002, gid=1002, user="bob", readable=frozenset({"ops"}))
    assert policy.access(p, OPS) is Access.NONE


@pytest.mark.parametrize("scope", ALL_SCOPES, ids=str)
def test_unmapped_principal_has_no_access(scope):
    assert policy.access(UNMAPPED, scope) is Access.NONE


def test_unmapped_principal_has_no_private_scope():
    assert UNMAPPED.private is None
    assert ALICE.private == ALICE_PRIVATE
    assert ALICE.team_scope == ENG


def test_access_levels_are_ordered():
    assert Access.NONE < Access.READ < Access.WRITE


# -- may_move ---------------------------------------------------------------------


def test_move_between_own_private_and_own_team():
    assert policy.may_move(ALICE, ALICE_PRIVATE, ENG)
    assert policy.may_move(ALICE, ENG, ALICE_PRIVATE)
    assert policy.may_move(ALICE, ALICE_PRIVATE, ALICE_PRIVATE)


def test_move_into_another_private_is_refused():
    assert not policy.may_move(ALICE, ALICE_PRIVATE, BOB_PRIVATE)


def test_move_into_a_read_only_grant_is_refused():
    assert not policy.may_move(ALICE, ALICE_PRIVATE, CAROL_PRIVATE)


def test_move_out_of_a_read_only_grant_is_refused():
    assert not policy.may_move(ALICE, CAROL_PRIVATE, ALICE_PRIVATE)


def test_move_into_another_team_is_refused():
    assert not policy.may_move(ALICE, ALICE_PRIVATE, OPS)
    assert not policy.may_move(ALICE, ENG, OPS)


def test_unmapped_principal_may_not_move():
    assert not policy.may_move(UNMAPPED, ALICE_PRIVATE, ALICE_PRIVATE)


# -- modes ------------------------------------------------------------------------


def test_shown_mode_private_keeps_owner_bits_only():
    assert policy.shown_mode(Kind.PRIVATE, stat.S_IFREG | 0o644) == stat.S_IFREG | 0o600
    assert policy.shown_mode(Kind.PRIVATE, stat.S_IFREG | 0o677) == stat.S_IFREG | 0o600
    assert policy.shown_mode(Kind.PRIVATE, stat.S_IFDIR | 0o755) == stat.S_IFDIR | 0o700


def test_shown_mode_team_mirrors_owner_bits_to_group():
    assert policy.shown_mode(Kind.TEAM, stat.S_IFREG | 0o604) == stat.S_IFREG | 0o660
    assert policy.shown_mode(Kind.TEAM, stat.S_IFREG | 0o400) == stat.S_IFREG | 0o440
    assert policy.shown_mode(Kind.TEAM, stat.S_IFDIR | 0o707) == stat.S_IFDIR | 0o770


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("ftype", [stat.S_IFREG, stat.S_IFDIR])
def test_shown_mode_preserves_file_type(kind, ftype):
    assert stat.S_IFMT(policy.shown_mode(kind, ftype | 0o777)) == ftype


def test_shown_mode_drops_special_bits():
    assert policy.shown_mode(Kind.PRIVATE, stat.S_IFREG | 0o4755) == stat.S_IFREG | 0o700


def test_stored_mode_keeps_owner_bits_only():
    assert policy.stored_mode(0o755) == 0o700
    assert policy.stored_mode(0o644) == 0o600
    assert policy.stored_mode(0o077) == 0
    assert policy.stored_mode(stat.S_IFREG | 0o4700) == 0o700


def test_owner_bits_allow():
    assert policy.owner_bits_allow(0o600, want_read=True, want_write=True)
    assert not policy.owner_bits_allow(0o200, want_read=True, want_write=False)
    assert not policy.owner_bits_allow(0o400, want_read=False, want_write=True)
    assert policy.owner_bits_allow(0o400, want_read=True, want_write=False)
    assert not policy.owner_bits_allow(0o600, False, False, want_exec=True)
    assert policy.owner_bits_allow(0o100, False, False, want_exec=True)


def test_owner_bits_allow_ignores_group_and_other():
    assert not policy.owner_bits_allow(0o077, want_read=True, want_write=False)
    assert policy.owner_bits_allow(0o000, want_read=False, want_write=False)


# -- names and file types ---------------------------------------------------------


def test_reserved_root_names():
    assert policy.RESERVED_ROOT_NAMES == {b"team", b".memfs"}


@pytest.mark.parametrize(
    "ftype", [stat.S_IFIFO, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK], ids=stat.filemode
)
def test_refused_file_types(ftype):
    assert policy.refused_file_type(ftype | 0o600)


@pytest.mark.parametrize("ftype", [stat.S_IFREG, stat.S_IFDIR], ids=stat.filemode)
def test_allowed_file_types(ftype):
    assert not policy.refused_file_type(ftype | 0o600)


# -- identity: uid -> user ----------------------------------------------------------


def ids_of(data) -> Identities:
    return Identities(parse(data))


def test_config_user_uid_maps_to_its_name():
    ids = ids_of({"users": {"alice": {"uid": 1001}}})
    assert ids.user_name(1001) == "alice"
    assert ids.principal(1001, 1001).user == "alice"


def test_unmapped_uid_maps_to_its_passwd_name():
    assert ids_of({}).user_name(0) == "root"


def test_unmapped_uid_without_passwd_entry_maps_to_uid_n():
    assert ids_of({}).user_name(NO_PASSWD_UID) == f"uid-{NO_PASSWD_UID}"


def test_deny_maps_an_unlisted_uid_to_none():
    ids = ids_of({"users": {"alice": {"uid": 1001}}, "unknown_uids": "deny"})
    assert ids.user_name(0) is None
    assert ids.user_name(NO_PASSWD_UID) is None
    assert ids.user_name(1001) == "alice"
    p = ids.principal(0, 0)
    assert p.user is None and p.team is None and p.readable == frozenset()


def test_config_user_claiming_a_passwd_name_takes_it_from_that_uid():
    ids = ids_of({"users": {"root": {"uid": 1005}}})
    assert ids.user_name(1005) == "root"
    assert ids.user_name(0) == "uid-0"


def test_uid_n_name_cannot_collide_with_a_config_user():
    # The config may not give another uid the name memfs uses for this one.
    with pytest.raises(ConfigError, match=f"uid {NO_PASSWD_UID}"):
        ids_of({"users": {f"uid-{NO_PASSWD_UID}": {"uid": 1005}}})
    ids = ids_of({"users": {f"uid-{NO_PASSWD_UID}": {"uid": NO_PASSWD_UID}}})
    assert ids.user_name(NO_PASSWD_UID) == f"uid-{NO_PASSWD_UID}"


def test_principal_is_cached_per_uid():
    ids = ids_of({})
    assert ids.principal(NO_PASSWD_UID, 10) is ids.principal(NO_PASSWD_UID, 10)


def test_principal_carries_the_callers_gid():
    ids = ids_of({"users": {"alice": {"uid": 1001}}})
    assert ids.principal(1001, 1001).gid == 1001
    assert ids.principal(1001, 50).gid == 50


def test_uid_gid_of_users():
    ids = ids_of({"users": {"alice": {"uid": 1001}}})
    assert ids.uid_gid("alice") == (1001, 1001)
    assert ids.uid_gid("root") == (0, 0)
    assert ids.uid_gid(f"uid-{NO_PASSWD_UID}") == (NO_PASSWD_UID, NO_PASSWD_UID)


# -- identity: teams and grants ---------------------------------------------------


def test_member_of_one_team_gets_it():
    ids = ids_of({"users": {"alice": {"uid": 1001}}, "teams": {"eng": {"members": ["alice"]}}})
    assert ids.principal(1001, 1001).team == "eng"
    assert ids.teams["eng"].members == frozenset({"alice"})
    assert ids.teams["eng"].gid is None


def test_non_member_gets_no_team():
    ids = ids_of(
        {"users": {"alice": {"uid": 1001}, "bob": {"uid": 1002}}, "teams": {"eng": {"members": ["alice"]}}}
    )
    assert ids.principal(1002, 1002).team is None


def test_passwd_user_can_be_a_team_member():
    ids = ids_of({"teams": {"ops": {"members": ["root"]}}})
    assert ids.principal(0, 0).team == "ops"


def test_user_in_two_teams_must_choose():
    data = {
        "users": {"alice": {"uid": 1001}},
        "teams": {"eng": {"members": ["alice"]}, "ops": {"members": ["alice"]}},
    }
    with pytest.raises(ConfigError, match=r"users\.alice\.team"):
        ids_of(data)


def test_user_in_two_teams_with_a_chosen_team():
    data = {
        "users": {"alice": {"uid": 1001, "team": "ops"}},
        "teams": {"eng": {"members": ["alice"]}, "ops": {"members": ["alice"]}},
    }
    assert ids_of(data).principal(1001, 1001).team == "ops"


def test_chosen_team_the_user_is_not_a_member_of_is_an_error():
    data = {
        "users": {"alice": {"uid": 1001, "team": "ops"}},
        "teams": {"eng": {"members": ["alice"]}, "ops": {"members": []}},
    }
    with pytest.raises(ConfigError, match=r"users\.alice\.team"):
        ids_of(data)


def test_chosen_team_of_a_user_in_no_team_is_not_ignored():
    data = {"users": {"alice": {"uid": 1001, "team": "eng"}}, "teams": {"eng": {"members": []}}}
    try:
        ids = ids_of(data)
    except ConfigError:
        return  # refusing the config is one right answer
    assert ids.principal(1001, 1001).team == "eng"  # making alice a member is the other


def test_unknown_team_member_is_an_error():
    with pytest.raises(ConfigError, match=r"teams\.eng\.members.*'nosuchuser-x'"):
        ids_of({"teams": {"eng": {"members": ["nosuchuser-x"]}}})


def test_team_group_adds_members_with_that_primary_group():
    ids = ids_of({"teams": {"ops": {"group": "daemon"}}})  # passwd user daemon has gid 1
    assert ids.teams["ops"].gid == 1
    assert "daemon" in ids.teams["ops"].members
    assert ids.principal(1, 1).team == "ops"


def test_team_group_that_does_not_exist_is_an_error():
    with pytest.raises(ConfigError, match=r"teams\.ops\.group"):
        ids_of({"teams": {"ops": {"group": "no-such-group-x"}}})


@pytest.mark.parametrize("key", ["reader", "owner"])
def test_grant_to_unknown_user_is_an_error(key):
    grant = {"reader": "alice", "owner": "alice"}
    grant[key] = "nosuchuser-x"
    with pytest.raises(ConfigError, match=rf"grants\[0\]\.{key}"):
        ids_of({"users": {"alice": {"uid": 1001}}, "grants": [grant]})


def test_principal_readable_has_grant_owners():
    ids = ids_of(
        {
            "users": {"alice": {"uid": 1001}, "bob": {"uid": 1002}, "carol": {"uid": 1003}},
            "grants": [{"reader": "bob", "owner": "alice"}, {"reader": "bob", "owner": "carol"}],
        }
    )
    bob = ids.principal(1002, 1002)
    assert bob.readable == frozenset({"alice", "carol"})
    assert ids.principal(1001, 1001).readable == frozenset()
    assert policy.access(bob, Scope(Kind.PRIVATE, "alice")) is Access.READ


def test_chown_may_only_name_the_shown_owner():
    assert policy.chown_allowed((1001, 1001), None, None)
    assert policy.chown_allowed((1001, 1001), 1001, None)
    assert policy.chown_allowed((0, 50), 0, 50)
    assert not policy.chown_allowed((1001, 1001), 0, None)
    assert not policy.chown_allowed((0, 50), None, 51)
    # the owner may name a group it is in (cp -a, rsync -a): accepted, the team's group stays
    assert policy.chown_allowed((1002, 50), 1002, 1002, caller=1002, groups=frozenset({1002}))
    assert not policy.chown_allowed((1002, 50), None, 1002, caller=1001, groups=frozenset({1002}))
    assert not policy.chown_allowed((1002, 50), None, 7, caller=1002, groups=frozenset({1002}))
    assert not policy.chown_allowed((1002, 50), 1001, None, caller=1002, groups=frozenset({1002}))


def test_only_the_owner_changes_a_mode():
    assert policy.chmod_allowed(1002, 1002, 0o100600, 0o100700)
    assert not policy.chmod_allowed(1002, 1001, 0o100600, 0o100700)
    assert policy.chmod_allowed(1002, 1001, 0o100600, 0o100660)  # stores as it is: no change


def test_grant_views_are_read_only_for_everyone():
    alice = Principal(uid=1001, gid=1001, user="alice")
    own = Scope(Kind.PRIVATE, "alice")
    assert policy.access(alice, own) is Access.WRITE
    assert policy.access(alice, own, view=True) is Access.READ
    carol = Principal(uid=1003, gid=1003, user="carol", readable=frozenset({"alice"}))
    assert policy.access(carol, own, view=True) is Access.READ
    assert policy.access(Principal(uid=1004, gid=1004, user="dave"), own, view=True) is Access.NONE


def test_small_rules_fs_asks():
    import os

    assert policy.open_wants(os.O_RDONLY) == (True, False)
    assert policy.open_wants(os.O_RDONLY | os.O_TRUNC) == (True, True)  # O_TRUNC is a write
    assert policy.open_wants(os.O_WRONLY) == (False, True)
    assert policy.denied_errno(Access.NONE) == errno.EACCES
    assert policy.denied_errno(Access.READ) == errno.EROFS
    assert policy.rename_flags_supported(0) and policy.rename_flags_supported(1)
    assert not policy.rename_flags_supported(2) and not policy.rename_flags_supported(4)
    root = Principal(uid=0, gid=0, user="root")
    carol = Principal(uid=1003, gid=1003, user="carol", readable=frozenset({"alice"}))
    assert policy.may_refresh(root) and not policy.may_refresh(carol)
    assert policy.sees_grant(carol, "alice") and not policy.sees_grant(carol, "bob")
    assert policy.reserved_name_errno(True, True) == errno.EEXIST
    assert policy.reserved_name_errno(False, True) == errno.EPERM
    assert policy.reserved_name_errno(True, False) == errno.EBUSY
    assert policy.reserved_name_errno(False, False) == errno.ENOENT


def test_scopes_made_from_names_a_caller_chose_do_not_pile_up():
    """Scopes are interned (one object per kind and name alive, so they hash as objects);
    the table holds them weakly: names made up by the thousand leave nothing behind."""
    import gc

    before = len(Scope._alive)
    kept = Scope(Kind.PRIVATE, "alice")
    made = [Scope(Kind.PRIVATE, f"nobody{i}") for i in range(5000)]
    assert Scope(Kind.PRIVATE, "nobody7") is made[7] and Scope(Kind.TEAM, "nobody7") is not made[7]
    del made
    gc.collect()
    assert len(Scope._alive) <= before + 1
    assert Scope(Kind.PRIVATE, "alice") is kept
