"""Modem faults seen from the running box: a hung module is reset and back in service with no
restart of the box, a module that re-enumerates under a new device name is found again by
its IMEI -- and calls work again each time. The installer follows it on the web page."""
from __future__ import annotations

import time

import pytest

from tests.integration.test_gsm_calls import (
    FAST,
    IMEI,
    SYSTEM_TOML,
    Office,
    extensions_toml,
    gsm_trunk_toml,
    wait_until,
)

pytestmark = pytest.mark.timeout(150)


def gsm_row(o: Office) -> dict:
    cells = o.trunk_rows()["gsm1"]
    return {"health": cells[2], "registration": cells[5], "faults": cells[6]}


def incoming_call_works(o: Office, desk, number: str) -> None:
    h = o.sim
    h.incoming_call(number=number)
    inc = desk.wait_event("incoming", timeout=15)
    assert number[1:] in inc["remote"]
    wait_until(lambda: (h.status()["call"] or {}).get("state") == "active", 10, what="answered")
    time.sleep(0.5)
    h.remote_hangup()
    desk.wait_event("call_state", timeout=10, call=inc["call"], state="DISCONNECTED")
    r = o.record(lambda r: r["caller_number"] == number)
    assert r["status"] == "answered" and r["trunk"] == "gsm1"
    wait_until(lambda: h.status()["call"] is None, 5, what="modem idle")


def test_hung_modem_reset_and_renamed_modem_found_by_imei_without_restarting_the_box(tmp_path):
    from tools.modem_sim import Simulator
    sim = Simulator(str(tmp_path / "links"))
    h = sim.add_modem("gsm1", model="ec25", imei=IMEI, **FAST)
    sim.add_modem("other", model="ec25", imei="867698049999991", **FAST)   # a stranger in the scan set
    toml = SYSTEM_TOML + extensions_toml(("202",)) + gsm_trunk_toml(h) + """
[[route.inbound]]
trunk = "gsm1"
destination = "202"
"""
    o = Office(tmp_path, toml)
    o.sim = h
    try:
        wait_until(lambda: "modem ready" in o.box.output(), 20, what="modem ready")
        pid = o.box.proc.pid
        desk = o.phone("202", auto_answer=True)
        assert gsm_row(o)["health"] == "ok"
        # the module stops answering AT commands (its reset command still works)
        t0 = time.monotonic()
        h.hang(mode="at")
        row = wait_until(lambda: (r := gsm_row(o))["health"] == "ok" and "recovered" in r["faults"] and r,
                         120, step=0.5, what="back in service")
        took = time.monotonic() - t0
        assert "gsm1-usb2-if02" in row["faults"]            # re-enumerated under a new name
        assert "reset" in o.box.output() and row["registration"].startswith("registered")
        incoming_call_works(o, desk, "+48600100201")
        # unplugged and back as a new USB device: found by IMEI, not by its old name
        t1 = time.monotonic()
        h.power_cycle()
        wait_until(lambda: (r := gsm_row(o))["health"] == "ok" and "gsm1-usb3-if02" in r["faults"],
                   60, step=0.5, what="found again")
        took2 = time.monotonic() - t1
        incoming_call_works(o, desk, "+48600100202")
        assert sim.modem("other").ports()["generation"] == 1   # the other modem was never reset
        assert o.box.proc.pid == pid and o.box.proc.poll() is None
        print(f"hung modem back in service after {took:.1f} s; renamed modem found again after {took2:.1f} s")
    finally:
        o.close()
        sim.close()
