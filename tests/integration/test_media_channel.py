"""RTP channel behaviour on loopback: RFC 4733, symmetric latching and RTP Bleed, hold,
inactivity, bad packets, re-INVITE."""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import time

import pytest

from firmware.media import (DtmfReceived, Engine, RtpResumed, RtpSourceLatched, RtpTimeout)
from firmware.media.errors import InvalidArgument
from firmware.media.testing import RtpPhone, tone_pcm


@pytest.fixture
def engine():
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 200))
    yield eng
    eng.close()


def wait_events(eng: Engine, pred, timeout: float = 2.0) -> list:
    got: list = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got += eng.poll_events()
        if pred(got):
            return got
        time.sleep(0.01)
    return got


def test_rfc4733_digit_is_reported_once_with_its_duration(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0, telephone_event_pt=101)
        ph.send_to(("127.0.0.1", ch.local_port))
        ph.start()
        ph.send_dtmf("5", 120)
        ph.send_dtmf("#", 200)
        ev = wait_events(engine, lambda g: len([e for e in g if isinstance(e, DtmfReceived)]) >= 2)
        time.sleep(0.2)
        ev += engine.poll_events()
        ph.stop()
        digits = [e for e in ev if isinstance(e, DtmfReceived)]
        assert [(d.digit, d.source) for d in digits] == [("5", "rfc4733"), ("#", "rfc4733")]
        assert digits[0].duration_ms == 120 and digits[1].duration_ms == 200
        assert ch.stats().dtmf_in == 2


def test_rfc4733_retransmitted_and_lost_end_packets(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0, telephone_event_pt=96)
        dst = ("127.0.0.1", ch.local_port)
        seq = 100

        def ev(digit, end, dur, ts):
            nonlocal seq
            seq += 1
            return ph.packet(bytes([digit, (0x80 if end else 0) | 10]) + struct.pack("!H", dur), pt=96, seq=seq, ts=ts)

        # digit 1: start, update, end x3 (retransmissions) then a late duplicate end
        for pkt in (ev(1, 0, 160, 8000), ev(1, 0, 320, 8000), ev(1, 1, 480, 8000), ev(1, 1, 480, 8000),
                    ev(1, 1, 480, 8000)):
            ph.send_raw(pkt, dst)
        time.sleep(0.05)
        ph.send_raw(ev(1, 1, 480, 8000), dst)
        # digit 9: end packets all lost -> reported after the event times out
        for pkt in (ev(9, 0, 160, 16000), ev(9, 0, 320, 16000)):
            ph.send_raw(pkt, dst)
        got = wait_events(engine, lambda g: len(g) >= 2, timeout=1.5)
        time.sleep(0.1)
        got += engine.poll_events()
        assert [(e.digit, e.duration_ms) for e in got if isinstance(e, DtmfReceived)] == [("1", 60), ("9", 40)]


def test_send_dtmf_rfc4733_packets(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0, telephone_event_pt=101)
        pl = engine.play(ch, pcm=tone_pcm(400, seconds=2))
        ch.send_dtmf("7", 100)
        ph.collect(0.6)
        pl.stop()
        evp = [p for p in ph.received if p.payload_type == 101]
        assert len(evp) >= 5
        assert evp[0].marker == 1 and all(p.marker == 0 for p in evp[1:])
        assert len({p.ts for p in evp}) == 1
        ends = [p for p in evp if p.payload[1] & 0x80]
        assert len(ends) == 3 and all(struct.unpack("!H", p.payload[2:4])[0] == 800 for p in ends)
        assert all(p.payload[0] == 7 for p in evp)
        assert ph.received_digits() == [("7", 800)]
        # no audio packet while the event is being sent; seq contiguous across both
        allp = sorted(ph.received, key=lambda p: p.time)
        seqs = [p.seq for p in allp]
        assert all((y - x) % 65536 == 1 for x, y in zip(seqs, seqs[1:]))
        first, last = allp.index(evp[0]), allp.index(evp[-1])
        assert all(p.payload_type == 101 for p in allp[first:last + 1])
        assert ch.stats().dtmf_out == 1
        with pytest.raises(InvalidArgument):
            ch.send_dtmf("x")


def test_latches_to_nat_source_from_the_signalling_ip(engine):
    with RtpPhone() as sdp_side, RtpPhone() as real:
        ch = engine.rtp_channel()
        # SDP says one port, the phone (behind NAT) sends from another, same IP
        ch.configure(remote=sdp_side.addr, payload_type=0, signalling_ip="127.0.0.1")
        real.send_to(("127.0.0.1", ch.local_port))
        real.play(tone_pcm(800))
        pl = engine.play(ch, pcm=tone_pcm(500, seconds=3), loop=True)
        real.start()
        ev = wait_events(engine, lambda g: any(isinstance(e, RtpSourceLatched) for e in g))
        time.sleep(0.2)
        real.stop()
        pl.stop()
        lat = [e for e in ev if isinstance(e, RtpSourceLatched)]
        assert lat and lat[0].addr == real.addr and lat[0].channel_id == ch.id
        assert ch.stats().remote == real.addr
        assert len(real.audio_packets()) > 3
        assert 1 <= ch.stats().dropped_source <= 4


def test_rtp_bleed_from_another_ip_is_never_adopted(engine):
    with RtpPhone() as phone, RtpPhone(host="127.0.0.2") as attacker:
        ch = engine.rtp_channel()
        ch.configure(remote=phone.addr, payload_type=0, signalling_ip="127.0.0.1")
        attacker.send_to(("127.0.0.1", ch.local_port))
        attacker.play(tone_pcm(900))
        attacker.start()
        time.sleep(0.5)
        attacker.stop()
        ev = engine.poll_events()
        assert not any(isinstance(e, RtpSourceLatched) for e in ev)
        st = ch.stats()
        assert st.remote == phone.addr
        assert st.dropped_source >= 20 and st.packets_in == 0


