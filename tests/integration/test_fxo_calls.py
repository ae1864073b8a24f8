"""An analog line (FXO) on a V.253 voice modem: the box process drives the simulator's pty;
the engine owns the AT port during the call (DLE-shielded u-law both ways, DLE codes back to
the modem session). Caller ID, answer, audio, DTMF, far-end hang-up by busy tone."""
from __future__ import annotations

import time

import pytest

from firmware.media import DtmfDetector
from tests.integration.test_gsm_calls import (
    SYSTEM_TOML,
    Office,
    extensions_toml,
    heard_at_phone,
    wait_until,
)
from tests.peers.audio import read_wav, tone, write_wav

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fxo_office(tmp_path):
    from tools.modem_sim import Simulator
    sim = Simulator(str(tmp_path / "links"))
    h = sim.add_modem("line1", model="voicemodem", ring_interval=2.0)
    toml = SYSTEM_TOML + extensions_toml(("201", "202")) + f"""
[[trunk]]
name = "line1"
type = "fxo"
model = "voicemodem"
device = "{h.at_path}"

[[route.inbound]]
trunk = "line1"
destination = "202"

[[route.outbound]]
pattern = "0XXXXXXXXX"
trunks = ["line1"]
permission = "local"
"""
    o = Office(tmp_path, toml)
    o.sim = h
    try:
        wait_until(lambda: "modem ready" in o.box.output(), 20, what="modem ready")
        yield o
    finally:
        o.close()
        sim.close()


def test_incoming_analog_call_with_caller_id_audio_dtmf_and_busy_tone_hangup(fxo_office):
    o, h = fxo_office, fxo_office.sim
    desk = o.phone("202")
    h.incoming_call(number="221234567", name="KOWALSKI JAN")
    inc = desk.wait_event("incoming", timeout=15)
    assert "221234567" in inc["remote"] and "KOWALSKI JAN" in inc["remote"]   # caller ID to the phone
    desk.cmd("answer", call=inc["call"])
    wav = o.tmp / "tone700_4s.wav"
    write_wav(wav, tone(700.0, 4.0, 0.3))
    desk.cmd("play", call=inc["call"], wav=str(wav), loop=False)
    wait_until(lambda: h.status()["in_vtr"], 10, what="voice data (AT+VTR)")
    time.sleep(3)
    # the line's 440 Hz reaches the phone; the phone's 700 Hz reaches the line
    assert heard_at_phone(desk.cmd("info", call=inc["call"])["record"], 440.0) > 0.7
    heard = h.heard(seconds=1.0)
    assert abs(heard["dominant_hz"] - 700.0) < 15, heard
    # DTMF from the line: the modem's <DLE>digit and the engine's in-band detector: one digit
    h.remote_dtmf(digits="7")
    wait_until(lambda: desk.cmd("info", call=inc["call"])["dtmf"], 5, what="DTMF at the desk phone")
    time.sleep(1.0)
    assert desk.cmd("info", call=inc["call"])["dtmf"] == "7"
    # DTMF to the line: generated in-band (a voice modem cannot send AT+VTS in voice mode)
    time.sleep(1.0)                               # the phone's 4 s tone has ended
    capture = o.tmp / "line_capture.wav"
    h.capture_wav(path=str(capture))
    desk.cmd("dtmf", call=inc["call"], digits="*8")
    time.sleep(1.5)
    h.capture_wav(path=None)
    pcm, _, _ = read_wav(capture)
    assert [d.digit for d in DtmfDetector().process(pcm.astype("<i2").tobytes())] == ["*", "8"]
    # the far end hangs up: the exchange plays busy tone; the modem reports <DLE>b
    t0 = time.monotonic()
    h.remote_hangup()
    st = desk.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=12)
    took = time.monotonic() - t0
    assert st["state"] == "DISCONNECTED" and took < 10, took
    r = o.record(lambda r: r["trunk"] == "line1")
    assert r["status"] == "answered" and r["answered_by"] == "202" and r["external_number"] == "+48221234567"
    assert r["caller_name"] == "KOWALSKI JAN" and r["hangup_side"] == "caller" and r["ended_at"] - t0 < 1e10
    wait_until(lambda: not h.status()["in_vtr"] and h.status()["call"] is None, 10, what="line on hook")
    print(f"far-end hang-up detected {took:.1f} s after it")
    # out: a desk phone dials through the analog line; audio both ways; the phone hangs up
    caller = o.phone("201")
    call = caller.cmd("dial", uri=o.uri("0221234567"), wait_confirmed=20)
    assert call["state"] == "CONFIRMED", o.box.output()[-2000:]
    caller.cmd("play", call=call["call"], wav=str(wav), loop=True)
    time.sleep(2.5)
    assert heard_at_phone(caller.cmd("info", call=call["call"])["record"], 440.0, last_s=1.0) > 0.7
    assert abs(h.heard(seconds=1.0)["dominant_hz"] - 700.0) < 15
    caller.cmd("hangup", call=call["call"])
    wait_until(lambda: not h.status()["in_vtr"] and h.status()["call"] is None, 10, what="line on hook again")
    r = o.record(lambda r: r["callee_number"] == "0221234567")
    assert r["trunk"] == "line1" and r["status"] == "answered" and r["hangup_side"] == "caller"
    assert [c["number"] for c in h.calls() if c["dir"] == "out"] == ["0221234567"]
