"""Calls between extensions through the box, with real phones (pjsua2, pyVoIP, SIPp) on loopback."""
from __future__ import annotations

import time

import numpy as np
import pytest

from tests.peers.audio import band_energy_ratio, read_wav, tone, write_wav  # noqa: F401


def tone_wav(tmp_path, freq: float, seconds: float = 20.0):
    p = tmp_path / f"tone_{int(freq)}.wav"
    if not p.exists():
        write_wav(p, tone(freq, seconds, 0.3))
    return str(p)


def heard(path: str, freq: float, last_s: float = 1.5) -> float:  # noqa: D401
    """Share of the energy of the last seconds of a phone's recording that is at `freq`
    (pjsua2 writes the WAV header only when the recorder closes: read the samples raw)."""
    data = open(path, "rb").read()[44:]
    mono = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    seg = mono[-int(last_s * 8000):]
    return band_energy_ratio(seg, freq, 8000)


def test_two_pjsua_phones_talk_through_the_box(office, pj_phones, tmp_path):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    call = a.cmd("dial", uri=office.uri("202"), wait_confirmed=10)
    assert call["state"] == "CONFIRMED", call
    a.cmd("play", call=call["call"], wav=tone_wav(tmp_path, 500))
    b_call = b.wait_event("incoming")["call"]
    b.cmd("play", call=b_call, wav=tone_wav(tmp_path, 1100))
    a.cmd("sleep", seconds=3)
    a_rec = a.cmd("info", call=call["call"])["record"]
    b_rec = b.cmd("info", call=b_call)["record"]
    assert heard(a_rec, 1100) > 0.8, "the caller does not hear the callee"
    assert heard(b_rec, 500) > 0.8, "the callee does not hear the caller"
    a.cmd("hangup", call=call["call"])
    assert b.cmd("wait_state", call=b_call, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    rec = office.wait_call_record(lambda r: r["caller_number"] == "201")
    assert rec["status"] == "answered" and rec["answered_by"] == "202" and rec["to_extension"] == "202"
    assert rec["hangup_side"] == "caller" and rec["talk_s"] > 2.5
    assert rec["recording_state"] == "complete", rec["recording_note"]
    pcm, rate, ch = read_wav(office.box.data_dir / rec["recording_path"])
    assert ch == 2 and rate == 8000 and len(pcm) > 2.5 * rate
    mid = pcm[len(pcm) // 4: 3 * len(pcm) // 4]
    # internal call: the caller on the left, the callee on the right
    assert band_energy_ratio(mid[:, 0], 500) > 0.8 and band_energy_ratio(mid[:, 1], 1100) > 0.8


def test_unregistered_extension_and_busy_and_no_answer(office, pj_phones):
    a = pj_phones("201")
    r = a.cmd("dial", uri=office.uri("203"))   # 203 is not registered
    st = a.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=10)
    assert st["code"] == 480
    b = pj_phones("202")                       # registered, never answers
    r = a.cmd("dial", uri=office.uri("202"))
    inc = b.wait_event("incoming")
    st = a.cmd("wait_state", call=r["call"], states=["DISCONNECTED"], timeout=20)
    assert st["code"] == 480                   # no answer within no_answer_timeout (10 s)
    assert b.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=5)["state"] == "DISCONNECTED"
    rec = office.wait_call_record(lambda r: r["callee_number"] == "202")
    assert rec["status"] == "no_answer"


def test_caller_cancel_stops_the_ringing_phone(office, pj_phones):
    a = pj_phones("201")
    b = pj_phones("202")
    r = a.cmd("dial", uri=office.uri("202"))
    inc = b.wait_event("incoming")
    a.cmd("hangup", call=r["call"])            # CANCEL before answer
    st = b.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=10)
    assert st["state"] == "DISCONNECTED" and st["code"] == 487
    rec = office.wait_call_record(lambda r: r["callee_number"] == "202")
    assert rec["status"] in ("abandoned", "missed") and rec["answered_at"] is None


