"""Calls relayed inside the kernel (eBPF at tc ingress): what the phones hear and what the box
still sees. Real UDP phones on loopback, and phones in network namespaces behind veth links for
the path out of an interface."""
from __future__ import annotations

import contextlib
import ctypes
import os
import random
import subprocess
import time
import wave

import numpy as np
import pytest

from firmware.media import Engine
from firmware.media.events import DtmfReceived, RtpTimeout
from firmware.media.testing import RtpPhone, tone_pcm

from .test_media_bridge import spectrum_share


def kernel_engine(**kw) -> Engine:
    base = random.randrange(41000, 48000, 2)
    eng = Engine(rtp_ports=(base, base + 200), **{"bind_ip": "127.0.0.1", **kw})
    st = eng.stats()
    if not st.kernel_relay:
        eng.close()
        pytest.skip(f"in-kernel relay unavailable here: {st.kernel_relay_error}")
    return eng


@pytest.fixture
def engine():
    eng = kernel_engine()
    yield eng
    eng.close()


def connect(eng: Engine, phone: RtpPhone, box_ip: str = "127.0.0.1", **kw):
    ch = eng.rtp_channel()
    ch.configure(remote=phone.addr, payload_type=phone.payload_type, **kw)
    phone.send_to((box_ip, ch.local_port))
    return ch


def continuous(phone: RtpPhone) -> bool:
    """What the phone got is one stream: one SSRC, every sequence number once and in order
    (RFC 4733 events included), and audio timestamps that advance 160 per sequence number."""
    pk = list(phone.received)
    audio = [p for p in pk if p.payload_type in (0, 8)]
    return (len(audio) > 10 and len({p.ssrc for p in pk}) == 1
            and all((y.seq - x.seq) % 65536 == 1 for x, y in zip(pk, pk[1:]))
            and all((y.ts - x.ts) % 2**32 == 160 * ((y.seq - x.seq) % 65536) for x, y in zip(audio, audio[1:])))


def test_an_established_call_is_relayed_in_the_kernel_and_both_phones_hear_each_other(engine):
    with RtpPhone(payload_type=8) as a, RtpPhone(payload_type=8) as b:
        ca, cb = connect(engine, a), connect(engine, b)
        br = engine.bridge([ca, cb])
        a.play(tone_pcm(1000))
        b.play(tone_pcm(1700))
        a.start()
        b.start()
        time.sleep(2.0)
        sa, sb, est = ca.stats(), cb.stats(), engine.stats()
        a.stop()
        b.stop()
        assert br.relaying and sa.kernel_relay and sb.kernel_relay
        # nearly everything went through the kernel; the engine relayed the first packets only
        assert est.packets_kernel > 150
        assert est.packets_sent < 20
        heard_b, heard_a = b.received_pcm(), a.received_pcm()
        assert len(heard_b) > 2 * 8000 * 1.8 and len(heard_a) > 2 * 8000 * 1.8
        assert spectrum_share(heard_b, 1000) > 0.9 and spectrum_share(heard_a, 1700) > 0.9
        assert continuous(b) and continuous(a)
        # the box's own SSRC and source address, not the other phone's
        assert {p.ssrc for p in b.audio_packets()} != {a.ssrc}
        assert {p.addr for p in b.audio_packets()} == {("127.0.0.1", cb.local_port)}
        # the counters still add up: what A sent arrived on ca and left on cb
        assert abs(sa.packets_in - a._count) <= 2 and abs(sb.packets_out - sa.packets_in) <= 2


