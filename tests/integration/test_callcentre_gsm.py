"""The call centre reaching the mobile network through the simulated GSM modem: a queue that
overflows to the agents' mobiles after its maximum wait, and a caller who asks to be called
back and is, when an agent is free."""
from __future__ import annotations

import time

import pytest

from tests.integration.test_gsm_calls import (FAST, IMEI, SYSTEM_TOML, Office, extensions_toml,  # noqa: F401
                                              gsm_trunk_toml, sim, wait_until)
from tests.integration.conftest import PASSWORDS

pytestmark = pytest.mark.timeout(180)

CENTRE = """
[[queue]]
number = "610"
name = "Overflow to mobiles"
strategy = "ringall"
members = ["203"]
max_wait = 5
overflow = "mobiles"
announce_position_every_s = 0

[[queue]]
number = "611"
name = "Callback"
strategy = "ringall"
members = ["202"]
max_wait = 600
callback = "5"
announce_position_every_s = 0
wrapup = 0

[[route.inbound]]
name = "GSM line to the callback queue"
trunk = "gsm1"
destination = "611"

[[route.outbound]]
name = "Mobiles"
pattern = "+48X."
trunks = ["gsm1"]
permission = "mobile"
"""


@pytest.fixture(scope="module")
def office(sim, tmp_path_factory):
    h = sim.add_modem("gsm1", model="ec25", imei=IMEI, **FAST)
    exts = extensions_toml(("201", "202")) + f"""
[[extension]]
number = "203"
name = "Agent with a mobile"
password = "{PASSWORDS['203']}"
mobile = "+48600200300"
"""
    o = Office(tmp_path_factory.mktemp("centre_gsm"), SYSTEM_TOML + exts + gsm_trunk_toml(h) + CENTRE)
    o.sim = h
    try:
        wait_until(lambda: "modem ready" in o.box.output(), 20, what="modem ready")
        yield o
    finally:
        o.close()


def test_queue_overflows_to_the_agents_mobile_after_max_wait(office):
    h = office.sim
    h.outgoing(fate="answer", number="+48600200300")
    caller = office.phone("201")
    r = caller.cmd("dial", uri=office.uri("610"), wait_confirmed=10)
    t0 = time.monotonic()
    wait_until(lambda: any(c["number"].endswith("600200300") for c in h.calls()), 20, what="the mobile rang")
    assert time.monotonic() - t0 > 4.5, "overflow before max_wait"
    wait_until(lambda: h.status()["call"] and h.status()["call"]["state"] == "active", 10, what="mobile answered")
    time.sleep(1)
    caller.cmd("hangup", call=r["call"])
    rec = office.record(lambda row: row["queue"] == "610")
    events = [e["type"] for e in office.events(rec["id"])]
    assert "overflow" in events
    assert rec["status"] == "answered"
    wait_until(lambda: h.status()["call"] is None, 10, what="modem idle")


def test_callback_request_ends_in_a_connected_call(office):
    h = office.sim
    h.outgoing(fate="answer", number="+48600100200")
    h.incoming_call(number="+48600100200")              # 202 (the only agent) is not registered
    wait_until(lambda: h.status()["call"] and h.status()["call"]["state"] == "active", 15, what="box answered")
    time.sleep(3)                                      # the entry announcement offers the callback
    h.remote_dtmf(digits="5")
    wait_until(lambda: h.status()["call"] is None, 20, what="the box confirmed and hung up")
    first = office.record(lambda row: row["queue"] == "611" and row["direction"] == "inbound")
    assert "callback_requested" in [e["type"] for e in office.events(first["id"])]
    agent = office.phone("202", auto_answer=True)      # an agent becomes free
    agent.wait_event("incoming", timeout=20)            # the box rings the agent first...
    wait_until(lambda: sum(1 for c in h.calls() if c["dir"] == "out" and c["number"].endswith("600100200")) >= 1,
               20, what="the customer was called back")
    wait_until(lambda: h.status()["call"] and h.status()["call"]["state"] == "active", 10,
               what="the customer answered")
    time.sleep(2)
    h.remote_hangup()
    cb = office.record(lambda row: row["campaign"] == "callback")
    assert cb["answered_by"] == "202" and cb["external_number"] == "+48600100200"
    results = [(e["type"], e["result"]) for e in office.events(first["id"])]
    assert ("callback_result", "answered") in results
