"""The SIP transport as the PBX's SipUa sees it, over a sans-I/O TransactionLayer (no sockets):
what the UA sends is parsed into `sent`, and the clock only moves when a test says so."""
from __future__ import annotations

from firmware.pbx.sipua import SipUa
from firmware.sip import Addr, ClientTransaction, SipRequest, TransactionLayer, parse_message
from firmware.sip.uri import SipUri


class Endpoint:
    advertised_host = "192.0.2.1"

    def __init__(self, layer: TransactionLayer | None = None) -> None:
        self.layer = layer if layer is not None else TransactionLayer()
        self.layer.set_sent_by("udp", "192.0.2.1", 5060)
        self.now = 0.0
        self.ua: SipUa | None = None
        self.sent: list = []

    def _pump(self) -> None:
        self.sent += [parse_message(d) for d, _ in self.layer.messages_to_send()]
        while (ev := self.layer.next_event()) is not None:
            assert self.ua is not None
            self.ua.handle_event(ev)
            self.sent += [parse_message(d) for d, _ in self.layer.messages_to_send()]

    def receive(self, data: bytes, source: Addr) -> None:
        """A datagram from the wire."""
        self.layer.receive_datagram(data, source, self.now)
        self._pump()

    def send_request(self, request: SipRequest, dest: Addr) -> ClientTransaction:
        txn = self.layer.send_request(request, dest, self.now)
        self._pump()
        return txn

    def send_response(self, target, response) -> None:
        self.layer.send_response(target, response, self.now)
        self._pump()

    def send_stateless(self, message, dest: Addr) -> None:
        self.layer.send_stateless(message, dest)
        self._pump()

    def cancel(self, invite, reason=None):
        return self.layer.cancel(invite, self.now, reason)

    def contact_uri(self, user=None, transport="udp") -> SipUri:
        return SipUri(host="192.0.2.1", user=user, port=5060)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.layer.handle_timer(self.now)
        self._pump()
