"""The SIP trunk against SIPp playing the provider (registrar with digest, call server), with a
GSM modem on the same box for the failover from GSM to SIP. The provider lives on 127.0.0.2;
the trunk's primary server 127.0.0.4 does not answer, so the box registers at the backup."""
from __future__ import annotations

import re
import socket
import time

import pytest

from tests.conftest import free_port
from tests.integration.conftest import free_block
from tests.integration.test_gsm_calls import (
    FAST,
    IMEI,
    SYSTEM_TOML,
    Office,
    extensions_toml,
    gsm_trunk_toml,
    heard_at_phone,
    tone_wav,
    wait_until,
)
from tests.peers.sipp import Sipp, sipp_env_ok

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sipp_env_ok(), reason="SIPp (sip-tester) and root needed")]

PROVIDER_IP = "127.0.0.2"
DEAD_PRIMARY = "127.0.0.4"
PARTNER_IP = "127.0.0.3"
USER, PASS = "48221234567", "Provider-secret-7Hq"
CALLER_ID = "+48221234567"
GRANTED = 8


def sipp(work, name: str, scenario: str, *, ip: str, port: int | None = None, target: str | None = None,
         template: dict | None = None, args: tuple = ()) -> Sipp:
    s = Sipp(work, scenario, target=target, port=port or free_port(socket.SOCK_DGRAM), media_port=free_block(8),
             ctrl_port=free_port(socket.SOCK_DGRAM), args=list(args), template=template or {}, name=name)
    s.args = ["-i", ip, "-mi", ip] + s.args
    return s


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from tools.modem_sim import Simulator
    s = Simulator(str(tmp_path_factory.mktemp("links")))
    yield s
    s.close()


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    work = tmp_path_factory.mktemp("provider")
    s = sipp(work, "provider", "provider_uas.xml", ip=PROVIDER_IP,
             template={"USER": USER, "PASS": PASS, "EXPIRES": str(GRANTED), "CALLER_ID_RE": re.escape(CALLER_ID)},
             args=("-rtp_echo",)).start()
    time.sleep(0.3)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def office(sim, provider, tmp_path_factory):
    h = sim.add_modem("gsm1", model="ec25", imei=IMEI, **FAST)
    toml = SYSTEM_TOML + extensions_toml() + gsm_trunk_toml(h) + f"""
[[trunk]]
name = "voip"
type = "sip"
host = "{DEAD_PRIMARY}"
backup_host = "{PROVIDER_IP}"
port = {provider.port}
username = "{USER}"
password = "{PASS}"
register = true
expiry = 600
caller_id = "{CALLER_ID}"
dids = ["+48221234567", "+48221234568"]

[[trunk]]
name = "partner"
type = "sip"
host = "{PARTNER_IP}"
allow_ips = ["{PARTNER_IP}"]
dtmf = "info"

[route]
blacklist = ["+48700X."]
default = "201"

[[route.inbound]]
name = "service line"
trunk = "voip"
did = "+48221234568"
destination = "203"

[[route.inbound]]
name = "partner line"
trunk = "partner"
did = "+48221230000"
destination = "202"

[[route.inbound]]
name = "main line"
trunk = "voip"
did = "+48221234567"
destination = "202"

[[route.outbound]]
name = "Mobiles: GSM first"
pattern = "+48X."
trunks = ["gsm1", "voip"]
permission = "mobile"

[[route.outbound]]
name = "National"
pattern = "0XXXXXXXXX"
strip = 1
prepend = "+48"
trunks = ["voip"]
permission = "local"
"""
    toml = toml.replace(f'imei = "{IMEI}"', f'imei = "{IMEI}"\nminutes_per_day = 1', 1)
    o = Office(tmp_path_factory.mktemp("sip_office"), toml)
    o.sim = h
    o.provider = provider
    try:
        yield o
    finally:
        o.close()


@pytest.fixture(scope="module")
def phones(office):
    return {n: office.phone(n, auto_answer=n != "201") for n in ("201", "202", "203")}


def authorized_registers(provider) -> list[str]:
    msgs = provider.result(0).messages
    return [m for m in re.split(r"\n(?=-{10,})", msgs)
            if re.search(r"^REGISTER sip:", m, re.MULTILINE) and re.search(r"^Authorization: Digest", m, re.MULTILINE | re.IGNORECASE)]


