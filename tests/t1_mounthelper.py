"""mount(8) helper command lines -> memfs mount arguments."""

from __future__ import annotations

import pytest

from memfs.mounthelper import HelperError, is_helper_call, translate

COMMANDS = {"mount", "umount", "search"}


def test_helper_calls_are_told_from_commands():
    assert is_helper_call(["/var/lib/memfs", "/mnt/memory", "-o", "rw"], COMMANDS)
    assert not is_helper_call(["mount", "/mnt/memory"], COMMANDS)
    assert not is_helper_call(["--help"], COMMANDS)
    assert not is_helper_call(["search"], COMMANDS)
    assert not is_helper_call(["serch", "what pet"], COMMANDS)  # a typo is not a mount


def test_options_from_mount_and_fstab():
    got = translate(
        ["/d", "/m", "-o", "rw,nosuid,nodev,noauto,_netdev,x-systemd.automount,config=/etc/m.yaml"]
    )
    assert got == ["mount", "/m", "--data", "/d", "--config", "/etc/m.yaml"]
    assert translate(["/d", "/m", "-odebug,config=/c", "-n"]) == [
        "mount", "/m", "--data", "/d", "--debug", "--config", "/c",
    ]  # fmt: skip
    assert translate(["/d", "/m"]) == ["mount", "/m", "--data", "/d"]
    generic = "defaults,owner,group,dirsync,nosymfollow,noatime,fsname=mem,subtype=memfs,comment=x"
    assert translate(["/d", "/m", "-o", generic]) == ["mount", "/m", "--data", "/d"]


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert translate(["./d", "/m/", "-o", "config=etc/m.yaml"]) == [
        "mount", "/m", "--data", f"{tmp_path}/d", "--config", f"{tmp_path}/etc/m.yaml",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/d", "/m", "-o", "ro"], "read-write only"),
        (["/d", "/m", "-o", "cache=yes"], "unknown mount option 'cache=yes'"),
        (["/d", "/m", "-o", "config="], "unknown mount option 'config='"),
        (["/d", "/m", "--frobnicate"], "unexpected argument"),
    ],
)
def test_bad_options_are_one_clear_error(argv, message):
    with pytest.raises(HelperError, match=message):
        translate(argv)


def test_every_bad_option_is_named_at_once():
    with pytest.raises(HelperError) as e:
        translate(["/d", "/m", "-o", "config=/c,cache=yes,nosuid,ro,frob"])
    msg = str(e.value)
    assert "'cache=yes'" in msg and "'frob'" in msg and "'ro'" in msg and "read-write only" in msg
    assert "nosuid" not in msg and "\n" not in msg
