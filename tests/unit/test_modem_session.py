"""ModemSession against the simulated modem in memory (no ports, virtual clock)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.modem.events import (AudioStart, CallEnded, IncomingCall, ModemFault, RemoteHangup,
                                   ResetRequired, SmsReceived)
from firmware.modem.pdu import encode_deliver
from firmware.modem.profiles import PROFILES, get_profile
from firmware.modem.errors import ProfileError
from firmware.modem.session import ModemSession, PinGuard, SessionConfig
from tools.modem_sim.core import SimModem, SimOptions
from tools.modem_sim.memory import MemoryLink

GSM = ["sim800", "sim7600", "ec25", "huawei"]


def make(model: str, config: SessionConfig | None = None, **opts) -> tuple[ModemSession, SimModem, MemoryLink]:
    sim = SimModem(SimOptions(model=model, **opts))
    s = ModemSession(get_profile(model), now=0.0, config=config)
    link = MemoryLink(s, sim)
    assert link.result(s.start(0.0)).ok
    link.clear()
    return s, sim, link


def test_profiles_by_name_and_aliases() -> None:
    assert get_profile("EC25").key == "ec25" and get_profile("eg25-g").key == "ec25"
    assert get_profile("SIM7600G").key == "sim7600" and get_profile("fxo").key == "voicemodem"
    with pytest.raises(ProfileError, match="supported: ec25, huawei, sim7600, sim800, voicemodem"):
        get_profile("nokia3310")
    assert PROFILES["sim800"].audio.kind == "none"
    assert PROFILES["voicemodem"].audio.kind == "dle"


@pytest.mark.parametrize("model", GSM + ["voicemodem"])
def test_every_model_calls_both_ways(model: str) -> None:
    s, sim, link = make(model)
    sim.incoming_call("+48600100200" if model != "voicemodem" else "0221234567", link.now)
    link.advance(4)
    assert len(link.of(IncomingCall)) == 1
    assert link.result(s.answer(link.now)).ok
    link.advance(1)
    assert bool(link.of(AudioStart)) == (model != "sim800")
    assert link.result(s.hangup(link.now)).ok
    link.advance(3)
    assert s.call_state == "idle"
    r = link.result(s.dial("0500111222", link.now)).value
    assert r.answered
    sim.remote_hangup(link.now)
    link.advance(4)
    hup = link.of(RemoteHangup)
    assert hup and s.call_state == "idle"
    # the analog line only tells by the busy tone, which the modem reports as <DLE>b
    assert hup[-1].cause == ("disconnect_tone" if model == "voicemodem" else "normal")


def test_storage_never_fills_and_nothing_is_lost() -> None:
    s, sim, link = make("sim800", SessionConfig(sweep_interval=20), storage_capacity=3)
    stored = []
    for i in range(10):
        sim.deliver_sms("+48600100200", f"message {i}", link.now)
    for _ in range(60):
        link.advance(1)
        for e in link.of(SmsReceived):
            if e not in stored:
                stored.append(e)
                s.sms_stored(e, link.now)
        if len(stored) == 10:
            break
    assert sorted(e.text for e in stored) == [f"message {i}" for i in range(10)]
    link.advance(1)
    assert not sim.storage and not sim.network_queue


def test_message_kept_when_the_owner_cannot_store_it() -> None:
    s, sim, link = make("ec25", SessionConfig(sweep_interval=30))
    sim.deliver_sms("+48600100200", "important", link.now)
    link.advance(1)
    first = link.of(SmsReceived)[0]
    s.sms_rejected(first, link.now)  # e.g. the disk was full
    link.advance(1)
    assert len(sim.storage) == 1
    link.clear()
    link.advance(30)  # the periodic sweep offers it again
    again = link.of(SmsReceived)
    assert again and again[0].text == "important"
    s.sms_stored(again[0], link.now)
    link.advance(1)
    assert not sim.storage


def test_incomplete_multipart_delivered_after_the_timeout() -> None:
    s, sim, link = make("ec25", SessionConfig(concat_timeout=60, sweep_interval=30))
    pdus = encode_deliver("+48600100200", "Długa wiadomość " * 20, timestamp=datetime.now(timezone.utc),
                          ref=5)
    assert len(pdus) >= 3
    for p in pdus[:-1]:  # the last part never comes
        sim.deliver_pdu(p, link.now)
    link.advance(10)
    assert not link.of(SmsReceived)
    link.advance(90)
    msg = link.of(SmsReceived)[0]
    assert not msg.complete and msg.parts == len(pdus) - 1
    assert msg.text.startswith("Długa wiadomość")
    assert any(f.kind == "sms_incomplete" for f in link.of(ModemFault))


def test_undecodable_pdu_is_reported_with_its_bytes_and_removed() -> None:
    s, sim, link = make("sim7600")
    sim.deliver_pdu("07911326040000F0040B911346610089F600002080629173140850FFFF", link.now)
    link.advance(1)
    fault = [f for f in link.of(ModemFault) if f.kind == "sms_decode"][0]
    assert "pdu=0791" in fault.detail
    assert not sim.storage and not link.of(SmsReceived)


def test_direct_delivery_cmt() -> None:
    s, sim, link = make("ec25")
    sim.cnmi_mt = 2  # as after AT+CNMI=2,2: +CMT with the PDU, nothing stored
    sim.deliver_sms("Orange", "Twoje saldo: 5 zł", link.now)
    link.advance(1)
    m = link.of(SmsReceived)[0]
    assert m.sender == "Orange" and m.text == "Twoje saldo: 5 zł" and m.indexes == ()


def test_pin_guard_persists_as_dict() -> None:
    g = PinGuard(attempted=True, failed=True)
    assert PinGuard.from_dict(g.as_dict()) == g
    g.clear()
    assert not g.failed


def test_module_rebooting_by_itself_is_initialised_again() -> None:
    s, sim, link = make("ec25")
    sim.reset(link.now)  # brown-out: RDY etc. arrive unasked, echo is back on
    link.advance(3)
    assert any(f.kind == "unexpected_reboot" for f in link.of(ModemFault))
    assert s.ready and not sim.echo
    assert not link.of(ResetRequired)


# ------------------------------------------------------------------ no mis-routed caller

_NOISE = [b"\r\n+CSQ: 12,0\r\n", b"\r\n^RSSI:9\r\n", b'\r\n+CMTI: "SM",7\r\n', b"\r\nOK\r\n",
          b"\x00\xff\r\n", b'\r\n+CLIP: "+48999",145,"",0,"",0\r\n', b"\r\n+CREG: 1\r\n",
          b"\r\nBUSY\r\n", b"garbage\r\n"]


@settings(max_examples=120, deadline=None)
@given(order=st.lists(st.sampled_from(range(len(_NOISE))), max_size=12),
       chunk=st.integers(1, 9), withheld=st.booleans())
def test_incoming_call_number_is_the_callers(order, chunk, withheld) -> None:
    s = ModemSession(get_profile("ec25"), now=0.0)
    s.ready = True  # the dialogue below starts from an initialised modem
    clip = b'\r\n+CLIP: "",128,"",0,"",1\r\n' if withheld else b'\r\n+CLIP: "+48600100200",145,"",0,"",0\r\n'
    stream = b"".join(_NOISE[i] for i in order[: len(order) // 2]) + b"\r\nRING\r\n" + clip + \
        b"".join(_NOISE[i] for i in order[len(order) // 2:]) + b"\r\nRING\r\n" + clip
    now = 0.0
    for i in range(0, len(stream), chunk):
        s.receive_data(stream[i:i + chunk], now)
        now += 0.01
        s.handle_timer(now)
    s.handle_timer(now + 2)
    evs = []
    while (e := s.next_event()) is not None:
        evs.append(e)
    calls = [e for e in evs if isinstance(e, IncomingCall)]
    assert len(calls) == 1
    if withheld:
        assert calls[0].number is None and calls[0].withheld
    else:  # a stray +CLIP before the RING never wins over the one that follows it
        assert calls[0].number == "+48600100200"
    assert not [e for e in evs if isinstance(e, CallEnded)]
