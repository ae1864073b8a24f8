"""A small RTP phone for tests and tools: a real UDP endpoint that streams G.711 audio
paced at its ptime, sends RFC 4733 digits, and keeps what it receives (decoded).

Used by the engine's integration tests and by anyone testing calls through the box
without a softphone::

    with RtpPhone(payload_type=0) as ph:
        ph.send_to(("127.0.0.1", ch.local_port))
        ph.play(tone_pcm(1000, seconds=1.0))
        ph.start()
        ...
        audio = ph.received_pcm()          # s16le bytes of everything heard
"""
from __future__ import annotations

import math
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from firmware._pbxcore import ffi, lib

_DIGITS = "0123456789*#ABCD"


def tone_pcm(*freqs: float, seconds: float = 1.0, level_dbm0: float = -10.0, rate: int = 8000) -> bytes:
    """s16le samples of a sum of sines, each at level_dbm0 (0 dBm0 = amplitude 22785)."""
    amp = 22785.0 * 10 ** (level_dbm0 / 20.0)
    n = int(round(seconds * rate))
    out = bytearray(2 * n)
    for i in range(n):
        v = sum(math.sin(2 * math.pi * f * i / rate) for f in freqs) * amp
        struct.pack_into("<h", out, 2 * i, max(-32768, min(32767, int(round(v)))))
    return bytes(out)


def encode(pcm: bytes, payload_type: int) -> bytes:
    """G.711 encode s16le bytes (PT 0 = u-law, 8 = A-law)."""
    n = len(pcm) // 2
    out = ffi.new("uint8_t[]", max(n, 1))
    src = ffi.from_buffer("int16_t[]", pcm)
    (lib.pbx_alaw_encode if payload_type == 8 else lib.pbx_ulaw_encode)(src, out, n)
    return bytes(ffi.buffer(out, n))


def decode(payload: bytes, payload_type: int) -> bytes:
    """G.711 decode to s16le bytes."""
    n = len(payload)
    out = ffi.new("int16_t[]", max(n, 1))
    src = ffi.from_buffer("uint8_t[]", payload)
    (lib.pbx_alaw_decode if payload_type == 8 else lib.pbx_ulaw_decode)(src, out, n)
    return bytes(ffi.buffer(out, 2 * n))


@dataclass
class Received:
    """One packet the phone got."""

    time: float
    addr: tuple[str, int]
    marker: int
    payload_type: int
    seq: int
    ts: int
    ssrc: int
    payload: bytes


