"""Calls through a GSM modem: the box process drives the simulator's ptys through pyserial,
desk phones are real pjsua2 phones, the mobile network's far end is the simulator.

One box for the module (with its modem and phones registered); each test leaves the line idle.
"""
from __future__ import annotations

import re
import socket
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BoxProcess, free_port
from tests.integration.conftest import PASSWORDS, free_block
from tests.peers.audio import band_energy_ratio, tone, write_wav

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))

pytestmark = pytest.mark.timeout(120)

FAST = dict(ring_interval=1.0, answer_delay=0.3, alert_delay=0.2, busy_delay=0.3, no_answer_time=1.5,
            boot_time=0.5, ussd_delay=0.2)
IMEI = "867698041234561"
HUAWEI_IMEI = "358756001122337"
ADMIN_PASSWORD = "Admin-pass-Xq7v9Lm-42"


def extensions_toml(numbers=("201", "202", "203")) -> str:
    return "".join(f"""
[[extension]]
number = "{n}"
name = "Ext {n}"
password = "{PASSWORDS[n]}"
permission = "mobile"
no_answer_timeout = 10
""" for n in numbers)


SYSTEM_TOML = f"""
[system]
language = "en"
timezone = "Europe/Warsaw"
country_code = "48"

[[user]]
name = "admin"
password = "{ADMIN_PASSWORD}"
role = "admin"
"""


def gsm_trunk_toml(h, name: str = "gsm1", model: str = "ec25", extra: str = "", imei: str = IMEI) -> str:
    return f"""
[[trunk]]
name = "{name}"
type = "gsm"
model = "{model}"
device = "{h.at_path}"
audio_device = "{h.audio_path or ''}"
imei = "{imei}"
{extra}
"""


class Office:
    """A box process with its modem simulator and pjsua2 phones."""

    def __init__(self, tmp: Path, toml: str) -> None:
        self.tmp = tmp
        prov = tmp / "office.toml"
        prov.write_text(toml)
        rtp = free_block(1000)
        self.box = BoxProcess(tmp, "--rtp-ports", f"{rtp}-{rtp + 999}", provision=prov)
        self.sip_port = self.box.sip_port
        self.phones: list = []

    def phone(self, number: str, *, auto_answer: bool = False):
        from client import PjsuaPhone
        p = PjsuaPhone(str(self.tmp / f"pj_{number}_{len(self.phones)}.log"))
        self.phones.append(p)
        r = p.cmd("start", registrar=f"sip:127.0.0.1:{self.sip_port}", user=number, password=PASSWORDS[number],
                  sip_port=free_port(socket.SOCK_DGRAM), rtp_port=free_block(40), auto_answer=auto_answer,
                  workdir=str(self.tmp))
        assert r["reg_code"] == 200, r
        return p

    def uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.sip_port}"

    def db(self):
        import sqlite3
        c = sqlite3.connect(str(self.box.data_dir / "calls.sqlite"))
        c.row_factory = sqlite3.Row
        return c

    def record(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.db() as c:
                rows = [r for r in c.execute("SELECT * FROM calls WHERE ended_at IS NOT NULL ORDER BY started_at")
                        if predicate(r)]
            if rows:
                return rows[-1]
            time.sleep(0.1)
        raise AssertionError("no finished call record matched\n" + self.box.output()[-3000:])

    def events(self, call_id: str) -> list:
        with self.db() as c:
            return list(c.execute("SELECT type, result, data FROM call_events WHERE call_id = ? ORDER BY id", (call_id,)))

    def trunk_rows(self) -> dict[str, list[str]]:
        """The trunk status table of the web page (as the installer sees it), by trunk name."""
        web = WebUser(self.box.web_port, "admin", ADMIN_PASSWORD)
        html = web.get("/settings/trunks-status")
        rows = {}
        for tr in re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL):
            cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
            if cells:
                rows.setdefault(cells[0], cells)   # the status table comes first; later tables (minutes) repeat names
        return rows

    def close(self) -> None:
        for p in self.phones:
            try:
                p.cmd("stop", timeout=10)
            except Exception:
                pass
            p.close()
        self.box.stop()


