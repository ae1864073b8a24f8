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
from types import SimpleNamespace

import pytest

from firmware.aio.service import Options, Service
from firmware.pbx.calls import Call, Leg
from firmware.pbx.sipua import InviteSession
from tests.conftest import free_port
from tests.integration.conftest import BASE_PROVISION, free_block
from tests.integration.test_pbx_sipp import _stop_sipps, callee, caller_csv, register, sipp  # noqa: F401
from tests.peers.sipp import sipp_env_ok

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


async def test_ended_calls_are_freed_without_the_garbage_collector(tmp_path):
    prov = tmp_path / "office.toml"
    prov.write_text(BASE_PROVISION)
    rtp = free_block(200)
    sip_port = free_port(socket.SOCK_DGRAM)
    svc = Service(Options(data_dir=str(tmp_path / "data"), provision=str(prov),
                          sip_bind=("127.0.0.1", sip_port), web_bind=("127.0.0.1", free_port()),
                          rtp_ports=(rtp, rtp + 199)))
    # what the SIPp helpers of test_pbx_sipp need of an office; the box runs in this process,
    # so every blocking SIPp run goes to a thread while the event loop serves it
    office = SimpleNamespace(tmp=tmp_path, sip_port=sip_port)
    await svc.start()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = {id(o) for o in _alive()}
        # 202 answers and holds the call until the caller hangs up; 203 hangs up itself;
        # 204 rings until the caller cancels.
        uas = callee(office, "callee.xml", calls=6, ring_ms=100, echo=False)
        uas_bye = callee(office, "callee_bye.xml", calls=3, hold_ms=300, ring_ms=100, echo=False)
        uas_ring = callee(office, "callee_ring.xml", calls=3, ring_ms=100, echo=False)
        for n, s in (("202", uas), ("203", uas_bye), ("204", uas_ring)):
            await asyncio.to_thread(register, office, [n], s.port)

        one_at_a_time = ("-r", "10", "-l", "1", "-timeout", "60s")
        calls = sipp(office, "uac", "caller.xml", csv=caller_csv([("201", "202")] * 6),
                     template={"MEDIA": "", "HOLD_MS": "500"}, args=("-m", "6", *one_at_a_time))
        by_callee = sipp(office, "uac_b", "caller.xml", csv=caller_csv([("205", "203")] * 3),
                         template={"MEDIA": "", "HOLD_MS": "5000"}, args=("-m", "3", *one_at_a_time))
        cancels = sipp(office, "uac_c", "caller_cancel.xml", csv=caller_csv([("201", "204")] * 3),
                       args=("-m", "3", *one_at_a_time))
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
