"""Recordings of calls: channel placement, power loss (SIGKILL) + repair, disk full."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from firmware.media import Engine, RecorderError, RecorderStopped, repair_wav
from firmware.media.testing import RtpPhone, tone_pcm

ROOT = Path(__file__).resolve().parents[2]


def share(x: np.ndarray, freq: float, width: float = 20.0) -> float:
    x = x.astype(np.float64)
    if not np.any(x):
        return 0.0
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(p[(f > freq - width) & (f < freq + width)].sum() / p.sum())


def read_wav(path) -> tuple[int, np.ndarray]:
    with wave.open(str(path)) as w:
        ch = w.getnchannels()
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return ch, data.reshape(-1, ch)


@pytest.fixture
def engine():
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 200))
    yield eng
    eng.close()


def wait_for(eng, cls, timeout=5.0):
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        for e in eng.poll_events():
            seen.append(e)
            if isinstance(e, cls):
                return e, seen
        time.sleep(0.02)
    raise AssertionError(f"no {cls.__name__} in {seen}")


@pytest.mark.parametrize("mode", ["relay", "transcode", "mix"])
def test_recording_holds_each_voice_in_its_channel(engine, tmp_path, mode):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=8 if mode == "transcode" else 0) as b, \
            RtpPhone() as supervisor:
        ca, cb = engine.rtp_channel(), engine.rtp_channel()
        ca.configure(remote=a.addr, payload_type=0)
        cb.configure(remote=b.addr, payload_type=b.payload_type)
        a.send_to(("127.0.0.1", ca.local_port))
        b.send_to(("127.0.0.1", cb.local_port))
        br = engine.bridge([ca, cb])
        if mode == "mix":
            cs = engine.rtp_channel()
            cs.configure(remote=supervisor.addr, payload_type=0)
            br.add(cs, mode="listen")
        a.play(tone_pcm(500, level_dbm0=-12))
        b.play(tone_pcm(1300, level_dbm0=-12))
        a.start()
        b.start()
        path = tmp_path / "call.wav"
        rec = engine.record(br, path, stereo=True, left=[ca])
        assert br.relaying == (mode != "mix")  # a recorder taps the relay without stopping it
        time.sleep(1.5)
        rec.stop()
        ev, _ = wait_for(engine, RecorderStopped)
        a.stop()
        b.stop()
        assert ev.recorder_id == rec.id and ev.path == str(path)
        assert 1.3 < ev.seconds < 1.7
        ch, data = read_wav(path)
        assert ch == 2 and abs(len(data) / 8000 - ev.seconds) < 0.01
        body = data[4000:]  # skip the jitter buffer's start-up
        assert share(body[:, 0], 500) > 0.9 and share(body[:, 0], 1300) < 0.01
        assert share(body[:, 1], 1300) > 0.9 and share(body[:, 1], 500) < 0.01
        # the call itself went on, relayed or transcoded
        assert len(b.audio_packets()) > 50


def test_mono_recording_of_a_channel_mixes_both_directions(engine, tmp_path):
    with RtpPhone(payload_type=0) as a:
        ca = engine.rtp_channel()
        ca.configure(remote=a.addr, payload_type=0)
        a.send_to(("127.0.0.1", ca.local_port))
        a.play(tone_pcm(700, level_dbm0=-12))
        a.start()
        pl = engine.play(ca, pcm=tone_pcm(1900, seconds=5, level_dbm0=-12))
        rec = engine.record(ca, tmp_path / "m.wav", stereo=False)
        time.sleep(1.0)
        rec.stop()
        wait_for(engine, RecorderStopped)
        pl.stop()
        a.stop()
        ch, data = read_wav(tmp_path / "m.wav")
        assert ch == 1
        body = data[2400:, 0]
        assert share(body, 700) > 0.3 and share(body, 1900) > 0.3


CHILD = textwrap.dedent("""
    import sys, time, random
    sys.path.insert(0, {root!r})
    from firmware.media import Engine
    from firmware.media.testing import tone_pcm
    base = random.randrange(41000, 48000, 2)
    eng = Engine(bind_ip="127.0.0.1", rtp_ports=(base, base + 50))
    ch = eng.rtp_channel()
    ch.configure(remote=("127.0.0.1", 9), payload_type=0)
    eng.play(ch, pcm=tone_pcm(600, seconds=10), loop=True)
    rec = eng.record(ch, {path!r}, stereo=True, sync_interval_s=1.0)
    print(time.monotonic(), flush=True)
    time.sleep(60)
