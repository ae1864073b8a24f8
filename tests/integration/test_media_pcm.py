"""PCM-fd channels: a GSM dongle audio port (s16le) and an FXO voice modem (8-bit, DLE
shielding) simulated on a socketpair, bridged to an RTP phone."""
from __future__ import annotations

import os
import random
import select
import socket
import threading
import time

import numpy as np
import pytest

from firmware._pbxcore import ffi, lib
from firmware.media import ChannelError, DleEvent, DtmfReceived, Engine
from firmware.media.testing import RtpPhone, tone_pcm

DLE = 0x10


def share(x: np.ndarray, freq: float, width: float = 20.0) -> float:
    x = x.astype(np.float64)
    if len(x) < 800 or not np.any(x):
        return 0.0
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(p[(f > freq - width) & (f < freq + width)].sum() / p.sum())


class Modem:
    """The device end of the audio port: writes frames at ~8 kHz (with a clock offset) and
    keeps every byte the engine writes."""

    def __init__(self, sock: socket.socket, fmt: str, ppm: float = 0.0) -> None:
        self.sock, self.fmt, self.ppm = sock, fmt, ppm
        self.out = bytearray()
        self.to_send: list[bytes] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def frame_bytes(self, pcm: bytes) -> bytes:
        x = np.frombuffer(pcm, dtype="<i2")
        if self.fmt == "s16le":
            return pcm
        if self.fmt == "u8":
            return ((x.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()
        buf = ffi.new("uint8_t[]", len(x))
        lib.pbx_ulaw_encode(ffi.from_buffer("int16_t[]", pcm), buf, len(x))
        return bytes(ffi.buffer(buf, len(x)))

    def feed(self, chunks: list[bytes]) -> None:
        self.to_send = list(chunks)

    def start(self) -> "Modem":
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join(2)

    def _run(self) -> None:
        period = 0.02 / (1 + self.ppm * 1e-6)
        nxt = time.monotonic()
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], max(0.0, nxt - time.monotonic()))
            if r:
                self.out += self.sock.recv(65536)
                continue
            nxt += period
            if self.to_send:
                self.sock.sendall(self.to_send.pop(0))


def chunks(data: bytes, n: int) -> list[bytes]:
    return [data[i:i + n] for i in range(0, len(data), n)]


@pytest.fixture
def engine():
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 200))
    yield eng
    eng.close()


