#!/usr/bin/env python3
"""In-band DTMF: the engine's detector vs spandsp's dtmf_rx on the same signals.

Signals (8 kHz, 16-bit): every digit across the ITU-T Q.24 grid (frequency deviation,
level, twist, tone duration, pause) with white noise, and speech from espeak-ng in
en/pl/ru/bg (several voices and gains) for talk-off. Reported: detection rate where
Q.24 says "operate", false detections where it says "must not operate", false digits
on speech, and CPU per second of audio.

    tools/bench/dtmf.py --quick --json out.json      # < 1 minute
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from firmware.media.dtmf import DtmfDetector  # noqa: E402

ROWS = [697, 770, 852, 941]
COLS = [1209, 1336, 1477, 1633]
KEYS = "123A456B789C*0#D"
A0 = 22785.0  # 0 dBm0

_ffi = FFI()
_ffi.cdef("""
typedef struct dtmf_rx_state_s dtmf_rx_state_t;
dtmf_rx_state_t *dtmf_rx_init(dtmf_rx_state_t *s, void *callback, void *user_data);
int dtmf_rx(dtmf_rx_state_t *s, const int16_t amp[], int samples);
size_t dtmf_rx_get(dtmf_rx_state_t *s, char *digits, int max);
int dtmf_rx_free(dtmf_rx_state_t *s);
""")


class Spandsp:
    name = "spandsp dtmf_rx"

    def __init__(self) -> None:
        self.lib = _ffi.dlopen("libspandsp.so.2")
        self.buf = _ffi.new("char[]", 256)

    def detect(self, pcm: np.ndarray) -> str:
        s = self.lib.dtmf_rx_init(_ffi.NULL, _ffi.NULL, _ffi.NULL)
        out = []
        data = _ffi.from_buffer("int16_t[]", pcm)
        for i in range(0, len(pcm), 8000):
            n = min(8000, len(pcm) - i)
            self.lib.dtmf_rx(s, data + i, n)
            k = self.lib.dtmf_rx_get(s, self.buf, 255)
            out.append(_ffi.buffer(self.buf, k)[:].decode())
        self.lib.dtmf_rx_free(s)
        return "".join(out)


class Ours:
    name = "engine detector"

    def detect(self, pcm: np.ndarray) -> str:
        return "".join(d.digit for d in DtmfDetector().process(pcm.tobytes()))


def tone(digit: str, ms: float, row_dbm0: float, col_dbm0: float, dev_row: float, dev_col: float,
         rng: np.random.Generator) -> np.ndarray:
    k = KEYS.index(digit)
    t = np.arange(int(round(ms * 8)))
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    return (A0 * 10 ** (row_dbm0 / 20) * np.sin(2 * np.pi * ROWS[k // 4] * (1 + dev_row) * t / 8000 + p1)
            + A0 * 10 ** (col_dbm0 / 20) * np.sin(2 * np.pi * COLS[k % 4] * (1 + dev_col) * t / 8000 + p2))


def signal(cond: dict, rng: np.random.Generator, digits: str = KEYS) -> np.ndarray:
    parts = [np.zeros(int(rng.integers(0, 400)))]
    for d in digits:
        parts.append(tone(d, cond["ms"], cond["row"], cond["col"], cond["dev_row"], cond["dev_col"], rng))
        parts.append(np.zeros(int(cond["pause"] * 8)))
    parts.append(np.zeros(800))
    x = np.concatenate(parts)
    if cond.get("snr") is not None:
        p = (A0 * 10 ** (min(cond["row"], cond["col"]) / 20)) ** 2 / 2
        x = x + rng.normal(0, np.sqrt(p / 10 ** (cond["snr"] / 10)), len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def grid(quick: bool) -> tuple[list[dict], list[dict]]:
    """(operate conditions, non-operate conditions) of ITU-T Q.24 as used here."""
    op, nop = [], []
    devs = [-0.015, 0.0, 0.015] if quick else [-0.015, -0.01, -0.005, 0.0, 0.005, 0.01, 0.015]
    levels = [(-3, -3), (-10, -6), (-20, -28), (-30, -30)] if quick else \
        [(-3, -3), (-6, -2), (-10, -6), (-14, -10), (-20, -20), (-20, -28), (-22, -26), (-26, -30), (-30, -30)]
    snrs = [20] if quick else [30, 20, 15]
    for dr in devs:
        for dc in (devs if not quick else [dr]):
            for row, col in levels:
                for snr in snrs:
                    op.append(dict(ms=40, pause=40, row=row, col=col, dev_row=dr, dev_col=dc, snr=snr))
    for ms in ([50, 100] if quick else [45, 60, 100, 250]):
        op.append(dict(ms=ms, pause=40, row=-10, col=-10, dev_row=0, dev_col=0, snr=20))
    for d in ([0.035, -0.035] if quick else [0.035, -0.035, 0.04, -0.04, 0.05, -0.05]):
        for which in ("row", "col", "both"):
            nop.append(dict(ms=60, pause=60, row=-10, col=-10, dev_row=d if which != "col" else 0,
                            dev_col=d if which != "row" else 0, snr=30, why=f"{d:+.1%} {which}"))
    for ms in ([20, 15] if quick else [20, 18, 15, 10]):
        nop.append(dict(ms=ms, pause=60, row=-6, col=-6, dev_row=0, dev_col=0, snr=30, why=f"{ms} ms tone"))
    for lv in ([-45] if quick else [-45, -50, -55]):
        nop.append(dict(ms=60, pause=60, row=lv, col=lv, dev_row=0, dev_col=0, snr=None, why=f"{lv} dBm0"))
    for tw in ([14, -14] if quick else [12, -12, 14, -14, 20, -20]):
        nop.append(dict(ms=60, pause=60, row=-10 - max(tw, 0), col=-10 + min(tw, 0), dev_row=0, dev_col=0,
                        snr=None, why=f"twist {tw} dB"))
    return op, nop


SENTENCES = {
    "en": "Please enter your extension number followed by the hash key. Press one for sales, two for service, "
          "three for accounts. Your call is important to us. Seven hundred and forty one, nine nine nine.",
    "pl": "Proszę wybrać numer wewnętrzny i nacisnąć krzyżyk. Wciśnij jeden, aby połączyć się z działem "
          "sprzedaży, dwa z serwisem. Wszyscy konsultanci są zajęci, prosimy czekać.",
    "ru": "Пожалуйста, наберите добавочный номер и нажмите решётку. Нажмите один для отдела продаж, два для "
          "сервиса. Все операторы заняты, пожалуйста, оставайтесь на линии.",
    "bg": "Моля, наберете вътрешния номер и натиснете диез. Натиснете едно за продажби, две за сервиз. "
          "Всички оператори са заети, моля изчакайте.",
}


def speech(tmp: Path, quick: bool) -> dict[str, np.ndarray]:
    out = {}
    variants = ["", "+f3"] if quick else ["", "+f3", "+m3", "+f5"]
    for lang, text in SENTENCES.items():
        for v in variants:
            voice = lang + v
            wav, raw = tmp / f"{voice}.wav", tmp / f"{voice}.raw"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True,
                           capture_output=True)
            subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t",
                            "raw", str(raw), "gain", "-n", "-3"], check=True, capture_output=True)
            out[voice] = np.frombuffer(raw.read_bytes(), dtype="<i2")
    return out


def run(detectors: list, quick: bool) -> dict:
    rng = np.random.default_rng(2024)
    op, nop = grid(quick)
    res: dict = {d.name: {"operate_digits": 0, "operate_detected": 0, "operate_wrong": 0,
                          "nonoperate_digits": 0, "nonoperate_false": 0, "speech_seconds": 0.0,
                          "speech_false_digits": 0, "cpu_s": 0.0, "audio_s": 0.0, "misses": {}}
                 for d in detectors}
    for conds, operate in ((op, True), (nop, False)):
        for cond in conds:
            x = signal(cond, rng)
            for det in detectors:
                r = res[det.name]
                t0 = time.process_time()
                got = det.detect(x)
                r["cpu_s"] += time.process_time() - t0
                r["audio_s"] += len(x) / 8000
                if operate:
                    r["operate_digits"] += len(KEYS)
                    ok = _matched(got, KEYS)
                    r["operate_detected"] += ok
                    r["operate_wrong"] += max(0, len(got) - ok)
                    if ok < len(KEYS):
                        key = f"dev {cond['dev_row']:+.1%}/{cond['dev_col']:+.1%} lvl {cond['row']}/{cond['col']} " \
                              f"snr {cond['snr']} {cond['ms']}ms"
                        r["misses"][key] = len(KEYS) - ok
                else:
                    r["nonoperate_digits"] += len(KEYS)
                    r["nonoperate_false"] += len(got)
                    if got:
                        r["misses"]["NONOP " + cond["why"]] = len(got)
    with tempfile.TemporaryDirectory() as tmp:
        for voice, x in speech(Path(tmp), quick).items():
            for gain in (-20, -6, 0, 6):
                y = np.clip(x.astype(np.float64) * 10 ** (gain / 20), -32768, 32767).astype(np.int16)
                for det in detectors:
                    r = res[det.name]
                    t0 = time.process_time()
                    got = det.detect(y)
                    r["cpu_s"] += time.process_time() - t0
                    r["audio_s"] += len(y) / 8000
                    r["speech_seconds"] += len(y) / 8000
                    r["speech_false_digits"] += len(got)
                    if got:
                        r["misses"][f"SPEECH {voice} {gain} dB"] = got
    for r in res.values():
        r["operate_rate_pct"] = round(100 * r["operate_detected"] / r["operate_digits"], 2)
        r["nonoperate_false_pct"] = round(100 * r["nonoperate_false"] / r["nonoperate_digits"], 2)
        r["cpu_us_per_audio_s"] = round(1e6 * r["cpu_s"] / r["audio_s"], 1)
        r["speech_seconds"] = round(r["speech_seconds"], 1)
    return res


def _matched(got: str, want: str) -> int:
    """Digits of `want` found in order in `got` (longest common subsequence)."""
    m, n = len(got), len(want)
    dp = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(m):
        for j in range(n):
            dp[i + 1][j + 1] = dp[i][j] + 1 if got[i] == want[j] else max(dp[i][j + 1], dp[i + 1][j])
    return dp[m][n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        print("espeak-ng and sox are needed", file=sys.stderr)
        return 1
    dets: list = [Ours()]
    try:
        dets.append(Spandsp())
    except OSError as exc:
        print(f"spandsp not available ({exc}); comparing nothing", file=sys.stderr)
    res = run(dets, args.quick)
    print("| detector | Q.24 operate: detected | Q.24 non-operate: false | speech: false digits | "
          "CPU per second of audio |")
    print("|---|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['operate_detected']}/{r['operate_digits']} ({r['operate_rate_pct']} %) | "
              f"{r['nonoperate_false']}/{r['nonoperate_digits']} ({r['nonoperate_false_pct']} %) | "
              f"{r['speech_false_digits']} in {r['speech_seconds']} s | {r['cpu_us_per_audio_s']} us |")
    for name, r in res.items():
        if r["misses"]:
            print(f"\n{name} misses / false detections:")
            for k, v in list(r["misses"].items())[:25]:
                print(f"  {k}: {v}")
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "quick": args.quick, "detectors": res}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
