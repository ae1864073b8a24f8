"""A short, bounded run of the atheris fuzzer of the modem dialogue (tools/fuzz_at.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_fuzzer_finds_nothing_in_a_short_run(tmp_path) -> None:
    pytest.importorskip("atheris")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_at.py"), "-runs=4000", "-seed=1",
                        f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 4000 runs" in r.stderr
    assert not list(tmp_path.glob("crash-*"))