""")


def test_killed_process_leaves_a_wav_that_repair_makes_playable(tmp_path):
    path = tmp_path / "killed.wav"
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    try:
        started = float(proc.stdout.readline())
        time.sleep(3.3 - (time.monotonic() - started))
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = killed - started
    # power cut: only what the kernel had is there (for tmpfs/page cache that is everything
    # written); the header may be stale by up to a second
    size = path.stat().st_size
    with open(path, "ab") as f:  # a torn last write: half a sample frame
        f.write(b"\x01")
    r = repair_wav(path)
    assert r.changed and r.truncated_bytes == 1 + (size - 44) % 4
    assert r.channels == 2 and r.sample_rate == 8000
    assert elapsed - 1.2 <= r.seconds <= elapsed + 0.05, (elapsed, r.seconds)
    ch, data = read_wav(path)
    assert abs(len(data) / 8000 - r.seconds) < 0.001
    assert share(data[800:, 1], 600) > 0.9
    assert repair_wav(path).changed is False  # idempotent


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if rc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (needs root): {rc.stderr.decode()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_stops_the_recording_not_the_call(engine, tiny_disk):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=0) as b:
        ca, cb = engine.rtp_channel(), engine.rtp_channel()
        ca.configure(remote=a.addr, payload_type=0)
        cb.configure(remote=b.addr, payload_type=0)
        a.send_to(("127.0.0.1", ca.local_port))
        b.send_to(("127.0.0.1", cb.local_port))
        br = engine.bridge([ca, cb])
        a.play(tone_pcm(1000))
        a.start()
        b.start()
        path = tiny_disk / "full.wav"
        rec = engine.record(br, path, stereo=True, left=[ca], sync_interval_s=0.2)
        ev, _ = wait_for(engine, RecorderError, timeout=6)
        assert ev.recorder_id == rec.id and ev.errno == 28 and "space" in ev.reason
        assert 0.5 < ev.seconds < 2.5
        n = len(b.audio_packets())
        time.sleep(0.5)
        assert len(b.audio_packets()) >= n + 20  # audio keeps flowing
        a.stop()
        b.stop()
        rec.stop()  # harmless after the error
        assert not os.path.exists(path) or repair_wav(path).seconds <= ev.seconds + 0.01
        assert br.relaying


def test_recording_one_leg_of_a_relayed_call(engine, tmp_path):
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=8) as b:
        ca, cb = engine.rtp_channel(), engine.rtp_channel()
        ca.configure(remote=a.addr, payload_type=0)
        cb.configure(remote=b.addr, payload_type=8)
        a.send_to(("127.0.0.1", ca.local_port))
        b.send_to(("127.0.0.1", cb.local_port))
        br = engine.bridge([ca, cb])
        a.play(tone_pcm(500, level_dbm0=-12))
        b.play(tone_pcm(1300, level_dbm0=-12))
        a.start()
        b.start()
        rec = engine.record(ca, tmp_path / "leg.wav", stereo=True)  # left: what A says, right: what A hears
        assert br.relaying
        time.sleep(1.2)
        rec.stop()
        wait_for(engine, RecorderStopped)
        a.stop()
        b.stop()
        _, data = read_wav(tmp_path / "leg.wav")
        body = data[4000:]
        assert share(body[:, 0], 500) > 0.9 and share(body[:, 1], 1300) > 0.9


def test_small_buffer_keeps_every_sample(engine, tmp_path):
    """A 200 ms ring (the smallest allowed) is drained in time: nothing overruns."""
    with RtpPhone(payload_type=0) as a:
        ca = engine.rtp_channel()
        ca.configure(remote=a.addr, payload_type=0)
        pl = engine.play(ca, pcm=tone_pcm(1000, seconds=5, level_dbm0=-12))
        rec = engine.record(ca, tmp_path / "small.wav", stereo=True, buffer_s=0.2, sync_interval_s=1.0)
        time.sleep(2.5)
        rec.stop()
        ev, _ = wait_for(engine, RecorderStopped)
        pl.stop()
        _, data = read_wav(tmp_path / "small.wav")
        sent = data[800:, 1].astype(np.int32)  # right: what the channel was sent (the tone)
        assert 2.3 < ev.seconds < 2.7 and abs(len(data) / 8000 - ev.seconds) < 0.01
        # a 1 kHz tone never stays at zero for 4 samples; a dropped tick would leave 160
        silent = np.convolve((sent == 0).astype(np.int32), np.ones(4, dtype=np.int32), mode="valid")
        assert not np.any(silent == 4)
        assert share(sent, 1000) > 0.95


def onset(x: np.ndarray, threshold: float = 300.0) -> float:
    """Time (s) of the first 10 ms block louder than threshold (rms)."""
    blocks = x[: len(x) // 80 * 80].astype(np.float64).reshape(-1, 80)
    loud = np.flatnonzero(np.sqrt((blocks ** 2).mean(axis=1)) > threshold)
    assert len(loud), "no audio"
    return loud[0] * 0.01


def test_recording_of_a_relay_keeps_both_voices_in_step(engine, tmp_path):
    """Both phones start talking at the same moment: the two channels of the recording of a
    relayed call (recorded without the jitter buffer) start together too."""
    silence = bytes(2 * 4800)
    with RtpPhone(payload_type=0) as a, RtpPhone(payload_type=8) as b:
        ca, cb = engine.rtp_channel(), engine.rtp_channel()
        ca.configure(remote=a.addr, payload_type=0)
        cb.configure(remote=b.addr, payload_type=8)
        a.send_to(("127.0.0.1", ca.local_port))
        b.send_to(("127.0.0.1", cb.local_port))
        br = engine.bridge([ca, cb])
        rec = engine.record(br, tmp_path / "step.wav", stereo=True, left=[ca])
        a.play(silence + tone_pcm(600, seconds=1.0, level_dbm0=-12), loop=False)
        b.play(silence + tone_pcm(1500, seconds=1.0, level_dbm0=-12), loop=False)
        a.start()
        b.start()
        time.sleep(2.0)
        st = ca.stats()
        assert br.relaying and st.relaying and not st.decoding  # forwarded as is, recorded from the tap
        rec.stop()
        wait_for(engine, RecorderStopped)
        _, data = read_wav(tmp_path / "step.wav")
        left, right = data[:, 0], data[:, 1]
        assert abs(onset(left) - onset(right)) <= 0.03
        assert share(left[int(onset(left) * 8000) + 400:][:4000], 600) > 0.9
        assert share(right[int(onset(right) * 8000) + 400:][:4000], 1500) > 0.9


def test_file_that_cannot_be_created_ends_the_recording_with_an_event(engine, tmp_path, caplog):
    """record() returns at once (the writer thread creates the file); a file it cannot create
    is a RecorderError, and a posted call that fails in the engine thread is logged."""
    ca, cb = engine.rtp_channel(), engine.rtp_channel()
    br = engine.bridge([ca, cb])
    (tmp_path / "taken.wav").mkdir()
    rec = engine.record(br, tmp_path / "taken.wav")
    ev, _ = wait_for(engine, RecorderError)
    assert ev.recorder_id == rec.id and ev.path == str(tmp_path / "taken.wav") and ev.errno > 0
    rec.stop()  # harmless after the error
    ok = engine.record(br, tmp_path / "ok.wav")
    ok.stop()
    ev, _ = wait_for(engine, RecorderStopped)
    assert ev.recorder_id == ok.id and (tmp_path / "ok.wav").stat().st_size == 44
    # the engine learns of a stale id only in its thread: logged, not raised
    stale = ca.id
    ca.close()
    caplog.set_level("WARNING", logger="firmware.media")
    from firmware._pbxcore import ffi, lib
    c = ffi.new("pbx_rtp_config_t *")
    lib.pbx_rtp_config_default(c)
    assert lib.pbx_rtp_channel_configure_nowait(engine._core.ptr, stale, c) == 0
    engine.stats()
    assert engine.poll_events() == []
    assert "configure: No such channel" in caplog.text