def test_in_sequence_rule_blocks_a_spraying_source(engine):
    with RtpPhone() as phone, RtpPhone() as sprayer:
        ch = engine.rtp_channel()
        ch.configure(remote=phone.addr, payload_type=0)
        dst = ("127.0.0.1", ch.local_port)
        for i in range(20):  # same IP, but random sequence numbers: never "several in sequence"
            sprayer.send_raw(sprayer.packet(b"\xff" * 160, seq=random.randrange(65536)), dst)
        time.sleep(0.1)
        assert not any(isinstance(e, RtpSourceLatched) for e in engine.poll_events())
        assert ch.stats().dropped_source == 20


def test_hold_directions(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0, direction="sendonly")
        ph.send_to(("127.0.0.1", ch.local_port))
        pl = engine.play(ch, pcm=tone_pcm(425, seconds=5), loop=True)  # music on hold
        ph.start()
        time.sleep(0.4)
        st = ch.stats()
        assert st.dropped_direction > 10 and st.packets_in == 0
        assert len(ph.audio_packets()) > 10
        ch.configure(remote=ph.addr, payload_type=0, direction="inactive")
        time.sleep(0.1)
        n = len(ph.audio_packets())
        time.sleep(0.3)
        assert len(ph.audio_packets()) <= n + 1
        ch.configure(remote=ph.addr, payload_type=0, direction="recvonly")
        time.sleep(0.3)
        assert len(ph.audio_packets()) <= n + 1
        assert ch.stats().packets_in > 5
        ph.stop()
        pl.stop()


async def test_inactivity_timeout_and_resume_through_asyncio(engine):
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    engine.attach(loop, q.put_nowait)
    try:
        with RtpPhone() as ph:
            ch = engine.rtp_channel()
            ch.configure(remote=ph.addr, payload_type=0, inactivity_timeout_s=0.3)
            ev = await asyncio.wait_for(q.get(), 2)
            assert ev == RtpTimeout(ch.id, 0.3)
            ph.send_raw(ph.packet(b"\xff" * 160), ("127.0.0.1", ch.local_port))
            ev = await asyncio.wait_for(q.get(), 2)
            assert ev == RtpResumed(ch.id)
            ev = await asyncio.wait_for(q.get(), 2)
            assert ev == RtpTimeout(ch.id, 0.3)
    finally:
        engine.detach()


def test_bad_packets_are_dropped_and_counted(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0, telephone_event_pt=101)
        dst = ("127.0.0.1", ch.local_port)
        good = ph.packet(b"\xff" * 160)
        bad = [
            good[:11],                                   # truncated
            bytes([0x40]) + good[1:],                    # version 1
            bytes([0x8F]) + good[1:20],                  # 15 CSRCs, packet too short
            bytes([0x90]) + good[1:12] + b"\x00\x00\xff\xff",   # extension of 1 GB
            bytes([0xA0]) + good[1:] [:-1] + b"\xff",    # padding larger than the payload
            bytes([0xA0]) + good[1:][:-1] + b"\x00",     # padding count 0
        ]
        for b in bad:
            ph.send_raw(b, dst)
        for pt in (96, 97, 13):
            ph.send_raw(ph.packet(b"\x01\x02\x03\x04", pt=pt), dst)
        ph.send_raw(good, dst)
        time.sleep(0.1)
        st = ch.stats()
        assert st.dropped_malformed == len(bad)
        assert st.dropped_unknown_pt == 3
        assert st.packets_in == 1


def test_flood_is_cut_and_counted(engine):
    with RtpPhone() as ph:
        ch = engine.rtp_channel()
        ch.configure(remote=ph.addr, payload_type=0)
        dst = ("127.0.0.1", ch.local_port)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(ph.addr[:1] + (0,))
        pkt = ph.packet(b"\xff" * 160)
        for _ in range(3000):
            ph.send_raw(pkt, dst)
        time.sleep(0.2)
        st = ch.stats()
        assert st.dropped_flood > 0
        assert st.packets_in + st.dropped_flood <= 3000
        s.close()


def test_reinvite_moves_the_stream(engine):
    with RtpPhone() as old, RtpPhone() as new:
        ch = engine.rtp_channel()
        ch.configure(remote=old.addr, payload_type=0)
        pl = engine.play(ch, pcm=tone_pcm(700, seconds=3), loop=True)
        old.collect(0.2)
        ch.configure(remote=new.addr, payload_type=8)
        old.collect(0.05)  # what was already on its way
        old.received.clear()
        new.collect(0.3)
        pl.stop()
        old.collect(0.05)
        assert len(new.audio_packets()) >= 10 and {p.payload_type for p in new.audio_packets()} == {8}
        assert old.received == []


def test_ipv6_relay(engine):
    a = engine.rtp_channel(local_ip="::1")
    b = engine.rtp_channel(local_ip="::1")
    pa = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    pb = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        pa.bind(("::1", 0))
        pb.bind(("::1", 0))
        pb.settimeout(2)
        a.configure(remote=pa.getsockname()[:2], payload_type=0)
        b.configure(remote=pb.getsockname()[:2], payload_type=8)
        br = engine.bridge([a, b])  # noqa: F841
        pa.sendto(struct.pack("!BBHII", 0x80, 0, 7, 1000, 5) + b"\xff" * 160, ("::1", a.local_port))
        data, addr = pb.recvfrom(2000)
        assert len(data) == 172 and data[1] & 0x7F == 8 and data[12:] == b"\xd5" * 160
        assert addr[1] == b.local_port and b.stats().remote == ("::1", pb.getsockname()[1])
    finally:
        pa.close()
        pb.close()
