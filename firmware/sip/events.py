"""Events of the transaction layer (what :meth:`TransactionLayer.next_event` returns)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - import cycle only for type checkers
    from .message import SipRequest, SipResponse
    from .transaction import ClientTransaction, ServerTransaction


@dataclass(frozen=True)
class Addr:
    """A transport address: where a message came from or goes to."""

    transport: str
    """``udp`` or ``tcp`` (lower-case)."""
    host: str
    """IP address (IPv6 without brackets) or host name."""
    port: int
    """Port number."""

    @property
    def reliable(self) -> bool:
        """Whether the transport is reliable (no retransmissions at the transaction layer)."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


class SipEvent:
    """Base class of the transaction layer's events."""


@dataclass(frozen=True)
class RequestReceived(SipEvent):
    """A new request (not a retransmission, not an ACK, not a CANCEL) reached the TU."""

    transaction: ServerTransaction
    """The server transaction to answer through (``layer.send_response(transaction, ...)``)."""
    request: SipRequest
    """The request, with ``received``/``rport`` added to its top Via."""
    source: Addr
    """Where it came from."""


@dataclass(frozen=True)
class ResponseReceived(SipEvent):
    """A response to a request we sent."""

    transaction: ClientTransaction
    """The client transaction it belongs to."""
    response: SipResponse
    """The response."""
    retransmission: bool = False
    """True for a 2xx retransmission of an INVITE (the TU must ACK it again)."""


@dataclass(frozen=True)
class AckReceived(SipEvent):
    """An ACK for a 2xx (or an ACK no transaction wants): the dialog's business."""

    request: SipRequest
    """The ACK."""
    source: Addr
    """Where it came from."""
    transaction: ServerTransaction | None = None
    """The INVITE server transaction whose 2xx it acknowledges, when known."""
    duplicate: bool = False
    """True when this 2xx was already acknowledged (retransmitted ACK)."""


@dataclass(frozen=True)
class CancelReceived(SipEvent):
    """A CANCEL stopped a pending INVITE; the layer answered 200 to the CANCEL and 487 to the
    INVITE (RFC 3261 section 9.2). Not raised when the INVITE already had a final answer."""

    transaction: ServerTransaction
    """The cancelled INVITE server transaction."""
    request: SipRequest
    """The CANCEL request (carries any Reason header)."""
    source: Addr
    """Where the CANCEL came from."""


@dataclass(frozen=True)
class TransactionTimeout(SipEvent):
    """A transaction timer expired without the expected message."""

    transaction: ClientTransaction | ServerTransaction
    """The transaction."""
    timer: str
    """``B`` or ``F`` (no final response: treat as 408), ``H`` (no ACK for our 300-699),
    ``C`` (INVITE still unanswered after timer C: the TU should CANCEL)."""


@dataclass(frozen=True)
class AckTimeout(SipEvent):
    """Our 2xx to an INVITE was never acknowledged within 64*T1 (RFC 3261 section 13.3.1.4):
    the TU should end the dialog with a BYE."""

    transaction: ServerTransaction
    """The INVITE server transaction of that 2xx."""


@dataclass(frozen=True)
class TransportError(SipEvent):
    """A message of a transaction could not be delivered (connection refused or lost)."""

    transaction: ClientTransaction | ServerTransaction
    """The transaction."""
    dest: Addr
    """The address that failed."""
    reason: str
    """Human-readable cause."""


@dataclass(frozen=True)
class MessageRejected(SipEvent):
    """A malformed message was answered with an error (``status``) or dropped (``None``)."""

    source: Addr
    """Where it came from (for per-source accounting by the security policy)."""
    status: int | None
    """The status code sent back, or ``None`` when the message was ignored."""
    reason: str
    """Why (the parser's exact reason)."""


TransactionEvent = (RequestReceived | ResponseReceived | AckReceived | CancelReceived | TransactionTimeout
                    | AckTimeout | TransportError | MessageRejected)
