#!/usr/bin/env python3
"""What one digest registration costs the box's event loop, without sockets or SIPp: a box is
started in-process (the service as `python -m firmware run` builds it, 200 extensions), and
REGISTER, 401, REGISTER with MD5 digest, 200 are handed to its SIP endpoint as datagrams; its
answers are caught where they would go to the socket. The main thread's CPU time (only the two
datagrams' handling, not the client's work) and the garbage collector's time are summed; what
the registrations leave alive for the collector (transactions waiting out timer J) is counted.

    tools/bench/sip_inproc.py                          # this tree, 5,000 registrations, 3 runs
    tools/bench/sip_inproc.py --tree /tmp/old --json out.json   # alternating with another tree

A diagnostic, like sip_threads.py: `sip.py` is the benchmark against Kamailio. Each run is a
fresh process of the interpreter running this script; another tree is imported from its folder.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KINDS = ("ServerTransaction", "SipRequest", "dict", "list")


async def _measure(n: int) -> dict[str, object]:
    import sip as benchsip  # tools/bench/sip.py of the tree under test
    from _sipp import free_block

    from firmware.aio.service import Options, Service
    from firmware.sip.auth import DigestClient
    from firmware.sip.message import parse_message

    work = Path(tempfile.mkdtemp(prefix="sipinproc-"))
    prov = work / "box.toml"
    prov.write_text(benchsip.provisioning("always"))
    rtp = free_block(1000)
    svc = Service(Options(data_dir=str(work / "data"), sip_bind=("127.0.0.1", 0), web_bind=("127.0.0.1", 0),
                          rtp_ports=(rtp, rtp + 999), provision=str(prov)))
    await svc.start()
    try:
        # as Service.run_forever sets the collector up after start-up
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        ep = svc.pbx.endpoint
        port = ep.local_addr[1]
        out: list[bytes] = []
        ep._udp.sendto = lambda data, addr: out.append(data)
        users = benchsip.REG_USERS
        clients = {u: DigestClient(u, benchsip.password(u), algorithms=("MD5",)) for u in users}

        def register(i: int, cseq: int, auth: str | None = None) -> bytes:
            u = users[i % len(users)]
            return (f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-{i}-{cseq};rport\r\n"
                    f"From: <sip:{u}@127.0.0.1>;tag=77R{i}\r\nTo: <sip:{u}@127.0.0.1>\r\n"
                    f"Call-ID: {i}-reg@127.0.0.1\r\nCSeq: {cseq} REGISTER\r\n"
                    f"Contact: <sip:{u}@127.0.0.1:5099;transport=UDP>\r\n"
                    + (f"Authorization: {auth}\r\n" if auth else "")
                    + "Max-Forwards: 70\r\nExpires: 3600\r\nUser-Agent: SIPp bench\r\nContent-Length: 0\r\n\r\n"
                    ).encode()

        spent = [0.0]

        def box(data: bytes) -> bytes:
            out.clear()
            t0 = time.thread_time()
            ep._datagram(data, "127.0.0.1", 5099)
            spent[0] += time.thread_time() - t0
            if not out:
                raise RuntimeError("the box did not answer")
            return out[-1]

        def one(i: int) -> None:
            challenge = parse_message(box(register(i, 1)))
            if challenge.status != 401:
                raise RuntimeError(f"expected 401, got {challenge.status}")
            auth = clients[users[i % len(users)]].authorization(parse_message(register(i, 2)),
                                                                  challenge.www_authenticate[0])
            ok = parse_message(box(register(i, 2, auth)))
            if ok.status != 200:
                raise RuntimeError(f"expected 200, got {ok.status}")

        for i in range(500):  # warm-up: every binding exists once
            one(i)
        gc_time = [0.0, 0.0]
        collections_run = [0, 0, 0]

        def probe(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_time[1] = time.thread_time()
            else:
                gc_time[0] += time.thread_time() - gc_time[1]
                collections_run[info["generation"]] += 1

        gc.collect()
        before = collections.Counter(type(o).__name__ for o in gc.get_objects())
        spent[0] = 0.0
        gc.callbacks.append(probe)
        try:
            for k in range(n):
                one(500 + k)
                if k % 200 == 0:
                    await asyncio.sleep(0)
        finally:
            gc.callbacks.remove(probe)
        after = collections.Counter(type(o).__name__ for o in gc.get_objects())
        return {"registrations": n, "us_per_registration": round(1e6 * spent[0] / n, 1),
                "gc_us_per_registration": round(1e6 * gc_time[0] / n, 1), "collections": collections_run,
                "alive_per_registration": {k: round((after[k] - before[k]) / n, 2) for k in KINDS}}
    finally:
        await svc.stop()
        shutil.rmtree(work, ignore_errors=True)


def _child(tree: str, n: int) -> None:
    sys.path[:0] = [tree, f"{tree}/tools/bench"]
    print(json.dumps(asyncio.run(_measure(n))), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registrations", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tree, alternating")
    ap.add_argument("--tree", action="append", default=[], help="another source tree to measure too")
    ap.add_argument("--json", help="write every run here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.registrations)
        return 0
    trees = [str(ROOT), *(str(Path(t).resolve()) for t in args.tree)]
    runs: dict[str, list[dict[str, object]]] = {t: [] for t in trees}
    for r in range(args.repeat):
        for tree in trees:
            proc = subprocess.run([sys.executable, __file__, "--child", tree, "--registrations",
                                   str(args.registrations)], cwd=tree, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": tree}, timeout=600)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
                return 1
            res = json.loads(lines[-1])
            runs[tree].append(res)
            print(f"run {r + 1} {tree}: {res['us_per_registration']} us per registration, "
                  f"collector {res['gc_us_per_registration']} us, left alive {res['alive_per_registration']}",
                  flush=True)
    print(f"\nInterpreter: {sys.executable} (Python {sys.version.split()[0]})\n")
    print("| tree | main thread per registration, us (median; runs) | collector, us | left alive per registration |")
    print("|---|---|---|---|")
    for tree, rs in runs.items():
        us = [float(x["us_per_registration"]) for x in rs]  # type: ignore[arg-type]
        gcs = [float(x["gc_us_per_registration"]) for x in rs]  # type: ignore[arg-type]
        alive = rs[-1]["alive_per_registration"]
        print(f"| {tree} | {statistics.median(us):.0f} ({', '.join(f'{u:.0f}' for u in us)}) "
              f"| {statistics.median(gcs):.1f} | {', '.join(f'{k} {v}' for k, v in alive.items())} |")  # type: ignore[union-attr]
    if args.json:
        Path(args.json).write_text(json.dumps({"python": sys.version, "executable": sys.executable,
                                               "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
