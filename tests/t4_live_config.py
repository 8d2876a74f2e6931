"""Commands given --data or --mount use the config the data is mounted with."""

from __future__ import annotations

import subprocess

from conftest import TIMEOUT, memfs_cmd
from t4_team import TEAM_CONFIG


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(memfs_cmd(*args), capture_output=True, text=True, timeout=TIMEOUT, env=env)


def test_import_doctor_and_reindex_follow_the_mounts_config(make_mount, tmp_path):
    m = make_mount(TEAM_CONFIG)  # mounted with --config X --data D; X is not /etc/memfs
    src = tmp_path / "src"
    src.mkdir()
    (src / "MEMORY.md").write_text("- [Tabs](tabs.md) — tabs\n")
    (src / "tabs.md").write_text("---\nname: tabs\ndescription: tabs\ntype: feedback\n---\nTabs.\n")
    res = run(
        "import", str(src), "--user", "bob", "--team", "eng", "--data", str(m.data), "--quiet", env=m.env
    )
    assert res.returncode == 0, res.stderr  # "eng" exists only in the mount's config
    res = run("doctor", "--mount", str(m.mnt), env=m.env)
    assert "no such team" not in res.stdout + res.stderr
    # An explicit --config that is not the live mount's is an error that says so.
    other = tmp_path / "other.yaml"
    other.write_text("users: {}\n")
    res = run("import", str(src), "--user", "bob", "--data", str(m.data), "--config", str(other), env=m.env)
    assert res.returncode == 1 and "differs from" in res.stderr and str(m.config) in res.stderr
    res = run(
        "import",
        str(src),
        "--user",
        "bob",
        "--data",
        str(m.data),
        "--config",
        str(m.config),
        "--dry-run",
        env=m.env,
    )
    assert res.returncode == 0, res.stderr  # the same config, named explicitly: fine
    # Unmounted, the data remembers the config it was mounted with.
    m.stop()
    res = run("reindex", "--data", str(m.data), "--quiet", env=m.env)
    assert res.returncode == 0, res.stderr
    res = run(
        "import", str(src), "--user", "alice", "--team", "eng", "--data", str(m.data), "--dry-run", env=m.env
    )
    assert res.returncode == 0, res.stderr
    res = run(
        "import",
        str(src),
        "--user",
        "alice",
        "--data",
        str(m.data),
        "--config",
        str(other),
        "--dry-run",
        env=m.env,
    )
    assert res.returncode == 0, res.stderr  # nothing live: an explicit --config wins
