"""The Python face of the jitter buffer: argument checking, typed errors, lifetime."""
from __future__ import annotations

import array
import gc
import math

import pytest

from firmware.media.errors import InvalidArgument, InvalidState, MediaError
from firmware.media.jitter import JbStats, JbStatus, JitterBuffer, PutResult

FRAME = 160


def frame(k: int) -> bytes:
    return array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * (k * FRAME + i) / 8000))
                             for i in range(FRAME))).tobytes()


def test_a_stream_comes_out_as_it_went_in():
    with JitterBuffer(min_delay_ms=20, max_delay_ms=20, initial_delay_ms=20) as jb:
        sent, got = b"", b""
        for k in range(50):
            assert jb.put(k, k * FRAME, frame(k), 1.0 + 0.02 * k) is PutResult.STORED
            sent += frame(k)
            audio, status = jb.get(1.0 + 0.02 * k + 0.005)
            assert len(audio) == 2 * FRAME
            if status == JbStatus.OK:
                got += audio
        assert got and got in sent
        s = jb.stats()
        assert isinstance(s, JbStats) and s.received == 50 and s.lost == 0 and s.playing
        assert s.total_samples == 50 * FRAME


def test_inputs_of_every_accepted_kind():
    with JitterBuffer() as jb:
        a = array.array("h", [1000] * FRAME)
        assert jb.put(1, 0, a, 0.0) is PutResult.STORED
        assert jb.put(2, FRAME, bytearray(a.tobytes()), 0.02) is PutResult.STORED
        assert jb.put(3, 2 * FRAME, memoryview(a.tobytes()), 0.04) is PutResult.STORED
        assert jb.put(3, 2 * FRAME, a, 0.05) is PutResult.DUPLICATE
        audio, _ = jb.get(0.05, nsamples=80)
        assert len(audio) == 160


@pytest.mark.parametrize("call, message", [
    (lambda jb: jb.put(-1, 0, frame(0), 0.0), "seq must be in 0..65535"),
    (lambda jb: jb.put(70000, 0, frame(0), 0.0), "seq must be in 0..65535"),
    (lambda jb: jb.put(1, 2**32, frame(0), 0.0), "ts must be in 0..4294967295"),
    (lambda jb: jb.put(1, 0, b"\x00" * 3, 0.0), "odd number of bytes"),
    (lambda jb: jb.put(1, 0, b"", 0.0), "1..480 samples, got 0"),
    (lambda jb: jb.put(1, 0, b"\x00" * 962, 0.0), "1..480 samples, got 481"),
    (lambda jb: jb.put(1, 0, array.array("i", [0] * 10), 0.0), "typecode 'h'"),
    (lambda jb: jb.put(1, 0, [0] * 160, 0.0), "bytes or array('h')"),
    (lambda jb: jb.put(1, 0, frame(0), float("nan")), "finite time"),
    (lambda jb: jb.put(1, 0, frame(0), "now"), "number of seconds"),
    (lambda jb: jb.get(0.0, nsamples=0), "nsamples must be in 1..960"),
    (lambda jb: jb.get(0.0, nsamples=961), "nsamples must be in 1..960"),
    (lambda jb: jb.put(True, 0, frame(0), 0.0), "seq must be an int"),
])
def test_bad_arguments_raise_clear_typed_errors(call, message):
    with JitterBuffer() as jb:
        with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
            call(jb)
        assert jb.stats().received == 0          # nothing was stored


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_delay_ms=100, max_delay_ms=50), "min_delay_ms \\(100\\) is above max_delay_ms \\(50\\)"),
    (dict(max_delay_ms=0), "max_delay_ms must be in 1..2000"),
    (dict(max_delay_ms=5000), "max_delay_ms must be in 1..2000"),
    (dict(initial_delay_ms=-1), "initial_delay_ms must be in 0..2000"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        JitterBuffer(**kwargs)


def test_errors_are_media_errors_and_value_errors():
    with pytest.raises(MediaError):
        JitterBuffer(max_delay_ms=0)
    with pytest.raises(ValueError):
        JitterBuffer(max_delay_ms=0)


def test_close_is_deterministic_and_idempotent():
    jb = JitterBuffer()
    jb.close()
    jb.close()
    assert jb.closed and "closed" in repr(jb)
    for call in (lambda: jb.get(0.0), lambda: jb.put(1, 0, frame(0), 0.0), jb.stats, jb.reset, jb.resync):
        with pytest.raises(InvalidState, match="closed"):
            call()


def test_unclosed_buffers_are_freed_by_the_collector():
    for _ in range(200):
        jb = JitterBuffer(max_delay_ms=2000)
        jb.put(1, 0, frame(0), 0.0)
    del jb
    gc.collect()


def test_reset_forgets_everything_and_resync_keeps_the_delay():
    with JitterBuffer() as jb:
        for k in range(100):
            jb.put(k, k * FRAME, frame(k), 1.0 + 0.02 * k)
            jb.get(1.0 + 0.02 * k + 0.005)
        before = jb.stats()
        jb.resync()                               # new SSRC: new numbering, same network
        for k in range(100, 150):
            jb.put((k + 30000) & 0xFFFF, k * FRAME + 99999, frame(k), 1.0 + 0.02 * k)
            jb.get(1.0 + 0.02 * k + 0.005)
        after = jb.stats()
        assert after.resyncs == 1 and after.late_discarded == 0 and after.lost == 0
        assert abs(after.target_delay_ms - before.target_delay_ms) <= 20
        jb.reset()
        s = jb.stats()
        assert s.received == 0 and not s.playing and s.total_samples == 0
        assert jb.get(10.0)[1] == JbStatus.SILENCE
