"""The Python API's contract: typed errors, handle lifetimes (close, with, garbage
collection), players and tones, ptime 10/30 input."""
from __future__ import annotations

import gc
import random
import time
import wave

import numpy as np
import pytest

from firmware.media import Engine, PlayerDone, ToneSpec, engine_version
from firmware.media.errors import (BadFormat, Busy, InvalidArgument, InvalidState, MediaError, NoFreePort,
                                   NotFound)
from firmware.media.testing import RtpPhone, tone_pcm


def share(pcm: bytes, freq: float, width: float = 20.0) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(x) < 800 or not np.any(x):
        return 0.0
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(p[(f > freq - width) & (f < freq + width)].sum() / p.sum())


@pytest.fixture
def engine():
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 200))
    yield eng
    eng.close()


def test_version_and_bad_engine_arguments():
    assert engine_version().count(".") == 2
    with pytest.raises(InvalidArgument):
        Engine(rtp_ports=(5000, 4000))
    with pytest.raises(InvalidArgument):
        Engine(ptime_ms=25)
    with pytest.raises(InvalidArgument):
        Engine(bind_ip="not-an-ip")


def test_port_range_exhaustion_and_reuse_after_close():
    base = random.randrange(41000, 48000, 2)
    with Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 5)) as eng:
        a, b = eng.rtp_channel(), eng.rtp_channel()
        assert {a.local_port, b.local_port} == {base, base + 2}
        with pytest.raises(NoFreePort) as ei:
            eng.rtp_channel()
        assert isinstance(ei.value, MediaError) and ei.value.code == -5
        a.close()
        a.close()  # idempotent
        assert eng.rtp_channel().local_port == base
        del b
        gc.collect()  # the garbage collector frees a lost channel too
        assert eng.rtp_channel().local_port == base + 2


def test_errors_are_typed(engine):
    ch = engine.rtp_channel()
    with pytest.raises(InvalidArgument):
        ch.configure(remote=("127.0.0.1", 70000))
    with pytest.raises(InvalidArgument):
        ch.configure(remote=("no.such.host", 4000))
    with pytest.raises(InvalidArgument):
        ch.configure(payload_type=18)
    with pytest.raises(InvalidArgument):
        ch.configure(direction="hold")
    with pytest.raises(InvalidArgument):
        ch.configure(remote=("::1", 4000))  # IPv6 remote on an IPv4 channel
    other = engine.rtp_channel()
    br = engine.bridge([ch, other])
    br2 = engine.bridge()
    with pytest.raises(Busy):
        br2.add(ch)
    with pytest.raises(InvalidArgument):
        br.add(engine.rtp_channel(), mode="whisper")
    with pytest.raises(InvalidArgument):
        engine.play(ch)
    with pytest.raises(InvalidArgument):
        engine.play_tone(ch, "busy", country="xx")
    with pytest.raises(InvalidArgument):
        engine.record(ch, "/tmp/x.wav", sync_interval_s=5)
    with pytest.raises(NotFound):
        engine.record(ch, "/no/such/dir/x.wav")
    ch.close()
    with pytest.raises(InvalidState):
        ch.stats()
    with Engine(bind_ip="127.0.0.1", rtp_ports=(40000, 40010)) as other_engine:
        with pytest.raises(InvalidArgument):
            other_engine.bridge([other])  # a channel of another engine


def test_wav_prompt_format_is_checked(engine, tmp_path):
    bad = tmp_path / "44k.wav"
    with wave.open(str(bad), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\0\0" * 100)
    with pytest.raises(BadFormat, match="8000 Hz mono 16-bit"):
        engine.load_sound(path=bad)
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    with pytest.raises(BadFormat):
        engine.play(engine.rtp_channel(), path=tmp_path / "junk.wav")


def test_closed_engine_refuses_calls_and_handles_become_inert():
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(40100, 40110))
    ch = eng.rtp_channel()
    eng.close()
    eng.close()
    with pytest.raises(InvalidState):
        eng.rtp_channel()
    with pytest.raises(InvalidState):
        ch.configure(remote=("127.0.0.1", 4000))
    ch.close()  # no error after the engine is gone