def test_digits_and_a_recording_take_the_stream_back_without_a_seam(engine, tmp_path):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=0) as b:
        ca, cb = connect(engine, a), connect(engine, b)
        br = engine.bridge([ca, cb])
        a.play(tone_pcm(500, level_dbm0=-12))
        b.play(tone_pcm(1300, level_dbm0=-12))
        a.start()
        b.start()
        time.sleep(0.6)
        assert ca.stats().kernel_relay
        # an RFC 4733 digit goes up to the engine (feature codes) and on to the other phone
        a.send_dtmf("5", 120)
        time.sleep(0.6)
        digits = [e for e in engine.poll_events() if isinstance(e, DtmfReceived)]
        assert [(d.channel_id, d.digit) for d in digits] == [(ca.id, "5")]
        assert [d for d, _ in b.received_digits()] == ["5"]
        assert ca.stats().kernel_relay
        # a recorder needs the audio: the engine takes both directions back
        path = tmp_path / "call.wav"
        rec = engine.record(br, path, stereo=True, left=[ca])
        time.sleep(0.1)
        assert not ca.stats().kernel_relay and not cb.stats().kernel_relay
        time.sleep(1.2)
        rec.stop()
        time.sleep(0.3)
        a.stop()
        b.stop()
        assert continuous(b) and continuous(a)
        with wave.open(str(path)) as w:
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        body = data[4000:]
        left, right = body[:, 0].astype(np.int16).tobytes(), body[:, 1].astype(np.int16).tobytes()
        assert spectrum_share(left, 500) > 0.9 and spectrum_share(right, 1300) > 0.9


def test_the_inactivity_timer_sees_kernel_relayed_packets(engine):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=0) as b:
        ca, cb = connect(engine, a, inactivity_timeout_s=1), connect(engine, b, inactivity_timeout_s=1)
        br = engine.bridge([ca, cb])  # noqa: F841 (a bridge lives as long as its handle)
        a.start()
        b.start()
        time.sleep(2.5)     # longer than the timeout, relayed in the kernel all along
        assert ca.stats().kernel_relay
        assert not [e for e in engine.poll_events() if isinstance(e, RtpTimeout)]
        a.stop()            # A goes silent, B keeps talking
        deadline = time.monotonic() + 3
        got = []
        while time.monotonic() < deadline and not got:
            got = [e.channel_id for e in engine.poll_events() if isinstance(e, RtpTimeout)]
            time.sleep(0.05)
        b.stop()
        assert got == [ca.id]


def tone_call(eng: Engine, pt_b: int) -> tuple[RtpPhone, object]:
    """A (u-law) plays 800 Hz to B (pt_b) through eng for 0.8 s; returns B and A's channel stats."""
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=pt_b) as b:
        ca, cb = connect(eng, a), connect(eng, b)
        br = eng.bridge([ca, cb])  # noqa: F841 (a bridge lives as long as its handle)
        a.play(tone_pcm(800))
        a.start()
        b.start()
        time.sleep(0.8)
        st = ca.stats()
        a.stop()
        b.stop()
    return b, st


def test_transcoding_and_a_switched_off_kernel_relay_stay_in_the_engine():
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 200), kernel_relay=False)
    try:
        st = eng.stats()
        assert not st.kernel_relay and st.kernel_relay_error == ""
        b, sa = tone_call(eng, 0)
        assert not sa.kernel_relay
        assert spectrum_share(b.received_pcm(), 800) > 0.9
        assert eng.stats().packets_kernel == 0
    finally:
        eng.close()
    eng = kernel_engine()
    try:
        b, sa = tone_call(eng, 8)
        # u-law to A-law is done by the engine; the kernel only forwards like to like
        assert not sa.kernel_relay
        assert {p.payload_type for p in b.audio_packets()} == {8}
        assert spectrum_share(b.received_pcm(), 800) > 0.9
    finally:
        eng.close()


