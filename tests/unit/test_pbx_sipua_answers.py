"""A request the PBX's handler fails on still gets its final answer: the error's own code for a
header or SDP the peer got wrong, 500 for anything else, and a half-made call leg is ended.
Sans-I/O: a real TransactionLayer fed datagrams, no sockets."""
from __future__ import annotations

from firmware.pbx.sipua import ServerInvite, SipUa
from firmware.sip import Addr, SipResponse, TransactionLayer
from tests.unit.sipua_harness import Endpoint

PHONE = Addr("udp", "192.0.2.7", 5062)


def request(method: str, *extra: str, branch: str = "z9hG4bK-1") -> bytes:
    return (f"{method} sip:202@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch={branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:201@192.0.2.1>;tag=a\r\nTo: <sip:202@192.0.2.1>\r\n"
            f"Call-ID: c1@192.0.2.7\r\nCSeq: 1 {method}\r\nContact: <sip:201@192.0.2.7:5062>\r\n"
            + "".join(f"{h}\r\n" for h in extra) + "Content-Length: 0\r\n\r\n").encode()


def ua_with(handler) -> Endpoint:
    ep = Endpoint(TransactionLayer(auto_trying=False))
    ep.ua = SipUa(ep, on_request=handler, media_address=lambda ip: "192.0.2.1")
    return ep


def finals(ep: Endpoint) -> list[tuple[int, str]]:
    return [(m.status, m.reason) for m in ep.sent if isinstance(m, SipResponse) and m.status >= 200]


async def test_a_malformed_header_a_handler_reads_is_answered_with_its_error():
    ep = ua_with(lambda ev: ev.request.expires)          # as the BLF handler reads Expires
    ep.receive(request("SUBSCRIBE", "Event: dialog", "Expires: soon"), PHONE)
    assert finals(ep) == [(400, "Invalid Expires header")]


async def test_a_failing_handler_answers_500_once_and_ends_the_leg_it_made():
    class Leg:
        hung_up: list[int] = []

        def hangup(self, cause: int = 16) -> None:
            self.hung_up.append(cause)

    leg = Leg()

    def handler(ev):
        ServerInvite(ep.ua, ev, leg)
        raise RuntimeError("the call store is gone")
    ep = ua_with(handler)
    ep.receive(request("INVITE"), PHONE)
    assert finals(ep) == [(500, "Server Internal Error")]
    assert leg.hung_up == [41]
    assert not ep.ua.server_invites
    ep.receive(request("INVITE"), PHONE)                         # a retransmission: answered again, not re-run
    assert finals(ep) == [(500, "Server Internal Error")] * 2 and leg.hung_up == [41]


async def test_a_request_already_answered_is_not_answered_twice():
    def handler(ev):
        ep.ua.respond(ev, 200)
        raise RuntimeError("after the answer")
    ep = ua_with(handler)
    ep.receive(request("OPTIONS"), PHONE)
    assert finals(ep) == [(200, "OK")]
