"""The daemon starts light: what it imports and builds at start, every mount pays (the test
suite mounts ~260 times); what only some mounts use loads when it is first used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import CHECKOUT


def test_importing_the_daemon_loads_nothing_only_some_mounts_use() -> None:
    # numpy (~0.08 CPU-s): only to embed; prometheus_client and wsgiref (~0.03): only with
    # metrics.listen; detect_secrets and the model's tokenizer: only at their first use.
    code = textwrap.dedent(
        """
        import sys
        from memfs import daemon
        print(sorted(sys.modules.keys() & {
            "numpy", "prometheus_client", "wsgiref", "memfs.metrics", "tokenizers", "safetensors",
            "detect_secrets",
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
