"""Packet-arrival traces for jitter-buffer benchmarks (reproducible: seeded, no I/O).

A trace is the life of a 20 ms RTP audio stream crossing a network: for every packet the
sender produced, when it was sent on the sender's clock and when it arrived on ours (or
None if the network lost it). The same trace is replayed into every buffer compared.

    from tools.bench.traces import TRACES, make_trace
    pkts = make_trace("wifi", seconds=600, seed=1)

Models (delays are one-way, in ms):
  lan        0.5 + exponential(0.2); nothing lost.
  wifi       3 + lognormal(median 2, sigma 0.8); contention bursts (2 % of packets start
             one, ~10 packets long) add 10..60; 0.5 % of packets take 20..250 (Pareto tail);
             the link is FIFO (no reordering); 0.2 % lost.
  spikes     20 + normal(0, 2); every 8..25 s the link stalls 200 ms and the queued packets
             then arrive back to back (delay ramps 200 -> 0).
  loss1/3/5  20 + gamma(2, 2); 1/3/5 % lost in short bursts (Gilbert model, mean burst 1.5).
  reorder    20 + normal(0, 3); 3 % of packets take a slow path (+30..60), overtaken by later ones.
  drift+300  the sender's clock runs 300 ppm fast (packets every 19.994 ms of our time),
             20 + gamma(2, 2).
  drift-300  the sender's clock runs 300 ppm slow (every 20.006 ms), 20 + gamma(2, 2).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

FRAME_MS = 20
FRAME_SAMPLES = 160

TRACES: dict[str, str] = {
    "lan": "LAN: 0.5 ms + exp(0.2 ms), no loss",
    "wifi": "Wi-Fi-like: lognormal jitter, contention bursts, Pareto tail to 250 ms, 0.2 % loss",
    "spikes": "200 ms link stalls every 8-25 s (queued packets arrive in a burst)",
    "loss1": "1 % loss (bursty), 20 ms + gamma(2, 2 ms)",
    "loss3": "3 % loss (bursty), 20 ms + gamma(2, 2 ms)",
    "loss5": "5 % loss (bursty), 20 ms + gamma(2, 2 ms)",
    "reorder": "3 % of packets +30..60 ms (reordered), 20 ms + N(0, 3 ms)",
    "drift+300": "sender clock +300 ppm, 20 ms + gamma(2, 2 ms)",
    "drift-300": "sender clock -300 ppm, 20 ms + gamma(2, 2 ms)",
}


@dataclass(frozen=True)
class Packet:
    """One packet the sender produced."""

    #: Position in the stream (0, 1, 2, ...): RTP sequence number = (seq0 + index) mod 2^16.
    index: int
    #: RTP timestamp offset from the first packet (8 kHz units, not wrapped).
    ts: int
    #: When the sender sent it, in seconds of OUR clock.
    send: float
    #: When it arrived, in seconds of our clock; None if the network lost it.
    arrival: float | None


def _gilbert_losses(rng: random.Random, n: int, rate: float, mean_burst: float = 1.5) -> list[bool]:
    if rate <= 0:
        return [False] * n
    p_bad_to_good = 1.0 / mean_burst
    p_good_to_bad = rate * p_bad_to_good / (1.0 - rate)
    lost, bad = [], False
    for _ in range(n):
        bad = (rng.random() >= p_bad_to_good) if bad else (rng.random() < p_good_to_bad)
        lost.append(bad)
    return lost


def make_trace(name: str, seconds: float = 600.0, seed: int = 1) -> list[Packet]:
    """The packets of trace `name` (see TRACES) over `seconds` of audio."""
    if name not in TRACES:
        raise ValueError(f"unknown trace {name!r}; known: {', '.join(TRACES)}")
    rng = random.Random(f"{name}:{seed}")
    n = int(seconds * 1000 / FRAME_MS)
    period = FRAME_MS / 1000.0
    if name == "drift+300":
        period /= 1 + 300e-6
    elif name == "drift-300":
        period /= 1 - 300e-6
    sends = [1.0 + i * period for i in range(n)]
    delays: list[float] = []
    lost = [False] * n
    fifo = False

    if name == "lan":
        delays = [0.5 + rng.expovariate(1 / 0.2) for _ in range(n)]
    elif name == "wifi":
        fifo = True
        burst_left = 0
        burst_extra = 0.0
        for _ in range(n):
            d = 3.0 + math.exp(rng.gauss(math.log(2.0), 0.8))
            if burst_left == 0 and rng.random() < 0.02:
                burst_left = max(1, int(rng.expovariate(1 / 10)))
                burst_extra = rng.uniform(10, 60)
            if burst_left > 0:
                d += burst_extra * rng.uniform(0.5, 1.0)
                burst_left -= 1
            if rng.random() < 0.005:
                d += min(250.0, 20.0 * rng.paretovariate(1.5))
            delays.append(d)
        lost = [rng.random() < 0.002 for _ in range(n)]
    elif name == "spikes":
        fifo = True
        delays = [20.0 + rng.gauss(0, 2.0) for _ in range(n)]
        t = rng.uniform(8, 25)
        while t < seconds:
            stall_end = t + 0.200
            for i in range(max(0, int(t / period) - 1), min(n, int(stall_end / period) + 2)):
                s = sends[i] - 1.0
                if t <= s < stall_end:
                    delays[i] = max(delays[i], (stall_end - s) * 1000 + 20.0)
            t += rng.uniform(8, 25)
    elif name.startswith("loss"):
        rate = int(name[4:]) / 100
        delays = [20.0 + rng.gammavariate(2, 2.0) for _ in range(n)]
        lost = _gilbert_losses(rng, n, rate)
    elif name == "reorder":
        delays = [20.0 + rng.gauss(0, 3.0) for _ in range(n)]
        for i in range(n):
            if rng.random() < 0.03:
                delays[i] += rng.uniform(30, 60)
    else:   # drift
        delays = [20.0 + rng.gammavariate(2, 2.0) for _ in range(n)]

    arrivals: list[float | None] = []
    last = 0.0
    for i in range(n):
        a = sends[i] + max(0.0, delays[i]) / 1000.0
        if fifo:
            a = max(a, last + 0.00005)
            last = a
        arrivals.append(None if lost[i] else a)
    return [Packet(i, i * FRAME_SAMPLES, sends[i], arrivals[i]) for i in range(n)]


def network_loss_pct(packets: list[Packet]) -> float:
    """Share of packets the network lost, in percent."""
    return 100.0 * sum(p.arrival is None for p in packets) / max(1, len(packets))
