"""The default music on hold: a calm melody synthesised at start-up (8 kHz, 16-bit).

A box must never play silence to a waiting caller (they would think the line is dead), and
must not ship copyrighted music: this is a public-domain tune (Pachelbel's canon bass line
with a simple arpeggio above it), synthesised with soft sine tones and envelopes.
"""
from __future__ import annotations

import math
import struct

RATE = 8000
_BASS = (146.83, 110.00, 123.47, 92.50, 98.00, 73.42, 98.00, 110.00)  # D A Bm F#m G D G A
_CHORDS = ((293.66, 369.99, 440.00), (277.18, 329.63, 440.00), (246.94, 293.66, 369.99),
           (277.18, 369.99, 440.00), (246.94, 293.66, 392.00), (293.66, 369.99, 440.00),
           (246.94, 293.66, 392.00), (277.18, 329.63, 440.00))


def music_on_hold_pcm(beat_s: float = 0.5, level: float = 0.18) -> bytes:
    """About 16 seconds of music as little-endian 16-bit samples, looping seamlessly."""
    out = bytearray()
    n_beat = int(beat_s * RATE)
    for bass, chord in zip(_BASS, _CHORDS):
        for step in range(4):  # four arpeggio notes per bass note
            f_top = chord[step % 3] * (2 if step == 3 else 1)
            for i in range(n_beat):
                t = i / RATE
                env = min(1.0, i / 160) * math.exp(-2.2 * t)
                bass_env = min(1.0, (step * n_beat + i) / 400) * math.exp(-0.6 * (step * beat_s + t))
                v = (0.55 * env * math.sin(2 * math.pi * f_top * t)
                     + 0.45 * bass_env * math.sin(2 * math.pi * bass * (step * beat_s + t)))
                out += struct.pack("<h", int(32767 * level * v))
    return bytes(out)
