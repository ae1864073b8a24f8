"""The engine's adaptive jitter buffer with packet loss concealment, as a Python object.

The media engine runs one of these inside every channel whose audio it decodes; this
wrapper gives Python the same buffer for tests, tools and simulations. It is sans-I/O:
every time is passed in by the caller (seconds on a monotonic clock), audio is 8 kHz
16-bit mono in host byte order (little-endian on every board we support).

    jb = JitterBuffer(min_delay_ms=20, max_delay_ms=500, initial_delay_ms=60, plc=True)
    jb.put(seq, ts, pcm_bytes, arrival_s=now)       # for every received packet
    audio, status = jb.get(now, nsamples=160)       # every 20 ms of playout
    jb.stats().late_discarded
"""
from __future__ import annotations

import array
import enum
import math
from dataclasses import dataclass
from typing import Union

from firmware._pbxcore import ffi, lib

from .errors import InvalidArgument, InvalidState, error_for

__all__ = ["JitterBuffer", "JbStats", "JbStatus", "PutResult", "MAX_PUT_SAMPLES", "MAX_GET_SAMPLES"]

#: Largest packet put() accepts, in samples (60 ms).
MAX_PUT_SAMPLES = 480
#: Largest frame get() returns, in samples (120 ms).
MAX_GET_SAMPLES = 960
#: Largest max_delay_ms accepted.
MAX_DELAY_MS = 2000

Pcm = Union[bytes, bytearray, memoryview, "array.array[int]"]


class JbStatus(enum.IntEnum):
    """What a get() produced."""

    #: All samples are received audio.
    OK = 0
    #: Some or all samples were concealed (or silence-filled with plc=False).
    CONCEALED = 1
    #: Nothing to play: before the first packet, in a pause, or after the stream ended.
    SILENCE = 2


class PutResult(enum.IntEnum):
    """What put() did with a packet."""

    #: It will be played.
    STORED = 0
    #: Its play time had passed: discarded (counted in ``late_discarded``).
    LATE = 1
    #: Already received: discarded (counted in ``duplicated``).
    DUPLICATE = 2
    #: A new timeline (timestamp jump or a new source): the buffer was flushed, packet stored.
    RESYNC = 3


@dataclass(frozen=True)
class JbStats:
    """Counters and delays of one jitter buffer."""

    #: Packets accepted by put (duplicates excluded, late ones included).
    received: int
    #: Packets never received (sequence gaps, RFC 3550 A.3).
    lost: int
    #: Packets that arrived after their play time.
    late_discarded: int
    #: Packets received more than once.
    duplicated: int
    #: Packets that arrived after a higher sequence number.
    reordered: int
    #: Output samples made up for missing audio.
    concealed_samples: int
    #: Output samples of received audio (time-scaled audio included).
    played_samples: int
    #: Output silence: before the first packet, in pauses (over 60 ms without audio), after the end.
    silence_samples: int
    #: Input samples removed by time-scaling (sender clock fast, or delay going down).
    dropped_samples_drift: int
    #: Output samples added by time-scaling (sender clock slow, or delay going up).
    inserted_samples_drift: int
    #: Received samples discarded to stay within max_delay_ms or after the reader stalled.
    overflow_dropped_samples: int
    #: Timeline restarts (timestamp jump, new source).
    resyncs: int
    #: How long a packet's first sample waits after arrival, averaged, in ms.
    current_delay_ms: int
    #: What current_delay_ms is steered to, in ms.
    target_delay_ms: int
    #: Audio held right now ahead of the play point, in ms.
    buffered_ms: int
    #: True once a stream is being played.
    playing: bool
    #: RTP timestamp of the next sample to play (meaningful while playing).
    play_ts: int
    #: RFC 3550 interarrival jitter (A.8), in ms.
    jitter_ms: float

    @property
    def total_samples(self) -> int:
        """Every sample get() has returned: played + concealed + silence."""
        return self.played_samples + self.concealed_samples + self.silence_samples


_STATS_FIELDS = tuple(f for f in JbStats.__dataclass_fields__)


