"""Audio helpers for tests: tones, u-law/8-bit conversions, frequency and correlation checks."""
from __future__ import annotations

import math
import wave

import numpy as np

RATE = 8000


def tone(freq: float, seconds: float, amplitude: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16)


def to_u8(pcm: np.ndarray) -> bytes:
    """16-bit signed -> 8-bit unsigned (pyVoIP's audio format)."""
    return ((pcm.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()


def from_u8(data: bytes) -> np.ndarray:
    return ((np.frombuffer(data, dtype=np.uint8).astype(np.int32) - 128) << 8).astype(np.int16)


_ULAW_BIAS = 0x84


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    x = pcm.astype(np.int32)
    mask = np.where(x < 0, 0x7F, 0xFF)
    x = np.where(x < 0, _ULAW_BIAS - x - 1, _ULAW_BIAS + x)
    x = np.minimum(x, 0x7FFF + _ULAW_BIAS)
    seg = np.floor(np.log2(np.maximum(x | 0xFF, 1))).astype(np.int32) - 7
    out = np.where(seg >= 8, 0x7F ^ mask, ((seg << 4) | ((x >> (seg + 3)) & 0x0F)) ^ mask)
    return out.astype(np.uint8).tobytes()


def dominant_frequency(pcm: np.ndarray, rate: int = RATE) -> float:
    """Frequency (Hz) of the strongest spectral peak; 0.0 for silence."""
    x = pcm.astype(np.float64)
    if len(x) < 64 or np.max(np.abs(x)) < 50:
        return 0.0
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w))
    spec[0] = 0
    return float(np.argmax(spec) * rate / len(x))


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def band_energy_ratio(pcm: np.ndarray, freq: float, rate: int = RATE, width: float = 40.0) -> float:
    """Share of the signal's energy within +-width Hz of freq (0..1)."""
    x = pcm.astype(np.float64)
    if len(x) < 64:
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    total = spec[1:].sum()
    if total <= 0:
        return 0.0
    return float(spec[(f > freq - width) & (f < freq + width)].sum() / total)


def read_wav(path) -> tuple[np.ndarray, int, int]:
    """(samples as int16 array shaped (n, channels), rate, channels)."""
    with wave.open(str(path)) as w:
        ch, rate, width = w.getnchannels(), w.getframerate(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width == 2:
        a = np.frombuffer(raw, dtype="<i2")
    elif width == 1:
        a = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8).astype(np.int16)
    else:
        raise ValueError(f"unsupported sample width {width}")
    return a.reshape(-1, ch), rate, ch


def write_wav(path, pcm: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
