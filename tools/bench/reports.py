#!/usr/bin/env python3
"""Benchmark of the manager's reports over a realistic call store.

    tools/bench/reports.py [--quick] [--calls N] [--json FILE] [--markdown FILE] [--fresh]

Generates (once; cached under $TMPDIR/officebox-bench) a call store of N calls (default
200,000) as a small call centre produces it: three queues, 15 agents, calls in business
hours (Mon-Fri 8-19, Saturday morning) with morning and afternoon peaks, about 15 % of
inbound calls missed, customers who call again, call events (route, menu, queue, rings,
answer, hang-up), agent state changes and the missed-call lifecycle. Then runs every
report of firmware.store.reports over the whole period (the worst case) and prints a table.
``--json FILE`` writes exactly ``{"calls": N, "reports": {NAME: milliseconds}}`` (the
median of the runs: 3 with --quick, 7 otherwise).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from firmware.store.calls import CallStore, rebuild_summaries  # noqa: E402
from firmware.store.reports import CallFilter, Reports  # noqa: E402

GENERATOR_VERSION = 6
TZ = "Europe/Warsaw"
QUEUES = {"600": [f"{n}" for n in range(201, 209)],
          "601": [f"{n}" for n in range(206, 213)],
          "602": [f"{n}" for n in range(213, 216)]}
AGENTS = sorted({a for members in QUEUES.values() for a in members})
HOUR_WEIGHTS = {8: 3, 9: 8, 10: 12, 11: 12, 12: 8, 13: 7, 14: 10, 15: 10, 16: 8, 17: 6, 18: 3}


def _business_days(n_calls: int, start: dt.date) -> list[tuple[dt.date, float]]:
    days: list[tuple[dt.date, float]] = []
    weight_total = 0.0
    d = start
    while weight_total < n_calls / 850:
        wd = d.weekday()
        w = 1.0 if wd < 5 else (0.35 if wd == 5 else 0.0)
        if w:
            days.append((d, w))
            weight_total += w
        d += dt.timedelta(days=1)
    return days


def generate(path: Path, n_calls: int, seed: int = 20261123, start: dt.date = dt.date(2025, 11, 24)) -> None:
    """Write a realistic call store of ``n_calls`` calls to ``path``, from the day ``start``."""
    rng = random.Random(seed)
    tz = ZoneInfo(TZ)
    CallStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # bench data generation only; the box never does this
    conn.execute("BEGIN")
    customers = [f"+48{rng.randint(500_000_000, 799_999_999)}" for _ in range(60_000)]
    days = _business_days(n_calls, start)
    per_weight = n_calls / sum(w for _, w in days)
    hours = list(HOUR_WEIGHTS)
    hw = list(HOUR_WEIGHTS.values())
    calls: list[tuple] = []
    events: list[tuple] = []
    agent_busy: dict[str, list[tuple[float, float, float]]] = {a: [] for a in AGENTS}
    made = 0
    for di, (day, w) in enumerate(days):
        count = int(round(per_weight * w)) if di < len(days) - 1 else n_calls - made
        count = max(0, min(count, n_calls - made))
        made += count
        for _ in range(count):
            h = rng.choices(hours, hw)[0] if day.weekday() < 5 else rng.choice([9, 10, 11, 12])
            local = dt.datetime.combine(day, dt.time(h, rng.randrange(60), rng.randrange(60)), tz)
            t = local.timestamp() + rng.random()
            cust = customers[min(int(rng.paretovariate(1.1)) - 1, len(customers) - 1)] if rng.random() < 0.3 \
                else rng.choice(customers)
            cid = str(uuid.UUID(int=rng.getrandbits(128)))
            r = rng.random()
            if r < 0.70:
                calls.append(_inbound(rng, cid, t, cust, events, agent_busy))
            elif r < 0.95:
                calls.append(_outbound(rng, cid, t, cust, events, agent_busy))
            else:
                a, b = rng.sample(AGENTS, 2)
                ans = t + rng.uniform(2, 10) if rng.random() < 0.8 else None
                end = (ans or t + 20) + (rng.uniform(10, 200) if ans else 0)
                calls.append(_row(cid, t, "internal", caller_number=a, callee_number=b, from_extension=a,
                                  to_extension=b, answered_at=ans, answered_by=b if ans else "", ended_at=end,
                                  status="answered" if ans else "no_answer", wait_s=(ans or end) - t,
                                  talk_s=end - ans if ans else 0.0, hangup_side="caller"))
    calls.sort(key=lambda c: c[1])
    cols = list(_COLS)
    conn.executemany(f"INSERT INTO calls ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", calls)
    conn.executemany("INSERT INTO call_events (call_id, ts, type, agent, queue, result, seconds, data) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", sorted(events, key=lambda e: e[1]))
    conn.executemany("INSERT INTO agent_states (agent, state, reason, started_at, ended_at) VALUES (?, ?, ?, ?, ?)",
                     _agent_states(rng, agent_busy, days, tz))
    _missed(conn, calls)
    rebuild_summaries(conn)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


_COLS = ("id", "started_at", "direction", "caller_number", "callee_number", "did", "trunk", "external_number",
         "from_extension", "to_extension", "answered_by", "queue", "ivr_path", "status", "answered_at", "ended_at",
         "wait_s", "ring_s", "talk_s", "hold_s", "wrapup_s", "hangup_side", "hangup_cause", "recording_path",
         "recording_state", "updated_at")


def _row(cid: str, t: float, direction: str, **kw) -> tuple:
    kw.setdefault("updated_at", kw.get("ended_at") or t)
    vals = {"id": cid, "started_at": t, "direction": direction, **kw}
    return tuple(vals.get(c, "" if c not in ("answered_at", "ended_at", "wait_s", "ring_s", "talk_s", "hold_s",
                                              "wrapup_s", "hangup_cause") else None) for c in _COLS)


def _inbound(rng, cid, t, cust, events, busy) -> tuple:
    q = rng.choices(list(QUEUES), [6, 3, 1])[0]
    members = QUEUES[q]
    ivr = rng.random() < 0.5
    events.append((cid, t, "route", "", "", "500" if ivr else q, None, "{}"))
    te = t + (rng.uniform(6, 15) if ivr else 0.5)
    if ivr:
        events.append((cid, te - 1, "ivr_choice", "", "", str(list(QUEUES).index(q) + 1), None, '{"menu":"500"}'))
    events.append((cid, te, "queue_enter", "", q, "", None, '{"position":%d}' % rng.randint(1, 6)))
    wait = min(rng.expovariate(1 / 22), 600)
    r = rng.random()
    rec = f"recordings/{time.strftime('%Y/%m/%d', time.gmtime(t))}/{cid[:12]}.wav"
    common = dict(caller_number=cust, did="+48221234567", trunk=rng.choice(["gsm1", "gsm2", "voip"]),
                  external_number=cust, queue=q, ivr_path=f"500:{list(QUEUES).index(q) + 1}" if ivr else "")
    ts = te
    for _ in range(rng.choices([0, 1, 2], [70, 22, 8])[0]):
        if ts - te > wait - 3:
            break
        a = rng.choice(members)
        secs = rng.uniform(10, 15)
        events.append((cid, ts, "agent_ring", a, q, "no_answer", secs, "{}"))
        ts += secs + 2
    if r < 0.85:
        a = rng.choice(members)
        ring = rng.uniform(1, 12)
        ans = max(ts, te + wait) + ring
        talk = min(rng.lognormvariate(4.6, 1.0), 3600)
        if rng.random() < 0.03:
            talk = rng.uniform(0.5, 4)
        end = ans + talk
        wrap = rng.uniform(0, 30)
        events.append((cid, ans - ring, "agent_ring", a, q, "answered", ring, "{}"))
        events.append((cid, ans, "answer", a, q, "", None, "{}"))
        events.append((cid, end, "hangup", "", "", "caller", None, "{}"))
        busy[a].append((ans, end, wrap))
        return _row(cid, t, "inbound", **common, answered_by=a, answered_at=ans, ended_at=end,
                    wait_s=ans - t, ring_s=ring, talk_s=talk, hold_s=rng.choice([0.0, 0.0, 0.0, rng.uniform(5, 60)]),
                    wrapup_s=wrap, status="answered", hangup_side=rng.choice(["caller", "callee"]), hangup_cause=16,
                    recording_path=rec, recording_state="complete")
    end = te + wait
    if rng.random() < 0.5 and members:
        events.append((cid, max(te, end - 5), "agent_ring", rng.choice(members), q, "caller_hangup",
                       min(5.0, wait), "{}"))
    status = rng.choices(["abandoned", "no_answer", "overflow", "voicemail", "busy"], [70, 10, 10, 7, 3])[0]
    events.append((cid, end, "queue_leave", "", q, "abandon" if status == "abandoned" else status, wait, "{}"))
    events.append((cid, end, "hangup", "", "", "caller", None, "{}"))
    return _row(cid, t, "inbound", **common, ended_at=end, wait_s=end - t, talk_s=0.0, status=status,
                hangup_side="caller", hangup_cause=16)


def _outbound(rng, cid, t, cust, events, busy) -> tuple:
    a = rng.choice(AGENTS)
    connected = rng.random() < 0.65
    ring = rng.uniform(3, 30)
    ans = t + ring if connected else None
    talk = min(rng.lognormvariate(4.2, 1.1), 3600) if connected else 0.0
    end = (ans + talk) if ans else t + ring
    events.append((cid, t, "route", a, "", "outbound", None, "{}"))
    if ans:
        events.append((cid, ans, "answer", a, "", "", None, "{}"))
        busy[a].append((ans, end, 0.0))
    events.append((cid, end, "hangup", "", "", "callee", None, "{}"))
    return _row(cid, t, "outbound", caller_number=a, callee_number=cust[3:] if rng.random() < 0.5 else cust,
                trunk=rng.choice(["gsm1", "gsm2", "voip"]), external_number=cust, from_extension=a,
                answered_at=ans, ended_at=end, wait_s=ring if not ans else ans - t, ring_s=ring, talk_s=talk,
                status="answered" if ans else rng.choice(["no_answer", "busy"]), hangup_side="callee",
                hangup_cause=16 if ans else 19)


def _agent_states(rng, busy, days, tz) -> list[tuple]:
    rows = []
    for a, spans in busy.items():
        spans.sort()
        by_day: dict[dt.date, list] = {}
        for s in spans:
            by_day.setdefault(dt.datetime.fromtimestamp(s[0], tz).date(), []).append(s)
        for day, _w in days:
            day_spans = by_day.get(day, [])
            login = dt.datetime.combine(day, dt.time(7, 50), tz).timestamp() + rng.uniform(0, 900)
            logout = dt.datetime.combine(day, dt.time(19, 5), tz).timestamp() + rng.uniform(0, 900)
            lunch = dt.datetime.combine(day, dt.time(13, 0), tz).timestamp() + rng.uniform(-1800, 1800)
            cursor = login
            state_rows = [("available", "", login)]
            paused = False
            for ans, end, wrap in day_spans:
                if ans < cursor or ans > logout:
                    continue
                if not paused and ans > lunch:
                    state_rows.append(("paused", "lunch", max(cursor, lunch)))
                    back = max(cursor, lunch) + rng.uniform(1200, 3600)
                    state_rows.append(("available", "", back))
                    cursor = back
                    paused = True
                    if ans < cursor:
                        continue
                state_rows.append(("ringing", "", max(cursor, ans - 5)))
                state_rows.append(("in_call", "", ans))
                state_rows.append(("wrapup", "", end))
                state_rows.append(("available", "", end + wrap))
                cursor = end + wrap
            state_rows.append(("offline", "", max(cursor, logout)))
            for (st, reason, t0), nxt in zip(state_rows, state_rows[1:] + [None]):
                t1 = nxt[2] if nxt else t0 + 3600 * 12
                rows.append((a, st, reason, t0, max(t0, t1)))
    rows.sort(key=lambda r: r[3])
    return rows


def _missed(conn: sqlite3.Connection, calls: list[tuple]) -> None:
    i = {c: n for n, c in enumerate(_COLS)}
    missed = {"abandoned", "no_answer", "overflow", "voicemail", "busy"}
    open_: dict[str, list] = {}
    entries: list[list] = []
    links: list[tuple[int, str]] = []
    for c in calls:
        num = c[i["external_number"]]
        if not num:
            continue
        if c[i["answered_at"]] is not None and num in open_:
            e = open_.pop(num)
            e[6], e[7], e[8], e[9] = c[i["answered_at"]], c[0], c[i["answered_at"]] - e[1], c[i["direction"]]
        if c[i["direction"]] == "inbound" and c[i["status"]] in missed:
            e = open_.get(num)
            if e is None:
                e = [num, c[1], c[1], 0, c[0], c[i["queue"]], None, "", None, "", len(entries) + 1]
                entries.append(e)
                open_[num] = e
            e[2], e[3], e[4] = c[1], e[3] + 1, c[0]
            links.append((e[10], c[0]))
    conn.executemany("INSERT INTO missed_calls (number, first_missed_at, last_missed_at, count, last_call_id, queue, "
                     "closed_at, closed_by_call, callback_s, closed_direction, id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     [tuple(e) for e in entries])
    conn.executemany("INSERT INTO missed_call_links (missed_id, call_id) VALUES (?, ?)", links)


def store_path(n_calls: int, fresh: bool) -> Path:
    cache = Path(os.environ.get("OFFICEBOX_BENCH_CACHE", Path(tempfile.gettempdir()) / "officebox-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"reports-v{GENERATOR_VERSION}-{n_calls}.sqlite"
    if fresh and path.exists():
        path.unlink()
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            if p.exists():
                p.unlink()
        t = time.perf_counter()
        print(f"generating {n_calls} calls into {path} ...", file=sys.stderr, flush=True)
        generate(tmp, n_calls)
        os.replace(tmp, path)
        print(f"generated in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return path


def measure(path: Path, runs: int) -> tuple[int, dict[str, float]]:
    store = CallStore(path)
    try:
        reports = Reports(store, timezone=TZ)
        lo, hi = store.query("SELECT min(started_at), max(started_at) FROM calls")[0]
        n = store.query("SELECT count(*) FROM calls")[0][0]
        since, until = lo, hi + 1
        last_month = (hi - 30 * 86400, hi + 1)
        some_agent = "205"
        cases = {
            "missed_calls": lambda: reports.missed_calls(since, until, limit=100),
            "missed_not_returned": lambda: reports.missed_not_returned(now=until),
            "agent_performance": lambda: reports.agent_performance(since, until),
            "agent_performance_month": lambda: reports.agent_performance(*last_month),
            "weekday_hour": lambda: reports.weekday_hour(since, until),
            "target_calls": lambda: reports.target_calls(since, until, min_talk_s=60, limit=50),
            "outgoing_calls": lambda: reports.outgoing_calls(since, until, limit=50),
            "queue_kpis": lambda: reports.queue_kpis(since, until, thresholds={"600": (20, 5), "601": (30, 5)}),
            "calls_per_day": lambda: reports.calls_per_day(since, until),
            "trend": lambda: reports.trend(since, until),
            "wait_distribution": lambda: reports.wait_distribution(since, until),
            "call_log": lambda: reports.call_log(CallFilter(since=since, until=until), limit=50),
            "call_log_filtered": lambda: reports.call_log(CallFilter(since=since, until=until, agent=some_agent,
                                                                     status=("answered",)), limit=50),
            "call_log_number": lambda: reports.call_log(CallFilter(since=since, until=until, number="601"), limit=50),
            "call_log_csv_1000": lambda: "".join(_take(reports.call_log_csv(CallFilter(since=since, until=until)), 2)),
        }
        results: dict[str, float] = {}
        for name, fn in cases.items():
            fn()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1000)
            results[name] = round(statistics.median(times), 1)
        return n, results
    finally:
        store.close()


def _take(it, n):
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def table(n: int, results: dict[str, float], runs: int) -> str:
    lines = [f"Reports over {n:,} calls (whole period), median of {runs} runs, milliseconds",
             "", "| report | ms | under 300 ms |", "|---|---:|:---:|"]
    for name, ms in results.items():
        lines.append(f"| {name} | {ms:.1f} | {'yes' if ms < 300 else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 runs per report instead of 7")
    ap.add_argument("--calls", type=int, default=200_000, help="calls in the store (default 200000)")
    ap.add_argument("--json", metavar="FILE", help='write {"calls": N, "reports": {NAME: ms}}')
    ap.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    ap.add_argument("--fresh", action="store_true", help="regenerate the cached store")
    args = ap.parse_args(argv)
    if args.calls < 100:
        ap.error("--calls must be at least 100")
    runs = 3 if args.quick else 7
    path = store_path(args.calls, args.fresh)
    n, results = measure(path, runs)
    text = table(n, results, runs)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"calls": n, "reports": results}, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
