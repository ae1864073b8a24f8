"""Exceptions and status codes of the SIP stack.

Every exception derives from :class:`SipError`. Errors caused by what a peer sent are
:class:`RemoteProtocolError` (a :class:`SipParseError` is one); errors caused by how this box uses
the API are :class:`LocalProtocolError`. Each carries a ``status_hint``: the SIP status code to
answer a request with (``None`` when the RFC says to drop the message silently).
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any


class StatusCode(IntEnum):
    """SIP response codes used by the box (RFC 3261 section 21 and extensions)."""

    TRYING = 100
    RINGING = 180
    CALL_IS_BEING_FORWARDED = 181
    QUEUED = 182
    SESSION_PROGRESS = 183
    OK = 200
    ACCEPTED = 202
    MULTIPLE_CHOICES = 300
    MOVED_PERMANENTLY = 301
    MOVED_TEMPORARILY = 302
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    NOT_ACCEPTABLE = 406
    PROXY_AUTHENTICATION_REQUIRED = 407
    REQUEST_TIMEOUT = 408
    GONE = 410
    REQUEST_ENTITY_TOO_LARGE = 413
    REQUEST_URI_TOO_LONG = 414
    UNSUPPORTED_MEDIA_TYPE = 415
    UNSUPPORTED_URI_SCHEME = 416
    BAD_EXTENSION = 420
    EXTENSION_REQUIRED = 421
    SESSION_INTERVAL_TOO_SMALL = 422
    INTERVAL_TOO_BRIEF = 423
    TEMPORARILY_UNAVAILABLE = 480
    CALL_TRANSACTION_DOES_NOT_EXIST = 481
    LOOP_DETECTED = 482
    TOO_MANY_HOPS = 483
    ADDRESS_INCOMPLETE = 484
    AMBIGUOUS = 485
    BUSY_HERE = 486
    REQUEST_TERMINATED = 487
    NOT_ACCEPTABLE_HERE = 488
    BAD_EVENT = 489
    REQUEST_PENDING = 491
    UNDECIPHERABLE = 493
    SERVER_INTERNAL_ERROR = 500
    NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503
    SERVER_TIMEOUT = 504
    VERSION_NOT_SUPPORTED = 505
    MESSAGE_TOO_LARGE = 513
    BUSY_EVERYWHERE = 600
    DECLINE = 603
    DOES_NOT_EXIST_ANYWHERE = 604
    NOT_ACCEPTABLE_ANYWHERE = 606


REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(code: int) -> str:
    """The standard reason phrase of ``code`` (a generic one for unknown codes)."""
    phrase = REASON_PHRASES.get(code)
    if phrase is not None:
        return phrase
    return {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error",
            5: "Server Error", 6: "Global Failure"}.get(code // 100, "Unknown")


class SipError(Exception):
    """Base class of every exception raised by :mod:`firmware.sip`."""

    status_hint: int | None = 500


class LocalProtocolError(SipError):
    """This box tried to do something the protocol forbids (a bug in the caller)."""

    status_hint: int | None = 500


class RemoteProtocolError(SipError):
    """A peer sent something the protocol forbids."""

    status_hint: int | None = 400


class SipParseError(RemoteProtocolError, ValueError):
    """A message (or a header value) could not be parsed.

    ``reason`` is an exact, stable text (tests assert it and it becomes the reason phrase of the
    answer). ``status_hint`` is the code to answer with, or ``None`` when the message must be
    ignored (a malformed response, garbage that is not a request). ``fatal`` is set when a
    stream transport has lost its framing and the connection must be closed. ``partial`` holds
    what could be parsed (a request whose headers are intact enough to build an answer), or
    ``None``.
    """

    def __init__(self, status_hint: int | None, reason: str, *, fatal: bool = False,
                 partial: Any = None) -> None:
        super().__init__(reason)
        self.status_hint = status_hint
        self.reason = reason
        self.fatal = fatal
        self.partial = partial

    def __repr__(self) -> str:
        return f"SipParseError({self.status_hint!r}, {self.reason!r})"


class TransactionError(LocalProtocolError):
    """The transaction layer was asked for something impossible in the current state."""


class DialogError(SipError):
    """A dialog could not be created or an in-dialog request is out of order."""

    def __init__(self, status_hint: int, reason: str) -> None:
        super().__init__(reason)
        self.status_hint = status_hint
        self.reason = reason


class AuthError(SipError):
    """Digest authentication could not be performed (bad challenge, unsupported algorithm)."""

    status_hint: int | None = 400


class SdpError(SipError, ValueError):
    """An SDP body could not be parsed or negotiated; ``status_hint`` is 400 or 488."""

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
