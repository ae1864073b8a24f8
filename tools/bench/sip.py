#!/usr/bin/env python3
"""SIP benchmark of the box: call set-ups per second and digest registrations per second, with
SIPp on loopback, side by side with Kamailio as a registrar.

    tools/bench/sip.py --quick --json out.json     # < 1 minute: 200/300/400 calls/s, registrations,
                                                   # Kamailio; one run per point
    tools/bench/sip.py --json out.json             # rate ladder 100..500 calls/s, 15 s per point,
                                                   # every point three times (medians), ~12 minutes

What runs (every process on 127.0.0.1, the box as `python -m firmware run`):

* **calls**: a SIPp UAS plays the callee desk phones (callee extensions REGISTER its address with
  digest first); a SIPp UAC plays the callers: INVITE -> 401 -> INVITE with digest -> 100/180 ->
  200 -> ACK -> hold -> BYE -> 200, at a fixed offered rate (open loop). The box is a B2BUA: each
  call is two dialogs and two RTP channels in its media engine (no RTP sent in the "no media"
  runs; in the "media" runs the caller plays a G.711 pcap and the callee echoes it back).
  A call counts as failed on any SIPp failure (timeout, retransmission limit, unexpected
  message); 503 answers of an overloaded box are counted apart ("503") and also fail the call.
* **registrations**: SIPp REGISTER -> 401 -> REGISTER with MD5 digest (qop=auth) -> 200 with a
  fixed number in flight (closed loop: the rate is what the registrar sustains). Kamailio runs the
  same digest flow (auth module, password computed from the user name: no database) and a plain
  REGISTER -> 200 registrar without authentication, the upper bound of any registrar here.
  The box is measured with 20 and 50 registrations in flight, Kamailio with 50 and 200; each
  one's better level counts (at 20 the box's CPU is not saturated: SIPp's own scheduling adds
  milliseconds to every round trip; Kamailio is latency-bound at 50). Failures of every run count.
* **CPU**: utime + stime of the box process (all its threads: asyncio and the media engine)
  from /proc/<pid>/stat over the offered-load window, as % of one core; Kamailio's is the sum of
  its processes.

The load generators' address (127.0.0.0/8) is in the box's `exempt_ips` for these runs: the
per-source rate limit (50 requests/s per address, 2000/s for addresses of registered phones)
is meant for one phone per address, while here one SIPp process plays a hundred phones.

JSON (--json F): {"cps": {"rate": highest offered rate with no failed call, "failed": failures at
that rate, "box_cpu_pct": CPU there, "rates_tried": [...], "at_goal": the 400/s point, ...},
"register": {"rate", "failed", ...}, "kamailio_register": {"rate" (without auth), ...},
"kamailio_register_digest": {...}, "cps_media": {...}, "ratios": {...}, "runs": {every run}}.
tools/bench/results/sip.md has the measured table and what limits the box.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sipp import (
    BenchError,
    Box,
    Kamailio,
    Sipp,
    SippResult,
    free_block,
    loadavg,
    thread_cpu_seconds,
)

PW_PREFIX = "Bench-pass-"
PW_SUFFIX = "-Zq8wLm4xT"
CALLERS = [str(n) for n in range(3000, 3050)]
CALLEES = [str(n) for n in range(4000, 4050)]
REG_USERS = [str(n) for n in range(5000, 5100)]
MEDIA_PCAP = "/usr/share/sip-tester/g711a.pcap"
GOAL_CPS = 400
BOX_REG_IN_FLIGHT = (20, 50)


def password(user: str) -> str:
    return f"{PW_PREFIX}{user}{PW_SUFFIX}"


def auth(user: str) -> str:
    return f"[authentication username={user} password={password(user)}]"


def provisioning(recording: str) -> str:
    exts = "".join(f'\n[[extension]]\nnumber = "{n}"\npassword = "{password(n)}"\nmax_calls = 20\n'
                   for n in CALLERS + CALLEES + REG_USERS)
    return f"""