@dataclass
class RtpPhone:
    """A UDP RTP endpoint on loopback with a sender thread paced at ptime_ms."""

    host: str = "127.0.0.1"
    payload_type: int = 0
    ptime_ms: int = 20
    telephone_event_pt: int = 101
    ssrc: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    port: int = 0
    #: Impairments of what the phone sends: drop every Nth audio packet, swap every Mth with the next.
    drop_every: int = 0
    swap_every: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, self.port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.dest: tuple[str, int] | None = None
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.ts = int.from_bytes(os.urandom(4), "big")
        self.received: list[Received] = []
        self._pcm = b""
        self._pos = 0
        self._loop = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dtmf: list[tuple[str, int]] = []
        self._held: bytes | None = None
        self._count = 0
        self.sending = True

    # ---- set-up ----
    def send_to(self, addr: tuple[str, int]) -> None:
        self.dest = addr

    def play(self, pcm: bytes, loop: bool = True) -> None:
        """Audio (s16le 8 kHz) the phone streams from now on; silence when it runs out (loop=False)."""
        with self._lock:
            self._pcm, self._pos, self._loop = pcm, 0, loop

    def start(self) -> "RtpPhone":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.sock.close()

    def __enter__(self) -> "RtpPhone":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- sending ----
    def packet(self, payload: bytes, pt: int | None = None, marker: int = 0, seq: int | None = None,
               ts: int | None = None, ssrc: int | None = None) -> bytes:
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | (self.payload_type if pt is None else pt),
                           (self.seq if seq is None else seq) & 0xFFFF, (self.ts if ts is None else ts) & 0xFFFFFFFF,
                           self.ssrc if ssrc is None else ssrc) + payload

    def send_raw(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        self.sock.sendto(data, addr or self.dest)

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 digit: start, updates every ptime, 3 end packets (audio paused)."""
        with self._lock:
            self._dtmf.append((digit, duration_ms))

    def _next_frame(self, n: int) -> bytes:
        with self._lock:
            if not self._pcm:
                return b"\0\0" * n
            out = bytearray()
            while len(out) < 2 * n:
                if self._pos >= len(self._pcm):
                    if not self._loop:
                        out += b"\0" * (2 * n - len(out))
                        break
                    self._pos = 0
                take = min(2 * n - len(out), len(self._pcm) - self._pos)
                out += self._pcm[self._pos:self._pos + take]
                self._pos += take
            return bytes(out)

    def _run(self) -> None:
        n = self.ptime_ms * 8
        period = self.ptime_ms / 1000.0
        t_next = time.monotonic()
        event: tuple[str, int, int, int, int] | None = None  # digit, total, elapsed, ts, ends left
        marker = 1
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = max(0.0, t_next - now)
            r, _, _ = select.select([self.sock], [], [], timeout)
            if r:
                self._drain()
                continue
            t_next += period
            if self.dest is None or not self.sending:
                self.ts = (self.ts + n) & 0xFFFFFFFF
                continue
            if event is None:
                with self._lock:
                    if self._dtmf:
                        d, ms = self._dtmf.pop(0)
                        event = (d, ms * 8, 0, self.ts, 3)
            if event is not None:
                d, total, elapsed, ets, ends = event
                elapsed += n
                end = elapsed >= total
                dur = min(elapsed, total)
                pl = bytes([_DIGITS.index(d), (0x80 if end else 0) | 10]) + struct.pack("!H", dur)
                self.sock.sendto(self.packet(pl, pt=self.telephone_event_pt, marker=int(elapsed == n), ts=ets),
                                 self.dest)
                self.seq += 1
                self._next_frame(n)
                self.ts = (self.ts + n) & 0xFFFFFFFF
                if end:
                    ends -= 1
                event = None if end and ends == 0 else (d, total, elapsed, ets, ends)
                continue
            data = self.packet(encode(self._next_frame(n), self.payload_type), marker=marker)
            self._count += 1
            if self.drop_every and self._count % self.drop_every == 0:
                pass
            elif self.swap_every and self._count % self.swap_every == 0 and self._held is None:
                self._held = data
            else:
                self.sock.sendto(data, self.dest)
                if self._held is not None:
                    self.sock.sendto(self._held, self.dest)
                    self._held = None
            marker = 0
            self.seq += 1
            self.ts = (self.ts + n) & 0xFFFFFFFF
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < 12:
                continue
            b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
            off = 12 + 4 * (b0 & 0x0F)
            self.received.append(Received(time.monotonic(), addr, b1 >> 7, b1 & 0x7F, seq, ts, ssrc, data[off:]))

    # ---- what was heard ----
    def collect(self, seconds: float) -> None:
        """Receive for a while (when no sender thread runs)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if r:
                self._drain()

    def audio_packets(self) -> list[Received]:
        return [p for p in list(self.received) if p.payload_type in (0, 8)]

    def received_pcm(self, since: float = 0.0, until: float = float("inf")) -> bytes:
        """Decoded audio of every G.711 packet received in [since, until) (monotonic), in arrival order."""
        return b"".join(decode(p.payload, p.payload_type) for p in self.audio_packets() if since <= p.time < until)

    def received_digits(self) -> list[tuple[str, int]]:
        """RFC 4733 digits received (once each, at their end): (digit, duration in samples)."""
        out: list[tuple[str, int]] = []
        done: set[int] = set()
        for p in list(self.received):
            if p.payload_type != self.telephone_event_pt or len(p.payload) < 4:
                continue
            if p.payload[1] & 0x80 and p.ts not in done:
                done.add(p.ts)
                out.append((_DIGITS[p.payload[0]] if p.payload[0] < 16 else "?", struct.unpack("!H", p.payload[2:4])[0]))
        return out
