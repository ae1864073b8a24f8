"""SMS, USSD and the modem self-test through the box's control API (firmware.api.BoxControl,
what the web page and the notification code call), lines out of service reported as
trunk_down notices (to a webhook), with the box running in-process and the modem simulator
on ptys."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from aiohttp import web

from firmware.aio.service import Options, Service
from firmware.api import ControlError
from tests.conftest import free_port
from tests.integration.conftest import free_block
from tests.integration.test_gsm_calls import (
    FAST,
    IMEI,
    SYSTEM_TOML,
    extensions_toml,
    gsm_trunk_toml,
)

pytestmark = pytest.mark.timeout(90)


async def until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


async def start_box(tmp_path, toml: str) -> Service:
    prov = tmp_path / "office.toml"
    prov.write_text(toml)
    rtp = free_block(200)
    svc = Service(Options(data_dir=str(tmp_path / "data"), provision=str(prov),
                          sip_bind=("127.0.0.1", free_port(socket.SOCK_DGRAM)),
                          web_bind=("127.0.0.1", free_port()), rtp_ports=(rtp, rtp + 199)))
    await svc.start()
    return svc


async def webhook_receiver() -> tuple[list[dict], web.AppRunner, int]:
    got: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return got, runner, port


async def test_sms_cyrillic_both_ways_kept_across_a_restart_ussd_and_self_test(tmp_path):
    from tools.modem_sim import Simulator
    sim = Simulator(str(tmp_path / "links"))
    h = sim.add_modem("gsm1", model="sim7600", imei=IMEI, **FAST)
    notices, receiver, hook_port = await webhook_receiver()
    toml = SYSTEM_TOML + extensions_toml(("201",)) + gsm_trunk_toml(h, model="sim7600") + f"""
[[trunk]]
name = "gsm3"
type = "gsm"
model = "ec25"
device = "{tmp_path / 'no-such-modem'}"

[[trunk]]
name = "voip"
type = "sip"
host = "127.0.0.4"
port = {free_port(socket.SOCK_DGRAM)}
username = "box"
password = "Provider-secret-1"
register = true

[[notification]]
kind = "webhook"
target = "http://127.0.0.1:{hook_port}/hook"
events = ["trunk_down"]
"""
    svc = await start_box(tmp_path, toml)
    try:
        pbx = svc.pbx
        await until(lambda: pbx.trunks()[0]["health"] == "ok", 20, "modem in service")
        # out: BoxControl.send_sms -> the network gets the text (UCS-2, reassembled)
        text = "Здравствуйте! Ваш заказ №4521 готов к выдаче. Zażółć gęślą jaźń 😀"
        await pbx.send_sms("gsm1", "+79161234567", text)
        sent = h.sent_sms()
        assert sent[-1]["number"] == "+79161234567" and sent[-1]["text"] == text
        assert sent[-1]["alphabet"] == "ucs2"
        # in: a long Cyrillic message in several UCS-2 parts, delivered out of order
        long = "Добрый день! Посылка прибыла в пункт выдачи на ул. Ленина, 5. " * 3
        parts = h.sms(sender="+79161234567", text=long, ucs2=True, reverse=True)
        assert parts >= 3
        got = await until(lambda: pbx.carrier.received_sms("gsm1"), 15, "SMS received")
        assert got[0]["text"] == long and got[0]["sender"] == "+79161234567" and got[0]["parts"] == parts
        assert pbx.trunks()[0]["sms_recent"][0]["text"] == long
        await until(lambda: h.status()["storage_used"] == 0, 10, "SIM storage emptied")
        on_disk = [json.loads(x) for x in (svc.data_dir / "sms" / "inbox.jsonl").read_text().splitlines()]
        assert on_disk[-1]["text"] == long and on_disk[-1]["trunk"] == "gsm1"
        # USSD balance and the self-test
        assert (await pbx.modem_ussd("gsm1", "*100#")).startswith("Balance: 12.50 PLN")
        assert pbx.trunks()[0]["last_ussd"]["text"].startswith("Balance")
        findings = await pbx.modem_test("gsm1")
        assert findings["at"].startswith("ok") and findings["sim"] == "ready"
        assert findings["network"] == "registered (Orange PL)" and "dBm" in findings["signal"]
        assert findings["imei"] == IMEI
        # a change of the trunk's settings applies while the box runs (the line is idle: now)
        old_line = pbx.carrier.modems["gsm1"].line
        svc.config.update("trunk", "gsm1", {"minutes_per_day": 30})
        await until(lambda: pbx.carrier.modems.get("gsm1") is not None
                    and pbx.carrier.modems["gsm1"].line is not old_line
                    and pbx.trunks()[0]["health"] == "ok", 20, "line restarted with the new settings")
        assert pbx.trunks()[0]["minutes_per_day"] == 30 and pbx.trunks()[0]["minutes_today"] == 0
        # lines out of service are reported once each (a missing modem, a silent registrar)
        await until(lambda: len(notices) >= 2, 15, "trunk_down notices")
        down = {n["trunk"]: n for n in notices}
        assert set(down) == {"gsm3", "voip"} and len(notices) == 2
        assert all(n["event"] == "trunk_down" for n in notices) and "not_found" in down["gsm3"]["detail"]
        assert "no answer" in down["voip"]["detail"]
        st = {t["name"]: t for t in pbx.trunks()}
        assert st["voip"]["registration"].startswith("not registered") and st["gsm3"]["health"] == "lost"
        with pytest.raises(ControlError, match="no modem line"):
            await pbx.send_sms("gsm9", "+79161234567", "x")
        with pytest.raises(ControlError):
            await pbx.modem_ussd("gsm1", "*100#; AT+CFUN=0")
    finally:
        await svc.stop()
    # the message survives a restart of the box (the SIM no longer has it)
    svc = await start_box(tmp_path, toml)
    try:
        assert svc.pbx.carrier.received_sms("gsm1")[0]["text"] == long
    finally:
        await svc.stop()
        sim.close()
        await receiver.cleanup()
