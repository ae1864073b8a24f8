"""Packet loss concealment (G.711 Appendix I style) seen through the jitter buffer.

A 20 ms packet stream is pulled every 20 ms on a simulated clock; packets are dropped and
the output is measured with numpy: continuity at the edges of the concealed stretch
(compared with the signal's own sample-to-sample change), how well the gap is filled,
attenuation over a long loss, and silence fill with plc=False.
"""
from __future__ import annotations

import numpy as np
import pytest

from firmware.media.jitter import JbStatus, JitterBuffer

FRAME = 160


def tone(n: int, f0: float = 200.0, amp: float = 10000.0) -> np.ndarray:
    t = np.arange(n) / 8000.0
    return amp * np.sin(2 * np.pi * f0 * t)


def voiced(n: int) -> np.ndarray:
    """A vowel-like signal: harmonics of a slowly gliding 110..130 Hz pitch."""
    t = np.arange(n) / 8000.0
    phase = 2 * np.pi * np.cumsum(120 + 10 * np.sin(2 * np.pi * 0.7 * t)) / 8000.0
    x = sum(np.sin(h * phase) / h for h in range(1, 9))
    return 6000.0 * x / np.max(np.abs(x))


def play(signal: np.ndarray, lost: set[int], *, plc: bool = True, stall: range = range(0)):
    """Send `signal` as 20 ms packets (those in `lost` never arrive, those in `stall` arrive
    together when the stall ends); return the output and per-frame statuses."""
    npk = len(signal) // FRAME
    pcm = np.round(signal).astype(np.int16)
    out, statuses = [], []
    # Playing from the first packet on, with arrivals like clockwork, the buffer has no
    # reason to time-scale before the loss.
    with JitterBuffer(min_delay_ms=0, max_delay_ms=200, initial_delay_ms=0, plc=plc) as jb:
        for k in range(npk + 10):
            t = 1.0 + 0.02 * k
            if k < npk and k not in lost and k not in stall:
                jb.put(k, k * FRAME, pcm[k * FRAME:(k + 1) * FRAME].tobytes(), t + 0.001)
            if stall and k == stall.stop:
                for j in stall:
                    if j not in lost:
                        jb.put(j, j * FRAME, pcm[j * FRAME:(j + 1) * FRAME].tobytes(), t + 0.001)
            audio, status = jb.get(t + 0.007)
            out.append(np.frombuffer(audio, dtype=np.int16).astype(float))
            statuses.append(status)
        stats = jb.stats()
    return np.concatenate(out), statuses, stats


def align(out: np.ndarray, signal: np.ndarray, at: int = 3200) -> int:
    """Output delay (samples) of the received signal around output position `at`: the
    shift at which the 200 samples before `at` are the signal, sample for sample."""
    for d in range(0, 1200):
        if np.array_equal(out[at - 200:at], np.round(signal[at - 200 - d:at - d])):
            return d
    raise AssertionError(f"the sent signal does not appear unaltered before output sample {at}")


END_OF_STREAM = 480     # play() pulls on after the last packet: 60 ms concealed, then silence


def concealed_span(statuses) -> tuple[int, int]:
    """First and last sample of the frames concealed while the stream was running."""
    idx = [i for i, s in enumerate(statuses[:-12]) if s == JbStatus.CONCEALED]
    assert idx, "nothing was concealed"
    return idx[0] * FRAME, (idx[-1] + 1) * FRAME


@pytest.mark.parametrize("make", [tone, voiced], ids=["tone", "voiced"])
@pytest.mark.parametrize("lost", [{60}, {60, 61}, {60, 62}])
def test_concealment_continues_the_signal_without_a_jump(make, lost):
    signal = make(150 * FRAME)
    out, statuses, stats = play(signal, lost)
    assert stats.lost == len(lost)
    start, end = concealed_span(statuses)
    own = np.max(np.abs(np.diff(signal)))
    around = out[start - FRAME:end + FRAME]
    jumps = np.abs(np.diff(around))
    assert jumps.max() <= 1.3 * own, f"largest step {jumps.max():.0f} vs the signal's own {own:.0f}"
    # Up to the loss the output is the signal itself, delayed.
    lag = align(out, signal, start - 2 * FRAME)
    assert np.array_equal(out[start - 6 * FRAME:start - 2 * FRAME],
                          np.round(signal[start - 6 * FRAME - lag:start - 2 * FRAME - lag]))


