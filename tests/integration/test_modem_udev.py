"""board/common/udev: the IMEI helper against a simulated modem, and a lint of the rules."""
from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.modem_sim import Simulator

ROOT = Path(__file__).resolve().parents[2]
UDEV = ROOT / "board" / "common" / "udev"
HELPER = UDEV / "pbx-modem-id"


@pytest.fixture
def sim(tmp_path):
    s = Simulator(str(tmp_path / "links"))
    yield s
    s.close()


def run_helper(*args: str) -> str:
    r = subprocess.run([sys.executable, str(HELPER), *args], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("model", ["ec25", "sim800"])
def test_helper_reads_the_imei(sim, tmp_path, model) -> None:
    h = sim.add_modem("m", model=model, imei="867698045555555")
    out = run_helper("--cache", str(tmp_path / "cache"), h.at_path)
    assert out.strip() == "PBX_IMEI=867698045555555"


def test_helper_never_writes_to_a_port_in_use_and_answers_from_cache(sim, tmp_path) -> None:
    h = sim.add_modem("m", model="ec25", imei="867698046666666")
    cache = str(tmp_path / "cache")
    assert run_helper("--cache", cache, h.at_path).strip() == "PBX_IMEI=867698046666666"
    before = len(h.log(last=500))
    fd = os.open(h.at_path, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the firmware's exclusive open holds
        assert run_helper("--cache", cache, h.at_path).strip() == "PBX_IMEI=867698046666666"
        assert len(h.log(last=500)) == before  # not a byte was written to the busy port
    finally:
        os.close(fd)


def test_helper_is_silent_for_a_non_modem(tmp_path) -> None:
    master, slave = os.openpty()
    try:
        assert run_helper("--cache", str(tmp_path / "c"), "--timeout", "0.5", os.ttyname(slave)) == ""
    finally:
        os.close(master)
        os.close(slave)


_RULE_KEY = re.compile(r'\s*(?P<key>[A-Z_]+)(\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|:=|=)"(?P<val>[^"]*)"\s*(,|$)')
_KNOWN = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNELS", "ATTRS", "ENV", "IMPORT", "SYMLINK",
          "GOTO", "LABEL", "GROUP", "MODE"}


def test_rules_file_is_well_formed() -> None:
    text = (UDEV / "99-pbx-modems.rules").read_text()
    labels, gotos = set(), set()
    for no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pos = 0
        while pos < len(line):
            m = _RULE_KEY.match(line, pos)
            assert m, f"line {no}: cannot parse {line[pos:]!r}"
            assert m.group("key") in _KNOWN, f"line {no}: unknown key {m.group('key')}"
            if m.group("key") == "GOTO":
                gotos.add(m.group("val"))
            if m.group("key") == "LABEL":
                labels.add(m.group("val"))
            pos = m.end()
    assert gotos <= labels
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in text
    assert "pbx-modem-$env{PBX_IMEI}-$env{PBX_ROLE}" in text
    assert os.access(HELPER, os.X_OK)
