"""Sans-I/O SIP stack (RFC 3261 and friends): no asyncio, sockets or clocks here.

``message`` parses and builds messages, ``transaction`` runs RFC 3261 section 17 with an
injected clock, ``dialog`` keeps dialog state, ``auth`` does digest authentication and ``sdp``
offer/answer. The only I/O lives in :mod:`firmware.aio.sip_transport`.
"""
from .auth import AuthResult, DigestClient, DigestServer, PasswordCredentials
from .dialog import Dialog, DialogId, DialogTable, refer_to
from .errors import (AuthError, DialogError, LocalProtocolError, RemoteProtocolError, SdpError,
                     SipError, SipParseError, StatusCode, TransactionError, reason_phrase)
from .events import (AckReceived, AckTimeout, Addr, CancelReceived, MessageRejected,
                     RequestReceived, ResponseReceived, SipEvent, TransactionTimeout,
                     TransportError)
from .headers import (CSeq, Credentials, Event, Headers, Reason, Replaces, SessionExpires,
                      SubscriptionState, Via, new_branch, new_call_id, new_tag)
from .message import (KeepAlive, SipMessage, SipRequest, SipResponse, StreamParser,
                      check_request, make_ack_for_error, make_cancel, make_error_response,
                      make_request, make_response, parse_message)
from .sdp import Answer, Codec, SdpSession, SessionDescription, parse_sdp
from .transaction import ClientTransaction, ServerTransaction, Timers, TransactionLayer
from .uri import AbsoluteUri, Address, SipUri, parse_uri

__all__ = [
    "Answer", "Codec", "Dialog", "DialogId", "DialogTable", "SdpSession", "SessionDescription",
    "parse_sdp", "refer_to", "AbsoluteUri", "AckReceived", "AuthResult", "DigestClient", "DigestServer", "PasswordCredentials", "AckTimeout", "Addr", "Address", "AuthError", "CSeq",
    "CancelReceived", "ClientTransaction", "Credentials", "DialogError", "Event", "Headers",
    "KeepAlive", "LocalProtocolError", "MessageRejected", "Reason", "RemoteProtocolError",
    "Replaces", "RequestReceived", "ResponseReceived", "SdpError", "ServerTransaction",
    "SessionExpires", "SipError", "SipEvent", "SipMessage", "SipParseError", "SipRequest",
    "SipResponse", "SipUri", "StatusCode", "StreamParser", "SubscriptionState", "Timers",
    "TransactionError", "TransactionLayer", "TransactionTimeout", "TransportError", "Via",
    "check_request", "make_ack_for_error", "make_cancel", "make_error_response", "make_request",
    "make_response", "new_branch", "new_call_id", "new_tag", "parse_message", "parse_uri",
    "reason_phrase",
]
