"""Overload control (firmware.sip.overload) and the transaction layer's 503 + Retry-After, with
time travel: no sockets, no sleeping."""
from __future__ import annotations

import random

import pytest

from firmware.sip import (
    Addr,
    MessageRejected,
    RequestReceived,
    TransactionLayer,
    Via,
    make_request,
    make_response,
    parse_message,
)
from firmware.sip.overload import OverloadGuard

PHONE = Addr("udp", "192.0.2.7", 5062)


def guard(**kw) -> OverloadGuard:
    return OverloadGuard(rng=random.Random(1), **kw)


def feed(g: OverloadGuard, delays: list[float], start: float, step: float) -> float:
    """One message every `step` seconds with these queueing delays; returns the time after."""
    t = start
    for d in delays:
        g.note_delay(d, t)
        t += step
    return t


def test_quiet_box_admits_everything():
    g = guard()
    t = feed(g, [0.001] * 100, 0.0, 0.01)
    assert g.admit(t) and not g.overloaded(t)
    assert g.admitted == 1 and g.rejected == 0


def test_a_burst_drained_within_an_interval_is_absorbed():
    g = guard(target=0.05, interval=0.25)
    # a queue builds to 300 ms and drains again within 200 ms: the window's minimum stays small
    t = feed(g, [0.0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.0], 0.0, 0.03)
    t = feed(g, [0.0] * 10, t, 0.03)
    assert g.standing_delay <= 0.05
    assert g.admit(t)


def test_a_standing_queue_trips_the_guard_and_the_first_short_wait_opens_it():
    g = guard(target=0.05, interval=0.25)
    t = feed(g, [0.12] * 30, 0.0, 0.02)  # 0.6 s with every message 120 ms late
    assert g.standing_delay == pytest.approx(0.12)
    assert not g.admit(t)
    assert g.rejected == 1
    # requests with credentials finish the work already started for them
    assert g.admit(t, priority=True)
    g.note_delay(0.01, t + 0.01)  # the queue drained
    assert g.admit(t + 0.01)


def test_one_message_later_than_the_limit_is_refused_even_with_credentials():
    g = guard(target=0.05, limit=0.4)
    g.note_delay(0.45, 1.0)
    assert not g.admit(1.0) and not g.admit(1.0, priority=True)
    g.note_delay(0.02, 1.01)
    assert g.admit(1.01)


def test_event_loop_lag_and_pending_requests():
    g = guard(limit=0.4, max_pending=10)
    g.note_lag(0.5, 1.0)
    assert g.overloaded(1.0)
    g.note_lag(0.001, 1.1)
    assert not g.overloaded(1.1)
    assert g.overloaded(1.1, pending=10) and not g.overloaded(1.1, pending=9)


def test_a_quiet_spell_forgets_an_old_queue():
    g = guard(target=0.05, interval=0.25)
    t = feed(g, [0.2] * 20, 0.0, 0.02)
    assert g.overloaded(t)
    assert not g.overloaded(t + 1.0)  # nothing arrived for seconds: nothing stands
    g.note_delay(0.2, t + 1.0)  # one late message after the pause is not a standing queue yet
    assert not g.overloaded(t + 1.0)


def test_retry_after_spreads_the_returns():
    g = guard(retry_after=5, retry_jitter=5)
    values = {g.retry_after_value() for _ in range(200)}
    assert values <= set(range(5, 11)) and len(values) > 3
    assert guard(retry_after=7, retry_jitter=0).retry_after_value() == 7