@pytest.mark.parametrize("fmt,ppm", [("s16le", 300), ("s16le", -300), ("u8", 0)])
def test_gsm_audio_port_bridged_to_a_phone(engine, fmt, ppm):
    dev, ours = socket.socketpair()
    modem = Modem(dev, fmt, ppm)
    try:
        pc = engine.pcm_channel(ours.fileno(), sample_format=fmt)
        ours.close()  # the engine keeps its own duplicate
        with RtpPhone(payload_type=8) as ph:
            ch = engine.rtp_channel()
            ch.configure(remote=ph.addr, payload_type=8)
            ph.send_to(("127.0.0.1", ch.local_port))
            br = engine.bridge([pc, ch])
            assert not br.relaying
            pcm = tone_pcm(1000, seconds=2.0)
            modem.feed(chunks(modem.frame_bytes(pcm), 320 if fmt == "s16le" else 160))
            ph.play(tone_pcm(600))
            modem.start()
            t0 = time.monotonic()
            ph.start()
            time.sleep(1.6)
            ph.stop()
            modem.stop()
            heard = np.frombuffer(ph.received_pcm(since=t0 + 0.4), dtype="<i2")
            assert share(heard, 1000) > 0.8
            raw = bytes(modem.out)
            if fmt == "s16le":
                dev_heard = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2")
            else:
                dev_heard = (np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8
            assert len(dev_heard) > 8000
            assert share(dev_heard[4000:], 600) > 0.8
            st = pc.stats()
            assert st.packets_in > 60 and st.decoding
            assert st.jitter.received > 60
    finally:
        dev.close()


def test_fxo_voice_modem_with_dle_shielding(engine):
    dev, ours = socket.socketpair()
    modem = Modem(dev, "ulaw")
    try:
        pc = engine.pcm_channel(ours.fileno(), sample_format="ulaw", dle=True)
        ours.close()
        # noise-like audio: its u-law bytes include 0x10, which must travel shielded as DLE DLE
        rng = np.random.default_rng(7)
        noise = (rng.normal(0, 6000, 8000).clip(-32768, 32767).astype("<i2")).tobytes()
        ulaw = modem.frame_bytes(noise)
        assert ulaw.count(bytes([DLE])) > 0
        shielded = ulaw.replace(bytes([DLE]), bytes([DLE, DLE]))
        frames = chunks(shielded, 160)
        frames[10] += bytes([DLE, ord("5")])       # DTMF '5' reported by the modem
        frames[20] += bytes([DLE])                 # a DLE split across two reads ...
        frames[21] = bytes([ord("b")]) + frames[21]  # ... busy tone
        modem.feed(frames)
        pl = engine.play(pc, pcm=noise)
        modem.start()
        time.sleep(1.3)
        pc.send_dle("\x03")  # end of voice transmit
        time.sleep(0.1)
        modem.stop()
        pl.stop()
        ev = [e for e in engine.poll_events() if isinstance(e, DleEvent)]
        assert [e.code for e in ev] == ["5", "b"] and ev[0].channel_id == pc.id
        out = bytes(modem.out)
        # every DLE the engine wrote is doubled, except the DLE ETX we asked for
        i, codes, audio = 0, [], bytearray()
        while i < len(out):
            if out[i] == DLE:
                assert i + 1 < len(out)
                if out[i + 1] == DLE:
                    audio.append(DLE)
                else:
                    codes.append(out[i + 1])
                i += 2
            else:
                audio.append(out[i])
                i += 1
        assert codes == [3]
        assert bytes(ulaw) in bytes(audio)  # the prompt arrived bit-exact, DLEs included
        # and what the modem sent came through the jitter buffer into the engine
        st = pc.stats()
        assert st.jitter.received >= 45
        assert pc.stats().dle_events == 2
    finally:
        dev.close()


def test_inband_dtmf_on_a_pcm_leg_and_end_of_file(engine):
    dev, ours = socket.socketpair()
    modem = Modem(dev, "s16le")
    try:
        pc = engine.pcm_channel(ours.fileno(), sample_format="s16le")
        ours.close()
        silence = b"\0\0" * 800
        sig = silence + tone_pcm(770, 1336, seconds=0.08, level_dbm0=-10) + silence \
            + tone_pcm(941, 1477, seconds=0.12, level_dbm0=-10) + silence * 3
        modem.feed(chunks(sig, 320))
        modem.start()
        time.sleep(len(sig) / 16000 + 0.4)
        modem.stop()
        dev.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
        ev = engine.poll_events()
        digits = [(e.digit, e.source) for e in ev if isinstance(e, DtmfReceived)]
        assert digits == [("5", "inband"), ("#", "inband")]
        d = [e for e in ev if isinstance(e, DtmfReceived)]
        assert abs(d[0].duration_ms - 80) <= 15 and abs(d[1].duration_ms - 120) <= 15
        assert [e for e in ev if isinstance(e, ChannelError)] == [ChannelError(pc.id, 0, "end of file")]
    finally:
        dev.close()


def test_send_dtmf_inband_into_a_pcm_leg(engine):
    dev, ours = socket.socketpair()
    modem = Modem(dev, "s16le")
    try:
        pc = engine.pcm_channel(ours.fileno(), sample_format="s16le")
        ours.close()
        modem.start()
        pc.send_dtmf("9", 100)
        time.sleep(0.5)
        modem.stop()
        out = bytes(modem.out)
        x = np.frombuffer(out[: len(out) // 2 * 2], dtype="<i2")
        det = ffi.new("pbx_dtmf_det_t **")
        assert lib.pbx_dtmf_det_create(det) == 0
        digits = ffi.new("pbx_dtmf_digit_t[8]")
        n = lib.pbx_dtmf_det_process(det[0], ffi.from_buffer("int16_t[]", x.tobytes()), len(x), digits, 8)
        got = [(digits[i].digit.decode(), digits[i].duration_ms) for i in range(n)]
        lib.pbx_dtmf_det_destroy(det[0])
        assert len(got) == 1 and got[0][0] == "9" and abs(got[0][1] - 100) <= 15
        assert pc.stats().dtmf_out == 1
    finally:
        dev.close()