def test_pyvoip_phones_with_their_bugs_talk_and_hang_up_cleanly(office, pyvoip_phones):
    """pyVoIP answers only the first (MD5) challenge without qop, reuses its Via branch after
    a 401, puts a random To tag on its ACK and on its 200 to BYE: the call must stay up past
    the 2xx retransmission window and be cleaned up at the end."""
    caller = pyvoip_phones("201")
    callee = pyvoip_phones("202", auto_answer=True)
    r = caller.cmd("dial", number="202", wait=15, timeout=30)
    assert r["state"] == "ANSWERED", r
    callee.wait_event("answered", timeout=10)
    caller.cmd("play_tone", freq=600, seconds=40)
    callee.cmd("play_tone", freq=1400, seconds=40)
    time.sleep(4)
    at_callee = callee.cmd("rx_analysis", seconds=2)
    at_caller = caller.cmd("rx_analysis", seconds=2)
    assert abs(at_callee["freq"] - 600) < 30, at_callee
    assert abs(at_caller["freq"] - 1400) < 30, at_caller
    time.sleep(30)  # beyond 64*T1: a box confused by the ACK's To tag would have hung up
    assert caller.cmd("state")["state"] == "ANSWERED"
    assert abs(callee.cmd("rx_analysis", seconds=1)["freq"] - 600) < 30
    caller.cmd("hangup")
    callee.wait_event("ended", timeout=10)
    rec = office.wait_call_record(lambda r: r["caller_number"] == "201" and r["answered_by"] == "202")
    assert rec["status"] == "answered" and rec["talk_s"] > 33 and rec["hangup_side"] == "caller"


def test_a_restarted_pyvoip_phone_gets_its_next_call_through(office, pyvoip_phones):
    """pyVoIP derives the Via branch and Call-ID of its first INVITE from a counter that starts
    again in a new process, as cheap phones do after a reboot: the call after a restart has the
    same branch, Call-ID and CSeq as the call before it, on the same port; only the From tag
    is new. The box must see a new call, not a retransmission of the old INVITE, whose
    transaction still waits out its 32 s (RFC 6026 timer L)."""
    import socket

    from tests.conftest import free_port

    port = free_port(socket.SOCK_DGRAM)
    callee = pyvoip_phones("202", auto_answer=True)
    for attempt in range(2):
        caller = pyvoip_phones("201", sip_port=port)
        r = caller.cmd("dial", number="202", wait=10, timeout=30)
        assert r["state"] == "ANSWERED", (attempt, r)
        caller.cmd("hangup")
        callee.wait_event("ended", timeout=10)
        caller.cmd("stop", timeout=20)
        caller.close()
    deadline = time.monotonic() + 10
    while True:
        with office.db() as c:
            rows = c.execute("SELECT answered_by FROM calls WHERE caller_number = '201' AND ended_at IS NOT NULL"
                             ).fetchall()
        if len(rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["answered_by"] for r in rows] == ["202", "202"]


def test_a_phone_that_lost_power_and_came_back_is_rung_once(office, pyvoip_phones):
    """pyVoIP registers with a new +sip.instance on every start. After a power cut (no
    deregistration) and a restart on the same address, the box must not keep the dead binding
    beside the new one: it would send the phone two forks of every call."""
    import socket

    from tests.conftest import free_port

    port = free_port(socket.SOCK_DGRAM)
    old = pyvoip_phones("202", auto_answer=True, sip_port=port)
    old.proc.kill()      # the power cut: nothing is sent
    old.proc.wait()
    callee = pyvoip_phones("202", auto_answer=True, sip_port=port)
    caller = pyvoip_phones("201")
    r = caller.cmd("dial", number="202", wait=10, timeout=30)
    assert r["state"] == "ANSWERED", r
    callee.wait_event("answered", timeout=10)
    caller.cmd("play_tone", freq=600, seconds=10)
    time.sleep(3)
    assert abs(callee.cmd("rx_analysis", seconds=2)["freq"] - 600) < 30
    caller.cmd("hangup")
    rec = office.wait_call_record(lambda r: r["caller_number"] == "201")
    with office.db() as c:
        legs = c.execute("SELECT role FROM call_legs WHERE call_id = ?", (rec["id"],)).fetchall()
    assert sorted(r["role"] for r in legs) == ["callee", "caller"]


