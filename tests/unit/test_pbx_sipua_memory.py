"""The PBX's SIP UA does not keep ended calls in memory while their INVITE transactions live on
(64*T1 after a 2xx, RFC 6026), and still ACKs late 2xx retransmissions and ends extra forks.
Sans-I/O: a real TransactionLayer with an injected clock, no sockets."""
from __future__ import annotations

import gc
import weakref

from firmware.pbx.sipua import ClientInvite, SipUa
from firmware.sip import Addr, SipRequest, make_response
from firmware.sip.uri import Address, SipUri
from tests.unit.sipua_harness import Endpoint as HarnessEndpoint

PHONE = Addr("udp", "192.0.2.7", 5062)


class Endpoint(HarnessEndpoint):
    def deliver(self, response) -> None:
        self.receive(response.serialize(), PHONE)


class Leg:
    """A listener that records what the session reports."""

    def __init__(self) -> None:
        self.answered = 0
        self.failed: list[int] = []

    def on_answered(self, sdp) -> None:
        self.answered += 1

    def on_failed(self, status, reason, response) -> None:
        self.failed.append(status)


def ok(invite: SipRequest, tag: str):
    resp = make_response(invite, 200, to_tag=tag)
    resp.headers.add("Contact", f"<sip:201@{PHONE.host}:{PHONE.port}>")
    return resp


async def make_ua() -> tuple[Endpoint, SipUa]:
    ep = Endpoint()
    ua = SipUa(ep, on_request=lambda ev: None, media_address=lambda ip: "192.0.2.1")
    ep.ua = ua
    return ep, ua


def call(ua: SipUa, leg: Leg) -> ClientInvite:
    s = ClientInvite(ua, target=SipUri(host=PHONE.host, user="201", port=PHONE.port), dest=PHONE,
                     from_addr=Address(SipUri(host="192.0.2.1", user="box")),
                     to_addr=Address(SipUri(host="192.0.2.1", user="201")), listener=leg)
    s.start(b"")
    return s


def methods(msgs) -> list[str]:
    return [m.method for m in msgs if isinstance(m, SipRequest)]


async def test_an_ended_call_is_not_kept_while_its_invite_transaction_lives():
    ep, ua = await make_ua()
    leg = Leg()
    session = call(ua, leg)
    invite, txn = session.invite, session.txn
    ep.deliver(ok(invite, "t1"))
    assert leg.answered == 1 and methods(ep.sent) == ["INVITE", "ACK"]
    session.bye()
    assert not txn.terminated and txn in ua.responders  # the layer still waits for retransmissions
    ref, leg_ref = weakref.ref(session), weakref.ref(leg)
    del session, leg
    gc.collect()
    assert ref() is None and leg_ref() is None, "the answered INVITE's handler kept the call alive"
    # a late retransmission of the 200 is still ACKed
    ep.sent.clear()
    ep.deliver(ok(invite, "t1"))
    assert methods(ep.sent) == ["ACK"]


async def test_a_second_fork_answering_after_the_call_is_up_gets_ack_and_bye():
    ep, ua = await make_ua()
    leg = Leg()
    session = call(ua, leg)
    ep.deliver(ok(session.invite, "t1"))
    ep.sent.clear()
    ep.deliver(ok(session.invite, "fork2"))
    sent = [m for m in ep.sent if isinstance(m, SipRequest)]
    assert [m.method for m in sent] == ["ACK", "BYE"]
    assert all(m.to_tag == "fork2" for m in sent) and "elsewhere" in sent[1].headers.get("Reason")
    assert leg.answered == 1 and session.dialog.remote_tag == "t1"
    ep.sent.clear()
    ep.deliver(ok(session.invite, "fork2"))  # that fork retransmits its 200: ACK, no second BYE
    assert methods(ep.sent) == ["ACK"]


async def test_handlers_of_ended_transactions_are_forgotten():
    ep, ua = await make_ua()
    for _ in range(300):
        s = call(ua, Leg())
        ep.deliver(ok(s.invite, "t"))
        s.bye()
    live = len(ua.responders)
    ep.advance(40)  # past 64*T1: every INVITE transaction has ended
    for _ in range(300):
        s = call(ua, Leg())
        ep.deliver(ok(s.invite, "t"))
        s.bye()
    assert all(not t.terminated for t in list(ua.responders)[-10:])
    assert len(ua.responders) < live + 300, "handlers of ended transactions piled up"
