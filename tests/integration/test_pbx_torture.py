"""Every RFC 4475 torture message, over UDP and TCP, at the running box while a call is up:
the box answers what it must, never falls over, and the call keeps its audio."""
from __future__ import annotations

import json
import socket
import time

from tests.conftest import DATA
from tests.integration.test_pbx_calls import heard, tone_wav

TORTURE = DATA / "sip" / "rfc4475"


def messages():
    expected = json.loads((TORTURE / "expected.json").read_text())
    return [(name, (TORTURE / f"{name}.dat").read_bytes(), exp) for name, exp in expected.items()
            if not name.startswith("_") and (TORTURE / f"{name}.dat").exists()]


def test_torture_messages_do_not_disturb_a_call(office, pj_phones, tmp_path):
    a = pj_phones("201")
    b = pj_phones("202", auto_answer=True)
    call = a.cmd("dial", uri=office.uri("202"), wait_confirmed=10)
    cb = b.wait_event("incoming")["call"]
    a.cmd("play", call=call["call"], wav=tone_wav(tmp_path, 500))
    msgs = messages()
    assert len(msgs) >= 45
    answers = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.3)
        for name, data, exp in msgs:
            udp.sendto(data, ("127.0.0.1", office.sip_port))
            try:
                reply = udp.recv(65535)
                answers[name] = reply.split(b"\r\n", 1)[0].decode(errors="replace")
            except socket.timeout:
                answers[name] = None
            time.sleep(0.02)
    for name, data, _ in msgs:
        with socket.create_connection(("127.0.0.1", office.sip_port), timeout=2) as tcp:
            tcp.sendall(data)
            tcp.settimeout(0.3)
            try:
                tcp.recv(65535)
            except (socket.timeout, ConnectionResetError):
                pass
    # the call is still up with audio both ways through all of it
    b.cmd("sleep", seconds=2)
    assert b.cmd("info", call=cb)["state"] == "CONFIRMED"
    assert heard(b.cmd("info", call=cb)["record"], 500) > 0.8
    # malformed requests were answered with 400 where RFC 4475 says so (not merely dropped)
    bad_400 = [name for name, _, exp in msgs if isinstance(exp.get("parse"), list) and exp["parse"][0] == 400]
    assert bad_400, "no 400 cases in the corpus?"
    answered_400 = [n for n in bad_400 if answers.get(n) and " 400 " in answers[n]]
    assert len(answered_400) >= len(bad_400) * 0.8, (answered_400, bad_400)
    # and the box still takes new work
    c = pj_phones("203")
    assert c.cmd("register_state")["reg_code"] == 200
    a.cmd("hangup", call=call["call"])
    assert office.box.proc.poll() is None
