"""The AT engine alone: framing, routing, timeouts, prompts, echo, data mode, fuzz."""
from __future__ import annotations

import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from firmware.modem.at import AtEngine, Command, split_name
from firmware.modem.events import CommandResult, DleEvent, EchoDetected, GarbageReceived, Urc


def drain(e: AtEngine) -> list:
    out = []
    while (ev := e.next_event()) is not None:
        out.append(ev)
    return out


def results(evs) -> list[CommandResult]:
    return [x for x in evs if isinstance(x, CommandResult)]


def test_split_name_forms() -> None:
    assert split_name("+CSQ: 23,0") == ("+CSQ", "23,0")
    assert split_name("^CEND:1,0,104,16") == ("^CEND", "1,0,104,16")
    assert split_name("NMBR = 5551234") == ("NMBR", "5551234")
    assert split_name("TIME=1407") == ("TIME", "1407")
    assert split_name("VOICE CALL: END: 000012") == ("VOICE CALL", "END: 000012")
    assert split_name("RING") == ("RING", "")


def test_command_line_is_validated() -> None:
    for bad in ("", "AT\rATH", "AT\n"):
        try:
            Command(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_queue_one_in_flight_and_urgent_first() -> None:
    e = AtEngine()
    a, b, c = Command("AT+CSQ", prefix="+CSQ"), Command("AT+CREG?", prefix="+CREG"), Command("ATH")
    e.send(a, 0)
    e.send(b, 0)
    e.send(c, 0, urgent=True)
    assert e.data_to_send() == b"AT+CSQ\r"
    e.receive_data(b"\r\n+CSQ: 20,0\r\n\r\nOK\r\n", 0.1)
    assert e.data_to_send() == b"ATH\r"  # the urgent one jumped the queue
    e.receive_data(b"\r\nOK\r\n", 0.2)
    assert e.data_to_send() == b"AT+CREG?\r"
    e.receive_data(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n", 0.3)
    r = results(drain(e))
    assert [x.command for x in r] == [a, c, b]
    assert r[0].lines == ("+CSQ: 20,0",) and r[2].first("+CREG:") == "0,1"


def test_cme_and_cms_errors_carry_the_code() -> None:
    e = AtEngine()
    e.send(Command('AT+CPIN="1111"'), 0)
    e.receive_data(b"\r\n+CME ERROR: 16\r\n", 0.1)
    e.send(Command("AT+CMGS=20", payload=b"00"), 0.2)
    e.receive_data(b"\r\n+CMS ERROR: 304\r\n", 0.3)
    r = results(drain(e))
    assert (r[0].result, r[0].error) == ("+CME ERROR", "16")
    assert (r[1].result, r[1].error) == ("+CMS ERROR", "304")
    assert not r[0].ok


def test_call_progress_codes_final_only_for_call_commands() -> None:
    e = AtEngine()
    e.send(Command("AT+CSQ", prefix="+CSQ"), 0)
    e.receive_data(b"\r\nBUSY\r\n\r\n+CSQ: 9,0\r\n\r\nOK\r\n", 0.1)
    evs = drain(e)
    assert [x.name for x in evs if isinstance(x, Urc)] == ["BUSY"]
    assert results(evs)[0].result == "OK"
    e.send(Command("ATD123;", call=True), 1)
    e.receive_data(b"\r\nNO DIALTONE\r\n", 1.1)
    assert results(drain(e))[0].result == "NO DIALTONE"


def test_urc_inside_response_and_two_line_cmt() -> None:
    e = AtEngine()
    e.send(Command("AT+COPS?", prefix="+COPS"), 0)
    e.receive_data(b"\r\n+COPS: 0,0,\"Orange\",7\r\n\r\n+CMT: ,21\r\nOK\r\n\r\nRING\r\n\r\nOK\r\n", 0.1)
    evs = drain(e)
    cmt = [x for x in evs if isinstance(x, Urc) and x.name == "+CMT"][0]
    assert cmt.data == "OK"  # the PDU line of +CMT, whatever it says
    assert [x.name for x in evs if isinstance(x, Urc)] == ["+CMT", "RING"]
    assert results(evs)[0].lines == ('+COPS: 0,0,"Orange",7',)


def test_text_mode_sms_body_ok_is_data() -> None:
    e = AtEngine()
    e.send(Command("AT+CMGR=1", prefix="+CMGR"), 0)
    e.receive_data(b'\r\n+CMGR: "REC UNREAD","+48600100200",,"24/03/05,14:07:30+04"\r\nOK\r\n\r\nOK\r\n', 0.1)
    r = results(drain(e))[0]
    assert r.result == "OK" and r.lines[1] == "OK" and len(r.lines) == 2


def test_crcrlf_framing_nul_and_binary_noise() -> None:
    e = AtEngine()
    e.receive_data(b"\r\r\n+CRING: VOICE\r\r\n\x00\xff\xfe\r\r\n+CLIP: \"+48600100200\",145,,,,0\r\r\n", 0)
    evs = drain(e)
    assert [x.name for x in evs if isinstance(x, Urc)] == ["+CRING", "+CLIP"]
    assert any(isinstance(x, GarbageReceived) for x in evs)


def test_echo_is_skipped_and_reported() -> None:
    e = AtEngine()
    e.send(Command("AT+CGMM", raw=True), 0)
    e.receive_data(b"AT+CGMM\r\r\nEC25\r\n\r\nOK\r\n", 0.1)
    evs = drain(e)
    assert any(isinstance(x, EchoDetected) for x in evs)
    assert results(evs)[0].lines == ("EC25",)


def test_prompt_without_line_end_then_payload_and_ctrl_z() -> None:
    e = AtEngine()
    e.send(Command("AT+CMGS=9", prefix="+CMGS", payload=b"0011AABB"), 0)
    assert e.data_to_send() == b"AT+CMGS=9\r"
    e.receive_data(b"\r\n", 0.05)
    e.receive_data(b"> ", 0.1)
    assert e.data_to_send() == b"0011AABB\x1a"
    e.receive_data(b"\r\n+CMGS: 44\r\n\r\nOK\r\n", 0.5)
    assert results(drain(e))[0].first("+CMGS:") == "44"


def test_prompt_timeout_sends_escape() -> None:
    e = AtEngine()
    e.send(Command("AT+CMGS=9", payload=b"00", timeout=2), 0)
    e.data_to_send()
    e.handle_timer(2.0)
    assert e.data_to_send() == b"\x1b"
    assert results(drain(e))[0].result == "TIMEOUT"


def test_ok_before_data_line_with_late_grace() -> None:
    e = AtEngine()
    e.send(Command("AT+CGSN", raw=True, late=0.5), 0)
    e.receive_data(b"\r\nOK\r\n", 0.1)
    assert drain(e) == []  # waits for the data
    e.receive_data(b"\r\n867698041234567\r\n", 0.2)
    assert results(drain(e))[0].lines == ("867698041234567",)
    e.send(Command("AT+CGSN", raw=True, late=0.5), 1)
    e.receive_data(b"\r\nOK\r\n", 1.1)
    e.handle_timer(1.6)
    r = results(drain(e))[0]
    assert r.result == "OK" and r.lines == ()


def test_timeout_then_late_answer_is_not_taken_by_the_next_command() -> None:
    e = AtEngine(resync_quiet=0.3)
    a, b = Command("AT+CSQ", prefix="+CSQ", timeout=1), Command("AT+CREG?", prefix="+CREG")
    e.send(a, 0)
    e.send(b, 0)
    e.data_to_send()
    e.handle_timer(1.0)
    assert e.data_to_send() == b""  # paused while the line may still carry a late answer
    e.receive_data(b"\r\n+CSQ: 20,0\r\n\r\nOK\r\n", 1.1)
    e.handle_timer(e.get_timer())
    assert e.data_to_send() == b"AT+CREG?\r"
    e.receive_data(b"\r\n+CREG: 0,5\r\n\r\nOK\r\n", 1.6)
    r = results(drain(e))
    assert r[0].result == "TIMEOUT" and r[1].lines == ("+CREG: 0,5",)


def test_data_mode_reports_dle_codes_and_returns_after_etx() -> None:
    e = AtEngine()
    e.send(Command("AT+VTR", call=True, data_after=True), 0)
    e.data_to_send()
    e.receive_data(b"\r\nCONNECT\r\n\x7f\x10\x10\x7f\x10b\x7f\x10", 0.1)
    assert e.in_data_mode
    e.receive_data(b"\x03\r\nOK\r\nRING\r\n", 0.2)
    evs = drain(e)
    assert [x.code for x in evs if isinstance(x, DleEvent)] == ["b"]
    assert [x.name for x in evs if isinstance(x, Urc)] == ["RING"]
    assert not any(isinstance(x, GarbageReceived) for x in evs)
    assert not e.in_data_mode


def test_cancel_all_ends_every_command() -> None:
    e = AtEngine()
    cmds = [Command(f"AT+X{i}") for i in range(4)]
    for c in cmds:
        e.send(c, 0)
    e.cancel_all(1.0)
    r = results(drain(e))
    assert [x.command for x in r] == cmds and {x.result for x in r} == {"ABORTED"}


# ------------------------------------------------------------------ property-based / fuzz

_LINES = ["OK", "ERROR", "RING", "+CME ERROR: 10", "+CSQ: 12,0", "NO CARRIER", "BUSY",
          '+CLIP: "+48111",145,"",0,"",0', '+CMTI: "SM",3', "+CMT: ,20", "0011AA", "> ",
          "CONNECT", "\x10b", "VOICE CALL: END: 000003", "^CEND:1,0,104,16", "garbage\xff"]


@settings(max_examples=300, deadline=None)
@given(
    cmds=st.lists(st.sampled_from([("AT", False), ("AT+CSQ", False), ("ATD1;", True),
                                   ("AT+CMGS=5", False), ("ATI", False)]), min_size=1, max_size=6),
    noise=st.lists(st.one_of(st.sampled_from(_LINES), st.binary(max_size=12).map(
        lambda b: b.decode("latin-1"))), max_size=30),
    cuts=st.lists(st.integers(min_value=1, max_value=7), max_size=60),
    seps=st.sampled_from(["\r\n", "\r\r\n", "\n", "\r"]),
)
@example(cmds=[("AT", False)], cuts=[1], seps="\r\n",   # a minute of noise one byte at a time
         noise=["OK"] * 20 + ["+CME ERROR: 10"] * 2 + ['+CLIP: "+48111",145,"",0,"",0'] * 3 + ["\x00" * 9])
def test_every_command_ends_exactly_once_whatever_arrives(cmds, noise, cuts, seps) -> None:
    e = AtEngine()
    sent = []
    now = 0.0
    for text, call in cmds:
        c = Command(text, timeout=3.0, call=call, prefix="+CSQ" if text == "AT+CSQ" else (),
                    payload=b"00" if text.startswith("AT+CMGS") else None)
        sent.append(c)
        e.send(c, now)
    stream = "".join(seps + x + seps for x in noise).encode("latin-1", "replace")
    pos = 0
    ended: list[CommandResult] = []
    last_end = 0.0
    for step in range(2000):
        if pos < len(stream):
            n = cuts[step % len(cuts)] if cuts else 5
            e.receive_data(stream[pos:pos + n], now)
            pos += n
        e.data_to_send()
        now += 0.25
        e.handle_timer(now)
        got = results(drain(e))
        if got:
            ended += got
            last_end = now
        if len(ended) == len(sent) and pos >= len(stream):
            break
    assert sorted(id(r.command) for r in ended) == sorted(id(c) for c in sent)
    assert all(r.result in ("OK", "ERROR", "+CME ERROR", "+CMS ERROR", "NO CARRIER", "BUSY",
                            "NO ANSWER", "NO DIALTONE", "CONNECT", "VCON", "TIMEOUT") for r in ended)
    # each command ends by its timeout, however long the noise takes to trickle in
    assert last_end < 3.0 * len(sent) + 4 * len(sent) + 60


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_random_bytes_never_crash_and_timers_stay_in_the_future(data, cuts) -> None:
    e = AtEngine()
    e.send(Command("AT+CSQ", prefix="+CSQ", timeout=1.0), 0.0)
    pos, now, i = 0, 0.0, 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        e.receive_data(data[pos:pos + n], now)
        pos, i, now = pos + n, i + 1, now + 0.01
        t = e.get_timer()
        assert t is None or t >= 0
    e.handle_timer(now + 5)
    evs = drain(e)
    assert len(results(evs)) == 1


def test_incoming_number_only_from_clip_lines() -> None:
    """No mis-routed caller: random noise around a real +CLIP never changes its number."""
    rng = random.Random(7)
    for _ in range(200):
        e = AtEngine()
        # (+CMT takes the next line as its PDU by design, so it is not part of this noise)
        noise = [rng.choice([x for x in _LINES if not x.startswith("+CMT:")])
                 for _ in range(rng.randrange(0, 8))]
        stream = "\r\n".join(noise + ['+CLIP: "+48600100200",145,"",0,"",0'] + noise) + "\r\n"
        raw = stream.encode("latin-1", "replace")
        for i in range(0, len(raw), 3):
            e.receive_data(raw[i:i + 3], 0.0)
        clips = [x for x in drain(e) if isinstance(x, Urc) and x.name == "+CLIP"]
        assert [c.args.split(",")[0] for c in clips if "48600100200" in c.args] == ['"+48600100200"']
        assert all(c.args.startswith(('"+48111"', '"+48600100200"')) for c in clips)
