"""A short, bounded libFuzzer run of the RTP parser / DLE decoder harness (tests/fuzz/)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_rtp_parser_survives_a_fuzzing_run(tmp_path):
    if not shutil.which("clang-14"):
        pytest.fail("clang-14 is needed for the fuzz harness (tools/install --test installs it)")
    build = subprocess.run(["make", "-s", "-C", str(ROOT / "native"), "fuzz", f"B={tmp_path}"],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "tests" / "data" / "rtp", corpus)
    run = subprocess.run([str(tmp_path / "fuzz_rtp"), "-max_total_time=4", "-timeout=5", "-rss_limit_mb=512",
                          f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr and not list(tmp_path.glob("crash-*"))
