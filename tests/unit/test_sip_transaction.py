"""Transaction layer (RFC 3261 section 17, RFC 6026) with time travel: no sockets, no sleeping."""
from __future__ import annotations

import gc
import inspect
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.sip import (
    AckReceived,
    AckTimeout,
    Addr,
    CancelReceived,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    SipRequest,
    SipResponse,
    Timers,
    TransactionError,
    TransactionLayer,
    TransactionTimeout,
    TransportError,
    Via,
    make_request,
    make_response,
    parse_message,
)
from firmware.sip._states import INITIAL, TRANSITIONS, State

UDP = Addr("udp", "192.0.2.7", 5062)
TCP = Addr("tcp", "192.0.2.7", 40001)
BOX = Addr("udp", "192.0.2.1", 5060)


def request(method: str = "OPTIONS", branch: str = "z9hG4bKb1", cseq: int = 1, to_tag: str | None = None,
            call_id: str = "c1", transport: str = "UDP") -> SipRequest:
    to = "<sip:201@box>" + (f";tag={to_tag}" if to_tag else "")
    return make_request(method, "sip:201@box", from_addr="<sip:202@box>;tag=ft", to_addr=to,
                        call_id=call_id, cseq=cseq,
                        via=Via(transport, "192.0.2.7", 5062, {"branch": branch, "rport": None}))


def wire(msg) -> SipRequest | SipResponse:
    """What the other side parses (a copy, as over a network)."""
    return parse_message(msg.serialize())


class _Timed:
    """The layer, with every call that takes ``now`` also moving the recorder's clock and
    collecting what the call produced."""

    def __init__(self, layer: TransactionLayer, rec: Recorder) -> None:
        self._layer = layer
        self._rec = rec

    def __getattr__(self, name: str):
        attr = getattr(self._layer, name)
        if not callable(attr) or "now" not in inspect.signature(attr).parameters:
            return attr

        def timed(*args, **kwargs):
            now = inspect.signature(attr).bind(*args, **kwargs).arguments["now"]
            if now is not None:
                self._rec.now = now
            result = attr(*args, **kwargs)
            self._rec.drain()
            return result
        return timed

    def __len__(self) -> int:
        return len(self._layer)


