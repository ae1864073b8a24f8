"""Clock drift: a sender 300 ppm fast or slow for 10 simulated minutes.

The buffer must absorb 180 ms of drift by time-scaling: the delay stays bounded, there is
no run of underruns, and the output has no clicks (no sample step larger than the audio's
own). Time is simulated; the whole test takes a few seconds.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from firmware.media.jitter import JbStatus, JitterBuffer

FRAME = 160
MINUTES = 10


def talk(seconds: float = 4.0) -> np.ndarray:
    """Voiced speech-like audio: gliding-pitch vowels with pauses, looped by the test."""
    n = int(seconds * 8000)
    t = np.arange(n) / 8000.0
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 8000.0
    x = sum(np.sin(h * phase) / h for h in range(1, 9))
    envelope = np.clip(np.sin(2 * np.pi * t / 2.0) * 1.6, 0, 1)      # 0.6 s pauses
    return np.round(5000 * envelope * x / np.max(np.abs(x))).astype(np.int16)


@pytest.mark.parametrize("ppm", [300, -300])
def test_drift_is_absorbed_without_underruns_or_clicks(ppm):
    audio = talk()
    loop = len(audio) - FRAME
    period = 0.020 / (1 + ppm * 1e-6)            # the sender's 20 ms on our clock
    rng = random.Random(ppm)
    npk = MINUTES * 60 * 50
    arrivals = sorted((1.0 + k * period + 0.020 + rng.gammavariate(2, 0.002), k) for k in range(npk))
    out = np.empty((int(npk * 1.01) + 100) * FRAME, dtype=np.int16)
    statuses = []
    worst_delay = worst_buffer = 0
    ai = 0
    with JitterBuffer(min_delay_ms=20, max_delay_ms=300, initial_delay_ms=60) as jb:
        k = 0
        t = 1.007
        end = arrivals[-1][0] + 0.2
        while t < end:
            while ai < npk and arrivals[ai][0] <= t:
                a, idx = arrivals[ai]
                start = (idx * FRAME) % loop
                jb.put(idx & 0xFFFF, (idx * FRAME) & 0xFFFFFFFF, audio[start:start + FRAME].tobytes(), a)
                ai += 1
            pcm, status = jb.get(t)
            out[k * FRAME:(k + 1) * FRAME] = np.frombuffer(pcm, dtype=np.int16)
            statuses.append(status)
            if k % 50 == 0:
                s = jb.stats()
                worst_delay = max(worst_delay, s.current_delay_ms)
                worst_buffer = max(worst_buffer, s.buffered_ms)
            k += 1
            t += 0.020
        s = jb.stats()
    out = out[:k * FRAME].astype(float)
    played = statuses[10:-15]                  # after the start, before the stream ends
    concealed = sum(st == JbStatus.CONCEALED for st in played)
    runs = max((len(r) for r in "".join("c" if st != JbStatus.OK else " " for st in played).split()), default=0)

    drift_samples = abs(ppm) * 1e-6 * MINUTES * 60 * 8000           # 1440 samples = 180 ms
    settle = 320                        # the start: from the initial 60 ms down to the 20 ms floor
    moved = s.dropped_samples_drift - s.inserted_samples_drift - settle
    assert moved * np.sign(ppm) == pytest.approx(drift_samples, abs=320)
    assert s.dropped_samples_drift + s.inserted_samples_drift <= drift_samples + settle + 1000  # no churn
    assert worst_delay <= 60 and worst_buffer <= 80
    assert s.late_discarded <= npk * 0.002
    assert concealed <= len(played) * 0.002 and runs <= 2
    assert s.overflow_dropped_samples == 0
    own = np.max(np.abs(np.diff(audio.astype(float))))
    assert np.max(np.abs(np.diff(out[10 * FRAME:-15 * FRAME]))) <= 1.2 * own
