"""Two or three RTP phones (real UDP sockets on loopback) bridged through the engine."""
from __future__ import annotations

import random
import time

import numpy as np
import pytest

from firmware.media import Engine
from firmware.media.testing import RtpPhone, tone_pcm


def spectrum_share(pcm: bytes, freq: float, width: float = 20.0) -> float:
    """Fraction of the signal's power within +-width Hz of freq."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if len(x) < 800 or not np.any(x):
        return 0.0
    x = x * np.hanning(len(x))
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(p[(f > freq - width) & (f < freq + width)].sum() / p.sum())


@pytest.fixture
def engine():
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 200))
    yield eng
    eng.close()


def connect(eng: Engine, phone: RtpPhone, **kw):
    ch = eng.rtp_channel()
    ch.configure(remote=phone.addr, payload_type=phone.payload_type, **kw)
    phone.send_to(("127.0.0.1", ch.local_port))
    return ch


def run(seconds: float, *phones: RtpPhone) -> float:
    start = time.monotonic()
    for p in phones:
        p.start()
    time.sleep(seconds)
    for p in phones:
        p.stop()
    return start


def test_relay_carries_each_tone_to_the_other_phone(engine):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=0) as b:
        ca, cb = connect(engine, a), connect(engine, b)
        br = engine.bridge([ca, cb])
        assert br.relaying
        a.play(tone_pcm(1000))
        b.play(tone_pcm(600))
        run(1.0, a, b)
        heard_b, heard_a = b.received_pcm(), a.received_pcm()
        assert len(heard_b) > 2 * 8000 * 0.8
        assert spectrum_share(heard_b, 1000) > 0.9
        assert spectrum_share(heard_a, 600) > 0.9
        # the far end sees our SSRC, not the other phone's, with contiguous sequence numbers
        pk = b.audio_packets()
        assert {p.ssrc for p in pk} == {pk[0].ssrc} and pk[0].ssrc != a.ssrc
        seqs = [p.seq for p in pk]
        assert all((y - x) % 65536 == 1 for x, y in zip(seqs, seqs[1:]))
        assert all((y.ts - x.ts) % 2**32 == 160 for x, y in zip(pk, pk[1:]))
        st = ca.stats()
        assert st.relaying and not st.decoding and st.packets_in >= 40


def test_ulaw_to_alaw_transcoding(engine):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=8) as b:
        ca, cb = connect(engine, a), connect(engine, b)
        br = engine.bridge([ca, cb])  # noqa: F841  (dropping the handle would close the bridge)
        a.play(tone_pcm(1000))
        b.play(tone_pcm(440))
        run(1.0, a, b)
        assert {p.payload_type for p in b.audio_packets()} == {8}
        assert {p.payload_type for p in a.audio_packets()} == {0}
        assert spectrum_share(b.received_pcm(), 1000) > 0.9
        assert spectrum_share(a.received_pcm(), 440) > 0.9


def test_three_party_conference_each_hears_the_others(engine):
    freqs = {0: 500, 1: 1100, 2: 1700}
    phones = [RtpPhone(payload_type=pt) for pt in (0, 8, 0)]
    try:
        chans = [connect(engine, p) for p in phones]
        br = engine.bridge(chans)
        assert not br.relaying
        for i, p in enumerate(phones):
            p.play(tone_pcm(freqs[i], level_dbm0=-16))
        start = run(1.5, *phones)
        for i, p in enumerate(phones):
            pcm = p.received_pcm(since=start + 0.5)
            others = [freqs[j] for j in freqs if j != i]
            for f in others:
                assert spectrum_share(pcm, f) > 0.3, (i, f)
            assert spectrum_share(pcm, freqs[i]) < 0.01, i
    finally:
        for p in phones:
            p.close()


def test_player_on_a_relayed_leg_switches_to_mixing_and_back_seamlessly(engine):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=0) as b:
        ca, cb = connect(engine, a), connect(engine, b)
        br = engine.bridge([ca, cb])
        a.play(tone_pcm(1000))
        a.start()
        b.start()
        time.sleep(0.3)
        pl = engine.play(cb, pcm=tone_pcm(300, seconds=0.3))
        assert not br.relaying
        time.sleep(0.6)
        assert br.relaying
        a.stop()
        b.stop()
        pk = b.audio_packets()
        assert {p.ssrc for p in pk} == {pk[0].ssrc}
        seqs = [p.seq for p in pk]
        assert all((y - x) % 65536 == 1 for x, y in zip(seqs, seqs[1:]))
        assert all(0 < (y.ts - x.ts) % 2**32 <= 480 for x, y in zip(pk, pk[1:]))
        ev = engine.poll_events()
        assert any(getattr(e, "player_id", None) == pl.id and e.reason == "finished" for e in ev)


def frame_levels(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    n = len(x) // 160
    return np.sqrt((x[: n * 160].reshape(n, 160) ** 2).mean(axis=1))


def test_loss_and_reordering_are_concealed_by_the_jitter_buffer(engine):
    # three parties force the decode/mix path; A loses every 10th packet and reorders every 7th
    phones = [RtpPhone(payload_type=0, drop_every=10, swap_every=7), RtpPhone(payload_type=0), RtpPhone()]
    try:
        chans = [connect(engine, p) for p in phones]
        br = engine.bridge(chans)  # noqa: F841
        phones[0].play(tone_pcm(800, level_dbm0=-10))
        start = run(2.0, *phones)
        heard = phones[1].received_pcm(since=start + 0.4, until=start + 1.8)
        lv = frame_levels(heard)
        assert len(lv) > 60
        assert lv.min() > 0.3 * np.median(lv)   # no silent holes where packets were lost
        assert spectrum_share(heard, 800) > 0.9
        jb = chans[0].stats().jitter
        assert jb.lost >= 8 and jb.concealed_samples > 0
        assert jb.reordered >= 5
    finally:
        for p in phones:
            p.close()


def test_listen_and_whisper_members(engine):
    agent, customer, boss = RtpPhone(), RtpPhone(), RtpPhone()
    try:
        ca, cc, cs = connect(engine, agent), connect(engine, customer), connect(engine, boss)
        br = engine.bridge([ca, cc])
        br.add(cs, mode="listen")
        agent.play(tone_pcm(600, level_dbm0=-16))
        customer.play(tone_pcm(1000, level_dbm0=-16))
        boss.play(tone_pcm(1500, level_dbm0=-16))
        start = run(1.2, agent, customer, boss)
        b = boss.received_pcm(since=start + 0.4)
        assert spectrum_share(b, 600) > 0.3 and spectrum_share(b, 1000) > 0.3
        assert spectrum_share(customer.received_pcm(since=start + 0.4), 1500) < 0.01
        assert spectrum_share(agent.received_pcm(since=start + 0.4), 1500) < 0.01
        # now the supervisor whispers to the agent only
        br.remove(cs)
        br.add(cs, mode="whisper", whisper_to=ca)
        for p in (agent, customer, boss):
            p.received.clear()
        start = run(1.2, agent, customer, boss)
        assert spectrum_share(agent.received_pcm(since=start + 0.4), 1500) > 0.3
        assert spectrum_share(customer.received_pcm(since=start + 0.4), 1500) < 0.01
        b = boss.received_pcm(since=start + 0.4)
        assert spectrum_share(b, 600) > 0.3 and spectrum_share(b, 1000) > 0.3
    finally:
        for p in (agent, customer, boss):
            p.close()


def test_dtmf_crosses_the_bridge(engine):
    from firmware.media import DtmfReceived
    with RtpPhone() as a, RtpPhone() as b, RtpPhone(payload_type=8) as c:
        ca, cb = connect(engine, a, telephone_event_pt=101), connect(engine, b, telephone_event_pt=101)
        br = engine.bridge([ca, cb])
        assert br.relaying
        a.start()
        b.start()
        a.send_dtmf("3", 120)
        time.sleep(0.5)
        # relayed: B gets RFC 4733 packets with its own SSRC and sequence space
        assert b.received_digits() == [("3", 960)]
        ev = [e for e in engine.poll_events() if isinstance(e, DtmfReceived)]
        assert [(e.channel_id, e.digit) for e in ev] == [(ca.id, "3")]
        # C has no telephone-event: the digit from A reaches it as in-band tones
        br.remove(cb)
        cc = connect(engine, c, telephone_event_pt=None)
        br.add(cc)
        c.start()
        a.send_dtmf("8", 120)
        time.sleep(0.8)
        a.stop()
        b.stop()
        c.stop()
        from firmware.media.dtmf import DtmfDetector
        got = DtmfDetector().process(c.received_pcm())
        assert [g.digit for g in got] == ["8"]
