"""Audio for the simulated far end: G.711 u-law, tones, WAV loops, capture and analysis.

Pure Python (the simulator must run where numpy is not installed); numpy is used for the
spectrum when it is importable.
"""
from __future__ import annotations

import math
import struct
import wave
from array import array
from collections import deque

RATE = 8000
FRAME = 160  # samples per 20 ms

# --------------------------------------------------------------------------- G.711 u-law
# ITU-T G.711 / Sun reference: bias 0x84, clip 32635, 8 segments.
_BIAS = 0x84
_CLIP = 32635


def _lin2ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not (sample & mask):
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw2lin(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + _BIAS
    t <<= (u & 0x70) >> 4
    return (_BIAS - t) if (u & 0x80) else (t - _BIAS)


ULAW_DECODE = tuple(_ulaw2lin(i) for i in range(256))
_ULAW_ENCODE = bytes(_lin2ulaw(i - 32768) for i in range(65536))


def ulaw_encode(samples) -> bytes:
    enc = _ULAW_ENCODE
    return bytes(enc[(s + 32768) & 0xFFFF] for s in samples)


def ulaw_decode(data: bytes) -> list[int]:
    dec = ULAW_DECODE
    return [dec[b] for b in data]


def u8_encode(samples) -> bytes:
    return bytes(((s >> 8) + 128) & 0xFF for s in samples)


def u8_decode(data: bytes) -> list[int]:
    return [(b - 128) << 8 for b in data]


def s16_encode(samples) -> bytes:
    a = array("h", (max(-32768, min(32767, int(s))) for s in samples))
    return a.tobytes()


def s16_decode(data: bytes) -> list[int]:
    a = array("h")
    a.frombytes(data[: len(data) // 2 * 2])
    return a.tolist()


# --------------------------------------------------------------------------- sources
class Source:
    """Something that fills 8 kHz frames; the base class is silence."""

    def read(self, n: int) -> list[int]:
        return [0] * n


Silence = Source


class Tone(Source):
    """A sum of sine waves with an optional on/off cadence (seconds)."""

    def __init__(self, freqs: tuple[float, ...] | list[float], level: float = 0.3,
                 cadence: tuple[float, float] | None = None) -> None:
        self.freqs = tuple(float(f) for f in freqs)
        self.amp = 32767 * level / max(1, len(self.freqs))
        self.cadence = cadence
        self.n = 0

    def read(self, n: int) -> list[int]:
        out = []
        for i in range(self.n, self.n + n):
            if self.cadence:
                on, off = self.cadence
                if (i / RATE) % (on + off) >= on:
                    out.append(0)
                    continue
            out.append(int(sum(math.sin(2 * math.pi * f * i / RATE) for f in self.freqs) * self.amp))
        self.n += n
        return out


class Samples(Source):
    """Plays samples once (then silence) or in a loop."""

    def __init__(self, samples: list[int], loop: bool = True) -> None:
        self.samples = samples or [0]
        self.loop = loop
        self.pos = 0

    @property
    def done(self) -> bool:
        return not self.loop and self.pos >= len(self.samples)

    def read(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            if self.pos >= len(self.samples):
                if not self.loop:
                    out += [0] * (n - len(out))
                    break
                self.pos = 0
            take = self.samples[self.pos:self.pos + n - len(out)]
            self.pos += len(take)
            out += take
        return out


def load_wav(path: str) -> list[int]:
    """Mono samples of a WAV file, resampled (nearest) to 8 kHz if needed."""
    with wave.open(path, "rb") as w:
        ch, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(frames)
    if width == 2:
        samples = s16_decode(raw)
    elif width == 1:
        samples = [(b - 128) << 8 for b in raw]
    else:
        raise ValueError(f"{path}: {width * 8}-bit WAV not supported (use 8 or 16-bit)")
    if ch > 1:
        samples = samples[::ch]
    if rate != RATE:
        step = rate / RATE
        samples = [samples[int(i * step)] for i in range(int(len(samples) / step))]
    return samples


class WavWriter:
    """A mono 16-bit 8 kHz WAV file written as audio arrives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._w = wave.open(path, "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(RATE)

    def write(self, samples: list[int]) -> None:
        self._w.writeframes(s16_encode(samples))

    def close(self) -> None:
        self._w.close()


class Capture:
    """The last seconds of audio the host sent, plus totals."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.ring: deque[int] = deque(maxlen=int(RATE * seconds))
        self.total = 0
        self.wav: WavWriter | None = None

    def add(self, samples: list[int]) -> None:
        self.ring.extend(samples)
        self.total += len(samples)
        if self.wav is not None:
            self.wav.write(samples)

    def last(self, seconds: float = 1.0) -> list[int]:
        n = int(RATE * seconds)
        data = list(self.ring)
        return data[-n:]


def rms(samples: list[int]) -> float:
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def goertzel_power(samples: list[int], freq: float) -> float:
    w = 2 * math.pi * freq / RATE
    c = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x + c * s1 - s2
        s2, s1 = s1, s0
    return s1 * s1 + s2 * s2 - c * s1 * s2


def dominant_frequency(samples: list[int]) -> float | None:
    """Frequency (Hz) of the strongest component, None for silence."""
    if len(samples) < 160 or rms(samples) < 50:
        return None
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        x = np.asarray(samples, dtype=float) * np.hanning(len(samples))
        spec = np.abs(np.fft.rfft(x))
        spec[0] = 0
        k = int(np.argmax(spec))
        if 0 < k < len(spec) - 1:  # parabolic interpolation of the peak
            a, b, c = spec[k - 1], spec[k], spec[k + 1]
            d = (a - c) / (2 * (a - 2 * b + c)) if (a - 2 * b + c) else 0.0
            k = k + d
        return float(k * RATE / len(samples))
    window = samples[-1600:]
    best, best_f = -1.0, 0.0
    for f in range(100, 3901, 20):
        p = goertzel_power(window, f)
        if p > best:
            best, best_f = p, float(f)
    for f in [best_f + d for d in range(-10, 11, 2)]:
        p = goertzel_power(window, f)
        if p > best:
            best, best_f = p, f
    return best_f


DTMF_FREQS = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}


def dtmf_samples(digit: str, ms: int = 100, level: float = 0.3) -> list[int]:
    t = Tone(DTMF_FREQS[digit], level)
    return t.read(RATE * ms // 1000)


def ulaw_silence(n: int) -> bytes:
    return bytes((0xFF,)) * n


def pack_s16(samples: list[int]) -> bytes:
    return struct.pack("<%dh" % len(samples), *samples)
