"""Quality gates (issue 23): ruff, mypy (strictness in pyproject.toml), and radon's
complexity and maintainability ranks. Each runs the tool the suite was installed with
(`scripts/install --test`) as a subprocess of this interpreter, and fails with its findings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["memfs", "tests", "scripts"]
TIMEOUT = 300  # seconds: mypy's first run, with no cache, takes about a minute
WORST_CC = "C"  # a function of rank D (cyclomatic complexity 21) or worse fails
GOOD_MI = {"A", "B"}  # every module's maintainability index rank


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )


def clean(p: subprocess.CompletedProcess[str]) -> None:
    """Fail with what the tool found (no traceback: its own report is the message)."""
    if p.returncode != 0:
        pytest.fail(f"{' '.join(p.args[2:])}: exit {p.returncode}\n{p.stdout}{p.stderr}", pytrace=False)


def test_ruff_check():
    clean(run("ruff", "check", *LINTED))


def test_ruff_format():
    clean(run("ruff", "format", "--check", *LINTED))


def test_mypy():
    clean(run("mypy", "memfs"))


def test_no_function_ranked_d_or_worse():
    p = run("radon", "cc", "--min", "D", "memfs")
    clean(p)
    if p.stdout.strip():
        pytest.fail(f"functions ranked worse than {WORST_CC}:\n{p.stdout}", pytrace=False)


def test_every_module_maintainability_a_or_b():
    p = run("radon", "mi", "--json", "memfs")
    clean(p)
    ranks = json.loads(p.stdout)
    assert ranks, "radon mi found no module"
    bad = {path: r.get("rank") or r.get("error") for path, r in ranks.items() if r.get("rank") not in GOOD_MI}
    if bad:
        pytest.fail(f"modules ranked below B for maintainability: {bad}", pytrace=False)
