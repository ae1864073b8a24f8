#!/usr/bin/env python3
"""Per-thread cost of a call in the box: one box (as tools/bench/sip.py starts it), SIPp calls at
each given rate for 8 s, then utime+stime and voluntary context switches of every thread of the
box from /proc/<pid>/task over the whole run (offered load, hold, drain), per completed call.

    tools/bench/sip_threads.py 150,200 out.json

Threads: "main" (asyncio), pbx-engine, pbx-recwriter, python (the call store's writer thread) and
the threads of child processes (the call store's writer process, also named python).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sip  # noqa: E402
from _sipp import CLK_TCK, descendants  # noqa: E402


def threads(pid: int) -> dict[int, tuple[str, float, int]]:
    out = {}
    tasks = []
    for p in descendants(pid):
        try:
            tasks += [(p, t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:  # the process ended meanwhile
            continue
    for p, tid in tasks:
        base = f"/proc/{p}/task/{tid}"
        try:
            comm = open(f"{base}/comm").read().strip()
            f = open(f"{base}/stat").read().rsplit(")", 1)[1].split()
            vcs = next(int(l.split()[1]) for l in open(f"{base}/status") if l.startswith("voluntary_ctxt"))
        except (OSError, StopIteration):
            continue
        out[int(tid)] = (comm, (int(f[11]) + int(f[12])) / CLK_TCK, vcs)
    return out


def main(argv: list[str]) -> int:
    rates = [int(x) for x in argv[0].split(",")]
    bench = sip.Bench(Path(tempfile.mkdtemp(prefix="sipthreads-")))
    results = []
    try:
        box = bench.start_box("always")
        bench.start_callee()
        bench.register_callees()
        for rate in rates:
            t0 = threads(box.pid)
            r = bench.calls(rate, 8.0, 1000)
            time.sleep(2.5)
            t1 = threads(box.pid)
            n = max(r["successful"], 1)
            per = {}
            for tid, (comm, cpu, vcs) in t1.items():
                name = "main" if tid == box.pid else f"{comm}:{tid}"
                per[name] = round((cpu - t0.get(tid, (comm, 0.0, 0))[1]) * 1000 / n, 3)
                if tid == box.pid:
                    r["main_voluntary_switches_per_call"] = round((vcs - t0[tid][2]) / n, 1)
            r["cpu_ms_per_call"] = per
            results.append(r)
            print(rate, f"{r['successful']}/{r['calls']} ok, 503: {r['overload_503']}, set-up {r['setup_ms']} ms,",
                  f"main thread switches/call {r['main_voluntary_switches_per_call']}, CPU ms/call {per}", flush=True)
            time.sleep(2)
    finally:
        bench.stop_all()
    if len(argv) > 1:
        Path(argv[1]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
