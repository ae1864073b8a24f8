"""The command-line contract of ../shared/DESIGN.md."""
import subprocess
import sys

import pytest

from firmware.__main__ import build_parser


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", *args], capture_output=True, text=True, timeout=60)


def test_run_accepts_every_documented_flag():
    args = build_parser().parse_args(["run", "--provision", "x.toml", "--data-dir", "/tmp/d",
                                      "--sip-bind", "127.0.0.1:5070", "--web-bind", "[::1]:8081",
                                      "--rtp-ports", "20000-20100", "--demo"])
    assert args.sip_bind == ("127.0.0.1", 5070)
    assert args.web_bind == ("::1", 8081)
    assert args.rtp_ports == (20000, 20100)
    assert args.demo and args.provision == "x.toml" and args.data_dir == "/tmp/d"


@pytest.mark.parametrize("flag,value,needle", [
    ("--sip-bind", "5060", "HOST:PORT"),
    ("--web-bind", "host:notaport", "port must be a number"),
    ("--rtp-ports", "20000", "LO-HI"),
    ("--rtp-ports", "30000-20000", "must be LO-HI"),
])
def test_bad_flags_get_a_clear_message(flag, value, needle):
    r = run_cli("run", flag, value)
    assert r.returncode == 2
    assert needle in r.stderr


def test_check_reports_toml_syntax_error_with_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[system]\nlanguage = "en"\nsip_bind = \n')
    r = run_cli("check", str(f))
    assert r.returncode == 1
    assert f"{f}:3:" in r.stderr
