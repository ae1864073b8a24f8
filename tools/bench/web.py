#!/usr/bin/env python3
"""Benchmark of the web page's report pages over a 200,000-call store.

    tools/bench/web.py [--quick] [--calls N] [--json FILE]

Uses the store that tools/bench/reports.py generates (and caches), serves the real web app
(real ConfigStore, CallStore, Reports) on 127.0.0.1 and times complete HTTP requests of a
logged-in manager: each report page with its default period (the last days of the store)
and over the whole store (the longest period a page accepts). Prints a table;
``--json FILE`` writes ``{"calls": N, "pages": {NAME: milliseconds}}`` (median of the runs:
3 with --quick, 7 otherwise).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from firmware.api import BoxAPI  # noqa: E402
from firmware.pbx.live import LiveState  # noqa: E402
from firmware.store.calls import CallStore  # noqa: E402
from firmware.store.config_store import ConfigStore  # noqa: E402
from firmware.store.reports import Reports  # noqa: E402
from web_ui.app import create_app  # noqa: E402
from web_ui.keys import WebOptions  # noqa: E402

PASSWORD = "benchmark manager passphrase"


def _reports_bench():
    spec = importlib.util.spec_from_file_location("bench_reports", ROOT / "tools" / "bench" / "reports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


class _NoControl:
    """The report pages call no box action; the live board only reads LiveState."""

    def system_status(self) -> dict:
        return {}


async def run(calls_db: Path, runs: int) -> tuple[int, dict[str, float]]:
    bench = _reports_bench()
    work = Path(tempfile.mkdtemp(prefix="officebox-webbench-"))
    config = ConfigStore(work)
    config.update("system", "", {"timezone": bench.TZ})
    for a in bench.AGENTS:
        config.create("extension", {"number": a, "name": f"Agent {a}"})
    for q, members in bench.QUEUES.items():
        config.create("queue", {"number": q, "name": f"Queue {q}", "members": members})
    config.create("user", {"name": "admin", "password": PASSWORD + " admin", "role": "admin"})
    config.create("user", {"name": "manager", "password": PASSWORD, "role": "manager"})
    store = CallStore(calls_db)
    try:
        n = store.query("SELECT count(*) FROM calls")[0][0]
        lo, hi = store.query("SELECT min(started_at), max(started_at) FROM calls")[0]
        api = BoxAPI(version="bench", data_dir=work, config=config, calls=store,
                     reports=Reports(store, timezone=bench.TZ), live=LiveState(), control=_NoControl())
        app = create_app(api, options=WebOptions(print_setup_code=False, max_range_days=400),
                         clock=lambda: hi + 60)
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(bench.TZ)
        first = max(dt.datetime.fromtimestamp(lo, tz).date(), dt.datetime.fromtimestamp(hi, tz).date() - dt.timedelta(days=399))
        last = dt.datetime.fromtimestamp(hi, tz).date()
        whole = f"from={first}&to={last}"
        pages = {
            "call_log": "/reports/calls",
            "call_log_whole": f"/reports/calls?{whole}",
            "call_log_whole_page_100": f"/reports/calls?{whole}&page=100",
            "call_log_number": f"/reports/calls?{whole}&number=601",
            "call_log_agent_missed": f"/reports/calls?{whole}&agent=205&status=missed_all",
            "missed": "/reports/missed",
            "missed_whole": f"/reports/missed?{whole}",
            "agents": "/reports/agents",
            "agents_whole": f"/reports/agents?{whole}",
            "kpi": "/reports/kpi",
            "kpi_whole": f"/reports/kpi?{whole}",
            "live": "/live",
        }
        async with TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            r = await client.post("/login", data={"_csrf": await _csrf(client), "name": "manager",
                                                  "password": PASSWORD}, allow_redirects=False)
            assert r.status == 303, f"login failed: {r.status}"
            results: dict[str, float | None] = {}
            for name, path in pages.items():
                times = []
                for i in range(runs + 1):
                    t = time.perf_counter()
                    r = await client.get(path)
                    body = await r.read()
                    elapsed = (time.perf_counter() - t) * 1000
                    assert b'action="/login"' not in body, f"{path}: not logged in"
                    if r.status != 200:
                        print(f"{name}: {path} answered HTTP {r.status}", file=sys.stderr)
                        break
                    if i:
                        times.append(elapsed)
                results[name] = round(statistics.median(times), 1) if times else None
        return n, results
    finally:
        store.close()


async def _csrf(client: TestClient) -> str:
    import re

    text = await (await client.get("/login")).text()
    return re.search(r'name="csrf-token" content="([^"]+)"', text).group(1)


def table(n: int, results: dict[str, float | None], runs: int) -> str:
    lines = [f"Web report pages over {n:,} calls, full HTTP request as a logged-in manager, median of {runs} runs",
             "", "| page | ms | under 500 ms |", "|---|---:|:---:|"]
    for name, ms in results.items():
        if ms is None:
            lines.append(f"| {name} | error | NO |")
        else:
            lines.append(f"| {name} | {ms:.1f} | {'yes' if ms < 500 else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 runs per page instead of 7")
    ap.add_argument("--calls", type=int, default=200_000, help="calls in the store (default 200000)")
    ap.add_argument("--json", metavar="FILE", help='write {"calls": N, "pages": {NAME: ms}}')
    args = ap.parse_args(argv)
    runs = 3 if args.quick else 7
    db = _reports_bench().store_path(args.calls, fresh=False)
    n, results = asyncio.run(run(db, runs))
    print(table(n, results, runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"calls": n, "pages": results}, indent=1) + "\n")
    return 0 if all(ms is not None and ms < 500 for ms in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
