#!/usr/bin/env python3
"""Benchmark: our jitter buffer (firmware.media.jitter) vs speexdsp's, on the same traces.

    .venv/bin/python tools/bench/jitter.py [--quick] [--json FILE] [--seconds S] [--trace NAME ...]

Both buffers see the same packet-arrival traces (tools/bench/traces.py: LAN, Wi-Fi-like,
200 ms spikes, 1/3/5 % loss, reordering, +-300 ppm drift; 10 minutes of 20 ms packets
each, 2 minutes with --quick) and are pulled every 20 ms by the same playout clock.

How they are driven
  ours      JitterBuffer(min_delay_ms=0, max_delay_ms=500, initial_delay_ms=40, plc=True):
            put(seq, ts, pcm, arrival) for every packet at its arrival time, get(now, 160)
            every 20 ms. The audio is real speech (espeak-ng, four languages, with pauses),
            because our buffer time-scales only where the audio allows it.
  speexdsp  as its own client (speexclient) does: jitter_buffer_init(160) (delay step and
            concealment size 160), jitter_buffer_put() at arrival with the RTP timestamp and
            span 160, then every 20 ms jitter_buffer_get(160) followed by
            jitter_buffer_tick(), which re-optimises the delay (auto-adjust), with its
            defaults (max late rate 4 %, automatic late cost, margin 0). --tune-speex also
            runs max late rate 2 % / 8 %, late cost 40 and delay step 80: each trades
            concealment for delay differently, none is better than the defaults on both.

What is measured
  concealed %   share of playout frames (from each buffer's first real frame to the end of
                the trace) that were not received audio: concealed, silence-filled or, for
                speexdsp, MISSING/INSERTION frames. Packets the network lost are in it for
                both (the network loss is reported beside it): both must conceal them.
  added delay   for every packet that was played: when its first sample was played minus
                when it arrived (a frame handed out at time t plays its sample k at
                t + k/8000 s). Mean and 95th percentile, in ms.
"""
from __future__ import annotations

import argparse
import array
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.media.jitter import JbStatus, JitterBuffer, PutResult  # noqa: E402
from tools.bench import traces as tr  # noqa: E402

FRAME = tr.FRAME_SAMPLES
SEQ0 = 65000                 # both wraps happen inside every trace
TS0 = 2**32 - 16000
GET_PHASE = 0.0073           # our playout clock ticks 7.3 ms after the sender's
OURS = dict(min_delay_ms=0, max_delay_ms=500, initial_delay_ms=0, plc=True)
SENTENCES = [
    ("en", "Thank you for calling. All our operators are busy at the moment. Please hold the line."),
    ("pl", "Dzień dobry, w czym mogę pomóc? Proszę podać numer zamówienia."),
    ("ru", "Здравствуйте, ваш заказ уже в пункте выдачи. Спасибо за звонок."),
    ("bg", "Добър ден, поръчката ви е готова. Можете да я вземете днес."),
    ("en", "Your call is important to us. Press one for sales, two for service."),
]


@dataclass
class Result:
    concealed_pct: float
    mean_delay_ms: float
    p95_delay_ms: float
    frames: int
    played_packets: int
    extra: dict


def speech(cache: Path) -> array.array:
    """About 30 s of 8 kHz speech with pauses (espeak-ng + sox), or a voiced synthetic signal."""
    out = cache / "speech.s16"
    if out.exists():
        return array.array("h", out.read_bytes())
    pcm = array.array("h")
    if shutil.which("espeak-ng") and shutil.which("sox"):
        try:
            for lang, text in SENTENCES:
                wav = subprocess.run(["espeak-ng", "-v", lang, "-s", "150", "--stdout", text],
                                     check=True, capture_output=True, timeout=60).stdout
                raw = subprocess.run(["sox", "-t", "wav", "-", "-r", "8000", "-c", "1", "-b", "16",
                                      "-e", "signed-integer", "-t", "raw", "-", "gain", "-n", "-3"],
                                     input=wav, check=True, capture_output=True, timeout=60).stdout
                pcm.frombytes(raw)
                pcm.extend([0] * 4000)          # 0.5 s pause between sentences
        except (OSError, subprocess.SubprocessError):
            pcm = array.array("h")
    if len(pcm) < 8000:
        for k in range(30 * 8000):              # voiced vowels with a gliding pitch, and pauses
            t = k / 8000
            env = max(0.0, math.sin(2 * math.pi * t / 3.0))
            f0 = 120 + 40 * math.sin(2 * math.pi * t / 1.7)
            v = sum(math.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 8))
            pcm.append(int(6000 * env * v / 2))
    out.write_bytes(pcm.tobytes())
    return pcm


def playout_clock(packets):
    first = packets[0].send
    end = packets[-1].send + 0.02
    n = int((end - first) / 0.02) + 1
    return [first + GET_PHASE + k * 0.02 for k in range(n)], end


