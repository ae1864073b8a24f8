"""An analog (FXO) line on a V.253 voice modem, through pyserial and the simulator: caller ID,
answer, DLE-shielded u-law audio both ways on the AT port, and the far end's hang-up
detected from the busy tone with the line released within 10 s."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from firmware.aio.modem import ModemLine
from firmware.modem.dle import DleDecoder, dle_escape
from firmware.modem.events import (AudioStop, CallEnded, CallerId, DtmfReceived, IncomingCall,
                                   LineReleased, RemoteHangup)
from firmware.modem.session import SessionConfig
from tests.integration.test_modem_gsm import Recorder
from tools.modem_sim import Simulator
from tools.modem_sim.audio import Tone, dominant_frequency, ulaw_decode, ulaw_encode

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sim(tmp_path):
    s = Simulator(str(tmp_path / "links"))
    yield s
    s.close()


class EngineStandIn:
    """What the media engine's PCM-fd channel does with a DLE channel, for this test only:
    reads the port, un-shields the audio, reports DLE codes to the line, writes shielded
    audio -- until the line says AudioStop."""

    def __init__(self, line: ModemLine) -> None:
        self.line = line
        self.port = line.audio
        self.dec = DleDecoder()
        self.audio = bytearray()
        self.codes: list[str] = []
        self.open = True

    def pump(self) -> None:
        if not self.open:
            return
        try:
            data = os.read(self.port.fd, 65536)
        except BlockingIOError:
            return
        voice, codes = self.dec.feed(data)
        self.audio += voice
        for c in codes:
            self.codes.append(c)
            self.line.dle_event(c)  # the lead wires engine DleEvent -> line.dle_event

    def write(self, samples: list[int]) -> None:
        os.write(self.port.fd, dle_escape(ulaw_encode(samples)))


async def test_incoming_caller_id_answer_audio_and_busy_tone_hangup(sim, tmp_path) -> None:
    h = sim.add_modem("fxo1", model="voicemodem", ring_interval=2.0)
    rec = Recorder()
    engine: list[EngineStandIn] = []

    def on_event(ev) -> None:
        rec(ev)
        if isinstance(ev, AudioStop) and engine:
            engine[0].open = False  # close the engine channel synchronously, as the lead must

    line = ModemLine("fxo1", "voicemodem", device=h.at_path, on_event=on_event,
                     config=SessionConfig(command_timeout=2.0))
    try:
        assert await line.start(wait=20)
        assert line.status()["kind"] == "fxo"
        h.incoming_call(number="0221234567", name="KOWALSKI JAN")
        call = await rec.wait(IncomingCall, timeout=10)
        assert call.number == "0221234567" and call.name == "KOWALSKI JAN"
        cid = rec.of(CallerId)[0]
        assert cid.date and cid.time and cid.validity == 0
        await line.answer()
        port = line.audio
        assert port is not None and port.dle and port.shared_with_at
        assert port.sample_format == "ulaw" and port.frame_bytes == 160
        eng = EngineStandIn(line)
        engine.append(eng)
        # far end -> us: the simulator's 440 Hz, DLE-shielded u-law on the AT port
        tone = Tone([700.0], 0.3)
        for _ in range(50):
            eng.pump()
            eng.write(tone.read(160))  # us -> far end: 700 Hz
            await asyncio.sleep(0.02)
        got = ulaw_decode(bytes(eng.audio[-4000:]))
        assert abs(dominant_frequency(got) - 440.0) < 15
        heard = h.heard(seconds=0.5)
        assert abs(heard["dominant_hz"] - 700.0) < 15, heard
        h.remote_dtmf(digits="7")
        for _ in range(30):
            eng.pump()
            await asyncio.sleep(0.02)
        assert (await rec.wait(DtmfReceived)).digit == "7"
        # the far end hangs up: busy tone, the modem's <DLE>b, line released
        t0 = time.monotonic()
        h.remote_hangup()
        while eng.open and time.monotonic() - t0 < 10:
            eng.pump()
            await asyncio.sleep(0.02)
        hup = await rec.wait(RemoteHangup, timeout=10)
        assert hup.cause == "disconnect_tone" and "b" in eng.codes
        busy = ulaw_decode(bytes(eng.audio[-8000:]))
        assert abs(dominant_frequency(busy) - 425.0) < 15  # it really was the busy tone
        released = await rec.wait(LineReleased, timeout=10)
        took = time.monotonic() - t0
        assert took < 10 and released.seconds_after_hangup < 10
        await rec.wait(CallEnded, by="remote")
        st = h.status()
        assert st["call"] is None and not st["in_vtr"]
        assert line.audio is None and line.ready
        print(f"far-end hang-up detected and line released {took:.1f} s after it")
    finally:
        await line.stop()


@pytest.mark.parametrize("end", ["!", "etx"])
async def test_outgoing_call_and_vendor_end_sequences(sim, tmp_path, end) -> None:
    h = sim.add_modem(f"fxo-{end}", model="voicemodem", answer_delay=0.5, fxo_end=end)
    rec = Recorder()
    line = ModemLine(f"fxo-{end}", "voicemodem", device=h.at_path, on_event=rec,
                     config=SessionConfig(command_timeout=2.0))
    try:
        assert await line.start(wait=20)
        h.outgoing(fate="busy", number="0229999999")
        assert (await line.dial("0229999999")).status == "busy"
        res = await line.dial("0221234567")
        assert res.answered and line.audio is not None
        t0 = time.monotonic()
        await line.hangup()
        assert time.monotonic() - t0 < 10
        assert rec.of(LineReleased) and h.status()["call"] is None
        assert line.ready
    finally:
        await line.stop()
