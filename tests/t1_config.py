"""memfs.config: parse() and load() turn YAML into a Config, or one clear ConfigError."""

from __future__ import annotations

import textwrap

import pytest

from memfs.config import DEFAULT_MAX_FILE_BYTES, Config, ConfigError, Grant, load, parse

ALICE = {"uid": 1001}


def error_of(data) -> str:
    with pytest.raises(ConfigError) as exc:
        parse(data)
    return str(exc.value)


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def same_settings(a: Config, b: Config) -> bool:
    """Equal in everything but `source`."""
    return (a.users, a.teams, a.grants, a.unknown_uids, a.limits) == (
        b.users,
        b.teams,
        b.grants,
        b.unknown_uids,
        b.limits,
    )


# -- defaults ---------------------------------------------------------------------


def test_no_file_is_the_defaults():
    cfg = load(None)
    assert cfg == Config()
    assert cfg.users == {} and cfg.teams == {} and cfg.grants == ()
    assert cfg.unknown_uids == "allow"


def test_default_max_file_bytes_is_10_mib():
    assert DEFAULT_MAX_FILE_BYTES == 10 * 1024 * 1024
    assert Config().limits.max_file_bytes == 10 * 1024 * 1024


def test_empty_file_is_the_defaults(tmp_path):
    cfg = load(write(tmp_path, ""))
    assert same_settings(cfg, Config())
    assert cfg.source == str(tmp_path / "config.yaml")


def test_comment_only_file_is_the_defaults(tmp_path):
    cfg = load(write(tmp_path, "# nothing here\n"))
    assert same_settings(cfg, Config())


def test_parse_none_and_empty_mapping_are_the_defaults():
    assert same_settings(parse(None), Config())
    assert same_settings(parse({}), Config())


def test_missing_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="does not exist") as exc:
        load(path)
    assert str(path) in str(exc.value)


def test_a_full_config_is_read(tmp_path):
    cfg = load(
        write(
            tmp_path,
            """\
            users:
              alice: {uid: 1001, team: eng}
              bob: {uid: 1002}
            teams:
              eng: {members: [alice, bob], group: staff}
            grants:
              - {reader: bob, owner: alice}
            unknown_uids: deny
            limits: {max_file_bytes: 4096}
            """,
        )
    )
    assert cfg.users["alice"].uid == 1001 and cfg.users["alice"].team == "eng"
    assert cfg.users["bob"].uid == 1002 and cfg.users["bob"].team is None
    assert cfg.teams["eng"].members == ("alice", "bob")
    assert cfg.teams["eng"].group == "staff"
    assert cfg.grants == (Grant(reader="bob", owner="alice"),)
    assert cfg.unknown_uids == "deny"
    assert cfg.limits.max_file_bytes == 4096


# -- unknown keys -----------------------------------------------------------------


def test_unknown_top_level_key_is_named():
    msg = error_of({"userz": {}})
    assert "'userz'" in msg and msg.startswith("config:")


def test_unknown_user_key_is_named():
    msg = error_of({"users": {"alice": {"uid": 1001, "home": "/x"}}})
    assert "users.alice" in msg and "'home'" in msg


def test_unknown_limits_key_is_named():
    msg = error_of({"limits": {"max_file_size": 10}})
    assert "limits" in msg and "'max_file_size'" in msg


def test_unknown_grant_key_is_named():
    msg = error_of({"grants": [{"reader": "bob", "owner": "alice", "write": True}]})
    assert "grants[0]" in msg and "'write'" in msg


def test_unknown_team_key_is_named():
    msg = error_of({"teams": {"eng": {"members": [], "lead": "alice"}}})
    assert "teams.eng" in msg and "'lead'" in msg


# -- users and uids ---------------------------------------------------------------


def test_two_users_with_one_uid_is_an_error_naming_the_uid():
    msg = error_of({"users": {"alice": {"uid": 1001}, "bob": {"uid": 1001}}})
    assert "1001" in msg and "'alice'" in msg and "users.bob" in msg


def test_user_without_uid_is_an_error():
    assert "'uid'" in error_of({"users": {"alice": {}}})


@pytest.mark.parametrize("uid", ["1001", -1, True, False, 1.5, None, [1001]])
def test_bad_uid_types_are_errors(uid):
    msg = error_of({"users": {"alice": {"uid": uid}}})
    assert "users.alice.uid" in msg


def test_uid_zero_is_allowed():
    assert parse({"users": {"admin": {"uid": 0}}}).users["admin"].uid == 0


# -- uids: several uids and ranges act as one user (sandboxes, containers) -----------


def test_uids_take_single_uids_and_ranges():
    u = parse({"users": {"agent": {"uid": 1001, "uids": [1005, "100000-165535", " 7 - 9 "]}}}).users["agent"]
    assert u.uid == 1001  # the owner shown
    assert u.uids == ((1001, 1001), (1005, 1005), (100000, 165535), (7, 9))