def test_baresip_registers_calls_holds_resumes_and_transfers(office, pj_phones, tmp_path):
    """baresip (libre) as a desk phone: it gives up on a SHA-256 challenge, so the box offers
    it MD5 alone; then a call with audio, hold and resume, and a blind transfer."""
    import socket
    from pathlib import Path

    from tests.conftest import free_port
    from tests.integration.conftest import PASSWORDS, free_block
    from tests.peers.baresip import Baresip

    wav = tmp_path / "bs_tone.wav"
    write_wav(wav, tone(800, 60, 0.3))
    bs = Baresip(tmp_path / "baresip", user="201", password=PASSWORDS["201"],
                 registrar=f"127.0.0.1:{office.sip_port}", sip_port=free_port(socket.SOCK_DGRAM),
                 rtp_lo=free_block(40), ctrl_port=free_port(), audio_wav=Path(wav))
    try:
        deadline = time.monotonic() + 10
        while "OK" not in bs.cmd("reginfo").get("data", "") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "OK" in bs.cmd("reginfo")["data"], bs.output()
        b = pj_phones("202", auto_answer=True)
        c = pj_phones("203", auto_answer=True)
        bs.cmd("dial", f"sip:202@127.0.0.1:{office.sip_port}")
        bs.wait_event("CALL_ESTABLISHED", timeout=10)
        cb = b.wait_event("incoming")["call"]
        b.cmd("sleep", seconds=2.5)
        assert heard(b.cmd("info", call=cb)["record"], 800) > 0.8, "202 does not hear baresip"
        bs.cmd("hold")
        b.cmd("sleep", seconds=2.5)
        assert heard(b.cmd("info", call=cb)["record"], 800) < 0.2, "held, yet 202 hears baresip"
        bs.cmd("resume")
        b.cmd("sleep", seconds=2.5)
        assert heard(b.cmd("info", call=cb)["record"], 800) > 0.8, "no audio after resume"
        bs.cmd("transfer", f"sip:203@127.0.0.1:{office.sip_port}")
        cc = c.wait_event("incoming", timeout=15)["call"]
        bs.wait_event("CALL_CLOSED", timeout=15)
        b.cmd("play", call=cb, wav=tone_wav(tmp_path, 1000))
        c.cmd("sleep", seconds=2.5)
        assert heard(c.cmd("info", call=cc)["record"], 1000) > 0.8, "203 does not hear 202 after the transfer"
        b.cmd("hangup", call=cb)
        assert c.cmd("wait_state", call=cc, states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    finally:
        bs.close()


SHA256_ONLY = """
[[extension]]
number = "206"
name = "SHA-256 phone"
password = "Sha-pass-206-Kj3v9q"
auth_algorithms = "sha256"
"""


@pytest.mark.parametrize("office", [SHA256_ONLY], indirect=True)
def test_sha256_only_extension_registers_with_sha256(office, pj_phones):
    """An extension set to SHA-256 only is challenged with SHA-256 alone (RFC 8760), and a
    phone that answers it registers; MD5 credentials are refused for it."""
    import socket

    from firmware.sip.auth import DigestClient
    from firmware.sip.message import make_request, parse_message
    from tests.conftest import free_port

    p = pj_phones("206", password="Sha-pass-206-Kj3v9q")    # asserts the 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", free_port(socket.SOCK_DGRAM)))
        s.settimeout(3)
        port = s.getsockname()[1]
        reg = make_request("REGISTER", f"sip:127.0.0.1:{office.sip_port}", from_addr="<sip:206@127.0.0.1>",
                           to_addr="<sip:206@127.0.0.1>", contact=f"<sip:206@127.0.0.1:{port}>",
                           via=None, headers=[("Expires", "60")])
        reg.headers.prepend("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-sha-1;rport")
        s.sendto(bytes(reg), ("127.0.0.1", office.sip_port))
        challenge = parse_message(s.recv(65535))
        algs = [c.params.get("algorithm") for c in challenge.www_authenticate]
        assert challenge.status == 401 and algs == ["SHA-256"]
        for algorithm, expected in (("MD5", None), ("SHA-256", 200)):
            client = DigestClient("206", "Sha-pass-206-Kj3v9q", algorithms=(algorithm,))
            try:
                again = client.authorize(reg, challenge)
            except Exception:
                assert expected is None   # an MD5-only client cannot even answer
                continue
            s.sendto(bytes(again), ("127.0.0.1", office.sip_port))
            assert parse_message(s.recv(65535)).status == expected


def test_a_challenge_is_sent_once_and_the_box_keeps_nothing_for_it(office):
    """Challenges are stateless (RFC 3261 8.2.7): a scanner's INVITE that never ACKs its 407
    gets no retransmissions of it, and each retry is challenged anew with a fresh nonce."""
    import socket

    from firmware.sip.message import make_request, parse_message
    from tests.conftest import free_port

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", free_port(socket.SOCK_DGRAM)))
        port = s.getsockname()[1]
        inv = make_request("INVITE", f"sip:202@127.0.0.1:{office.sip_port}", from_addr="<sip:201@127.0.0.1>;tag=sc",
                           to_addr="<sip:202@127.0.0.1>", contact=f"<sip:201@127.0.0.1:{port}>", via=None)
        inv.headers.prepend("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-scan-1;rport")
        nonces = []
        for _ in range(2):
            s.sendto(bytes(inv), ("127.0.0.1", office.sip_port))
            s.settimeout(3)
            first = parse_message(s.recv(65535))
            assert first.status in (401, 407)
            nonces.append([c.params.get("nonce") for c in (first.www_authenticate or first.proxy_authenticate)][0])
            # a stateful 407 would come again after 0.5 s and 1.5 s (timer G) until an ACK
            s.settimeout(2.0)
            try:
                extra = s.recv(65535)
            except socket.timeout:
                extra = None
            assert extra is None, extra[:300]
        assert nonces[0] != nonces[1]


def test_box_bound_to_every_interface_offers_each_phone_a_reachable_address(tmp_path):
    """Bound to 0.0.0.0 (the default), the box offers each phone the address it reaches the box
    on (firmware.aio.netutil), and audio flows."""
    import socket

    from client import PjsuaPhone
    from tests.conftest import BoxProcess, free_port
    from tests.integration.conftest import BASE_PROVISION, PASSWORDS, free_block

    prov = tmp_path / "p.toml"
    prov.write_text(BASE_PROVISION)
    rtp = free_block(200)
    sip = free_port(socket.SOCK_DGRAM)
    box = BoxProcess(tmp_path, "--rtp-ports", f"{rtp}-{rtp + 199}", "--sip-bind", f"0.0.0.0:{sip}", provision=prov)
    phones = []
    try:
        for n in ("201", "202"):
            p = PjsuaPhone(str(tmp_path / f"pj{n}.log"))
            phones.append(p)
            assert p.cmd("start", registrar=f"sip:127.0.0.1:{sip}", user=n, password=PASSWORDS[n],
                         sip_port=free_port(socket.SOCK_DGRAM), rtp_port=free_block(40), auto_answer=n == "202",
                         workdir=str(tmp_path))["reg_code"] == 200
        a, b = phones
        call = a.cmd("dial", uri=f"sip:202@127.0.0.1:{sip}", wait_confirmed=10)
        cb = b.wait_event("incoming")["call"]
        a.cmd("play", call=call["call"], wav=tone_wav(tmp_path, 750))
        b.cmd("sleep", seconds=2.5)
        assert heard(b.cmd("info", call=cb)["record"], 750) > 0.8
        a.cmd("hangup", call=call["call"])
    finally:
        for p in phones:
            try:
                p.cmd("stop")
            except Exception:
                pass
            p.close()
        box.stop()