class WebUser:
    """A logged-in browser session on the box's web page (plain HTTP with a cookie jar)."""

    def __init__(self, port: int, name: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        page = self.get("/login")
        csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)
        self.post("/login", {"name": name, "password": password, "_csrf": csrf})
        self.csrf = ""
        self.get("/account")                  # the logged-in session's CSRF token

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as r:
            page = r.read().decode()
        m = re.search(r'name="_csrf" value="([^"]+)"', page)
        if m:
            self.csrf = m.group(1)
        return page

    def post_json(self, path: str, data: dict) -> dict:
        import json
        req = urllib.request.Request(self.base + path, json.dumps(data).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-CSRF-Token": self.csrf})
        with self.opener.open(req, timeout=10) as r:
            return json.loads(r.read().decode())

    def post(self, path: str, data: dict) -> str:
        body = urllib.parse.urlencode(data).encode()
        with self.opener.open(self.base + path, body, timeout=10) as r:
            return r.read().decode()


def tone_wav(tmp: Path, freq: float, seconds: float = 30.0) -> str:
    p = tmp / f"tone_{int(freq)}.wav"
    if not p.exists():
        write_wav(p, tone(freq, seconds, 0.3))
    return str(p)


def heard_at_phone(path: str, freq: float, last_s: float = 1.5) -> float:
    """Share of the energy at `freq` in the last seconds a pjsua2 phone received."""
    data = open(path, "rb").read()[44:]
    mono = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    return band_energy_ratio(mono[-int(last_s * 8000):], freq, 8000)


def wait_until(pred, timeout: float, step: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from tools.modem_sim import Simulator
    s = Simulator(str(tmp_path_factory.mktemp("links")))
    yield s
    s.close()


@pytest.fixture(scope="module")
def gsm_office(sim, tmp_path_factory):
    h = sim.add_modem("gsm1", model="ec25", imei=IMEI, **FAST)
    h2 = sim.add_modem("gsm2", model="huawei", imei=HUAWEI_IMEI, **FAST)
    toml = SYSTEM_TOML + extensions_toml() + gsm_trunk_toml(h) + gsm_trunk_toml(h2, "gsm2", "huawei",
                                                                                 imei=HUAWEI_IMEI) + """
[route]
blacklist = ["+48700X."]

[[route.inbound]]
name = "Huawei line"
trunk = "gsm2"
destination = "201"

[[route.inbound]]
name = "GSM line"
trunk = "gsm1"
destination = "202"

[[route.outbound]]
name = "Mobiles"
pattern = "+48X."
trunks = ["gsm1"]
permission = "mobile"
"""
    o = Office(tmp_path_factory.mktemp("gsm_office"), toml)
    o.sim = h
    o.sim2 = h2
    try:
        wait_until(lambda: o.box.output().count("modem ready") >= 2, 20, what="modems ready")
        yield o
    finally:
        o.close()


@pytest.fixture(scope="module")
def phones(gsm_office):
    return {"201": gsm_office.phone("201"), "202": gsm_office.phone("202")}


def test_incoming_gsm_call_rings_a_desk_phone_with_audio_and_dtmf_both_ways(gsm_office, phones):
    o, h, desk = gsm_office, gsm_office.sim, phones["202"]
    h.audio_tone(freqs=[1000.0])
    h.incoming_call(number="+48600100200")
    inc = desk.wait_event("incoming", timeout=15)
    assert "600100200" in inc["remote"]
    time.sleep(1.0)
    st = h.status()
    assert st["call"]["state"] != "active"       # not answered while the desk phone rings
    desk.cmd("answer", call=inc["call"])
    desk.cmd("play", call=inc["call"], wav=tone_wav(o.tmp, 500))
    wait_until(lambda: h.status()["call"] and h.status()["call"]["state"] == "active", 10, what="modem answered")
    time.sleep(3)
    rec = desk.cmd("info", call=inc["call"])["record"]
    assert heard_at_phone(rec, 1000.0) > 0.7, "the desk phone does not hear the mobile caller"
    heard = h.heard(seconds=1.0)
    assert abs(heard["dominant_hz"] - 500.0) < 15, heard
    # DTMF from the mobile: reported by the module (+QTONEDET) and heard in-band: delivered once
    h.remote_dtmf(digits="5")
    wait_until(lambda: desk.cmd("info", call=inc["call"])["dtmf"], 5, what="DTMF at the desk phone")
    time.sleep(1.0)
    assert desk.cmd("info", call=inc["call"])["dtmf"] == "5"
    # DTMF from the desk phone (RFC 4733) reaches the mobile network as AT+VTS
    desk.cmd("dtmf", call=inc["call"], digits="12")
    wait_until(lambda: h.heard()["dtmf_sent"] == "12", 5, what="AT+VTS 1, 2")
    h.remote_hangup()
    st = desk.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=10)
    assert st["state"] == "DISCONNECTED"
    r = o.record(lambda r: r["direction"] == "inbound" and r["trunk"] == "gsm1")
    assert r["status"] == "answered" and r["answered_by"] == "202" and r["external_number"] == "+48600100200"
    assert r["caller_number"] == "+48600100200" and r["hangup_side"] == "caller" and r["hangup_cause"] == 16
    assert r["talk_s"] > 3
    assert r["recording_state"] == "complete"
    with o.db() as c:
        kinds = {row["kind"] for row in c.execute("SELECT kind FROM call_legs WHERE call_id = ?", (r["id"],))}
    assert kinds == {"gsm", "sip"}
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")


def test_desk_phone_calls_out_through_gsm_answered_busy_and_no_answer(gsm_office, phones):
    o, h, desk = gsm_office, gsm_office.sim, phones["201"]
    h.outgoing(fate="busy", number="+48500000001")
    h.outgoing(fate="no_answer", number="+48500000002")
    h.audio_tone(freqs=[800.0])
    # answered: audio both ways
    call = desk.cmd("dial", uri=o.uri("+48500111222"), wait_confirmed=15)
    assert call["state"] == "CONFIRMED", call
    desk.cmd("play", call=call["call"], wav=tone_wav(o.tmp, 600))
    time.sleep(3)
    assert heard_at_phone(desk.cmd("info", call=call["call"])["record"], 800.0) > 0.7
    assert abs(h.heard(seconds=1.0)["dominant_hz"] - 600.0) < 15
    desk.cmd("hangup", call=call["call"])
    r = o.record(lambda r: r["callee_number"] == "+48500111222")
    assert r["direction"] == "outbound" and r["trunk"] == "gsm1" and r["status"] == "answered"
    assert r["external_number"] == "+48500111222" and r["from_extension"] == "201"
    assert r["hangup_side"] == "caller" and r["talk_s"] > 2.5
    assert any(e["type"] == "trunk_attempt" and e["result"] == "answered" for e in o.events(r["id"]))
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")
    # busy: final (no other trunk), 486 to the phone, Q.850 17 in the record
    c2 = desk.cmd("dial", uri=o.uri("+48500000001"))
    st = desk.cmd("wait_state", call=c2["call"], states=["DISCONNECTED"], timeout=15)
    assert st["code"] == 486, st
    r = o.record(lambda r: r["callee_number"] == "+48500000001")
    assert r["status"] == "busy" and r["hangup_cause"] == 17 and r["trunk"] in ("", "gsm1")
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")
    # no answer
    c3 = desk.cmd("dial", uri=o.uri("+48500000002"))
    st = desk.cmd("wait_state", call=c3["call"], states=["DISCONNECTED"], timeout=20)
    assert st["code"] == 480, st
    r = o.record(lambda r: r["callee_number"] == "+48500000002")
    assert r["status"] == "no_answer" and r["answered_at"] is None
    calls = [c["number"] for c in h.calls() if c["dir"] == "out"]
    assert calls[-3:] == ["+48500111222", "+48500000001", "+48500000002"]


def test_mobile_caller_gives_up_while_the_desk_phone_rings(gsm_office, phones):
    o, h, desk = gsm_office, gsm_office.sim, phones["202"]
    h.incoming_call(number="+48600100300")
    inc = desk.wait_event("incoming", timeout=15)
    time.sleep(0.5)
    h.remote_hangup()
    st = desk.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=10)
    assert st["state"] == "DISCONNECTED" and st["code"] == 487
    r = o.record(lambda r: r["caller_number"] == "+48600100300")
    assert r["status"] == "missed" and r["answered_at"] is None and r["hangup_side"] == "caller"
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")