def test_two_players_mix_and_report_when_done(engine, tmp_path):
    prompt = tmp_path / "prompt.wav"
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_pcm(700, seconds=0.4, level_dbm0=-16))
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0)
        moh = engine.load_sound(pcm=tone_pcm(1300, seconds=0.25, level_dbm0=-16))
        music = engine.play(ch, sound=moh, loop=True)     # looped music ...
        engine.play(ch, path=prompt)                        # ... and a prompt over it
        t0 = time.monotonic()
        ph.collect(0.6)
        pcm = ph.received_pcm(until=t0 + 0.35)
        assert share(pcm, 700) > 0.3 and share(pcm, 1300) > 0.3
        later = ph.received_pcm(since=t0 + 0.45)
        assert share(later, 1300) > 0.9  # the prompt ended, the music loops on
        music.stop()
        ph.collect(0.05)  # what was already on its way
        ph.received.clear()
        ph.collect(0.2)
        assert ph.audio_packets() == []  # nothing left playing: the channel goes quiet
        ev = [e for e in engine.poll_events() if isinstance(e, PlayerDone)]
        assert sorted(e.reason for e in ev) == ["finished", "stopped"]
        moh.close()


@pytest.mark.parametrize("country,tone,freqs,on_off", [
    ("eu", "busy", (425,), (0.5, 0.5)),
    ("us", "busy", (480, 620), (0.5, 0.5)),
    ("ru", "busy", (425,), (0.4, 0.4)),
])
def test_tone_cadence(engine, country, tone, freqs, on_off):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=8)
        pl = engine.play_tone(ch, tone, country=country, duration_s=2.1)
        ph.collect(2.3)
        x = np.frombuffer(ph.received_pcm(), dtype="<i2").astype(np.float64)
        for f in freqs:
            assert share(ph.received_pcm(), f) > 0.8 / len(freqs)
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        on = (np.sqrt((frames ** 2).mean(axis=1)) > 100).astype(int)
        edges = np.flatnonzero(np.diff(on)) * 0.02
        periods = np.diff(edges)
        assert len(periods) >= 3
        assert np.allclose(periods[:3], [on_off[1], on_off[0], on_off[1]][: len(periods[:3])], atol=0.03) or \
            np.allclose(periods[:3], [on_off[0], on_off[1], on_off[0]][: len(periods[:3])], atol=0.03)
        assert any(isinstance(e, PlayerDone) and e.player_id == pl.id for e in engine.poll_events())


def test_custom_tone_spec(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0)
        engine.play_tone(ch, ToneSpec(1000, 1400, level_dbm0=-20), duration_s=0.5)
        ph.collect(0.7)
        pcm = ph.received_pcm()
        assert share(pcm, 1000) > 0.3 and share(pcm, 1400) > 0.3


@pytest.mark.parametrize("ptime", [10, 30])
def test_other_packet_times_are_accepted(engine, ptime):
    phones = [RtpPhone(ptime_ms=ptime), RtpPhone(), RtpPhone()]
    try:
        chans = []
        for p in phones:
            ch = engine.rtp_channel()
            ch.configure(remote=p.addr, payload_type=0)
            p.send_to(("127.0.0.1", ch.local_port))
            chans.append(ch)
        br = engine.bridge(chans)  # noqa: F841
        phones[0].play(tone_pcm(900, level_dbm0=-12))
        t0 = time.monotonic()
        for p in phones:
            p.start()
        time.sleep(1.2)
        for p in phones:
            p.stop()
        assert share(phones[1].received_pcm(since=t0 + 0.4, until=t0 + 1.1), 900) > 0.9
        assert {len(p.payload) for p in phones[1].audio_packets()} == {160}
    finally:
        for p in phones:
            p.close()
