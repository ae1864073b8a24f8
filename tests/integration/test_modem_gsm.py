"""GSM modems through the real serial code (pyserial on ptys) against the simulator."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from firmware.aio.modem import ModemLine  # noqa: E402
from firmware.modem.errors import ModemBusy  # noqa: E402
from firmware.modem.events import (AudioStart, AudioStop, CallEnded, DtmfReceived, IncomingCall,  # noqa: E402
                                   ModemFault, ModemReady, RemoteHangup, SimState, SmsReceived)
from firmware.modem.session import SessionConfig  # noqa: E402
from tools.modem_sim import Simulator  # noqa: E402
from tools.modem_sim.audio import Tone, dominant_frequency, s16_decode, s16_encode  # noqa: E402

pytestmark = pytest.mark.timeout(120)

FAST = dict(ring_interval=1.0, answer_delay=0.3, alert_delay=0.2, busy_delay=0.3,
            no_answer_time=1.5, boot_time=0.5, ussd_delay=0.2)
MODELS = ["sim800", "sim7600", "ec25", "huawei"]


@pytest.fixture
def sim(tmp_path):
    s = Simulator(str(tmp_path / "links"))
    yield s
    s.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, ev) -> None:
        self.events.append(ev)

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    async def wait(self, cls, timeout: float = 10.0, **fields):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events:
                if isinstance(e, cls) and all(getattr(e, k) == v for k, v in fields.items()):
                    return e
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {cls.__name__} {fields} within {timeout} s; got {self.events}")


async def open_line(sim, tmp_path, model, *, imei="867698041234567", cfg=None, **opts):
    name = f"{model}x"
    h = sim.add_modem(name, model=model, imei=imei, **{**FAST, **opts})
    rec = Recorder()
    line = ModemLine(name, model, device=h.at_path, on_event=rec, imei=imei,
                     scan=[str(tmp_path / "links" / f"{name}-*")],
                     config=cfg or SessionConfig(command_timeout=2.0), retry_interval=0.5)
    assert await line.start(wait=20), line.status()
    return h, line, rec


@pytest.mark.parametrize("model", MODELS)
async def test_init_incoming_call_answer_and_remote_hangup(sim, tmp_path, model) -> None:
    h, line, rec = await open_line(sim, tmp_path, model)
    try:
        ready = rec.of(ModemReady)[0]
        assert ready.imei == "867698041234567" and ready.iccid == "8948031234567890123"
        st = line.status()
        assert st["registered"] and st["operator"] == "Orange PL" and st["signal"]["rssi"] == 21
        assert st["sim"]["state"] == "ready" and st["health"]["state"] == "ok"
        h.incoming_call(number="+48600100200")
        call = await rec.wait(IncomingCall)
        assert call.number == "+48600100200" and not call.withheld
        await line.answer()
        assert line.status()["in_call"]
        if model == "sim800":
            assert line.audio is None and "USB sound card" in line.status()["audio_note"]
        else:
            assert line.audio is not None and line.audio.sample_format == "s16le"
        h.remote_hangup()
        hup = await rec.wait(RemoteHangup)
        assert hup.cause == "normal"
        await rec.wait(CallEnded, by="remote")
        assert line.audio is None and not line.status()["in_call"]
    finally:
        await line.stop()


@pytest.mark.parametrize("model", ["sim7600", "ec25", "huawei"])
async def test_audio_both_ways_on_the_named_port(sim, tmp_path, model) -> None:
    h, line, rec = await open_line(sim, tmp_path, model)
    try:
        h.audio_tone(freqs=[1000.0])
        result = await line.dial("+48500111222")
        assert result.answered
        port = line.audio
        assert port is not None and not port.dle and port.rate == 8000
        assert rec.of(AudioStart)
        # modem -> host: the far end's 1 kHz tone, read where the driver says it is
        buf = b""
        end = time.monotonic() + 5
        while len(buf) < 16000 and time.monotonic() < end:
            await asyncio.sleep(0.02)
            try:
                buf += os.read(port.fd, 65536)
            except BlockingIOError:
                pass
        samples = s16_decode(buf[-8000:])
        assert abs(dominant_frequency(samples) - 1000.0) < 15
        # host -> modem: a 700 Hz tone written at real-time pace is what the far end hears
        tone = Tone([700.0], 0.3)
        for _ in range(60):
            os.write(port.fd, s16_encode(tone.read(160)))
            await asyncio.sleep(0.02)
        heard = h.heard(seconds=0.5)
        assert abs(heard["dominant_hz"] - 700.0) < 15, heard
        h.remote_dtmf(digits="5")
        if model != "huawei":  # Huawei dongles have no DTMF report of their own
            assert (await rec.wait(DtmfReceived)).digit == "5"
        await line.send_dtmf("12")
        assert h.heard()["dtmf_sent"] == "12"
        await line.hangup()
        assert rec.of(AudioStop) and line.audio is None
    finally:
        await line.stop()


@pytest.mark.parametrize("model", MODELS)
async def test_dial_busy_and_no_answer(sim, tmp_path, model) -> None:
    h, line, rec = await open_line(sim, tmp_path, model)
    try:
        h.outgoing(fate="busy", number="+48500000001")
        h.outgoing(fate="no_answer", number="+48500000002")
        busy = await line.dial("+48500000001")
        assert busy.status == "busy" and busy.q850 == 17
        noans = await line.dial("+48500000002")
        assert noans.status == "no_answer" and noans.q850 == 19
        ok = await line.dial("+48500000003")
        assert ok.answered
        with pytest.raises(ModemBusy):
            await line.dial("+48500000004")  # one voice channel per module
        await line.hangup()
    finally:
        await line.stop()


@pytest.mark.parametrize("model", ["sim800", "ec25"])
async def test_sms_cyrillic_round_trip_and_storage_swept(sim, tmp_path, model) -> None:
    h, line, rec = await open_line(sim, tmp_path, model, storage_capacity=5)
    try:
        text = "Здравствуйте! Ваш заказ №1234 готов к выдаче. Спасибо, что выбрали нас 😀 " * 3
        refs = await line.send_sms("+79161234567", text)
        assert len(refs) == 4
        sent = h.sent_sms()[-1]
        assert sent["text"] == text and sent["number"] == "+79161234567" and sent["alphabet"] == "ucs2"
        incoming = "Привет из Москвы! Это длинное сообщение из нескольких частей, проверка. " * 2
        assert h.sms(sender="+79161234567", text=incoming, reverse=True) == 3
        msg = await rec.wait(SmsReceived)
        assert msg.text == incoming and msg.parts == 3 and msg.sender == "+79161234567"
        # more messages than the storage holds: swept as they come, nothing lost
        for i in range(8):
            h.sms(sender="Orange", text=f"Wiadomość {i}: Zażółć gęślą jaźń")
        end = time.monotonic() + 30
        while len(rec.of(SmsReceived)) < 9 and time.monotonic() < end:
            await asyncio.sleep(0.1)
        texts = sorted(m.text for m in rec.of(SmsReceived)[1:])
        assert texts == sorted(f"Wiadomość {i}: Zażółć gęślą jaźń" for i in range(8))
        await asyncio.sleep(0.3)
        assert h.status()["storage_used"] == 0
    finally:
        await line.stop()


@pytest.mark.parametrize("model", ["sim7600", "huawei"])
async def test_ussd_balance(sim, tmp_path, model) -> None:
    h, line, rec = await open_line(sim, tmp_path, model)
    try:
        assert await line.ussd("*100#") == "Balance: 12.50 PLN, valid until 2025-01-31"
        h.ussd(code="*101#", text="Баланс: 100,00 р.", ucs2=True)
        assert await line.ussd("*101#") == "Баланс: 100,00 р."
        assert line.status()["last_ussd"]["text"] == "Баланс: 100,00 р."
    finally:
        await line.stop()


async def test_pin_one_attempt_then_puk_reported(sim, tmp_path) -> None:
    h = sim.add_modem("pinx", model="sim800", pin="4321", **FAST)
    rec = Recorder()
    state = tmp_path / "pin-state.json"
    line = ModemLine("pinx", "sim800", device=h.at_path, on_event=rec, pin="1111",
                     config=SessionConfig(command_timeout=2.0), state_path=str(state))
    try:
        await line.start(wait=20)
        await rec.wait(ModemFault, kind="pin_failed")
        st = line.status()
        assert st["sim"]["state"] == "pin" and st["sim"]["pin_tries"] == 2 and st["sim"]["pin_failed"]
        assert h.status()["pin_tries"] == 2  # exactly one attempt reached the SIM
        assert '"failed": true' in state.read_text()
    finally:
        await line.stop()
    # a restart of the box does not try again (the failure is remembered on disk)
    rec2 = Recorder()
    line2 = ModemLine("pinx", "sim800", device=h.at_path, on_event=rec2, pin="1111",
                      config=SessionConfig(command_timeout=2.0), state_path=str(state))
    try:
        await line2.start(wait=20)
        await rec2.wait(ModemFault, kind="pin_required")
        assert h.status()["pin_tries"] == 2
    finally:
        await line2.stop()
    # a PUK-locked SIM is reported with its tries and left alone
    h2 = sim.add_modem("pukx", model="ec25", pin="4321", pin_tries=0, **FAST)
    rec3 = Recorder()
    line3 = ModemLine("pukx", "ec25", device=h2.at_path, on_event=rec3, pin="4321",
                      config=SessionConfig(command_timeout=2.0))
    try:
        await line3.start(wait=20)
        st = await rec3.wait(SimState, state="puk")
        assert st.puk_tries == 10
        await rec3.wait(ModemFault, kind="puk_required")
    finally:
        await line3.stop()


async def test_correct_pin_is_entered_once_per_power_up(sim, tmp_path) -> None:
    h = sim.add_modem("pin2", model="ec25", pin="4321", **FAST)
    line = ModemLine("pin2", "ec25", device=h.at_path, pin="4321", imei="867698041234567",
                     scan=[str(tmp_path / "links" / "pin2-*")],
                     config=SessionConfig(command_timeout=2.0), retry_interval=0.5)
    try:
        assert await line.start(wait=20)
        assert line.status()["sim"]["state"] == "ready"
        gen = h.ports()["generation"]
        h.power_cycle()
        h.wait_ports(gen + 1)
        await asyncio.sleep(0.5)
        await line.wait_ready(30)
        assert line.status()["sim"]["state"] == "ready"  # proven PIN entered again after reset
    finally:
        await line.stop()


@pytest.mark.parametrize("reader", ["add_reader", "thread"])
async def test_pyserial_url_through_a_tcp_serial_server(sim, tmp_path, monkeypatch, reader) -> None:
    """A modem behind a ser2net-style TCP port: device = "socket://127.0.0.1:PORT"; also
    through the reader thread used for URL handlers that have no file descriptor."""
    import io
    import tty

    import serial.urlhandler.protocol_socket as psock

    from tests.conftest import free_port

    if reader == "thread":
        def no_fileno(self):
            raise io.UnsupportedOperation("fileno")
        monkeypatch.setattr(psock.Serial, "fileno", no_fileno)

    h = sim.add_modem(f"tcp{reader}", model="sim800", **FAST)
    fd = os.open(h.at_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    loop = asyncio.get_running_loop()
    clients: list[asyncio.StreamWriter] = []

    def from_modem() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        for w in clients:
            w.write(data)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        while data := await reader.read(4096):
            os.write(fd, data)

    loop.add_reader(fd, from_modem)
    port = free_port()
    server = await asyncio.start_server(client, "127.0.0.1", port)
    rec = Recorder()
    line = ModemLine(f"tcp{reader}", "sim800", device=f"socket://127.0.0.1:{port}", on_event=rec,
                     config=SessionConfig(command_timeout=2.0))
    try:
        assert await line.start(wait=20), line.status()["faults"]
        assert line.status()["imei"] == "867698041234567"
        h.incoming_call(number="+48600100200")
        assert (await rec.wait(IncomingCall)).number == "+48600100200"
        assert (line._fd is None) == (reader == "thread")
    finally:
        await line.stop()
        server.close()
        loop.remove_reader(fd)
        os.close(fd)