def test_blacklisted_mobile_caller_is_rejected_and_recorded(gsm_office, phones):
    o, h = gsm_office, gsm_office.sim
    h.incoming_call(number="+48700123456")
    r = o.record(lambda r: r["caller_number"] == "+48700123456", timeout=15)
    assert r["status"] == "rejected" and r["trunk"] == "gsm1" and r["hangup_cause"] == 21
    wait_until(lambda: h.status()["call"] is None, 5, what="call rejected at the modem")
    assert any("AT+CHUP" in str(entry) for entry in h.log(last=30))   # refused at the modem
    time.sleep(0.5)
    seen = []
    while not phones["202"].events.empty():
        seen.append(phones["202"].events.get_nowait()["event"])
    assert "incoming" not in seen


def test_click_to_call_through_gsm_plays_ringback_to_the_agent_until_the_mobile_answers(gsm_office, phones):
    """The agent's phone answers first (click-to-call from the REST API); while the mobile
    rings the agent hears the box's ringback (Polish 425 Hz), then the mobile."""
    o, h, desk = gsm_office, gsm_office.sim, phones["201"]
    h.outgoing(fate="answer", number="+48500111333", answer_delay=3.0)
    h.audio_tone(freqs=[1200.0])
    web = WebUser(o.box.web_port, "admin", ADMIN_PASSWORD)
    res = web.post_json("/api/v1/originate", {"number": "+48500111333", "extension": "201"})
    inc = desk.wait_event("incoming", timeout=10)
    desk.cmd("answer", call=inc["call"])
    wait_until(lambda: (h.status()["call"] or {}).get("state") == "active", 15, what="the mobile answered")
    time.sleep(2.0)
    rec = desk.cmd("info", call=inc["call"])["record"]
    data = open(rec, "rb").read()[44:]
    pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    assert band_energy_ratio(pcm[int(0.2 * 8000):int(0.9 * 8000)], 425.0, 8000) > 0.7, "no ringback"
    assert heard_at_phone(rec, 1200.0, last_s=1.0) > 0.7, "the mobile is not heard after it answered"
    desk.cmd("hangup", call=inc["call"])
    r = o.record(lambda r: r["id"] == res["call_id"])
    assert r["direction"] == "outbound" and r["trunk"] == "gsm1" and r["status"] == "answered"
    assert r["external_number"] == "+48500111333" and r["from_extension"] == "201"
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")


def test_huawei_dongle_line_with_its_320_byte_audio_port(gsm_office, phones):
    """A second module of another make on the same box: its own line, audio both ways."""
    o, h, desk = gsm_office, gsm_office.sim2, phones["201"]
    h.audio_tone(freqs=[900.0])
    h.incoming_call(number="+48600100400")
    inc = desk.wait_event("incoming", timeout=15)
    desk.cmd("answer", call=inc["call"])
    desk.cmd("play", call=inc["call"], wav=tone_wav(o.tmp, 500))
    wait_until(lambda: (h.status()["call"] or {}).get("state") == "active", 10, what="answered")
    time.sleep(2.5)
    assert heard_at_phone(desk.cmd("info", call=inc["call"])["record"], 900.0) > 0.7
    assert abs(h.heard(seconds=1.0)["dominant_hz"] - 500.0) < 15
    desk.cmd("hangup", call=inc["call"])
    r = o.record(lambda r: r["caller_number"] == "+48600100400")
    assert r["trunk"] == "gsm2" and r["status"] == "answered" and r["hangup_side"] == "callee"
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")
    assert gsm_office.sim.status()["call"] is None       # gsm1 untouched