def arrivals(packets):
    got = [p for p in packets if p.arrival is not None]
    got.sort(key=lambda p: (p.arrival, p.index))
    return got


def summarise(delays: list[float], real: list[int], window_start: int, frames: int, extra: dict) -> Result:
    counted = real[window_start:]
    concealed = 100.0 * (1.0 - sum(counted) / (FRAME * len(counted))) if counted else 100.0
    delays.sort()
    mean = sum(delays) / len(delays) if delays else float("nan")
    p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))] if delays else float("nan")
    return Result(round(concealed, 3), round(mean, 2), round(p95, 2), frames, len(delays), extra)


def run_ours(packets, audio: array.array) -> Result:
    gets, _ = playout_clock(packets)
    arr = arrivals(packets)
    jb = JitterBuffer(**OURS)
    waiting: dict[int, float] = {}          # packet ts -> arrival, stored and not yet played
    pending_ts: list[int] = []
    delays: list[float] = []
    real: list[int] = []
    first_real = None
    ai = 0
    played_before = 0
    nau = len(audio)
    for k, t in enumerate(gets):
        while ai < len(arr) and arr[ai].arrival <= t:
            p = arr[ai]
            ai += 1
            start = (p.ts) % (nau - FRAME)
            r = jb.put((SEQ0 + p.index) & 0xFFFF, (TS0 + p.ts) & 0xFFFFFFFF, audio[start:start + FRAME], p.arrival)
            if r in (PutResult.STORED, PutResult.RESYNC):
                waiting[p.ts] = p.arrival
                pending_ts.append(p.ts)
        before = jb.stats()
        _, status = jb.get(t)
        after = jb.stats()
        n_real = after.played_samples - before.played_samples
        real.append(n_real)
        if first_real is None and n_real > 0:
            first_real = k
        if after.playing and before.playing:
            b = (before.play_ts - TS0) & 0xFFFFFFFF
            a = (after.play_ts - TS0) & 0xFFFFFFFF
            if a > b and a - b < 2**31:
                keep = []
                for ts in pending_ts:
                    if ts < a:
                        arrival = waiting.pop(ts)
                        delays.append((t + max(0, ts - b) / 8000 - arrival) * 1000)
                    else:
                        keep.append(ts)
                pending_ts = keep
    s = jb.stats()
    jb.close()
    extra = {"late_discarded": s.late_discarded, "dropped_samples": s.dropped_samples_drift,
             "inserted_samples": s.inserted_samples_drift, "overflow_dropped_samples": s.overflow_dropped_samples,
             "resyncs": s.resyncs, "jitter_ms": round(s.jitter_ms, 2)}
    return summarise(delays, real, first_real or 0, len(gets), extra)


SPEEX_DEFAULT = {"step": 160, "late_cost": None, "max_late_rate": None, "margin": 0}


def run_speex(packets, ffi, lib, cfg=SPEEX_DEFAULT) -> Result:
    gets, _ = playout_clock(packets)
    arr = arrivals(packets)
    by_index = {p.index: p for p in arr}
    jb = lib.jitter_buffer_init(cfg["step"])
    val = ffi.new("int32_t *")
    for key, req in (("late_cost", lib.JITTER_BUFFER_SET_LATE_COST),
                     ("max_late_rate", lib.JITTER_BUFFER_SET_MAX_LATE_RATE),
                     ("margin", lib.JITTER_BUFFER_SET_MARGIN)):
        if cfg.get(key) is not None:
            val[0] = cfg[key]
            lib.jitter_buffer_ctl(jb, req, val)
    pin = ffi.new("JitterBufferPacket *")
    pout = ffi.new("JitterBufferPacket *")
    data = ffi.new("char[16]")
    odata = ffi.new("char[16]")
    offset = ffi.new("int32_t *")
    delays: list[float] = []
    real: list[int] = []
    first_real = None
    counts = {0: 0, 1: 0, 2: 0}
    ai = 0
    last_ts = None
    skipped = 0
    for k, t in enumerate(gets):
        while ai < len(arr) and arr[ai].arrival <= t:
            p = arr[ai]
            ai += 1
            pin.data = data
            pin.len = 2
            pin.timestamp = (TS0 + p.ts) & 0xFFFFFFFF
            pin.span = FRAME
            pin.sequence = (SEQ0 + p.index) & 0xFFFF
            pin.user_data = p.index
            lib.jitter_buffer_put(jb, pin)
        pout.data = odata
        pout.len = 16
        r = lib.jitter_buffer_get(jb, pout, FRAME, offset)
        counts[r] = counts.get(r, 0) + 1
        if r == lib.JITTER_BUFFER_OK:
            p = by_index[pout.user_data]
            delays.append((t + offset[0] / 8000 - p.arrival) * 1000)
            real.append(FRAME)
            if first_real is None:
                first_real = k
            if last_ts is not None and p.ts > last_ts + FRAME:
                skipped += (p.ts - last_ts - FRAME) // FRAME
            last_ts = p.ts
        else:
            real.append(0)
        lib.jitter_buffer_tick(jb)
    lib.jitter_buffer_destroy(jb)
    extra = {"missing_frames": counts.get(1, 0), "insertion_frames": counts.get(2, 0),
             "packets_skipped": skipped}
    return summarise(delays, real, first_real or 0, len(gets), extra)