def test_registration_with_digest_at_the_backup_server_and_refresh_before_expiry(office):
    wait_until(lambda: "registered at" in office.box.output(), 20, what="registration")
    log = office.box.output()
    assert f"{DEAD_PRIMARY}" in log and f"trying {PROVIDER_IP}" in log   # primary silent: backup
    first = len(authorized_registers(office.provider))
    assert first >= 1
    row = office.trunk_rows()["voip"]
    assert f"registered at {PROVIDER_IP}" in row and "ok" in row
    # the provider granted 8 s (the box asked for 600): it refreshes before they run out
    t0 = time.monotonic()
    wait_until(lambda: len(authorized_registers(office.provider)) >= first + 2, 3 * GRANTED,
               what="two refreshes")
    assert time.monotonic() - t0 < 2 * GRANTED
    reg = authorized_registers(office.provider)[-1]
    assert re.search(r"^Expires: 600", reg, re.MULTILINE) and f"sip:{USER}@" in reg
    call_ids = {re.search(r"^Call-ID: (.*)$", m, re.MULTILINE).group(1) for m in authorized_registers(office.provider)}
    assert len(call_ids) == 1          # one binding, refreshed (RFC 3261 10.2.4)


def test_provider_calls_on_dids_reach_the_right_extensions(office, phones):
    wait_until(lambda: "registered at" in office.box.output(), 20, what="registration")
    work = office.tmp / "calls_in"
    work.mkdir(exist_ok=True)
    for did, ext, caller in (("+48221234568", "203", "+48500600700"), ("48221234567", "202", "221112233")):
        s = sipp(work, f"in{ext}", "provider_call.xml", ip=PROVIDER_IP, target=f"127.0.0.1:{office.sip_port}",
                 template={"DID": did, "CALLER": caller, "HOLD_MS": "1500"}, args=("-m", "1", "-timeout", "20s"))
        r = s.run(30)
        assert r.returncode == 0 and r.successful == 1, (r.stats, r.errors, office.box.output()[-2000:])
        inc = phones[ext].wait_event("incoming", timeout=5)
        assert caller.lstrip("+") in inc["remote"]
        rec = office.record(lambda row, ext=ext: row["trunk"] == "voip" and row["direction"] == "inbound"
                            and row["answered_by"] == ext)
        assert rec["did"] == did and rec["status"] == "answered" and rec["hangup_side"] == "caller"
        assert rec["external_number"] == ("+48500600700" if ext == "203" else "+48221112233")
    seen = []
    while not phones["201"].events.empty():
        seen.append(phones["201"].events.get_nowait()["event"])
    assert "incoming" not in seen            # the default destination (201) was not used


def test_blacklisted_caller_from_a_partner_by_ip_is_refused_and_recorded(office):
    work = office.tmp / "blacklist"
    work.mkdir(exist_ok=True)
    s = sipp(work, "spam", "provider_call_rejected.xml", ip=PARTNER_IP, target=f"127.0.0.1:{office.sip_port}",
             template={"DID": "+48221234567", "CALLER": "+48700123456"}, args=("-m", "1", "-timeout", "15s"))
    r = s.run(20)
    assert r.returncode == 0 and r.successful == 1, (r.stats, r.errors)
    rec = office.record(lambda row: row["caller_number"] == "+48700123456")
    assert rec["status"] == "rejected" and rec["trunk"] == "partner" and rec["hangup_cause"] == 21
    assert any("blacklisted" in (e["result"] or "") for e in office.events(rec["id"]))


def test_outbound_call_through_the_provider_with_digest_and_caller_id(office, phones):
    wait_until(lambda: "registered at" in office.box.output(), 20, what="registration")
    desk = phones["201"]
    call = desk.cmd("dial", uri=office.uri("0221234599"), wait_confirmed=15)
    assert call["state"] == "CONFIRMED", (call, office.box.output()[-2000:])
    desk.cmd("play", call=call["call"], wav=tone_wav(office.tmp, 700))
    time.sleep(2.5)
    assert heard_at_phone(desk.cmd("info", call=call["call"])["record"], 700.0) > 0.7   # echoed back
    desk.cmd("hangup", call=call["call"])
    rec = office.record(lambda r: r["callee_number"] == "0221234599")
    assert rec["trunk"] == "voip" and rec["status"] == "answered" and rec["external_number"] == "+48221234599"
    msgs = office.provider.result(0).messages
    invites = [m for m in re.split(r"\n(?=-{10,})", msgs) if re.search(r"^INVITE sip:\+48221234599@", m, re.MULTILINE)]
    assert len(invites) == 2                                          # 401, then with credentials
    assert re.search(r"^Authorization: Digest", invites[1], re.MULTILINE | re.IGNORECASE)
    assert re.search(r"^From: .*<sip:\+48221234567@", invites[1], re.MULTILINE)   # the trunk's caller ID
    assert re.search(r"^P-Asserted-Identity: <sip:\+48221234567@", invites[1], re.MULTILINE)