@pytest.mark.parametrize("kw", [{"target": 0.5, "limit": 0.4}, {"target": 0}, {"interval": 0},
                                {"max_pending": 0}, {"retry_after": 0}, {"retry_jitter": -1}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        OverloadGuard(**kw)


# --- the transaction layer ------------------------------------------------------------------

def invite(branch: str, *, to_tag: str | None = None, auth: bool = False, call_id: str | None = None):
    to = "<sip:201@box>" + (f";tag={to_tag}" if to_tag else "")
    req = make_request("INVITE", "sip:201@box", from_addr="<sip:202@box>;tag=ft", to_addr=to,
                       call_id=call_id or f"call-{branch}", cseq=1,
                       via=Via("UDP", "192.0.2.7", 5062, {"branch": branch, "rport": None}))
    if auth:
        req.headers.add("Authorization", 'Digest username="202", realm="box", nonce="n", uri="sip:201@box", '
                                         'response="00000000000000000000000000000000"')
    return parse_message(req.serialize())


class Overloaded(OverloadGuard):
    """A guard that refuses what `refuse` says, to drive the layer."""

    refuse = True

    def overloaded(self, now, pending=0, priority=False):
        return self.refuse and not priority


def layer_with(g: OverloadGuard) -> TransactionLayer:
    return TransactionLayer(auto_trying=False, overload=g)


def drain(layer: TransactionLayer) -> tuple[list, list]:
    out = [parse_message(d) for d, _ in layer.messages_to_send()]
    events = []
    while (ev := layer.next_event()) is not None:
        events.append(ev)
    return out, events


def test_refused_invite_gets_503_with_retry_after_and_retransmissions_are_absorbed():
    g = Overloaded(retry_after=5, retry_jitter=0)
    layer = layer_with(g)
    req = invite("z9hG4bKa1")
    layer.receive(req, PHONE, 0.0)
    out, events = drain(layer)
    assert [m.status for m in out] == [503]
    assert out[0].headers.get("Retry-After") == "5" and out[0].to_tag
    assert [type(e) for e in events] == [MessageRejected] and events[0].status == 503
    # the phone retransmits: the same 503 again, nothing for the TU
    layer.receive(invite("z9hG4bKa1"), PHONE, 0.6)
    out, events = drain(layer)
    assert [m.status for m in out] == [503] and events == []
    assert layer.stats["overload_rejected"] == 1 and g.rejected == 1


def test_in_dialog_requests_and_credentials_pass_while_overloaded():
    g = Overloaded()
    layer = layer_with(g)
    layer.receive(invite("z9hG4bKb1", to_tag="ours"), PHONE, 0.0)  # a re-INVITE
    layer.receive(invite("z9hG4bKb2", auth=True), PHONE, 0.0)     # the INVITE after a 401
    bye = make_request("BYE", "sip:201@box", from_addr="<sip:202@box>;tag=ft", to_addr="<sip:201@box>;tag=ours",
                       call_id="c", cseq=2, via=Via("UDP", "192.0.2.7", 5062, {"branch": "z9hG4bKb3"}))
    layer.receive(parse_message(bye.serialize()), PHONE, 0.0)
    out, events = drain(layer)
    assert out == []
    assert [e.request.method for e in events if isinstance(e, RequestReceived)] == ["INVITE", "INVITE", "BYE"]


def test_pending_counts_requests_until_their_final_answer():
    g = Overloaded()
    g.refuse = False
    layer = layer_with(g)
    for i in range(3):
        layer.receive(invite(f"z9hG4bKc{i}"), PHONE, 0.0)
    _, events = drain(layer)
    assert layer.pending == 3
    layer.send_response(events[0].transaction, make_response(events[0].request, 180), 0.1)
    assert layer.pending == 3
    layer.send_response(events[0].transaction, make_response(events[0].request, 486), 0.1)
    layer.send_response(events[1].transaction, make_response(events[1].request, 200, to_tag="t"), 0.1)
    assert layer.pending == 1
    layer.terminate(events[2].transaction)
    assert layer.pending == 0


def test_too_many_pending_requests_refuse_new_ones():
    layer = layer_with(OverloadGuard(max_pending=2, rng=random.Random(1)))
    for i in range(3):
        layer.receive(invite(f"z9hG4bKd{i}"), PHONE, 0.0)
    out, events = drain(layer)
    assert [m.status for m in out] == [503]
    assert sum(isinstance(e, RequestReceived) for e in events) == 2


def test_without_a_guard_nothing_is_refused():
    layer = TransactionLayer(auto_trying=False)
    for i in range(50):
        layer.receive(invite(f"z9hG4bKe{i}"), PHONE, 0.0)
    out, events = drain(layer)
    assert out == [] and len(events) == 50
