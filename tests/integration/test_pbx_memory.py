"""A finished call is freed the moment it ends, by reference counting, not left for Python's
cyclic garbage collector.

Under a burst of calls the collector was the box's largest single cost: each ended call was a
web of reference cycles (leg <-> SIP session, leg <-> call) that only a generation-1
collection freed, a 0.7-1 s stop of the event loop in the middle of the burst (see
tools/bench/results/sip.md). Here the box runs in this process with the collector switched
off, SIPp phones make answered, callee-ended and cancelled calls through it, and afterwards no
leg, call or INVITE session of those calls may still be alive.
"""
from __future__ import annotations

import asyncio
import gc
import socket
import time

import pytest

from firmware.aio.service import Options, Service
from firmware.pbx.calls import Call, Leg
from firmware.pbx.sipua import InviteSession
from tests.conftest import free_port
from tests.integration.conftest import BASE_PROVISION, PASSWORDS, free_block
from tests.peers.sipp import Sipp, sipp_env_ok

pytestmark = [pytest.mark.skipif(not sipp_env_ok(), reason="SIPp (sip-tester) and root needed"),
              pytest.mark.timeout(120)]


def _alive() -> list[object]:
    return [o for o in gc.get_objects() if isinstance(o, (Leg, Call, InviteSession))]


def _garbage_kinds(left: list[object]) -> str:
    """What the collector would free with them: the objects of the cycles, by type."""
    from collections import Counter
    del left[:]
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return ", ".join(f"{k} {n}" for k, n in kinds.most_common(25))


def _sipp(tmp, name: str, scenario: str, target: str | None, csv: str | None = None,
          template: dict | None = None, args: tuple = ()) -> Sipp:
    work = tmp / "sipp"
    work.mkdir(exist_ok=True)
    extra = list(args)
    if csv is not None:
        (work / f"{name}.csv.in").write_text(csv)
        extra += ["-inf", str(work / f"{name}.csv.in")]
    return Sipp(work, scenario, target=target, port=free_port(socket.SOCK_DGRAM), media_port=free_block(8),
                ctrl_port=free_port(socket.SOCK_DGRAM), args=extra, template=template or {}, name=name)


def _auth(n: str) -> str:
    return f"[authentication username={n} password={PASSWORDS[n]}]"


async def test_ended_calls_are_freed_without_the_garbage_collector(tmp_path):
    prov = tmp_path / "office.toml"
    prov.write_text(BASE_PROVISION)
    rtp = free_block(200)
    sip_port = free_port(socket.SOCK_DGRAM)
    svc = Service(Options(data_dir=str(tmp_path / "data"), provision=str(prov),
                          sip_bind=("127.0.0.1", sip_port), web_bind=("127.0.0.1", free_port()),
                          rtp_ports=(rtp, rtp + 199)))
    target = f"127.0.0.1:{sip_port}"
    await svc.start()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = {id(o) for o in _alive()}
        # 202 answers and holds the call until the caller hangs up; 203 hangs up itself;
        # 204 rings until the caller cancels.
        uas = _sipp(tmp_path, "uas", "callee.xml", None, template={"HOLD_MS": "3000", "RING_MS": "100"},
                    args=("-m", "6", "-timeout", "60s")).start()
        uas_bye = _sipp(tmp_path, "uas_bye", "callee_bye.xml", None,
                        template={"HOLD_MS": "300", "RING_MS": "100"}, args=("-m", "3", "-timeout", "60s")).start()
        uas_ring = _sipp(tmp_path, "uas_ring", "callee_ring.xml", None,
                         template={"HOLD_MS": "3000", "RING_MS": "100"}, args=("-m", "3", "-timeout", "60s")).start()
        for name, n, s in (("r202", "202", uas), ("r203", "203", uas_bye), ("r204", "204", uas_ring)):
            reg = _sipp(tmp_path, name, "register.xml", target, csv=f"SEQUENTIAL\n{n};{_auth(n)};\n",
                        template={"CONTACT": f"127.0.0.1:{s.port}", "EXPIRES": "300"}, args=("-m", "1"))
            r = await asyncio.to_thread(reg.run, 30)
            assert r.successful == 1, (r.stats, r.errors)

        calls = _sipp(tmp_path, "uac", "caller.xml", target,
                      csv="SEQUENTIAL\n" + "".join(f"201;{_auth('201')};202\n" for _ in range(6)),
                      template={"MEDIA": "", "HOLD_MS": "500"}, args=("-m", "6", "-r", "10", "-l", "1", "-timeout", "60s"))
        by_callee = _sipp(tmp_path, "uac_b", "caller.xml", target,
                          csv="SEQUENTIAL\n" + "".join(f"205;{_auth('205')};203\n" for _ in range(3)),
                          template={"MEDIA": "", "HOLD_MS": "5000"}, args=("-m", "3", "-r", "10", "-l", "1", "-timeout", "60s"))
        cancels = _sipp(tmp_path, "uac_c", "caller_cancel.xml", target,
                        csv="SEQUENTIAL\n" + "".join(f"201;{_auth('201')};204\n" for _ in range(3)),
                        args=("-m", "3", "-r", "10", "-l", "1", "-timeout", "60s"))
        results = [await asyncio.to_thread(s.run, 60) for s in (calls, by_callee, cancels)]
        assert results[0].successful == 6, (results[0].stats, results[0].errors[-2000:])
        assert results[2].successful == 3, (results[2].stats, results[2].errors[-2000:])
        for s in (uas, uas_bye, uas_ring):
            await asyncio.to_thread(s.wait, 30)

        # once the box has no call in progress, nothing of those calls may be left
        end = time.monotonic() + 20
        while time.monotonic() < end:
            left = [o for o in _alive() if id(o) not in before]
            if not left:
                break
            await asyncio.sleep(0.25)
        left = [o for o in _alive() if id(o) not in before]
        if left:
            what = f"{len(left)} call objects alive after their calls ended, e.g. {left[:4]}"
            pytest.fail(f"{what}; the cycles hold: {_garbage_kinds(left)}")
        assert not svc.pbx.active_calls
    finally:
        if was_enabled:
            gc.enable()
        await svc.stop()