def test_uids_alone_shows_the_first_as_owner():
    u = parse({"users": {"box": {"uids": ["100000-165535", 2000]}}}).users["box"]
    assert u.uid == 100000 and u.uids == ((100000, 165535), (2000, 2000))


def test_uid_repeated_in_uids_is_one_claim():
    assert parse({"users": {"a": {"uid": 1001, "uids": [1001]}}}).users["a"].uids == ((1001, 1001),)


@pytest.mark.parametrize(
    "users, names",
    [
        ({"alice": {"uid": 1001}, "box": {"uids": ["1000-1002"]}}, ["'alice'", "'box'", "1001"]),
        ({"a": {"uids": ["100000-165535"]}, "b": {"uids": ["165535-200000"]}}, ["'a'", "'b'", "165535"]),
        ({"a": {"uids": ["10-20"]}, "b": {"uids": [1, "15-16"]}}, ["'a'", "'b'", "15-16"]),
        ({"a": {"uids": ["10-20", "20-30"]}}, ["twice", "20"]),
    ],
)
def test_overlapping_uids_are_an_error_naming_both(users, names):
    msg = error_of({"users": users})
    assert all(n in msg for n in names), msg


@pytest.mark.parametrize("bad", ["9-1", "1-", "abc", "1-2-3", "-5", "0x10", 2**32, "1-4294967296", 1.5, None])
def test_bad_uid_ranges_are_errors_naming_the_key(bad):
    assert "users.a.uids[0]" in error_of({"users": {"a": {"uids": [bad]}}})


def test_uids_must_be_a_list():
    assert "users.a.uids" in error_of({"users": {"a": {"uids": "1000-2000"}}})


def test_root_cannot_hide_in_a_range():
    # uid 0 in a range would make root act as that user without anyone writing "uid: 0"
    assert "0" in error_of({"users": {"a": {"uids": ["0-65535"]}}})
    assert parse({"users": {"a": {"uids": [0]}}}).users["a"].uid == 0


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "-x", "a b", "x" * 65, "é", 5])
def test_invalid_user_names_are_errors(name):
    msg = error_of({"users": {name: ALICE}})
    assert "not a valid name" in msg


@pytest.mark.parametrize("name", ["alice", "a", "_svc", "a.b-c_d", "x" * 64, "Bob2"])
def test_valid_user_names(name):
    assert name in parse({"users": {name: ALICE}}).users


def test_a_name_with_a_trailing_newline_is_invalid():
    msg = error_of({"users": {"alice\n": ALICE}})
    assert "not a valid name" in msg


def test_users_must_be_a_mapping():
    assert "users" in error_of({"users": ["alice"]})


def test_users_as_a_list_of_mappings_is_a_config_error():
    with pytest.raises(ConfigError):
        parse({"users": [{"alice": ALICE}]})


def test_config_must_be_a_mapping():
    assert "expected a mapping" in error_of(["users"])


# -- unknown_uids and limits --------------------------------------------------------


@pytest.mark.parametrize("value", ["allow", "deny"])
def test_unknown_uids_values(value):
    assert parse({"unknown_uids": value}).unknown_uids == value


@pytest.mark.parametrize("value", ["Deny", "reject", True, 0, None, ["deny"]])
def test_bad_unknown_uids_is_an_error(value):
    assert "unknown_uids" in error_of({"unknown_uids": value})


@pytest.mark.parametrize("value", [0, -5, "1X", "lots", "-1M", True, 1.5])
def test_bad_max_file_bytes_is_an_error(value):
    assert "limits.max_file_bytes" in error_of({"limits": {"max_file_bytes": value}})


@pytest.mark.parametrize(
    ("key", "value", "want"),
    [("max_file_bytes", "1M", 1 << 20), ("user_bytes", "2GiB", 2 << 30), ("team_bytes", "512k", 512 << 10)],
)
def test_sizes_take_units(key, value, want):
    assert getattr(parse({"limits": {key: value}}).limits, key) == want


@pytest.mark.parametrize("key", ["user_files", "team_files", "open_files", "open_queries"])
def test_counts_are_positive_integers(key):
    assert f"limits.{key}" in error_of({"limits": {key: 0}})
    assert f"limits.{key}" in error_of({"limits": {key: "10"}})


def test_max_file_bytes_of_one_is_allowed():
    assert parse({"limits": {"max_file_bytes": 1}}).limits.max_file_bytes == 1


# -- YAML -------------------------------------------------------------------------


def test_invalid_yaml_reports_the_line(tmp_path):
    path = write(tmp_path, "users:\n  alice: {uid: 1001}\n  bob: {uid: 1002\nlimits: {}\n")
    with pytest.raises(ConfigError, match="invalid YAML at line 4") as exc:
        load(path)
    assert str(path) in str(exc.value)


