"""Faults real modems have, through pyserial and the simulator: hangs, resets with USB
re-enumeration under a new name, garbage, echo, lost network -- and never a reset in a call."""
from __future__ import annotations

import asyncio
import time

import pytest

from firmware.aio.modem import ModemLine, find_sibling, probe_imei
from firmware.modem.errors import ModemError
from firmware.modem.events import ModemFault, ModemReady, NetworkChanged, ResetRequired
from firmware.modem.session import SessionConfig
from tests.integration.test_modem_gsm import FAST, Recorder
from tools.modem_sim import Simulator

pytestmark = pytest.mark.timeout(150)

WATCHDOG = dict(ping_interval=1.0, ping_timeout=0.5, max_misses=3, command_timeout=1.0)


@pytest.fixture
def sim(tmp_path):
    s = Simulator(str(tmp_path / "links"))
    yield s
    s.close()


def make_line(sim, tmp_path, name, model="ec25", imei="867698041234567", **kw):
    rec = Recorder()
    h = sim.modem(name)
    line = ModemLine(name, model, device=h.at_path, imei=imei, on_event=rec,
                     scan=[str(tmp_path / "links" / "*")], config=SessionConfig(**WATCHDOG),
                     retry_interval=0.5, **kw)
    return line, rec


async def wait_until(pred, timeout: float, step: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


async def test_hung_modem_is_reset_and_found_again_by_imei(sim, tmp_path) -> None:
    # a second modem in the same scan set: the line must pick its own by IMEI
    sim.add_modem("other", model="ec25", imei="867698049999999", **FAST)
    h = sim.add_modem("gsm1", model="ec25", imei="867698041234567", **FAST)
    line, rec = make_line(sim, tmp_path, "gsm1")
    try:
        assert await line.start(wait=20)
        first = line.device
        assert first.endswith("gsm1-usb1-if02")
        t0 = time.monotonic()
        h.hang(mode="at")  # answers nothing any more, but its reset still works
        await rec.wait(ResetRequired, timeout=30)
        await wait_until(lambda: line.ready and line.device != first, 120)
        took = time.monotonic() - t0
        assert took < 120
        assert line.device.endswith("gsm1-usb2-if02")  # a NEW name after re-enumeration
        assert line.status()["imei"] == "867698041234567"
        kinds = [f["kind"] for f in line.status()["faults"]]
        assert "reset" in kinds and "recovered" in kinds
        assert line.status()["health"]["resets"] == 1 and line.status()["health"]["state"] == "ok"
        assert sim.modem("other").ports()["generation"] == 1  # the other modem untouched
        # back in service: a call works again
        assert (await line.dial("+48500111222")).answered
        await line.hangup()
        print(f"hung modem back in service after {took:.1f} s")
    finally:
        await line.stop()


async def test_dead_modem_is_power_cycled_through_the_hook(sim, tmp_path) -> None:
    h = sim.add_modem("gsm2", model="sim7600", imei="867698041111111", **FAST)
    cycles = []

    def power_cycle() -> None:  # a board would toggle a GPIO / the USB hub port here
        cycles.append(time.monotonic())
        h.power_cycle()

    line, rec = make_line(sim, tmp_path, "gsm2", model="sim7600", imei="867698041111111",
                          power_cycle=power_cycle)
    try:
        assert await line.start(wait=20)
        h.hang(mode="total")  # not even the reset command gets through
        await wait_until(lambda: cycles, 60)
        await wait_until(lambda: line.ready and "usb2" in (line.device or ""), 60)
        assert any(f["kind"] == "power_cycle" for f in line.status()["faults"])
    finally:
        await line.stop()


async def test_unplugged_modem_comes_back_under_a_new_name(sim, tmp_path) -> None:
    h = sim.add_modem("gsm3", model="huawei", imei="867698042222222", **FAST)
    line, rec = make_line(sim, tmp_path, "gsm3", model="huawei", imei="867698042222222")
    try:
        assert await line.start(wait=20)
        h.power_cycle()  # the port vanishes (EIO) and re-enumerates as usb2
        await rec.wait(ModemFault, kind="port_lost", timeout=10)
        await wait_until(lambda: line.ready and line.device.endswith("gsm3-usb2-if02"), 60)
        assert len(rec.of(ModemReady)) == 2
        # the audio port is found as the sibling interface of the new AT port
        assert find_sibling(line.device, 1).endswith("gsm3-usb2-if01")
        assert probe_imei(sim.modem("gsm3").ports()["audio"]) is None  # not an AT port
    finally:
        await line.stop()


async def test_no_reset_during_a_call(sim, tmp_path) -> None:
    h = sim.add_modem("gsm4", model="ec25", imei="867698043333333", **FAST)
    line, rec = make_line(sim, tmp_path, "gsm4", imei="867698043333333")
    try:
        assert await line.start(wait=20)
        assert (await line.dial("+48500111222")).answered
        h.hang(mode="at")
        await rec.wait(ModemFault, kind="reset_deferred", timeout=30)
        await asyncio.sleep(3)
        assert not rec.of(ResetRequired) and h.ports()["generation"] == 1
        assert line.status()["in_call"]
        with pytest.raises(ModemError):
            await line.hangup()  # the hung module does not confirm; the call is over for us
        await rec.wait(ResetRequired, timeout=10)
        await wait_until(lambda: line.ready, 60)
    finally:
        await line.stop()


async def test_garbage_echo_and_lost_network(sim, tmp_path) -> None:
    h = sim.add_modem("gsm5", model="sim800", imei="867698044444444", **FAST)
    line, rec = make_line(sim, tmp_path, "gsm5", model="sim800", imei="867698044444444")
    try:
        assert await line.start(wait=20)
        h.garbage(on=False, burst=40)
        await rec.wait(ModemFault, kind="garbage", timeout=10)
        h.echo(on=True)
        await rec.wait(ModemFault, kind="echo", timeout=10)
        await wait_until(lambda: not h.status()["echo"], 10)  # ATE0 sent again
        h.network(up=False)
        lost = await rec.wait(NetworkChanged, registered=False)
        assert lost.status == 2
        res = await line.dial("+48500111222")
        assert res.status in ("no_carrier", "error")
        h.network(up=True)
        await rec.wait(NetworkChanged, registered=True)
        assert (await line.dial("+48500111222")).answered
        await line.hangup()
        assert line.ready and not rec.of(ResetRequired)
    finally:
        await line.stop()


async def test_audio_path_not_rearmed_resets_between_calls(sim, tmp_path) -> None:
    h = sim.add_modem("gsm6", model="sim7600", imei="867698047777777", audio_stuck=True, **FAST)
    line, rec = make_line(sim, tmp_path, "gsm6", model="sim7600", imei="867698047777777")
    try:
        assert await line.start(wait=20)
        assert (await line.dial("+48500111222")).answered
        await line.hangup()
        fault = await rec.wait(ModemFault, kind="audio_not_rearmed", timeout=10)
        assert "+CPCMREG: 1" in fault.detail
        await rec.wait(ResetRequired, timeout=10)
        await wait_until(lambda: line.ready and "usb2" in (line.device or ""), 60)
        assert (await line.dial("+48500111222")).answered  # a fresh module, audio works again
        assert line.audio is not None
        await line.hangup()
    finally:
        await line.stop()