def _int_in(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _time_us(name: str, seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidArgument(f"{name} must be a number of seconds, not {type(seconds).__name__}")
    if not math.isfinite(seconds) or abs(seconds) > 1e12:
        raise InvalidArgument(f"{name} must be a finite time in seconds, got {seconds!r}")
    return round(seconds * 1_000_000)


class JitterBuffer:
    """An adaptive jitter buffer for one 8 kHz audio stream (see the module docstring).

    The C object is freed by :meth:`close` (or leaving a ``with`` block), and by the
    garbage collector as a backstop. Not thread-safe: use one buffer from one thread.
    """

    def __init__(self, *, min_delay_ms: int = 20, max_delay_ms: int = 500, initial_delay_ms: int = 60,
                 plc: bool = True) -> None:
        p = ffi.new("pbx_jb_params_t *")
        p.min_delay_ms = _int_in("min_delay_ms", min_delay_ms, 0, MAX_DELAY_MS)
        p.max_delay_ms = _int_in("max_delay_ms", max_delay_ms, 1, MAX_DELAY_MS)
        p.initial_delay_ms = _int_in("initial_delay_ms", initial_delay_ms, 0, MAX_DELAY_MS)
        if min_delay_ms > max_delay_ms:
            raise InvalidArgument(f"min_delay_ms ({min_delay_ms}) is above max_delay_ms ({max_delay_ms})")
        p.plc = 1 if plc else 0
        out = ffi.new("pbx_jb_t **")
        rc = lib.pbx_jb_create(p, out)
        if rc < 0:
            raise error_for(rc, "jitter buffer")
        self._jb = ffi.gc(out[0], lib.pbx_jb_destroy)
        self._in = ffi.new("int16_t[]", MAX_PUT_SAMPLES)
        self._out = ffi.new("int16_t[]", MAX_GET_SAMPLES)
        self._out_buf = ffi.buffer(self._out)
        self._st = ffi.new("pbx_jb_stats_t *")
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.initial_delay_ms = initial_delay_ms
        self.plc = bool(plc)

    # -- lifetime -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._jb is None

    def close(self) -> None:
        """Free the C buffer now. Further calls raise InvalidState; closing twice is fine."""
        if self._jb is not None:
            jb, self._jb = self._jb, None
            ffi.release(jb)

    def __enter__(self) -> "JitterBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self) -> object:
        if self._jb is None:
            raise InvalidState("jitter buffer is closed")
        return self._jb

    # -- audio ------------------------------------------------------------------------------
    def put(self, seq: int, ts: int, pcm: Pcm, arrival_s: float) -> PutResult:
        """Hand over one received packet of decoded audio.

        ``seq`` and ``ts`` are the RTP sequence number and timestamp (8 kHz units); ``pcm``
        holds 1..480 samples as 16-bit host-order bytes or an ``array('h')``;
        ``arrival_s`` is when it arrived.
        """
        jb = self._handle()
        _int_in("seq", seq, 0, 0xFFFF)
        _int_in("ts", ts, 0, 0xFFFFFFFF)
        arrival = _time_us("arrival_s", arrival_s)
        if isinstance(pcm, array.array):
            if pcm.itemsize != 2 or pcm.typecode not in "hH":
                raise InvalidArgument(f"pcm array must hold 16-bit samples (typecode 'h'), not {pcm.typecode!r}")
            data = memoryview(pcm).cast("B")
        elif isinstance(pcm, (bytes, bytearray, memoryview)):
            data = memoryview(pcm).cast("B") if isinstance(pcm, memoryview) else pcm
        else:
            raise InvalidArgument(f"pcm must be bytes or array('h'), not {type(pcm).__name__}")
        nbytes = len(data)
        if nbytes % 2:
            raise InvalidArgument(f"pcm has an odd number of bytes ({nbytes}): 16-bit samples expected")
        n = nbytes // 2
        if not 1 <= n <= MAX_PUT_SAMPLES:
            raise InvalidArgument(f"pcm must hold 1..{MAX_PUT_SAMPLES} samples, got {n}")
        ffi.memmove(self._in, data, nbytes)
        rc = lib.pbx_jb_put(jb, seq, ts, self._in, n, arrival)
        if rc < 0:
            raise error_for(rc, "jitter buffer put")
        return PutResult(rc)

    def get(self, now_s: float, nsamples: int = 160) -> tuple[bytes, JbStatus]:
        """Pull exactly ``nsamples`` (1..960) for playout at ``now_s``.

        Returns the audio (16-bit host-order bytes, always ``2 * nsamples`` long) and what
        it is. Call it at the playout rate (every 20 ms for 160 samples).
        """
        jb = self._handle()
        _int_in("nsamples", nsamples, 1, MAX_GET_SAMPLES)
        now = _time_us("now_s", now_s)
        rc = lib.pbx_jb_get(jb, self._out, nsamples, now)
        if rc < 0:
            raise error_for(rc, "jitter buffer get")
        return self._out_buf[: 2 * nsamples], JbStatus(rc)

    def reset(self) -> None:
        """Forget all audio, statistics and counters (as if new)."""
        lib.pbx_jb_reset(self._handle())

    def resync(self) -> None:
        """The source changed (new SSRC): drop queued audio and sequence context, keep the delay."""
        lib.pbx_jb_resync(self._handle())

    def stats(self) -> JbStats:
        """A snapshot of the counters and delays."""
        lib.pbx_jb_get_stats(self._handle(), self._st)
        st = self._st
        values = {name: getattr(st, name) for name in _STATS_FIELDS}
        values["playing"] = bool(values["playing"])
        return JbStats(**values)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<JitterBuffer {state} min={self.min_delay_ms} max={self.max_delay_ms} "
                f"initial={self.initial_delay_ms} plc={self.plc}>")