[system]
language = "en"
timezone = "UTC"

[system.security]
exempt_ips = ["127.0.0.0/8"]

[system.recording]
policy = "{recording}"
{exts}"""


class CpuSampler:
    """Samples cpu_seconds(pid) every `period` s in a thread, to read CPU over any window."""

    def __init__(self, cpu: Any, period: float = 0.25) -> None:
        self.cpu = cpu
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.samples.append((time.monotonic(), self.cpu()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self.cpu()))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.samples.append((time.monotonic(), self.cpu()))
            except OSError:
                return

    def at(self, t: float) -> float:
        s = self.samples
        if t <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in pairwise(s):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        return s[-1][1]

    def pct(self, t0: float, t1: float) -> float:
        """CPU in % of one core between monotonic times t0 and t1."""
        return 100.0 * (self.at(t1) - self.at(t0)) / max(1e-6, t1 - t0)


@dataclass
class Bench:
    work: Path
    log: list[str] = field(default_factory=list)
    box: Box | None = None
    uas: Sipp | None = None
    seq: int = 0

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.append(text)

    def name(self, what: str) -> str:
        self.seq += 1
        return f"{self.seq:02d}_{what}"

    # ------------------------------------------------------------------ set-up
    def start_box(self, recording: str, profile: str | None = None) -> Box:
        self.box = Box(self.work / self.name("box"), provisioning(recording), rtp_ports=8000, profile=profile)
        self.say(f"box: pid {self.box.pid}, SIP 127.0.0.1:{self.box.sip_port}, recording {recording}")
        return self.box

    def start_callee(self) -> Sipp:
        assert self.box is not None
        self.uas = Sipp(self.work, self.name("uas"), "callee.xml", media_port=free_block(8),
                        template={"RING_MS": "0"},
                        args=["-aa", "-rtp_echo", "-l", "100000", "-recv_timeout", "60000"]).start()
        time.sleep(0.3)
        if self.uas.proc is not None and self.uas.proc.poll() is not None:
            raise BenchError(f"SIPp UAS exited: {(self.work / (self.uas.name + '.out')).read_text()[-2000:]}")
        return self.uas

    def register(self, users: list[str], contact: str, target_port: int, *, scenario: str = "register_digest.xml",
                 in_flight: int = 50, total: int | None = None, expires: int = 3600, timeout: float = 120) -> SippResult:
        csv = self.work / f"users_{len(users)}_{users[0]}.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(f"{u};{auth(u)};\n" for u in users))
        total = total or len(users)
        s = Sipp(self.work, self.name("reg"), scenario, target=f"127.0.0.1:{target_port}",
                 template={"CONTACT": contact, "EXPIRES": str(expires)},
                 args=["-inf", str(csv), "-r", "100000", "-l", str(in_flight), "-m", str(total),
                       "-recv_timeout", "32000", "-timeout", f"{int(timeout)}s"])
        return s.run(timeout + 15)

    def register_callees(self) -> None:
        assert self.box is not None and self.uas is not None
        r = self.register(CALLEES, f"127.0.0.1:{self.uas.port}", self.box.sip_port, in_flight=20)
        if r.successful != len(CALLEES):
            raise BenchError(f"callees did not register: {r.successful}/{len(CALLEES)}\n{r.errors}")

    def stop_all(self) -> None:
        if self.uas is not None:
            self.uas.kill()
            self.uas = None
        if self.box is not None:
            self.box.stop()
            self.box = None

    # ------------------------------------------------------------------ calls
    def calls(self, rate: int, seconds: float, hold_ms: int, *, media: bool = False) -> dict[str, Any]:
        """One open-loop run of `rate` call set-ups per second for `seconds`."""
        assert self.box is not None and self.uas is not None
        total = max(1, int(rate * seconds))
        csv = self.work / "callers.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(f"{a};{auth(a)};{b}\n" for a, b in zip(CALLERS, CALLEES)))
        media_xml = (f'  <nop><action><exec play_pcap_audio="{MEDIA_PCAP}"/></action></nop>' if media else "")
        limit = int(rate * (hold_ms / 1000 + 40)) + 100
        uac = Sipp(self.work, self.name(f"uac{rate}"), "caller.xml", target=f"127.0.0.1:{self.box.sip_port}",
                   media_port=free_block(8), template={"MEDIA": media_xml, "HOLD_MS": str(hold_ms)},
                   args=["-inf", str(csv), "-r", str(rate), "-m", str(total), "-l", str(limit),
                         "-recv_timeout", "32000", "-timeout", f"{int(seconds + hold_ms / 1000 + 60)}s"])
        la = loadavg()
        box = self.box
        main_thread = CpuSampler(lambda: thread_cpu_seconds(box.pid, box.pid))
        with CpuSampler(box.cpu) as cpu, main_thread:
            uac.start()
            t0 = uac.started_at
            res = uac.wait(seconds + hold_ms / 1000 + 90)
        w0, w1 = t0 + min(1.0, seconds / 5), t0 + seconds
        box_pct = cpu.pct(w0, w1)
        rates = [float(r.get("CallRate(P)", 0)) for r in res.rows[1:-1]
                 if isinstance(r.get("CallRate(P)"), float) and float(r.get("OutgoingCall(C)", 0)) < total]
        overload = res.user_counter("overload503")
        out = {
            "offered": rate, "seconds": seconds, "hold_ms": hold_ms, "media": media,
            "calls": total, "successful": res.successful, "failed": res.failed + max(0, total - res.created),
            "overload_503": overload,
            # a 503 ends the SIPp call with a receive timeout (see caller.xml): not counted twice
            "timeouts": max(0, res.count("FailedTimeoutOnRecv") - overload) + res.count("FailedMaxUDPRetrans"),
            "unexpected": res.count("FailedUnexpectedMessage"),
            "retransmissions": res.count("Retransmissions"),
            "setup_ms": round(res.response_time_ms(1) or 0.0, 1),
            "achieved": round(statistics.median(rates), 1) if rates else None,
            "box_cpu_pct": round(box_pct, 1), "box_main_thread_pct": round(main_thread.pct(w0, w1), 1),
            "loadavg": la,
        }
        if out["failed"] and res.errors:
            (self.work / f"{uac.name}_errors_tail.txt").write_text(res.errors)
        return out

    # ------------------------------------------------------------------ registrations
    def registrations(self, target: str, port: int, cpu: Any, *, scenario: str, seconds: float,
                      in_flight: int) -> dict[str, Any]:
        """Closed-loop REGISTER run: `in_flight` registrations outstanding for ~`seconds` (the
        count comes from a short probe run first)."""
        contact = f"127.0.0.1:{self.uas.port}" if self.uas is not None else "127.0.0.1:9"
        probe = self.register(REG_USERS, contact, port, scenario=scenario, in_flight=in_flight, total=300, timeout=60)
        total = max(300, int(probe.successful / max(probe.elapsed_s, 0.05) * seconds))
        la = loadavg()
        with CpuSampler(cpu) as sampler:
            t0 = time.monotonic()
            r = self.register(REG_USERS, contact, port, scenario=scenario, in_flight=in_flight, total=total,
                              timeout=seconds * 6 + 30)
            t1 = time.monotonic()
        elapsed = r.elapsed_s
        return {"target": target, "registrations": total, "successful": r.successful,
                "failed": r.failed + max(0, total - r.created), "overload_503": r.user_counter("overload503"),
                "retransmissions": r.count("Retransmissions"),
                "rate": round(r.successful / elapsed, 1) if elapsed > 0 else 0.0,
                "elapsed_s": round(elapsed, 2), "in_flight": in_flight,
                "response_ms": round(r.response_time_ms(1) or 0.0, 2),
                "cpu_pct": round(sampler.pct(t0, t1), 1), "sipp_cpu_pct": round(100 * r.cpu_s / max(elapsed, 1e-3), 1),
                "loadavg": la}


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose `key` is the median of the runs (the upper one for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key] or 0)
    return ordered[len(ordered) // 2]


def _best_level(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run of the in-flight level with the highest median rate."""
    levels = sorted({r["in_flight"] for r in runs})
    medians = [_median_run([r for r in runs if r["in_flight"] == n], "rate") for n in levels]
    return max(medians, key=lambda r: r["rate"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one pass at the goal rate, < 1 minute")
    ap.add_argument("--json", metavar="F", help="write the results as JSON to F")
    ap.add_argument("--rates", default="", help="call rates to try, e.g. 200,400,600 (default: by mode)")
    ap.add_argument("--seconds", type=float, default=0.0, help="seconds of offered load per call run")
    ap.add_argument("--hold-ms", type=int, default=1000, help="call length after the answer (no-media runs)")
    ap.add_argument("--repeat", type=int, default=0, help="runs per point (median reported)")
    ap.add_argument("--recording", default="always", choices=("always", "never"),
                    help="the box's recording policy during the call runs (default: always, as shipped)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (SIPp logs, box log)")
    args = ap.parse_args(argv)

    if shutil.which("sipp") is None:
        print("SIPp (Debian sip-tester) is needed", file=sys.stderr)
        return 2
    quick = args.quick
    rates = [int(x) for x in args.rates.split(",") if x] or (
        [200, 300, 400] if quick else [100, 150, 200, 250, 300, 400, 500])
    seconds = args.seconds or (4.0 if quick else 15.0)
    repeat = args.repeat or (1 if quick else 3)
    reg_seconds = 3.0 if quick else 10.0

    work = Path(tempfile.mkdtemp(prefix="sipbench-"))
    bench = Bench(work)
    result: dict[str, Any] = {"machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()},
                              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": quick}
    t_start = time.monotonic()
    try:
        # --- calls through the box --------------------------------------------------------
        bench.start_box(args.recording)
        bench.start_callee()
        bench.register_callees()
        cps_runs: list[dict[str, Any]] = []
        for rate in rates:
            for i in range(repeat):
                r = bench.calls(rate, seconds, args.hold_ms)
                cps_runs.append(r)
                bench.say(f"calls {rate}/s run {i + 1}: {r['successful']}/{r['calls']} ok, failed {r['failed']} "
                          f"(503: {r['overload_503']}, timeouts {r['timeouts']}), set-up {r['setup_ms']} ms, "
                          f"box CPU {r['box_cpu_pct']} % (main thread {r['box_main_thread_pct']} %), "
                          f"load {r['loadavg']}")
                time.sleep(1.0 + args.hold_ms / 1000)
        media_rate = 10 if quick else 15
        media = bench.calls(media_rate, 3.0 if quick else 8.0, 3000 if quick else 6000, media=True)
        bench.say(f"calls with media {media_rate}/s: {media['successful']}/{media['calls']} ok, "
                  f"failed {media['failed']}, box CPU {media['box_cpu_pct']} %")
        # --- registrations at the box ------------------------------------------------------
        assert bench.box is not None
        box = bench.box
        box_reg = [bench.registrations("box", box.sip_port, box.cpu, scenario="register_digest.xml",
                                       seconds=reg_seconds, in_flight=n)
                   for n in BOX_REG_IN_FLIGHT for _ in range(repeat)]
        for r in box_reg:
            bench.say(f"box registrations (digest, {r['in_flight']} in flight): {r['rate']}/s, failed {r['failed']}, "
                      f"CPU {r['cpu_pct']} % (SIPp {r['sipp_cpu_pct']} %)")
        bench.stop_all()
        # --- Kamailio ----------------------------------------------------------------------
        kam: dict[str, list[dict[str, Any]]] = {"plain": [], "digest": []}
        for variant in ("plain", "digest"):
            k = Kamailio(work / bench.name(f"kamailio_{variant}"), auth=variant == "digest",
                         password_prefix=PW_PREFIX, password_suffix=PW_SUFFIX)
            try:
                for in_flight in (50, 200):
                    for _ in range(repeat):
                        r = bench.registrations(f"kamailio-{variant}", k.port, k.cpu,
                                                scenario="register_plain.xml" if variant == "plain" else "register_digest.xml",
                                                seconds=reg_seconds, in_flight=in_flight)
                        kam[variant].append(r)
                        bench.say(f"kamailio registrations ({variant}, {in_flight} in flight): {r['rate']}/s, "
                                  f"failed {r['failed']}, CPU {r['cpu_pct']} % (SIPp {r['sipp_cpu_pct']} %)")
            finally:
                k.stop()
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        bench.stop_all()
        return 1
    finally:
        bench.stop_all()

    # --- summary ----------------------------------------------------------------------------
    points = []
    for rate in rates:
        runs = [r for r in cps_runs if r["offered"] == rate]
        med = _median_run(runs, "box_cpu_pct")
        points.append({"rate": rate, "runs": len(runs), "calls": sum(r["calls"] for r in runs),
                       "failed_max": max(r["failed"] for r in runs),
                       "failed_total": sum(r["failed"] for r in runs),
                       "overload_503": sum(r["overload_503"] for r in runs),
                       "timeouts": sum(r["timeouts"] for r in runs),
                       "successful_per_s": statistics.median(r["successful"] / r["seconds"] for r in runs),
                       "box_cpu_pct": statistics.median(r["box_cpu_pct"] for r in runs),
                       "box_main_thread_pct": statistics.median(r["box_main_thread_pct"] for r in runs),
                       "setup_ms": statistics.median(r["setup_ms"] for r in runs),
                       "achieved": med["achieved"], "loadavg": [r["loadavg"] for r in runs]})
    clean = [p for p in points if p["failed_total"] == 0]
    best = max(clean, key=lambda p: p["rate"]) if clean else min(points, key=lambda p: p["rate"])
    goal = next((p for p in points if p["rate"] == GOAL_CPS), None)
    box_reg_med = _best_level(box_reg)
    kam_plain = _best_level(kam["plain"])
    kam_digest = _best_level(kam["digest"])
    result.update({
        "cps": {"rate": best["rate"] if clean else 0, "failed": best["failed_total"],
                "box_cpu_pct": best["box_cpu_pct"], "setup_ms": best["setup_ms"], "hold_ms": args.hold_ms,
                "seconds": seconds, "recording": args.recording, "goal": GOAL_CPS,
                "at_goal": goal, "rates_tried": points},
        "cps_media": {"rate": media["offered"], "failed": media["failed"], "box_cpu_pct": media["box_cpu_pct"],
                      "calls": media["calls"], "successful": media["successful"], "seconds": media["seconds"],
                      "hold_ms": media["hold_ms"], "setup_ms": media["setup_ms"]},
        "register": {"rate": box_reg_med["rate"], "failed": sum(r["failed"] for r in box_reg),
                     "box_cpu_pct": box_reg_med["cpu_pct"], "in_flight": box_reg_med["in_flight"],
                     "response_ms": box_reg_med["response_ms"], "overload_503": sum(r["overload_503"] for r in box_reg),
                     "runs": [r["rate"] for r in box_reg if r["in_flight"] == box_reg_med["in_flight"]],
                     "levels": {str(n): [r["rate"] for r in box_reg if r["in_flight"] == n] for n in BOX_REG_IN_FLIGHT}},
        "kamailio_register": {"rate": kam_plain["rate"], "auth": False, "failed": sum(r["failed"] for r in kam["plain"]),
                              "cpu_pct": kam_plain["cpu_pct"], "response_ms": kam_plain["response_ms"],
                              "in_flight": kam_plain["in_flight"], "runs": [r["rate"] for r in kam["plain"]]},
        "kamailio_register_digest": {"rate": kam_digest["rate"], "failed": sum(r["failed"] for r in kam["digest"]),
                                     "cpu_pct": kam_digest["cpu_pct"], "response_ms": kam_digest["response_ms"],
                                     "in_flight": kam_digest["in_flight"],
                                     "runs": [r["rate"] for r in kam["digest"]]},
        "ratios": {"register_vs_kamailio_plain": round(box_reg_med["rate"] / kam_plain["rate"], 3) if kam_plain["rate"] else None,
                   "register_vs_kamailio_digest": round(box_reg_med["rate"] / kam_digest["rate"], 3) if kam_digest["rate"] else None},
        "runs": {"cps": cps_runs, "cps_media": media, "register": box_reg, "kamailio": kam},
        "duration_s": round(time.monotonic() - t_start, 1),
    })
    print()
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def table(res: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [("| measurement | offered | completed | failed (503 / other) | box CPU, % of one core "
              "(main thread) | set-up | notes |"), "|---|---|---|---|---|---|---|"]
    for p in res["cps"]["rates_tried"]:
        other = p["failed_total"] - p["overload_503"]
        lines.append(f"| calls through the box, no media, {res['cps']['hold_ms'] / 1000:g} s each | {p['rate']}/s | "
                     f"{p['successful_per_s']:.0f}/s | {p['failed_total']} of {p['calls']} ({p['overload_503']} / "
                     f"{other}) | {p['box_cpu_pct']} ({p['box_main_thread_pct']}) | {p['setup_ms']} ms | "
                     f"{p['runs']} run(s), load {', '.join(f'{x:.1f}' for x in p['loadavg'])} |")
    m = res["cps_media"]
    lines.append(f"| calls with RTP both ways (G.711 pcap + echo), {m['hold_ms'] / 1000:g} s each | {m['rate']}/s | "
                 f"{m['successful'] / m['seconds']:.0f}/s | {m['failed']} of {m['calls']} | {m['box_cpu_pct']} | "
                 f"{m['setup_ms']} ms | up to {int(m['rate'] * (m['hold_ms'] / 1000 + 1))} calls with RTP at once |")
    r = res["register"]
    lines.append(f"| REGISTER + 401 + REGISTER with MD5 digest, box | closed loop, {r['in_flight']} in flight | "
                 f"{r['rate']:.0f}/s | {r['failed']} | {r['box_cpu_pct']} | {r['response_ms']} ms | runs "
                 f"{', '.join(f'{x:.0f}' for x in r['runs'])}/s; bindings persisted in SQLite |")
    k = res["kamailio_register_digest"]
    lines.append(f"| same flow, Kamailio 5.6 (auth module, 2 workers) | closed loop, {k['in_flight']} in flight | "
                 f"{k['rate']:.0f}/s | {k['failed']} | {k['cpu_pct']} (all processes) | {k['response_ms']} ms | "
                 f"runs {', '.join(f'{x:.0f}' for x in k['runs'])}/s; bindings in memory |")
    k = res["kamailio_register"]
    lines.append(f"| REGISTER -> 200 without auth, Kamailio 5.6 (upper bound) | closed loop, {k['in_flight']} in flight | "
                 f"{k['rate']:.0f}/s | {k['failed']} | {k['cpu_pct']} (all processes) | {k['response_ms']} ms | "
                 f"runs {', '.join(f'{x:.0f}' for x in k['runs'])}/s |")
    ra = res["ratios"]
    c = res["cps"]
    lines += ["",
              (f"Highest rate with no failed call: {c['rate']} call set-ups/s (goal {c['goal']}). "
               f"Box registrations: {ra['register_vs_kamailio_plain']} x Kamailio without auth, "
               f"{ra['register_vs_kamailio_digest']} x Kamailio with digest (goal >= 0.5).")]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