def test_a_lost_frame_of_a_steady_tone_is_filled_with_the_tone():
    signal = tone(150 * FRAME)
    out, statuses, stats = play(signal, {60})
    start, end = concealed_span(statuses)
    seg = out[start:end]
    # A pure tone is continued with its own period: the concealed stretch matches the tone
    # at some phase (the hole may have been shortened, so compare with every shift).
    best = 0.0
    for d in range(0, 321):
        ref = signal[start - 320 + d:start - 320 + d + len(seg)]
        best = max(best, float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref))))
    assert best > 0.95
    assert 0.7 < np.sqrt(np.mean(seg ** 2)) / np.sqrt(np.mean(signal ** 2)) < 1.3


def align_before(out: np.ndarray, signal: np.ndarray, at: int) -> tuple[int, int]:
    """(delay, position): the nearest clean stretch before output sample `at` (the buffer
    may have time-scaled just before it)."""
    for back in range(0, 2000, 40):
        try:
            return align(out, signal, at - back), at - back
        except AssertionError:
            continue
    raise AssertionError(f"no unaltered stretch of the signal before output sample {at}")


def onset(out: np.ndarray, signal: np.ndarray, lag: int, after: int) -> int:
    """First output sample (from `after`) that is no longer the delayed signal."""
    for i in range(after, len(out)):
        if abs(out[i] - round(signal[i - lag])) > 1:
            return i
    raise AssertionError("the output never departs from the signal")


def test_a_long_loss_fades_out_over_60_ms_then_stays_silent():
    signal = voiced(150 * FRAME)
    out, statuses, stats = play(signal, set(range(60, 75)))       # 300 ms lost
    first = concealed_span(statuses)[0]          # the frame where concealment begins
    lag, at = align_before(out, signal, first)
    start = onset(out, signal, lag, at)
    level = np.sqrt(np.mean(signal ** 2))
    blocks = [np.sqrt(np.mean(out[start + i * 80:start + (i + 1) * 80] ** 2)) for i in range(8)]
    assert blocks[0] > 0.5 * level                      # the first 10 ms at (about) full level
    assert all(b2 <= b1 * 1.1 + 1 for b1, b2 in zip(blocks[1:6], blocks[2:7]))   # falling
    assert blocks[5] < 0.3 * blocks[0]                   # 50..60 ms: mostly gone
    assert blocks[6] == 0 and blocks[7] == 0             # silent after 60 ms
    assert stats.concealed_samples - END_OF_STREAM <= 480
    assert stats.lost == 15


def test_the_stream_after_a_long_loss_fades_in_without_a_click():
    signal = voiced(200 * FRAME)
    out, statuses, _ = play(signal, set(range(60, 70)))
    resume = next(i for i in range(70, len(statuses)) if statuses[i] == JbStatus.OK
                  and statuses[i - 1] != JbStatus.OK) * FRAME
    own = np.max(np.abs(np.diff(signal)))
    assert np.max(np.abs(np.diff(out[resume - FRAME:resume + 2 * FRAME]))) <= 1.3 * own


def test_plc_off_fills_losses_with_silence_and_leaves_audio_untouched():
    signal = voiced(150 * FRAME)
    out, statuses, stats = play(signal, {60}, plc=False)
    first = concealed_span(statuses)[0]          # the frame where concealment begins
    lag, at = align_before(out, signal, first)
    start = onset(out, signal, lag, at)
    n = stats.concealed_samples - END_OF_STREAM
    assert 40 <= n <= FRAME
    assert np.all(out[start:start + n] == 0)                   # the concealed part is silence
    # Right after the silence the received audio comes back unaltered: no fade-in ramp.
    after = start + n
    assert any(np.array_equal(out[after:after + 200], np.round(signal[after - d:after + 200 - d]))
               for d in range(0, 1200))