def test_a_tab_in_yaml_reports_its_line(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML at line 3"):
        load(write(tmp_path, "users:\n  alice: {uid: 1001}\n\tbob: {uid: 1002}\n"))


def test_errors_in_a_loaded_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'colour'"):
        load(write(tmp_path, "colour: blue\n"))


# -- teams ------------------------------------------------------------------------


def test_user_team_naming_a_missing_team_is_an_error():
    msg = error_of({"users": {"alice": {"uid": 1001, "team": "eng"}}})
    assert "users.alice.team" in msg and "'eng'" in msg


def test_user_team_naming_a_defined_team_is_kept():
    cfg = parse({"users": {"alice": {"uid": 1001, "team": "eng"}}, "teams": {"eng": {"members": ["alice"]}}})
    assert cfg.users["alice"].team == "eng"


def test_team_with_members_and_group():
    cfg = parse({"teams": {"eng": {"members": ["alice", "bob"], "group": "devs"}}})
    team = cfg.teams["eng"]
    assert team.name == "eng" and team.members == ("alice", "bob") and team.group == "devs"


def test_team_without_members_or_group():
    team = parse({"teams": {"ops": None}}).teams["ops"]
    assert team.members == () and team.group is None


def test_team_members_must_be_a_list():
    assert "teams.eng.members" in error_of({"teams": {"eng": {"members": "alice"}}})


def test_team_member_names_are_validated():
    assert "teams.eng.members[1]" in error_of({"teams": {"eng": {"members": ["alice", "../x"]}}})


def test_team_group_must_be_a_string():
    assert "teams.eng.group" in error_of({"teams": {"eng": {"group": 100}}})


def test_invalid_team_name_is_an_error():
    assert "not a valid name" in error_of({"teams": {"a/b": {}}})


# -- grants -----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["reader", "owner"])
def test_grant_missing_a_key_is_an_error(missing):
    grant = {"reader": "bob", "owner": "alice"}
    del grant[missing]
    msg = error_of({"grants": [grant]})
    assert "grants[0]" in msg and repr(missing) in msg


def test_grant_errors_name_the_index():
    msg = error_of({"grants": [{"reader": "bob", "owner": "alice"}, {"reader": "bob"}]})
    assert "grants[1]" in msg


def test_grants_must_be_a_list():
    assert "grants" in error_of({"grants": {"reader": "bob", "owner": "alice"}})


def test_grant_names_are_validated():
    assert "grants[0].owner" in error_of({"grants": [{"reader": "bob", "owner": "a/b"}]})


def test_history_section():
    from memfs.config import ConfigError, parse

    h = parse({"history": {"batch_seconds": 0.5, "keep_days": 30, "max_bytes": "1G"}}).history
    assert (h.enabled, h.batch_seconds, h.keep_days, h.max_bytes) == (True, 0.5, 30.0, 1 << 30)
    assert parse({"history": {"enabled": False}}).history.enabled is False
    for bad, needle in (
        ({"enabled": "yes"}, "history.enabled"),
        ({"batch_seconds": 0}, "history.batch_seconds"),
        ({"keep_days": -1}, "history.keep_days"),
        ({"email": "{uid}@x"}, "history.email"),
        ({"email": "a\nb"}, "history.email"),
        ({"colour": 1}, "unknown key 'colour'"),
    ):
        try:
            parse({"history": bad})
        except ConfigError as e:
            assert needle in str(e)
        else:
            raise AssertionError(f"{bad} accepted")


def test_remotes_and_sync_section():
    from memfs.config import ConfigError, parse

    c = parse(
        {
            "users": {"alice": {"uid": 1001, "remote": "/srv/a.git"}},
            "teams": {"eng": {"members": ["alice"], "remote": "git@h:eng/memory.git"}},
            "sync": {"interval": 1},
        }
    )
    assert (c.users["alice"].remote, c.teams["eng"].remote, c.sync.interval) == (
        "/srv/a.git",
        "git@h:eng/memory.git",
        1,
    )
    for bad, needle in (
        ({"teams": {"eng": {"remote": "https://u:secret@h/x.git"}}}, "no passwords"),
        ({"teams": {"eng": {"remote": "--upload-pack=evil"}}}, "teams.eng.remote"),
        ({"teams": {"eng": {"remote": ""}}}, "teams.eng.remote"),
        ({"sync": {"interval": 0}}, "sync.interval"),
        ({"teams": {"eng": {"remote": "/x.git"}}, "history": {"enabled": False}}, "sync needs history"),
    ):
        try:
            parse(bad)
        except ConfigError as e:
            assert needle in str(e), (bad, e)
        else:
            raise AssertionError(f"{bad} accepted")
