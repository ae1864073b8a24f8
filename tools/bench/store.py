#!/usr/bin/env python3
"""Call-store writes as the store grows: the writer's throughput with the call ids the box
uses (time-ordered, RFC 9562 version 7) next to random uuid4 ids (what the box used before).

    tools/bench/store.py [--quick] [--calls N] [--store-calls M] [--json FILE]

Each variant writes the same N calls (as the box writes an answered internal call: the call,
two legs, five events, answer and end, legs answered and ended) through CallStore, once into
an empty store and once into a copy of the realistic store of M calls that
tools/bench/reports.py generates (cached; default 200,000). Reported: calls written per
second (wall time from the first call to the flush, synchronous=FULL as shipped), the CPU
per call of the writing process (the box's, where its event loop runs) and of the writer
process; ratios against the random-id variant, and the writing process's CPU per call
against the writer thread the box used before (``CallStore(writer="thread")``), which runs
the SQLite statements inside the writing process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from firmware.store.calls import CallStore  # noqa: E402

VARIANTS = {"shipped": {"ids": "time-ordered", "writer": "process"},
            "thread_writer": {"ids": "time-ordered", "writer": "thread"},
            "random_ids": {"ids": "uuid4", "writer": "process"}}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def write_calls(path: Path, n: int, variant: dict, t0: float) -> dict:
    k0 = _children_cpu()
    store = CallStore(path, writer=variant["writer"])
    assert store.writer == variant["writer"]
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(n):
            t = t0 + i * 0.01
            cid = store.begin_call(direction="internal", call_id=None if variant["ids"] != "uuid4" else str(uuid.uuid4()),
                                   started_at=t, caller_number="201", callee_number="202", from_extension="201",
                                   to_extension="202")
            a = store.add_leg(cid, kind="sip", endpoint="201", role="caller", leg_id=f"L{2 * i}", started_at=t)
            b = store.add_leg(cid, kind="sip", endpoint="202", role="callee", leg_id=f"L{2 * i + 1}", started_at=t)
            store.add_event(cid, "route", ts=t, result="extension")
            store.add_event(cid, "ring", ts=t, agent="202")
            store.update_leg(cid, b, answered_at=t + 2)
            store.update_call(cid, answered_at=t + 2, answered_by="202", recording_path=f"r/{i}.wav",
                              recording_state="recording")
            store.add_event(cid, "answer", ts=t + 2, agent="202")
            store.add_event(cid, "hangup", ts=t + 30, result="caller")
            store.update_leg(cid, a, ended_at=t + 30, cause=16)
            store.update_leg(cid, b, ended_at=t + 30, cause=16)
            store.add_event(cid, "recording", ts=t + 30, result="complete")
            store.end_call(cid, ended_at=t + 30, hangup_side="caller", hangup_cause=16, sip_code=200)
        store.flush(timeout=600)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        store.close()
    child = _children_cpu() - k0  # the writer process, reaped by close()
    return {"calls": n, "calls_per_s": round(n / wall, 1), "cpu_ms_per_call": round(1000 * cpu / n, 3),
            "writer_process_cpu_ms_per_call": round(1000 * child / n, 3), "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer calls written, a 20,000-call store (< 1 minute "
                    "once the store is generated)")
    ap.add_argument("--calls", type=int, help="calls written per variant and store (default 5000, quick 1500)")
    ap.add_argument("--store-calls", type=int, help="size of the realistic store (default 200000, quick 20000)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    n = args.calls or (1500 if args.quick else 5000)
    m = args.store_calls or (20_000 if args.quick else 200_000)
    import reports  # the realistic store generator (cached)
    big = reports.store_path(m, fresh=False)
    res: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                 f"Linux {platform.release()}", "calls_written": n, "stores": {}}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for store_name, src in (("empty", None), (f"{m}_calls", big)):
            out = res["stores"][store_name] = {}
            for name, variant in VARIANTS.items():
                path = Path(tmp) / f"{store_name}-{name}.sqlite"
                if src is not None:
                    shutil.copyfile(src, path)
                out[name] = write_calls(path, n, variant, t0)
                print(f"{store_name:14s} {name:26s} {out[name]}", file=sys.stderr, flush=True)
                for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    if p.exists():
                        p.unlink()
            out["ratio_vs_random_ids"] = round(out["shipped"]["calls_per_s"] / out["random_ids"]["calls_per_s"], 2)
            out["box_cpu_ratio_vs_thread_writer"] = round(out["shipped"]["cpu_ms_per_call"]
                                                          / out["thread_writer"]["cpu_ms_per_call"], 2)
    print(f"| store | {' | '.join(VARIANTS)} | shipped vs random ids (calls/s) | box process CPU, shipped vs thread writer |")
    print("|---|" + "---|" * (len(VARIANTS) + 2))
    for store_name, out in res["stores"].items():
        cells = " | ".join(f"{out[v]['calls_per_s']} calls/s ({out[v]['cpu_ms_per_call']} ms CPU in the box, "
                           f"{out[v]['writer_process_cpu_ms_per_call']} ms in the writer process)" for v in VARIANTS)
        print(f"| {store_name} | {cells} | {out['ratio_vs_random_ids']}x | {out['box_cpu_ratio_vs_thread_writer']}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