class Recorder:
    """Drives a layer through time and records what it sends and reports."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.raw = layer
        self.layer = _Timed(layer, self)
        self.sent: list[tuple[float, bytes, Addr]] = []
        self.events: list = []
        self.now = 0.0

    def drain(self) -> None:
        for data, dest in self.raw.messages_to_send():
            self.sent.append((self.now, data, dest))
        while (ev := self.raw.next_event()) is not None:
            self.events.append(ev)

    def run_until(self, t: float, max_steps: int = 1000) -> None:
        self.drain()
        for _ in range(max_steps):
            when = self.layer.get_timer()
            if when is None or when > t:
                break
            self.now = max(self.now, when)
            self.raw.handle_timer(self.now)
            self.drain()
        else:
            raise AssertionError("timer loop did not settle")
        self.now = max(self.now, t)

    def times(self, first_line: bytes) -> list[float]:
        return [round(t, 3) for t, data, _ in self.sent if data.startswith(first_line)]

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]


# --- the tables themselves ------------------------------------------------------------------
def test_every_state_reachable_from_initial_has_a_way_out():
    for kind, (start, _) in INITIAL.items():
        seen, todo = set(), [start]
        while todo:
            s = todo.pop()
            if s in seen or s is State.TERMINATED:
                continue
            seen.add(s)
            nexts = {dst for dst, _ in TRANSITIONS[kind][s].values()}
            assert nexts != {s}, f"{kind} {s} can never leave"
            todo.extend(nexts)
        assert seen == set(TRANSITIONS[kind]), kind


def test_timer_inputs_only_appear_where_the_timer_is_started():
    for kind, states in TRANSITIONS.items():
        started = {a[1] for _, acts in [INITIAL[kind]] for a in acts if a[0] == "start"}
        for s, table in states.items():
            for _, acts in table.values():
                started |= {a[1] for a in acts if a[0] == "start"}
        for s, table in states.items():
            for inp in table:
                if inp.name.startswith("TIMER_"):
                    assert inp.name[-1] in started, (kind, s, inp)


# --- non-INVITE client ----------------------------------------------------------------------
def test_non_invite_client_udp_retransmits_500ms_1s_2s_4s_4s_then_times_out_at_32s():
    rec = Recorder(TransactionLayer())
    txn = rec.layer.send_request(request(), UDP, 0.0)
    rec.run_until(40)
    assert rec.times(b"OPTIONS") == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    (timeout,) = rec.of(TransactionTimeout)
    assert timeout.transaction is txn and timeout.timer == "F" and txn.terminated
    assert len(rec.layer) == 0 and rec.layer.get_timer() is None


def test_non_invite_client_tcp_sends_once_and_still_times_out():
    rec = Recorder(TransactionLayer())
    rec.layer.send_request(request(transport="TCP"), TCP, 0.0)
    rec.drain()
    assert rec.layer.get_timer() == 32.0
    rec.run_until(40)
    assert rec.times(b"OPTIONS") == [0]
    assert rec.of(TransactionTimeout)[0].timer == "F"


def test_non_invite_client_provisional_moves_retransmissions_to_t2():
    rec = Recorder(TransactionLayer())
    req = request()
    txn = rec.layer.send_request(req, UDP, 0.0)
    rec.run_until(0.6)
    rec.layer.receive(wire(make_response(req, 100)), UDP, 0.6)
    rec.run_until(13)
    assert rec.times(b"OPTIONS") == [0, 0.5, 1.5, 5.5, 9.5]
    assert txn.state is State.PROCEEDING and rec.of(ResponseReceived)[0].response.status == 100


def test_non_invite_client_final_response_completes_absorbs_retransmissions_timer_k():
    rec = Recorder(TransactionLayer(timers=Timers(t4=2.0)))
    req = request()
    txn = rec.layer.send_request(req, UDP, 0.0)
    ok = make_response(req, 200, to_tag="t")
    rec.layer.receive(wire(ok), UDP, 0.1)
    rec.layer.receive(wire(ok), UDP, 0.2)
    rec.run_until(1.0)
    assert [e.response.status for e in rec.of(ResponseReceived)] == [200]
    assert txn.state is State.COMPLETED and rec.layer.get_timer() == pytest.approx(2.1)
    rec.run_until(3)
    assert txn.terminated and rec.times(b"OPTIONS") == [0]


def test_timer_k_is_zero_on_tcp():
    rec = Recorder(TransactionLayer())
    req = request(transport="TCP")
    txn = rec.layer.send_request(req, TCP, 0.0)
    rec.layer.receive(wire(make_response(req, 404)), TCP, 0.1)
    assert rec.layer.get_timer() == 0.1
    rec.run_until(0.1)
    assert txn.terminated


# --- INVITE client ----------------------------------------------------------------------------
def test_invite_client_timer_a_doubles_without_cap_and_b_fires_at_32s():
    rec = Recorder(TransactionLayer())
    txn = rec.layer.send_request(request("INVITE"), UDP, 0.0)
    rec.run_until(40)
    assert rec.times(b"INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert rec.of(TransactionTimeout)[0].timer == "B" and txn.terminated


def test_invite_client_acks_a_failure_itself_and_reacks_its_retransmission():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE", cseq=4)
    txn = rec.layer.send_request(inv, UDP, 0.0)
    rec.layer.receive(wire(make_response(inv, 180, to_tag="tt")), UDP, 0.1)
    busy = wire(make_response(inv, 486, to_tag="tt"))
    rec.layer.receive(busy, UDP, 0.2)
    rec.layer.receive(busy, UDP, 0.3)
    rec.run_until(0.3)
    acks = [parse_message(d) for t, d, _ in rec.sent if d.startswith(b"ACK")]
    assert len(acks) == 2
    ack = acks[0]
    assert ack.top_via.branch == "z9hG4bKb1" and ack.to_tag == "tt" and ack.cseq.seq == 4
    assert ack.cseq.method == "ACK" and ack.from_tag == "ft" and str(ack.uri) == "sip:201@box"
    assert [e.response.status for e in rec.of(ResponseReceived)] == [180, 486]
    assert txn.state is State.COMPLETED
    rec.run_until(32.1)
    assert not txn.terminated
    rec.run_until(32.3)
    assert txn.terminated and rec.times(b"INVITE") == [0]


def test_invite_client_timer_d_is_zero_on_tcp():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE", transport="TCP")
    txn = rec.layer.send_request(inv, TCP, 0.0)
    rec.layer.receive(wire(make_response(inv, 603)), TCP, 1.0)
    rec.run_until(1.0)
    assert txn.terminated and rec.times(b"ACK") == [1.0]


def test_invite_client_2xx_goes_to_accepted_and_passes_retransmissions_to_the_tu():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    txn = rec.layer.send_request(inv, UDP, 0.0)
    ok = wire(make_response(inv, 200, to_tag="tt"))
    rec.layer.receive(ok, UDP, 0.1)
    rec.layer.receive(ok, UDP, 0.6)
    rec.layer.receive(wire(make_response(inv, 486, to_tag="x")), UDP, 0.7)
    rec.run_until(1)
    assert [(e.response.status, e.retransmission) for e in rec.of(ResponseReceived)] == [(200, False), (200, True)]
    assert rec.times(b"ACK") == [] and txn.state is State.ACCEPTED
    rec.run_until(32.2)
    assert txn.terminated and rec.times(b"INVITE") == [0]


def test_timer_c_asks_the_tu_to_cancel_an_unanswered_invite():
    rec = Recorder(TransactionLayer(timers=Timers(timer_c=181.0)))
    inv = request("INVITE")
    txn = rec.layer.send_request(inv, UDP, 0.0)
    rec.layer.receive(wire(make_response(inv, 180, to_tag="t")), UDP, 1.0)
    rec.run_until(100)
    rec.layer.receive(wire(make_response(inv, 180, to_tag="t")), UDP, 100.0)
    rec.run_until(280)
    assert rec.of(TransactionTimeout) == []
    rec.run_until(282)
    assert [e.timer for e in rec.of(TransactionTimeout)] == ["C"] and txn.state is State.PROCEEDING


# --- server transactions ----------------------------------------------------------------------------
def test_invite_server_sends_100_then_replays_the_last_provisional_on_retransmission():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.drain()
    (ev,) = rec.of(RequestReceived)
    assert rec.times(b"SIP/2.0 100") == [0]
    rec.layer.receive(wire(inv), UDP, 0.5)
    rec.layer.send_response(ev.transaction, make_response(ev.request, 180, to_tag="me"), 0.6)
    rec.layer.receive(wire(inv), UDP, 1.0)
    rec.drain()
    assert rec.times(b"SIP/2.0 100") == [0, 0.5] and rec.times(b"SIP/2.0 180") == [0.6, 1.0]
    assert len(rec.of(RequestReceived)) == 1 and rec.layer.stats["retransmissions_absorbed"] == 2


def test_invite_server_failure_retransmits_with_g_capped_at_t2_until_ack_then_timer_i():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 486, to_tag="me"), 0.0)
    rec.run_until(12)
    assert rec.times(b"SIP/2.0 486") == [0, 0.5, 1.5, 3.5, 7.5, 11.5]
    ack = parse_message(rec.sent[-1][1])
    rec.layer.receive(wire(_ack_for(inv, "me")), UDP, 12.0)
    rec.layer.receive(wire(inv), UDP, 12.5)
    rec.layer.receive(wire(_ack_for(inv, "me")), UDP, 13.0)
    assert ack.status == 486 and txn.state is State.CONFIRMED
    rec.run_until(16.9)
    assert rec.times(b"SIP/2.0 486")[-1] == 11.5 and not txn.terminated
    rec.run_until(17.1)
    assert txn.terminated and rec.of(AckReceived) == [] and rec.of(TransactionTimeout) == []


def _ack_for(inv: SipRequest, to_tag: str, branch: str | None = None) -> SipRequest:
    ack = make_request("ACK", inv.uri, from_addr=inv.from_addr, to_addr=inv.to_addr.with_tag(to_tag),
                       call_id=inv.call_id, cseq=inv.cseq.seq,
                       via=branch and Via("UDP", "192.0.2.7", 5062, {"branch": branch}) or inv.top_via)
    return ack


def test_invite_server_timer_h_reports_a_missing_ack():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(request("INVITE")), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 480), 0.0)
    rec.run_until(40)
    (t,) = rec.of(TransactionTimeout)
    assert t.timer == "H" and t.transaction is txn and txn.terminated


def test_invite_server_on_tcp_never_retransmits_and_confirms_at_once():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE", transport="TCP")
    rec.layer.receive(wire(inv), TCP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 486, to_tag="me"), 0.0)
    rec.layer.receive(wire(_ack_for(inv, "me")), TCP, 0.2)
    rec.run_until(0.2)
    assert txn.terminated and rec.times(b"SIP/2.0 486") == [0]


def test_2xx_is_retransmitted_until_an_ack_with_a_random_to_tag_arrives():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 200, to_tag="me"), 0.0)
    rec.run_until(8)
    assert rec.times(b"SIP/2.0 200") == [0, 0.5, 1.5, 3.5, 7.5]
    assert txn.state is State.ACCEPTED
    ack = _ack_for(inv, "pyvoip-random-tag", branch="z9hG4bKnewbranch")
    rec.layer.receive(wire(ack), UDP, 8.0)
    rec.layer.receive(wire(ack), UDP, 8.5)
    rec.run_until(40)
    assert rec.times(b"SIP/2.0 200") == [0, 0.5, 1.5, 3.5, 7.5]
    assert [(e.transaction, e.duplicate) for e in rec.of(AckReceived)] == [(txn, False), (txn, True)]
    assert rec.of(AckTimeout) == [] and txn.terminated


def test_2xx_ack_reusing_the_invite_branch_is_also_recognised():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 200, to_tag="me"), 0.0)
    rec.layer.receive(wire(_ack_for(inv, "random")), UDP, 0.2)
    rec.layer.receive(wire(inv), UDP, 0.3)
    rec.run_until(5)
    assert rec.times(b"SIP/2.0 200") == [0]
    assert [(e.transaction, e.duplicate) for e in rec.of(AckReceived)] == [(txn, False)]


def test_unacknowledged_2xx_raises_ack_timeout_after_64_t1():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(request("INVITE")), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    ok = make_response(txn.request, 200, to_tag="me")
    rec.layer.send_response(txn, ok, 0.0)
    rec.layer.send_response(txn, ok, 0.1)
    rec.run_until(40)
    assert rec.times(b"SIP/2.0 200")[:3] == [0, 0.1, 0.5]
    assert rec.times(b"SIP/2.0 200")[-1] == 31.5
    assert [e.transaction for e in rec.of(AckTimeout)] == [txn]


def test_2xx_over_tcp_is_not_retransmitted_but_the_ack_is_still_awaited():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(request("INVITE", transport="TCP")), TCP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 200, to_tag="me"), 0.0)
    rec.run_until(40)
    assert rec.times(b"SIP/2.0 200") == [0] and len(rec.of(AckTimeout)) == 1


def test_stray_ack_goes_to_the_tu_without_a_transaction():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(_ack_for(request("INVITE"), "x", branch="z9hG4bKstray")), UDP, 0.0)
    rec.drain()
    (ev,) = rec.of(AckReceived)
    assert ev.transaction is None and not ev.duplicate


def test_reused_branch_with_a_new_cseq_is_a_new_request_not_a_retransmission():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(request("INVITE", cseq=1)), UDP, 0.0)
    rec.drain()
    first = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(first, make_response(first.request, 401), 0.0)
    rec.layer.receive(wire(_ack_for(first.request, first.to_tag)), UDP, 0.1)
    rec.layer.receive(wire(request("INVITE", cseq=2)), UDP, 0.2)
    rec.drain()
    assert len(rec.of(RequestReceived)) == 2 and first.state is State.CONFIRMED
    assert rec.of(RequestReceived)[1].request.cseq.seq == 2


def test_non_invite_server_absorbs_in_trying_and_replays_the_final_until_timer_j():
    rec = Recorder(TransactionLayer())
    req = request("REGISTER")
    rec.layer.receive(wire(req), UDP, 0.0)
    rec.layer.receive(wire(req), UDP, 0.4)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    assert rec.sent == []
    rec.layer.send_response(txn, make_response(txn.request, 100), 0.5)
    rec.layer.receive(wire(req), UDP, 0.6)
    rec.layer.send_response(txn, make_response(txn.request, 200), 0.7)
    rec.layer.receive(wire(req), UDP, 1.0)
    rec.run_until(20)
    assert rec.times(b"SIP/2.0 100") == [0.5, 0.6] and rec.times(b"SIP/2.0 200") == [0.7, 1.0]
    with pytest.raises(TransactionError, match="non-INVITE server transaction is Completed"):
        rec.layer.send_response(txn, make_response(txn.request, 500), 2.0)
    rec.run_until(32.8)
    assert txn.terminated
    with pytest.raises(TransactionError, match="no live server transaction"):
        rec.layer.send_response(txn, make_response(txn.request, 500), 33.0)


def test_answered_requests_wait_out_timer_j_without_their_transactions():
    """A burst of REGISTERs answered at once leaves, for timer J, only what a retransmission
    needs: the transactions (with their parsed requests) are freed when the TU drops them, so
    the garbage collector has nothing of a registration storm to walk for 32 s."""
    rec = Recorder(TransactionLayer())
    gone = []
    for i in range(200):
        rec.layer.receive(wire(request("REGISTER", branch=f"z9hG4bKs{i}", call_id=f"s{i}")), UDP, 0.001 * i)
        rec.drain()
        txn = rec.events.pop().transaction
        rec.layer.send_response(txn, make_response(txn.request, 200, to_tag=f"t{i}"), 0.001 * i)
        gone.append(weakref.ref(txn))
        del txn
    gc.collect()
    assert all(ref() is None for ref in gone) and len(rec.layer) == 200
    rec.layer.receive(wire(request("REGISTER", branch="z9hG4bKs7", call_id="s7")), UDP, 5.0)
    rec.drain()
    assert rec.events == [] and rec.times(b"SIP/2.0 200")[-1] == 5.0
    assert b"tag=t7" in rec.sent[-1][1] and rec.sent[-1][2] == Addr("udp", "192.0.2.7", 5062)
    rec.run_until(40.0)
    assert len(rec.layer) == 0 and rec.raw.get_timer() is None


def test_send_response_finds_the_transaction_from_the_request():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(request("OPTIONS", transport="TCP")), TCP, 0.0)
    rec.drain()
    req = rec.of(RequestReceived)[0].request
    assert rec.layer.find_server_transaction(req) is rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(req, make_response(req, 200), 0.1)
    rec.run_until(0.1)
    assert rec.times(b"SIP/2.0 200") == [0.1] and len(rec.layer) == 0
    with pytest.raises(TransactionError):
        rec.layer.send_response(req, make_response(req, 200), 0.2)


# --- CANCEL ---------------------------------------------------------------------------------------
def _cancel_for(inv: SipRequest) -> SipRequest:
    from firmware.sip import make_cancel
    return make_cancel(inv)


def test_cancel_of_a_ringing_invite_gets_200_and_the_invite_gets_487_with_the_same_tag():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 180, to_tag="ring"), 0.1)
    rec.layer.receive(wire(_cancel_for(inv)), UDP, 1.0)
    rec.drain()
    answers = [parse_message(d) for t, d, _ in rec.sent if t == 1.0]
    assert [(r.status, r.cseq.method, r.to_tag) for r in answers] == [(200, "CANCEL", "ring"), (487, "INVITE", "ring")]
    (ev,) = rec.of(CancelReceived)
    assert ev.transaction is txn and ev.request.method == "CANCEL" and txn.state is State.COMPLETED
    with pytest.raises(TransactionError):
        rec.layer.send_response(txn, make_response(txn.request, 200, to_tag="ring"), 1.1)
    rec.layer.receive(wire(_cancel_for(inv)), UDP, 1.2)
    rec.drain()
    assert rec.times(b"SIP/2.0 200") == [1.0, 1.2] and len(rec.of(CancelReceived)) == 1
    rec.layer.receive(wire(_ack_for(inv, "ring")), UDP, 1.3)
    assert txn.state is State.CONFIRMED


def test_cancel_racing_a_200_changes_nothing_but_is_answered_200():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 200, to_tag="ans"), 0.1)
    rec.layer.receive(wire(_cancel_for(inv)), UDP, 0.2)
    rec.drain()
    assert rec.times(b"SIP/2.0 487") == [] and rec.of(CancelReceived) == []
    cancel_answer = parse_message(rec.sent[-1][1])
    assert (cancel_answer.status, cancel_answer.cseq.method) == (200, "CANCEL")
    assert txn.state is State.ACCEPTED


def test_cancel_without_a_matching_invite_gets_481():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(_cancel_for(request("INVITE", branch="z9hG4bKnone"))), UDP, 0.0)
    rec.drain()
    assert rec.times(b"SIP/2.0 481") == [0] and rec.of(CancelReceived) == []


def test_client_cancel_waits_for_a_provisional_response():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    txn = rec.layer.send_request(inv, UDP, 0.0)
    assert rec.layer.cancel(txn, 0.1, reason="SIP;cause=200") is None
    rec.run_until(0.2)
    assert rec.times(b"CANCEL") == []
    rec.layer.receive(wire(make_response(inv, 180, to_tag="r")), UDP, 0.3)
    rec.drain()
    assert rec.times(b"CANCEL") == [0.3] and txn.cancel_transaction is not None
    cancel = parse_message(next(d for _, d, _ in rec.sent if d.startswith(b"CANCEL")))
    assert cancel.top_via.branch == inv.top_via.branch and cancel.reasons[0].cause == 200
    rec.layer.receive(wire(make_response(cancel, 200)), UDP, 0.4)
    rec.layer.receive(wire(make_response(inv, 487, to_tag="r")), UDP, 0.5)
    rec.drain()
    assert rec.times(b"ACK") == [0.5]
    assert [e.response.status for e in rec.of(ResponseReceived)] == [180, 200, 487]


def test_client_cancel_held_back_is_dropped_when_a_final_response_wins_the_race():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    txn = rec.layer.send_request(inv, UDP, 0.0)
    rec.layer.cancel(txn, 0.1)
    rec.layer.receive(wire(make_response(inv, 200, to_tag="a")), UDP, 0.2)
    rec.run_until(1)
    assert rec.times(b"CANCEL") == [] and txn.state is State.ACCEPTED
    assert rec.layer.cancel(txn, 1.0) is None


def test_client_cancel_after_a_provisional_is_sent_at_once_and_guards_with_timer_b():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    txn = rec.layer.send_request(inv, UDP, 0.0)
    rec.layer.receive(wire(make_response(inv, 183, to_tag="r")), UDP, 0.1)
    ctxn = rec.layer.cancel(txn, 5.0)
    assert ctxn is not None and ctxn.method == "CANCEL" and rec.layer.cancel(txn, 5.1) is None
    rec.layer.receive(wire(make_response(ctxn.request, 200)), UDP, 5.2)
    rec.run_until(40)
    assert [e.timer for e in rec.of(TransactionTimeout)] == ["B"] and txn.terminated
    with pytest.raises(TransactionError, match="only an INVITE"):
        rec.layer.cancel(ctxn, 41)


# --- addressing and odd input -----------------------------------------------------------------
def test_received_and_rport_are_added_and_responses_follow_the_source():
    rec = Recorder(TransactionLayer())
    req = request()
    req.set_top_via(Via("UDP", "10.0.0.5", 5060, {"branch": "z9hG4bKnat"}))
    rec.layer.receive(wire(req), UDP, 0.0)
    rec.drain()
    ev = rec.of(RequestReceived)[0]
    assert ev.request.top_via.received == "192.0.2.7" and ev.request.top_via.rport == 5062
    rec.layer.send_response(ev.transaction, make_response(ev.request, 200), 0.0)
    rec.drain()
    assert rec.sent[-1][2] == UDP
    resp = parse_message(rec.sent[-1][1])
    assert resp.top_via.received == "192.0.2.7"


def test_without_force_rport_rfc3261_18_2_2_addressing_applies():
    rec = Recorder(TransactionLayer(force_rport=False))
    req = request()
    req.set_top_via(Via("UDP", "10.0.0.5", None, {"branch": "z9hG4bKnat"}))
    rec.layer.receive(wire(req), UDP, 0.0)
    req2 = request(branch="z9hG4bKsame")
    req2.set_top_via(Via("UDP", "192.0.2.7", 5070, {"branch": "z9hG4bKsame"}))
    rec.layer.receive(wire(req2), UDP, 0.0)
    req3 = request(branch="z9hG4bKr")
    req3.set_top_via(Via("UDP", "10.0.0.5", 5070, {"branch": "z9hG4bKr", "rport": None}))
    rec.layer.receive(wire(req3), UDP, 0.0)
    rec.drain()
    evs = rec.of(RequestReceived)
    assert [e.transaction.response_dest for e in evs] == [
        Addr("udp", "192.0.2.7", 5060), Addr("udp", "192.0.2.7", 5070), UDP]
    assert evs[1].request.top_via.received is None
    assert evs[2].request.top_via.rport == 5062


def test_unsupported_request_uri_scheme_gets_416():
    rec = Recorder(TransactionLayer())
    req = request()
    req.uri = parse_message(b"OPTIONS im:alice@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                            b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n").uri
    rec.layer.receive(wire(req), UDP, 0.0)
    rec.drain()
    assert rec.times(b"SIP/2.0 416") == [0] and rec.of(RequestReceived) == []


def test_rfc2543_requests_are_matched_without_a_magic_cookie():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE", branch="oldstyle")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.layer.receive(wire(inv), UDP, 0.5)
    rec.drain()
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(txn.request, 404, to_tag="nf"), 0.6)
    rec.layer.receive(wire(_ack_for(inv, "nf")), UDP, 0.7)
    assert len(rec.of(RequestReceived)) == 1 and txn.state is State.CONFIRMED
    bare = request("OPTIONS")
    bare.set_top_via(Via("UDP", "192.0.2.7", 5062, {}))
    rec.layer.receive(wire(bare), UDP, 1.0)
    rec.layer.receive(wire(bare), UDP, 1.1)
    rec.drain()
    assert len(rec.of(RequestReceived)) == 2


def test_malformed_datagrams_are_answered_or_dropped_and_reported():
    rec = Recorder(TransactionLayer())
    bad = request().serialize().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    rec.layer.receive_datagram(bad, UDP, 0.0)
    rec.layer.receive_datagram(b"\x00\x01garbage", UDP, 0.0)
    rec.drain()
    assert [(e.status, e.reason) for e in rec.of(MessageRejected)] == [
        (400, "CSeq method does not match the request method"), (None, "Not a SIP message")]
    (line,) = [d.split(b"\r\n")[0] for _, d, a in rec.sent]
    assert line == b"SIP/2.0 400 CSeq method does not match the request method"
    assert rec.layer.stats["rejected"] == 2


def test_stray_responses_are_counted_and_ignored():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(make_response(request(), 200)), UDP, 0.0)
    rec.drain()
    assert rec.events == [] and rec.layer.stats["stray_responses"] == 1


def test_send_request_adds_via_and_branch_and_refuses_acks_and_duplicates():
    layer = TransactionLayer()
    layer.set_sent_by("udp", "192.0.2.1", 5090)
    req = make_request("OPTIONS", "sip:x@y", from_addr="<sip:a@b>", to_addr="<sip:x@y>")
    txn = layer.send_request(req, UDP, 0.0)
    via = req.top_via
    assert (via.transport, via.host, via.port, via.has_rport) == ("UDP", "192.0.2.1", 5090, True)
    assert txn.branch.startswith("z9hG4bK") and txn.method == "OPTIONS"
    req2 = make_request("OPTIONS", "sip:x@y", from_addr="<sip:a@b>", to_addr="<sip:x@y>",
                        via=Via("TCP", "h", None, {}))
    assert layer.send_request(req2, TCP, 0.0).branch.startswith("z9hG4bK")
    with pytest.raises(TransactionError, match="not a transaction"):
        layer.send_request(make_request("ACK", "sip:x@y", from_addr="<sip:a@b>", to_addr="<sip:x@y>"), UDP, 0.0)
    with pytest.raises(TransactionError, match="exists"):
        layer.send_request(req, UDP, 0.0)
    ack = make_request("ACK", "sip:x@y", from_addr="<sip:a@b>", to_addr="<sip:x@y>")
    layer.send_stateless(ack, UDP)
    assert layer.messages_to_send()[-1] == (ack.serialize(), UDP)


def test_transport_error_fails_the_transactions_of_that_address():
    rec = Recorder(TransactionLayer())
    txn = rec.layer.send_request(request(transport="TCP"), TCP, 0.0)
    rec.layer.receive(wire(request("INVITE", branch="z9hG4bKin", transport="TCP")), TCP, 0.0)
    rec.layer.transport_error(TCP, 0.5, "connection refused")
    rec.drain()
    errs = rec.of(TransportError)
    assert [(e.transaction.method, e.dest, e.reason) for e in errs] == [
        ("OPTIONS", TCP, "connection refused"), ("INVITE", TCP, "connection refused")]
    assert txn.terminated and len(rec.layer) == 0


# --- two layers talking, with loss ------------------------------------------------------------------
def test_uac_and_uas_layers_complete_a_call_setup_through_a_lossy_network():
    uac, uas = Recorder(TransactionLayer()), Recorder(TransactionLayer())
    lost = {"INVITE": 2, "SIP/2.0 200": 1}

    def transfer(src: Recorder, dst: Recorder, from_addr: Addr) -> None:
        for data, _ in src.raw.messages_to_send():
            key = next((k for k in lost if data.startswith(k.encode())), None)
            if key and lost[key] > 0:
                lost[key] -= 1
                continue
            dst.raw.receive_datagram(data, from_addr, dst.now)

    inv = request("INVITE")
    txn = uac.raw.send_request(inv, BOX, 0.0)
    answered = acked = False
    for step in range(200):
        t = step * 0.1
        uac.now = uas.now = t
        for r in (uac, uas):
            while (w := r.raw.get_timer()) is not None and w <= t:
                r.raw.handle_timer(t)
        transfer(uac, uas, UDP)
        while (ev := uas.raw.next_event()) is not None:
            if isinstance(ev, RequestReceived) and not answered:
                uas.raw.send_response(ev.transaction, make_response(ev.request, 200, to_tag="u"), t)
                answered = True
            elif isinstance(ev, AckReceived):
                acked = True
        transfer(uas, uac, BOX)
        while (ev := uac.raw.next_event()) is not None:
            if isinstance(ev, ResponseReceived) and ev.response.status == 200:
                uac.raw.send_stateless(_ack_for(inv, ev.response.to_tag, branch="z9hG4bKack"), BOX)
        if acked:
            break
    assert answered and acked and txn.state is State.ACCEPTED
    assert lost == {"INVITE": 0, "SIP/2.0 200": 0}


# --- what a security policy needs ----------------------------------------------------------------------
def test_filtered_requests_get_no_transaction_no_100_and_no_event_but_a_rejection():
    def scanners_out(req, source):
        return "friendly-scanner" not in (req.user_agent or "")

    rec = Recorder(TransactionLayer(accept_request=scanners_out))
    inv = request("INVITE")
    inv.headers.add("User-Agent", "friendly-scanner")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.layer.receive(wire(request("OPTIONS", branch="z9hG4bKok")), UDP, 0.0)
    assert rec.sent == [] and len(rec.raw) == 1
    assert [(e.status, e.reason) for e in rec.of(MessageRejected)] == [(None, "filtered")]
    assert [e.request.method for e in rec.of(RequestReceived)] == ["OPTIONS"]


def test_an_unanswered_non_invite_request_is_forgotten_after_64_t1():
    rec = Recorder(TransactionLayer())
    req = request("MESSAGE")
    rec.layer.receive(wire(req), UDP, 0.0)
    rec.layer.receive(wire(req), UDP, 10.0)
    rec.run_until(31.9)
    assert len(rec.raw) == 1
    rec.run_until(32.1)
    assert len(rec.raw) == 0 and rec.sent == [] and rec.of(TransactionTimeout) == []
    rec.layer.receive(wire(req), UDP, 33.0)
    assert len(rec.of(RequestReceived)) == 2


def test_terminate_forgets_a_transaction_silently():
    rec = Recorder(TransactionLayer())
    rec.layer.receive(wire(request("INVITE")), UDP, 0.0)
    txn = rec.of(RequestReceived)[0].transaction
    rec.raw.terminate(txn)
    assert txn.terminated and len(rec.raw) == 0 and rec.raw.get_timer() is None
    with pytest.raises(TransactionError):
        rec.layer.send_response(txn, make_response(txn.request, 200), 1.0)
    ctxn = rec.layer.send_request(request(branch="z9hG4bKc"), UDP, 1.0)
    rec.raw.terminate(ctxn)
    rec.run_until(40)
    assert rec.times(b"OPTIONS") == [1.0] and rec.of(TransactionTimeout) == []


def test_a_stateless_final_is_sent_once_and_keeps_nothing():
    """RFC 3261 8.2.7, the box's challenges: the 407 leaves once, no timer runs, its ACK finds
    no transaction, and a retransmitted INVITE is a new request (challenged anew)."""
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    txn = rec.of(RequestReceived)[0].transaction
    with pytest.raises(TransactionError):
        rec.raw.send_final_stateless(txn, make_response(txn.request, 200, to_tag="me"))
    rec.raw.send_final_stateless(txn, make_response(txn.request, 407, to_tag="me"))
    rec.drain()
    assert txn.terminated and len(rec.raw) == 0 and rec.raw.get_timer() is None
    with pytest.raises(TransactionError):
        rec.raw.send_final_stateless(txn, make_response(txn.request, 407, to_tag="me"))
    rec.layer.receive(wire(_ack_for(inv, "me")), UDP, 0.1)
    rec.layer.receive(wire(inv), UDP, 0.6)
    rec.run_until(40)
    assert rec.times(b"SIP/2.0 407") == [0.0] and rec.raw.stats["stateless_finals"] == 1
    (ack,) = rec.of(AckReceived)
    assert ack.transaction is None
    assert len(rec.of(RequestReceived)) == 2 and rec.of(TransactionTimeout) == []


def test_a_phone_repeating_its_branch_after_a_restart_makes_a_new_transaction():
    """Same branch, Call-ID and CSeq as an answered INVITE whose transaction waits out timer L,
    but a new From tag: a new request (a rebooted phone with counter-made branches), while the
    same message again is a retransmission and is absorbed."""
    rec = Recorder(TransactionLayer())
    first = request("INVITE")
    rec.layer.receive(wire(first), UDP, 0.0)
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.send_response(txn, make_response(first, 200, to_tag="me"), 0.1)
    rec.layer.receive(wire(_ack_for(first, "me")), UDP, 0.2)
    rec.layer.receive(wire(first), UDP, 1.0)
    assert len(rec.of(RequestReceived)) == 1 and rec.raw.stats["retransmissions_absorbed"] == 1
    again = request("INVITE")
    again.headers.set("From", "<sip:202@box>;tag=after-reboot")
    rec.layer.receive(wire(again), UDP, 2.0)
    assert [e.request.from_tag for e in rec.of(RequestReceived)] == ["ft", "after-reboot"]


def test_a_challenged_register_is_freed_at_once():
    """What a stateless challenge keeps is nothing: with the collector off, the transaction and
    its parsed request die as soon as the TU lets go (a REGISTER storm from phones that answer
    every challenge must not pile up 64*T1 worth of requests in a Pi's memory)."""
    import gc
    import weakref

    layer = TransactionLayer()
    gc.disable()
    try:
        reg = request("REGISTER")
        layer.receive(wire(reg), UDP, 0.0)
        event = layer.next_event()
        assert isinstance(event, RequestReceived)
        txn = event.transaction
        layer.send_final_stateless(txn, make_response(txn.request, 401, to_tag="me"))
        gone = weakref.ref(txn), weakref.ref(txn.request)
        del event, txn
        assert [r() for r in gone] == [None, None]
        assert layer.get_timer() is None
    finally:
        gc.enable()


def test_timer_z_fires_in_arrival_order_and_skips_answered_requests():
    rec = Recorder(TransactionLayer())
    for i, at in enumerate((0.0, 1.0, 2.0)):
        rec.layer.receive(wire(request("MESSAGE", branch=f"z9hG4bKz{i}")), UDP, at)
    first, second, _ = (e.transaction for e in rec.of(RequestReceived))
    rec.layer.send_response(second, make_response(second.request, 200, to_tag="me"), 1.5)
    assert rec.raw.get_timer() == 32.0
    rec.run_until(32.5)
    assert first.terminated and not second.terminated and len(rec.raw) == 2
    assert rec.raw.get_timer() == 33.5  # timer J of the answered one, before Z of the third
    rec.run_until(34.5)
    assert second.terminated and len(rec.raw) == 0 and rec.raw.get_timer() is None


def test_stopped_timers_never_fire_even_without_get_timer():
    layer = TransactionLayer()
    inv = request("INVITE")
    txn = layer.send_request(inv, UDP, 0.0)
    layer.receive(wire(make_response(inv, 180, to_tag="t")), UDP, 0.1)
    layer.handle_timer(100.0)
    assert txn.state is State.PROCEEDING and layer.next_event().response.status == 180
    assert layer.next_event() is None


def test_without_auto_trying_a_retransmitted_invite_gets_nothing_until_the_tu_answers():
    rec = Recorder(TransactionLayer(auto_trying=False))
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    rec.layer.receive(wire(inv), UDP, 0.5)
    assert rec.sent == []


def test_locally_built_broken_responses_are_stray():
    layer = TransactionLayer()
    layer.receive(SipResponse(200, "OK"), UDP, 0.0)
    assert layer.stats["stray_responses"] == 1 and layer.next_event() is None
    assert str(Addr("udp", "2001:db8::1", 5060)) == "udp:[2001:db8::1]:5060"


def test_inputs_a_state_does_not_list_are_absorbed_and_reprs_name_the_state():
    rec = Recorder(TransactionLayer())
    inv = request("INVITE")
    rec.layer.receive(wire(inv), UDP, 0.0)
    txn = rec.of(RequestReceived)[0].transaction
    rec.layer.receive(wire(_ack_for(inv, "x")), UDP, 0.1)
    assert txn.state is State.PROCEEDING and rec.of(AckReceived) == []
    assert repr(txn) == "<ServerTransaction INVITE z9hG4bKb1 Proceeding>"
    ctxn = rec.layer.send_request(request(branch="z9hG4bKr"), UDP, 0.0)
    assert repr(ctxn) == "<ClientTransaction OPTIONS z9hG4bKr Trying>"


def test_state_diagram_tool_renders_every_transition(tmp_path):
    import importlib.util

    from tests.conftest import ROOT
    spec = importlib.util.spec_from_file_location("state_diagrams", ROOT / "tools/state_diagrams.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["-o", str(tmp_path)]) == 0
    assert tool.main(["--format", "mermaid", "-o", str(tmp_path)]) == 0
    for kind, states in TRANSITIONS.items():
        text = (tmp_path / f"{kind.name.lower()}.dot").read_text()
        assert text.count(" -> ") == 1 + sum(len(t) for t in states.values())
        assert "timer H / timeout H" in (tmp_path / "invite_server.mmd").read_text()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["inv", "ack", "cancel", "bye", "resp", "junk", "dup"]), max_size=12),
       st.binary(max_size=40))
def test_any_sequence_of_datagrams_never_raises_out_of_the_layer(script, junk):
    layer = TransactionLayer()
    inv = request("INVITE")
    pieces = {
        "inv": inv.serialize(), "ack": _ack_for(inv, "t").serialize(),
        "cancel": _cancel_for(inv).serialize(), "bye": request("BYE", branch="z9hG4bKbye").serialize(),
        "resp": make_response(request("OPTIONS", branch="z9hG4bKo"), 200).serialize(),
        "junk": junk, "dup": inv.serialize()[: len(junk)] + junk,
    }
    now = 0.0
    for step in script:
        now += 0.3
        layer.receive_datagram(pieces[step], UDP, now)
        while (ev := layer.next_event()) is not None:
            if isinstance(ev, RequestReceived) and ev.request.method != "INVITE":
                layer.send_response(ev.transaction, make_response(ev.request, 200), now)
        if (t := layer.get_timer()) is not None:
            layer.handle_timer(t)
        layer.messages_to_send()
