"""Fixtures for tests against a running box and real SIP peers on loopback."""
from __future__ import annotations

import random
import socket
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BoxProcess, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))

PASSWORDS = {n: f"Test-pass-{n}-Xq7v9Lm" for n in ("201", "202", "203", "204", "205")}

BASE_PROVISION = """
[system]
language = "en"
timezone = "Europe/Warsaw"
country_code = "48"

[system.security]
ban_attempts = 5
ban_window_s = 60
ban_time_s = 600

""" + "".join(f"""
[[extension]]
number = "{n}"
name = "Ext {n}"
password = "{p}"
permission = "mobile"
no_answer_timeout = 10
""" for n, p in PASSWORDS.items())


_HANDED_OUT: list[tuple[int, int]] = []


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_block(n: int = 200) -> int:
    """The start of n free-looking UDP ports (even), below the kernel's ephemeral range when it
    leaves room: a port there is never handed to a socket bound to port 0 between this check
    and the peer's bind (SIPp once lost its video port, media port + 2, that way)."""
    low = _ephemeral_low()
    for attempt in range(200):
        if low - n > 10000:
            base = random.randrange(10000, low - n) & ~1
        else:
            base = free_port(socket.SOCK_DGRAM) & ~1
        if base + n > 65000:
            base = 20000 + (base % 20000) & ~1
        # nor overlap a block handed out lately (one test's: a box's RTP range is free until
        # its calls), while that leaves room
        if attempt < 150 and any(base < b + m and b < base + n for b, m in _HANDED_OUT):
            continue
        ok = True
        for p in range(base, base + n, max(1, n // 20)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            _HANDED_OUT.append((base, n))
            del _HANDED_OUT[:-8]
            return base
    raise RuntimeError("no free port block")


class Office:
    """A running box with extensions 201-205 and helpers to reach it."""

    def __init__(self, tmp: Path, box: BoxProcess) -> None:
        self.tmp = tmp
        self.box = box
        self.sip_port = box.sip_port
        self.registrar = f"sip:127.0.0.1:{box.sip_port}"

    def uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.sip_port}"

    def db(self) -> sqlite3.Connection:
        c = sqlite3.connect(str(self.box.data_dir / "calls.sqlite"))
        c.row_factory = sqlite3.Row
        return c

    def wait_call_record(self, predicate=lambda row: True, timeout: float = 10.0) -> sqlite3.Row:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.db() as c:
                rows = [r for r in c.execute("SELECT * FROM calls WHERE ended_at IS NOT NULL ORDER BY started_at")
                        if predicate(r)]
            if rows:
                return rows[-1]
            time.sleep(0.1)
        raise AssertionError("no finished call record matched")


@pytest.fixture
def office(tmp_path, request):
    """Parametrize indirectly with extra TOML, or with {"toml": ..., "rtp_ports": n}."""
    param = getattr(request, "param", "")
    extra_toml, n_rtp = (param.get("toml", ""), param.get("rtp_ports", 1000)) if isinstance(param, dict) else (param, 1000)
    prov = tmp_path / "office.toml"
    prov.write_text(BASE_PROVISION + extra_toml)
    rtp = free_block(n_rtp)
    box = BoxProcess(tmp_path, "--rtp-ports", f"{rtp}-{rtp + n_rtp - 1}", provision=prov)
    try:
        yield Office(tmp_path, box)
    finally:
        box.stop()


@pytest.fixture
def pj_phones(office, tmp_path):
    """Factory of registered pjsua2 phones: pj_phones("201", auto_answer=True)."""
    from client import PjsuaPhone

    phones = []

    def make(number: str, *, auto_answer: bool = False, transport: str = "udp", register: bool = True,
             password: str | None = None, codecs: list[str] | None = None) -> PjsuaPhone:
        p = PjsuaPhone(str(tmp_path / f"pj_{number}_{len(phones)}.log"))
        phones.append(p)
        r = p.cmd("start", registrar=office.registrar, user=number, password=password or PASSWORDS[number],
                  sip_port=free_port(socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM),
                  rtp_port=free_block(40), transport=transport, auto_answer=auto_answer, register=register,
                  workdir=str(tmp_path), codecs=codecs)
        if register:
            assert r["reg_code"] == 200, f"{number} did not register: {r}"
        return p

    yield make
    for p in phones:
        try:
            p.cmd("stop", timeout=10)
        except Exception:
            pass
        p.close()


@pytest.fixture
def pyvoip_phones(office, tmp_path):
    """Factory of registered pyVoIP phones (each in its own process)."""
    from client import PyVoipPhone

    phones = []

    def make(number: str, *, auto_answer: bool = False, answer_delay: float = 0.0,
             sip_port: int | None = None) -> PyVoipPhone:
        p = PyVoipPhone(str(tmp_path / f"pyvoip_{number}_{len(phones)}.log"))
        phones.append(p)
        rtp = free_block(60)
        r = p.cmd("start", server="127.0.0.1", port=office.sip_port, user=number, password=PASSWORDS[number],
                  sip_port=sip_port or free_port(socket.SOCK_DGRAM), rtp_low=rtp, rtp_high=rtp + 50,
                  auto_answer=auto_answer, answer_delay=answer_delay, timeout=40)
        assert r["registered"], f"pyVoIP {number} did not register"
        return p

    yield make
    for p in phones:
        try:
            p.cmd("stop", timeout=20)
        except Exception:
            pass
        p.close()