# ---- phones on other hosts: out of the box's interface, not back into loopback ----

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(name: str):
    """Run the block in network namespace name (this thread only); sockets made there stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(fd)
        os.close(home)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_hosts():
    """Namespaces kr<pid>a / kr<pid>b, each linked to the box by a veth pair with its own subnet."""
    tag = f"kr{os.getpid() % 100000}"
    hosts, nets = [], []

    def clean() -> None:
        for ns, box_if in hosts:
            subprocess.run(["ip", "link", "del", box_if], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    try:
        for i, side in enumerate("ab"):
            ns, box_if, ns_if = f"{tag}{side}", f"{tag}{side}0", f"{tag}{side}1"
            net = f"10.{200 + i}.{os.getpid() % 250}"
            sh("ip", "netns", "add", ns)
            hosts.append((ns, box_if))
            nets.append((ns, net))
            sh("ip", "link", "add", box_if, "type", "veth", "peer", "name", ns_if)
            sh("ip", "link", "set", ns_if, "netns", ns)
            sh("ip", "addr", "add", f"{net}.1/24", "dev", box_if)
            sh("ip", "link", "set", box_if, "up")
            sh("ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", ns_if)
            sh("ip", "-n", ns, "link", "set", ns_if, "up")
            # the far side computes its UDP checksums itself, as a phone's network card does, so
            # the relay must patch a full checksum (on loopback and veth it is only offloaded)
            sh("ip", "netns", "exec", ns, "ethtool", "-K", ns_if, "tx", "off")
    except (OSError, subprocess.CalledProcessError) as e:
        clean()
        pytest.skip(f"cannot create network namespaces here: {e}")
    try:
        yield nets
    finally:
        clean()


def test_phones_behind_an_interface_are_relayed_out_of_it(two_hosts):
    (ns_a, net_a), (ns_b, net_b) = two_hosts
    eng = kernel_engine(bind_ip="0.0.0.0")     # attached to every interface, the veths included
    try:
        with in_netns(ns_a):
            a = RtpPhone(host=f"{net_a}.2", payload_type=0)
        with in_netns(ns_b):
            b = RtpPhone(host=f"{net_b}.2", payload_type=0)
        with a, b:
            ca, cb = connect(eng, a, f"{net_a}.1"), connect(eng, b, f"{net_b}.1")
            br = eng.bridge([ca, cb])  # noqa: F841
            a.play(tone_pcm(900))
            b.play(tone_pcm(1500))
            a.start()
            b.start()
            time.sleep(1.5)
            sa, sb = ca.stats(), cb.stats()
            a.stop()
            b.stop()
            assert sa.kernel_relay and sb.kernel_relay
            assert eng.stats().packets_kernel > 100
            assert spectrum_share(b.received_pcm(), 900) > 0.9 and spectrum_share(a.received_pcm(), 1500) > 0.9
            assert continuous(b) and continuous(a)
            # each phone hears the box from the box's address on its own link
            assert {p.addr for p in b.audio_packets()} == {(f"{net_b}.1", cb.local_port)}
            assert {p.addr for p in a.audio_packets()} == {(f"{net_a}.1", ca.local_port)}
    finally:
        eng.close()


@contextlib.contextmanager
def bpf_stats_enabled():
    path = "/proc/sys/kernel/bpf_stats_enabled"
    try:
        with open(path) as f:
            before = f.read().strip()
        with open(path, "w") as f:
            f.write("1")
    except OSError as exc:
        pytest.skip(f"cannot enable kernel.bpf_stats_enabled: {exc}")
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(before)


def test_the_time_the_kernel_spends_relaying_is_reported_when_the_kernel_counts_it(engine):
    # what tools/bench/relay.py adds to the engine's cost: the relay program's own run time
    assert engine.stats().kernel_relay_runs == 0
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=0) as b, bpf_stats_enabled():
        ca, cb = connect(engine, a), connect(engine, b)
        br = engine.bridge([ca, cb])  # noqa: F841 (a bridge lives as long as its handle)
        a.start()
        b.start()
        time.sleep(1.5)
        a.stop()
        b.stop()
        time.sleep(0.1)
        st = engine.stats()
        # the program looks at every packet on loopback (the box's and the phones'), and
        # relayed most of the phones' audio
        assert st.kernel_relay_runs >= st.packets_kernel > 50   # counted back once a second
        assert 0 < st.kernel_relay_run_s / st.kernel_relay_runs < 100e-6