def test_gsm_without_network_fails_over_to_the_sip_trunk(office, phones):
    wait_until(lambda: "registered at" in office.box.output(), 20, what="registration")
    h = office.sim
    h.network(up=False)
    try:
        desk = phones["201"]
        call = desk.cmd("dial", uri=office.uri("+48601222333"), wait_confirmed=15)
        assert call["state"] == "CONFIRMED", (call, office.box.output()[-2000:])
        time.sleep(1.0)
        desk.cmd("hangup", call=call["call"])
        rec = office.record(lambda r: r["callee_number"] == "+48601222333")
        assert rec["trunk"] == "voip" and rec["status"] == "answered"
        attempts = [(e["result"], e["data"]) for e in office.events(rec["id"]) if e["type"] == "trunk_attempt"]
        assert [a[0] for a in attempts] == ["no_network", "answered"]
        assert '"gsm1"' in attempts[0][1] and '"voip"' in attempts[1][1]
        assert not [c for c in h.calls() if c["number"] == "+48601222333"]   # the modem never dialled
    finally:
        h.network(up=True)


def test_one_call_per_gsm_module_and_the_sims_daily_minutes(office, phones):
    """gsm1 carries one call at a time and has 1 minute a day (minutes_per_day = 1): a second
    call while it talks, and any call after its minute is used, go out through the provider."""
    wait_until(lambda: "registered at" in office.box.output(), 20, what="registration")
    h = office.sim
    first = phones["201"].cmd("dial", uri=office.uri("+48601000001"), wait_confirmed=15)
    assert first["state"] == "CONFIRMED"
    second = phones["202"].cmd("dial", uri=office.uri("+48601000002"), wait_confirmed=15)
    assert second["state"] == "CONFIRMED"
    phones["202"].cmd("hangup", call=second["call"])
    time.sleep(1.0)
    phones["201"].cmd("hangup", call=first["call"])
    r1 = office.record(lambda r: r["callee_number"] == "+48601000001")
    r2 = office.record(lambda r: r["callee_number"] == "+48601000002")
    assert r1["trunk"] == "gsm1" and r2["trunk"] == "voip"
    assert [e["result"] for e in office.events(r2["id"]) if e["type"] == "trunk_attempt"] == ["no_channel", "answered"]
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")
    third = phones["202"].cmd("dial", uri=office.uri("+48601000003"), wait_confirmed=15)
    assert third["state"] == "CONFIRMED"
    phones["202"].cmd("hangup", call=third["call"])
    r3 = office.record(lambda r: r["callee_number"] == "+48601000003")
    assert r3["trunk"] == "voip"
    assert [e["result"] for e in office.events(r3["id"]) if e["type"] == "trunk_attempt"] == \
        ["minutes_exhausted", "answered"]
    assert [c["number"] for c in h.calls() if c["dir"] == "out"] == ["+48601000001"]


def test_partner_trunk_with_sip_info_dtmf(office, phones):
    """A trunk set to dtmf = "info": its answer offers no telephone-event and the desk phone's
    RFC 4733 digit reaches the partner as SIP INFO."""
    work = office.tmp / "info"
    work.mkdir(exist_ok=True)
    s = sipp(work, "info", "provider_call_info.xml", ip=PARTNER_IP, target=f"127.0.0.1:{office.sip_port}",
             template={"DID": "+48221230000", "CALLER": "+48500900900", "DIGIT": "5"},
             args=("-m", "1", "-timeout", "30s")).start()
    desk = phones["202"]
    inc = desk.wait_event("incoming", timeout=15)
    assert "500900900" in inc["remote"]
    wait_until(lambda: desk.cmd("info", call=inc["call"])["state"] == "CONFIRMED", 10, what="connected")
    time.sleep(0.5)
    desk.cmd("dtmf", call=inc["call"], digits="5")
    r = s.wait(20)
    assert r.returncode == 0 and r.successful == 1, (r.stats, r.errors)
    assert re.search(r"^INFO sip:", r.messages, re.M) and "Signal=5" in r.messages
    rec = office.record(lambda row: row["caller_number"] == "+48500900900")
    assert rec["trunk"] == "partner" and rec["did"] == "+48221230000" and rec["answered_by"] == "202"