def verdict(o: Result, s: Result) -> str:
    no_worse = o.concealed_pct <= s.concealed_pct + 1e-9 and o.mean_delay_ms <= s.mean_delay_ms + 1e-9
    strictly = no_worse and (o.concealed_pct < s.concealed_pct - 1e-9 or o.mean_delay_ms < s.mean_delay_ms - 1e-9)
    return "better" if strictly else "no worse" if no_worse else "WORSE"


def table(results: dict) -> str:
    lines = ["| trace | network loss % | ours concealed % | speexdsp concealed % | ours mean / p95 delay ms "
             "| speexdsp mean / p95 delay ms | ours vs speexdsp |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        o, s = r["ours"], r["speexdsp"]
        lines.append(f"| {name} | {r['network_loss_pct']:.2f} | {o.concealed_pct:.3f} | {s.concealed_pct:.3f} "
                     f"| {o.mean_delay_ms:.1f} / {o.p95_delay_ms:.1f} | {s.mean_delay_ms:.1f} / {s.p95_delay_ms:.1f} "
                     f"| {verdict(o, s)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2-minute traces (whole run well under a minute)")
    ap.add_argument("--seconds", type=float, help="trace length in seconds (default 600, --quick 120)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--trace", action="append", choices=list(tr.TRACES), help="only these traces")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tune-speex", action="store_true", help="also try other speexdsp settings and report them")
    args = ap.parse_args(argv)
    seconds = args.seconds or (120.0 if args.quick else 600.0)
    names = args.trace or list(tr.TRACES)

    cache = Path(tempfile.gettempdir()) / f"officebox-bench-{os.getuid()}"
    cache.mkdir(parents=True, exist_ok=True)
    from tools.bench._speex import load
    ffi, lib = load(str(cache))
    audio = speech(cache)

    started = time.monotonic()
    results: dict = {}
    tuning: dict = {}
    for name in names:
        packets = tr.make_trace(name, seconds, args.seed)
        results[name] = {"network_loss_pct": tr.network_loss_pct(packets),
                         "ours": run_ours(packets, audio), "speexdsp": run_speex(packets, ffi, lib)}
        if args.tune_speex:
            tuning[name] = {}
            for label, cfg in SPEEX_VARIANTS.items():
                r = run_speex(packets, ffi, lib, cfg)
                tuning[name][label] = (r.concealed_pct, r.mean_delay_ms, r.p95_delay_ms)
    elapsed = time.monotonic() - started

    print(f"Jitter buffer: ours vs speexdsp, {len(names)} traces x {seconds:.0f} s of 20 ms packets "
          f"({platform.machine()}, {os.cpu_count()} cores, {elapsed:.1f} s)\n")
    print(table(results))
    if tuning:
        print("\nspeexdsp settings tried (concealed %, mean delay ms, p95 delay ms):")
        for name, rows in tuning.items():
            print(f"  {name}: " + "; ".join(f"{k} {v[0]:.2f}/{v[1]:.1f}/{v[2]:.1f}" for k, v in rows.items()))
    if args.json:
        doc = {"traces": {n: {side: {"concealed_pct": r[side].concealed_pct, "mean_delay_ms": r[side].mean_delay_ms,
                                     "p95_delay_ms": r[side].p95_delay_ms} for side in ("ours", "speexdsp")}
                          for n, r in results.items()},
               "details": {n: {"network_loss_pct": round(r["network_loss_pct"], 3),
                               "verdict": verdict(r["ours"], r["speexdsp"]),
                               "ours": r["ours"].extra, "speexdsp": r["speexdsp"].extra,
                               "played_packets": {"ours": r["ours"].played_packets,
                                                  "speexdsp": r["speexdsp"].played_packets}}
                           for n, r in results.items()},
               "config": {"seconds_per_trace": seconds, "seed": args.seed, "ours": OURS,
                          "speexdsp": "jitter_buffer_init(160), defaults, get(160) + tick() every 20 ms"},
               "speexdsp_tuning": tuning}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


SPEEX_VARIANTS = {
    "late_rate_2": {"step": 160, "max_late_rate": 2, "late_cost": None, "margin": 0},
    "late_rate_8": {"step": 160, "max_late_rate": 8, "late_cost": None, "margin": 0},
    "late_cost_40": {"step": 160, "max_late_rate": None, "late_cost": 40, "margin": 0},
    "step_80": {"step": 80, "max_late_rate": None, "late_cost": None, "margin": 0},
}

if __name__ == "__main__":
    sys.exit(main())
