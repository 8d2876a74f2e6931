"""What the CLI loads: `memfs umount`, run once per mount, starts light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_umount_loads_no_yaml_and_no_client() -> None:
    # The config's YAML parser and the .memfs client were 0.06 of umount's 0.17 CPU-s.
    code = (
        "import sys\n"
        "from memfs import cli\n"
        "print(cli.main(['umount', '/nonexistent-memfs-mount']))\n"
        "heavy = ('yaml', 'memfs.client', 'memfs.config', 'memfs.store')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    checkout = Path(__file__).resolve().parent.parent  # a fresh interpreter: its own sys.modules
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.splitlines() == ["1", "[]"]
    assert "is not mounted" in out.stderr
