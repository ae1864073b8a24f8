"""SIP messages: the data model, the parser (datagram and stream framing) and the serializer.

The parser follows RFC 3261 section 7 and the robustness rules of RFC 4475: every header line
is kept in order with its raw (unfolded) value; the headers the transaction layer depends on
(Via, CSeq, Call-ID, From, To, Max-Forwards, Contact, Content-Length) are validated at parse
time so a broken request is answered with a 400 naming the header, before any state is created.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import _abnf
from .errors import SipParseError, reason_phrase
from .headers import (
    SINGLE_VALUED,
    Address,
    Challenge,
    Credentials,
    CSeq,
    Event,
    Headers,
    Reason,
    Replaces,
    SessionExpires,
    SubscriptionState,
    Via,
    format_addresses,
    new_call_id,
    new_tag,
    normalize_name,
    parse_addresses,
    parse_auth,
    parse_event,
    parse_int,
    parse_reason,
    parse_replaces,
    parse_session_expires,
    parse_subscription_state,
    parse_tokens,
)
from .uri import AbsoluteUri, SipUri, Uri, _fast_new, parse_uri, split_commas

MAX_MESSAGE_SIZE = 65535
"""Default size limit of one message, in bytes (headers and body)."""

KNOWN_METHODS = frozenset((
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"))
"""Methods defined by RFC 3261 and its extensions."""

_REQUIRED_REQUEST = ("via", "from", "to", "call-id", "cseq")
_REQUIRED_RESPONSE = ("via", "from", "to", "call-id", "cseq")
_DISPLAY = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq",
            "max-forwards": "Max-Forwards", "content-length": "Content-Length",
            "content-type": "Content-Type"}


def _vias(h: Headers) -> list[Via]:
    values = h.values("via")
    if not values:
        raise SipParseError(400, "Missing Via header")
    return [Via.parse(v) for v in values]


def _single(h: Headers, key: str) -> str:
    value = h.get(key)
    if value is None:
        raise SipParseError(400, f"Missing {_DISPLAY[key]} header")
    return value


def _from(h: Headers) -> Address:
    return Address.parse(_single(h, "from"), "From")


def _to(h: Headers) -> Address:
    return Address.parse(_single(h, "to"), "To")


def _cseq(h: Headers) -> CSeq:
    return CSeq.parse(_single(h, "cseq"))


def _call_id(h: Headers) -> str:
    value = _single(h, "call-id")
    if not _abnf.CALL_ID.fullmatch(value):
        raise SipParseError(400, "Invalid Call-ID header")
    return value


def _contacts(h: Headers) -> list[Address]:
    values = h.get_all("contact")
    if len(values) == 1 and values[0].strip() == "*":
        return []
    return parse_addresses(values, "Contact")


def _optional_int(key: str, what: str, maximum: int) -> Callable[[Headers], int | None]:
    def parse(h: Headers) -> int | None:
        value = h.get(key)
        return None if value is None else parse_int(value, what, maximum)
    return parse


def _expires(h: Headers) -> int | None:
    value = h.get("expires")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise SipParseError(400, "Invalid Expires header")
    return min(int(value), 2 ** 32 - 1)


class SipMessage:
    """What requests and responses share: headers, body and typed accessors.

    Accessors parse on first use and cache until the headers change; a malformed value raises
    :class:`SipParseError` with status 400. Not an ``abc.ABC``: an ``isinstance`` against an ABC
    that fails runs Python-level code, and the stack asks ``isinstance(msg, SipResponse)`` of
    every message.
    """

    headers: Headers
    body: bytes

    # --- typed accessors -------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return self.headers.typed("via", _vias)  # type: ignore[no-any-return]

    @property
    def top_via(self) -> Via:
        """The first Via value."""
        return self.vias[0]

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self.headers.typed("call-id", _call_id)  # type: ignore[no-any-return]

    @property
    def cseq(self) -> CSeq:
        """The CSeq."""
        return self.headers.typed("cseq", _cseq)  # type: ignore[no-any-return]

    @property
    def from_addr(self) -> Address:
        """The From header value."""
        return self.headers.typed("from", _from)  # type: ignore[no-any-return]

    @property
    def to_addr(self) -> Address:
        """The To header value."""
        return self.headers.typed("to", _to)  # type: ignore[no-any-return]

    @property
    def from_tag(self) -> str | None:
        """The From tag, or ``None``."""
        return self.from_addr.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag, or ``None``."""
        return self.to_addr.tag

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0 to 255), or ``None`` when absent."""
        return self.headers.typed("max-forwards",  # type: ignore[no-any-return]
                                  _optional_int("max-forwards", "Max-Forwards", 255))

    @property
    def contacts(self) -> list[Address]:
        """Every Contact value (empty for ``Contact: *`` and when absent)."""
        return self.headers.typed("contact", _contacts)  # type: ignore[no-any-return]

    @property
    def contact_is_star(self) -> bool:
        """Whether the message has the wildcard ``Contact: *`` (REGISTER removing all bindings)."""
        values = self.headers.get_all("contact")
        return len(values) == 1 and values[0].strip() == "*"

    @property
    def expires(self) -> int | None:
        """The Expires header (overlarge values clamped to 2**32 - 1), or ``None``."""
        return self.headers.typed("expires", _expires)  # type: ignore[no-any-return]

    @property
    def routes(self) -> list[Address]:
        """Every Route value, in order."""
        return self.headers.typed("route",  # type: ignore[no-any-return]
                                  lambda h: parse_addresses(h.get_all("route"), "Route"))

    @property
    def record_routes(self) -> list[Address]:
        """Every Record-Route value, in order."""
        return self.headers.typed("record-route", lambda h: parse_addresses(  # type: ignore[no-any-return]
            h.get_all("record-route"), "Record-Route"))

    @property
    def supported(self) -> list[str]:
        """Supported option tags, lower-case."""
        return parse_tokens(self.headers.get_all("supported"))

    @property
    def require(self) -> list[str]:
        """Require option tags, lower-case."""
        return parse_tokens(self.headers.get_all("require"))

    @property
    def proxy_require(self) -> list[str]:
        """Proxy-Require option tags, lower-case."""
        return parse_tokens(self.headers.get_all("proxy-require"))

    @property
    def allow(self) -> list[str]:
        """Allow methods (as written, upper-case by convention)."""
        return [m.upper() for m in parse_tokens(self.headers.get_all("allow"))]

    @property
    def session_expires(self) -> SessionExpires | None:
        """Session-Expires (RFC 4028), or ``None``."""
        value = self.headers.get("session-expires")
        return None if value is None else parse_session_expires(value)

    @property
    def min_se(self) -> int | None:
        """Min-SE in seconds (RFC 4028), or ``None``."""
        value = self.headers.get("min-se")
        if value is None:
            return None
        return parse_int(value.split(";")[0], "Min-SE", 2 ** 32 - 1)

    @property
    def replaces(self) -> Replaces | None:
        """Replaces (RFC 3891), or ``None``."""
        value = self.headers.get("replaces")
        return None if value is None else parse_replaces(value)

    @property
    def refer_to(self) -> Address | None:
        """Refer-To (RFC 3515), or ``None``."""
        value = self.headers.get("refer-to")
        return None if value is None else Address.parse(value.strip(), "Refer-To")

    @property
    def referred_by(self) -> Address | None:
        """Referred-By (RFC 3892), or ``None``."""
        value = self.headers.get("referred-by")
        return None if value is None else Address.parse(value.strip(), "Referred-By")

    @property
    def event(self) -> Event | None:
        """Event (RFC 6665), or ``None``."""
        value = self.headers.get("event")
        return None if value is None else parse_event(value)

    @property
    def subscription_state(self) -> SubscriptionState | None:
        """Subscription-State (RFC 6665), or ``None``."""
        value = self.headers.get("subscription-state")
        return None if value is None else parse_subscription_state(value)

    @property
    def reasons(self) -> list[Reason]:
        """Every Reason value (RFC 3326)."""
        return [parse_reason(v) for v in self.headers.values("reason")]

    @property
    def authorization(self) -> list[Credentials]:
        """Every Authorization value."""
        return [parse_auth(v, "Authorization") for v in self.headers.get_all("authorization")]

    @property
    def proxy_authorization(self) -> list[Credentials]:
        """Every Proxy-Authorization value."""
        return [parse_auth(v, "Proxy-Authorization")
                for v in self.headers.get_all("proxy-authorization")]

    @property
    def www_authenticate(self) -> list[Challenge]:
        """Every WWW-Authenticate challenge."""
        return [parse_auth(v, "WWW-Authenticate") for v in self.headers.get_all("www-authenticate")]

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        """Every Proxy-Authenticate challenge."""
        return [parse_auth(v, "Proxy-Authenticate")
                for v in self.headers.get_all("proxy-authenticate")]

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-case, without parameters (``application/sdp``)."""
        value = self.headers.get("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    @property
    def user_agent(self) -> str | None:
        """User-Agent (or Server, for responses), or ``None``."""
        return self.headers.get("user-agent") or self.headers.get("server")

    # --- mutation helpers -------------------------------------------------------------
    def set_top_via(self, via: Via) -> None:
        """Replace the top Via value (adding ``received``/``rport``, say)."""
        self.headers.replace_first_value("via", str(via))

    def set_body(self, body: bytes, content_type: str | None) -> None:
        """Set the body and its Content-Type (``None`` removes the Content-Type)."""
        self.body = body
        if content_type is None:
            self.headers.remove("content-type")
        else:
            self.headers.set("Content-Type", content_type)

    _start_line: Callable[[], str]
    """The request line or status line (a method of each subclass)."""

    def serialize(self) -> bytes:
        """The message on the wire: CRLF line ends, Content-Length set from the body."""
        lines = [self._start_line()]
        for key, display, value in self.headers._items:
            if key != "content-length":
                lines.append(f"{display}: {value}")
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()


@dataclass(eq=False)
class SipRequest(SipMessage):
    """A SIP request."""

    method: str
    """Method, case-sensitive (``INVITE``)."""
    uri: Uri
    """Request-URI."""
    headers: Headers = field(default_factory=Headers)
    """Header fields in order."""
    body: bytes = b""
    """Message body."""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


@dataclass(eq=False)
class SipResponse(SipMessage):
    """A SIP response."""

    status: int
    """Status code (100 to 699)."""
    reason: str = ""
    """Reason phrase."""
    headers: Headers = field(default_factory=Headers)
    """Header fields in order."""
    body: bytes = b""
    """Message body."""

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


Message = SipRequest | SipResponse


class KeepAlive(enum.Enum):
    """RFC 5626 section 3.5.1 keep-alives seen on a stream."""

    PING = "ping"
    """A double CRLF: answer with a single CRLF."""
    PONG = "pong"
    """A single CRLF: the answer to our ping."""


_FOLD = re.compile(r"[ \t]*\r\n[ \t]+")
_valid_names: dict[str, tuple[str, str]] = {}


def _split_head(head: str, is_response: bool) -> tuple[str, list[tuple[str, str, str]]]:
    """Split a header section into the start line and (key, name, value) items, unfolding."""
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD.sub(" ", head)
    lines = head.split("\r\n")
    items = []
    memo = _valid_names
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError(None if is_response else 400, "Malformed header line")
        try:
            key, display = memo[name]
        except KeyError:
            stripped = name.rstrip(" \t")
            if not _abnf.HEADER_NAME.fullmatch(stripped):
                raise SipParseError(None if is_response else 400, "Malformed header line") from None
            key, display = normalize_name(stripped)
            if len(memo) < 4096:
                memo[name] = (key, display)
        items.append((key, display, value.strip(" \t")))
    return lines[0], items


def _start_line(line: str) -> tuple[bool, list[str]]:
    """Classify and split a start line; raise for lines that are neither request nor response."""
    if line[:4].upper() == "SIP/":
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
            raise SipParseError(None, "Invalid status line")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError(None, "Invalid status code")
        return True, [parts[0], code, parts[2] if len(parts) > 2 else ""]
    parts = line.split(" ")
    if len(parts) == 3 and parts[2] == "SIP/2.0" and parts[1] and parts[0] in KNOWN_METHODS:
        return False, parts
    first = parts[0]
    tail = line.rstrip(" \t").rsplit(" ", 1)[-1].upper()
    if not first or not _abnf.TOKEN.fullmatch(first) or not tail.startswith("SIP/"):
        raise SipParseError(None, "Not a SIP message")
    parts = line.split(" ")
    if tail != "SIP/2.0":
        if len(parts) == 3 and parts[2].upper().startswith("SIP/"):
            raise SipParseError(505, "Version Not Supported")
        raise SipParseError(400, "Malformed Request-Line")
    if len(parts) != 3 or not parts[1]:
        raise SipParseError(400, "Malformed Request-Line")
    return False, parts


def _build(start: str, items: list[tuple[str, str, str]], body: bytes) -> Message:
    """Turn split parts into a validated message (every check of the module docstring)."""
    is_response, parts = _start_line(start)
    headers = Headers()
    headers._items = items
    if is_response:
        msg: Message = SipResponse(int(parts[1]), parts[2], headers, body)
        try:
            _validate(msg, _REQUIRED_RESPONSE)
        except SipParseError as e:
            raise SipParseError(None, e.reason) from None
        return msg
    method = parts[0]
    try:
        uri = parse_uri(parts[1])
    except SipParseError:
        raise SipParseError(400, "Invalid Request-URI", partial=headers) from None
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError(400, "Invalid Request-URI: headers are not allowed", partial=headers)
    req = SipRequest(method, uri, headers, body)
    try:
        first, contact_lines = _validate(req, _REQUIRED_REQUEST)
        cache = headers._cache
        if cache["cseq"].method != method:
            if method not in KNOWN_METHODS:
                raise SipParseError(501, "Not Implemented")
            raise SipParseError(400, "CSeq method does not match the request method")
        mf = first.get("max-forwards")
        cache["max-forwards"] = None if mf is None else parse_int(mf, "Max-Forwards", 255)
        if len(contact_lines) == 1 and contact_lines[0].strip() == "*":
            cache["contact"] = []
        else:
            cache["contact"] = parse_addresses(contact_lines, "Contact")
    except SipParseError as e:
        e.partial = headers
        raise
    return req


def _validate(msg: Message, required: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Check the headers every message needs and parse them into the accessors' cache.

    One pass over the header lines; errors in the order the accessors would raise them
    (duplicates, then missing headers, then Via, CSeq, Call-ID, From, To). Returns the first
    value of each single-valued header and the Contact lines, for the request checks."""
    h = msg.headers
    first: dict[str, str] = {}
    dup: set[str] | None = None
    via_lines: list[str] = []
    contact_lines: list[str] = []
    single = SINGLE_VALUED
    for key, _, value in h._items:
        if key == "via":
            via_lines.append(value)
        elif key in single:
            if key in first:
                if dup is None:
                    dup = set()
                dup.add(key)
            else:
                first[key] = value
        elif key == "contact":
            contact_lines.append(value)
    if dup:
        for key in ("call-id", "cseq", "from", "to", "max-forwards", "content-type"):
            if key in dup:
                raise SipParseError(400, f"Multiple {_DISPLAY[key]} headers")
    for key in required:
        if not (via_lines if key == "via" else key in first):
            raise SipParseError(400, f"Missing {_DISPLAY[key]} header")
    cache = h._cache
    if len(via_lines) == 1 and "," not in via_lines[0]:
        cache["via"] = [Via.parse(via_lines[0].strip())]
    else:
        values: list[str] = []
        for line in via_lines:
            values.extend(split_commas(line))
        cache["via"] = [Via.parse(v) for v in values]
    cache["cseq"] = CSeq.parse(first["cseq"])
    call_id = first["call-id"]
    if not _abnf.CALL_ID.fullmatch(call_id):
        raise SipParseError(400, "Invalid Call-ID header")
    cache["call-id"] = call_id
    cache["from"] = Address.parse(first["from"], "From")
    cache["to"] = Address.parse(first["to"], "To")
    return first, contact_lines


def _content_length(items: list[tuple[str, str, str]], hint: int | None,
                    fatal: bool) -> int | None:
    values = [v for k, _, v in items if k == "content-length"]
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError(hint, "Multiple Content-Length headers", fatal=fatal)
    value = values[0]
    if not value.isdigit() or not value.isascii():
        raise SipParseError(hint, "Invalid Content-Length header", fatal=fatal)
    return int(value)


def _with_partial(err: SipParseError, head: str, is_response: bool) -> SipParseError:
    """Attach the raw headers to an error when they can be split (to build the 400).

    An ACK is never answered (RFC 3261 section 17.2.1), so a broken ACK is dropped.
    """
    if head[:4].upper() == "ACK ":
        err.status_hint = None
    if err.partial is None and not is_response and err.status_hint is not None:
        try:
            _, items = _split_head(head, False)
        except SipParseError:
            return err
        partial = Headers()
        partial._items = items
        err.partial = partial
    return err


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Parse one datagram (RFC 3261 section 18.3 rules for message-oriented transports).

    Leading CRLFs are skipped. Without Content-Length the body is the rest of the datagram;
    a body shorter than Content-Length is an error, a longer one is truncated. Raises
    :class:`SipParseError`.
    """
    if len(data) > max_size:
        raise SipParseError(513, "Message Too Large")
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if not data[start:].strip():
            raise SipParseError(None, "Empty message")
        head = data[start:].decode("utf-8", "surrogateescape")
        is_response = head[:4].upper() == "SIP/"
        hint = None if is_response else 400
        if not is_response:
            try:
                _start_line(head.split("\r\n", 1)[0])
            except SipParseError as e:
                raise _with_partial(e, head.rstrip("\r\n"), False) from None
        raise _with_partial(SipParseError(hint, "Missing empty line after the headers"),
                            head.rstrip("\r\n"), is_response)
    head = data[start:end].decode("utf-8", "surrogateescape")
    is_response = head[:4].upper() == "SIP/"
    hint = None if is_response else 400
    try:
        start_line, items = _split_head(head, is_response)
        rest = data[end + 4:]
        length = _content_length(items, hint, False)
        if length is None:
            body = rest
        elif length > len(rest):
            raise SipParseError(hint, "Content-Length larger than the body")
        else:
            body = rest[:length]
        return _build(start_line, items, body)
    except SipParseError as e:
        raise _with_partial(e, head, is_response) from None


class StreamParser:
    """Frames SIP messages out of a stream transport (TCP), RFC 3261 section 18.3.

    Content-Length is required. Feed bytes with :meth:`feed`, then call :meth:`next_event` until
    it returns ``None``. It returns messages or :class:`KeepAlive` values, and raises
    :class:`SipParseError`: when ``fatal`` is set the framing is lost and the connection must be
    closed; otherwise the broken message was skipped and parsing can go on.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def next_event(self) -> Message | KeepAlive | None:
        """The next complete message or keep-alive, ``None`` when more bytes are needed."""
        buf = self._buf
        if self._broken:
            raise SipParseError(None, "Stream framing lost", fatal=True)
        if buf[:2] == b"\r\n":
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                return KeepAlive.PING
            if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None
            del buf[:2]
            return KeepAlive.PONG
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._max:
                self._broken = True
                raise SipParseError(513, "Message Too Large", fatal=True)
            return None
        head = bytes(buf[:end]).decode("utf-8", "surrogateescape")
        is_response = head[:4].upper() == "SIP/"
        hint = None if is_response else 400
        try:
            start_line, items = _split_head(head, is_response)
            length = _content_length(items, hint, True)
            if length is None:
                raise SipParseError(hint, "Missing Content-Length header", fatal=True)
            if end + 4 + length > self._max:
                raise SipParseError(413, "Request Entity Too Large", fatal=True)
        except SipParseError as e:
            self._broken = True
            e.fatal = True
            raise _with_partial(e, head, is_response) from None
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4:total])
        del buf[:total]
        try:
            return _build(start_line, items, body)
        except SipParseError as e:
            raise _with_partial(e, head, is_response) from None


def make_response(request: SipRequest, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"", content_type: str | None = None) -> SipResponse:
    """A response to ``request`` per RFC 3261 section 8.2.6.

    Via (all values, in order), From, To, Call-ID and CSeq are copied; Record-Route too for
    101-299 (so dialogs get their route set, section 12.1.1). For status > 100 a To tag is added
    when the request had none: ``to_tag``, or a fresh random one. ``reason`` defaults to the
    standard phrase.
    """
    resp = SipResponse(status, reason if reason is not None else reason_phrase(status))
    _copy_core(request.headers, resp.headers, status, to_tag)
    for name, value in headers:
        resp.headers.add(name, value)
    if body or content_type:
        resp.set_body(body, content_type)
    return resp


def _copy_core(src: Headers, dst: Headers, status: int, to_tag: str | None) -> None:
    items = dst._items
    cached_to = src._cache.get("to")
    for key, display, value in src._items:
        if key in ("via", "from", "call-id", "cseq") or (key == "record-route" and 100 < status < 300):
            items.append((key, display, value))
        elif key == "to":
            if status > 100:
                to = cached_to if isinstance(cached_to, Address) else _try_address(value)
                if to is not None and to.tag is None:
                    tag = to_tag or new_tag()
                    value = f"{value};tag={tag}"
                    params = dict(to.params)
                    params["tag"] = tag
                    dst._cache["to"] = _fast_new(Address, {"uri": to.uri, "display_name": to.display_name,
                                                           "params": params})
            items.append((key, display, value))
        elif key == "timestamp" and status == 100:
            items.append((key, display, value))


def _try_address(value: str) -> Address | None:
    try:
        return Address.parse(value, "To")
    except SipParseError:
        return None


def make_error_response(error: SipParseError) -> SipResponse | None:
    """The answer to a request that failed to parse, or ``None`` when it must be dropped.

    Uses the raw headers kept in ``error.partial``; the reason phrase is ``error.reason``.
    """
    if error.status_hint is None or not isinstance(error.partial, Headers):
        return None
    headers = error.partial
    if "via" not in headers:
        return None
    resp = SipResponse(error.status_hint, _safe_reason(error.reason))
    _copy_core(headers, resp.headers, error.status_hint, None)
    return resp


def _safe_reason(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def make_request(method: str, uri: Uri | str, *, from_addr: Address | str, to_addr: Address | str,
                 call_id: str | None = None, cseq: int = 1, via: Via | None = None,
                 contact: Address | str | None = None, max_forwards: int = 70,
                 route: Iterable[Address] = (), headers: Iterable[tuple[str, str]] = (),
                 body: bytes = b"", content_type: str | None = None) -> SipRequest:
    """A new out-of-dialog request (RFC 3261 section 8.1.1).

    A From tag is added when ``from_addr`` has none; ``call_id`` defaults to a fresh one. Without
    ``via`` the transaction layer adds the top Via when the request is sent.
    """
    if isinstance(uri, str):
        uri = parse_uri(uri)
    if isinstance(from_addr, str):
        from_addr = Address.parse(from_addr, "From")
    if isinstance(to_addr, str):
        to_addr = Address.parse(to_addr, "To")
    if from_addr.tag is None:
        from_addr = from_addr.with_tag(new_tag())
    req = SipRequest(method, uri)
    h = req.headers
    if via is not None:
        h.add("Via", str(via))
    h.add("Max-Forwards", str(max_forwards))
    route = list(route)
    if route:
        h.add("Route", format_addresses(route))
    h.add("From", str(from_addr))
    h.add("To", str(to_addr))
    h.add("Call-ID", call_id or new_call_id())
    h.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        h.add("Contact", str(contact))
    for name, value in headers:
        h.add(name, value)
    if body or content_type:
        req.set_body(body, content_type)
    return req


def make_cancel(invite: SipRequest, reason: str | None = None) -> SipRequest:
    """The CANCEL of a pending INVITE (RFC 3261 section 9.1).

    Request-URI, Call-ID, To, From, CSeq number and the top Via (same branch) are copied, and the
    Route headers. ``reason`` becomes a Reason header (RFC 3326), e.g.
    ``'SIP;cause=200;text="Call completed elsewhere"'``.
    """
    cancel = SipRequest("CANCEL", invite.uri)
    h = cancel.headers
    h.add("Via", str(invite.top_via))
    for key, display, value in invite.headers._items:
        if key in ("route", "from", "to", "call-id", "max-forwards"):
            h._items.append((key, display, value))
    h.add("CSeq", f"{invite.cseq.seq} CANCEL")
    if reason is not None:
        h.add("Reason", reason)
    return cancel


def make_ack_for_error(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK of a 300-699 answer to ``invite`` (RFC 3261 section 17.1.1.3)."""
    ack = SipRequest("ACK", invite.uri)
    h = ack.headers
    h.add("Via", str(invite.top_via))
    for key, display, value in invite.headers._items:
        if key in ("route", "from", "call-id", "max-forwards"):
            h._items.append((key, display, value))
    to = response.headers.get("to")
    h.add("To", to if to is not None else invite.headers.get("to") or "")
    h.add("CSeq", f"{invite.cseq.seq} ACK")
    return ack


def check_request(request: SipRequest, *, methods: Iterable[str] = KNOWN_METHODS,
                  supported: Iterable[str] = (), uri_schemes: Iterable[str] = ("sip", "sips", "tel"),
                  content_types: Iterable[str] | None = None) -> SipResponse | None:
    """UA-core checks of RFC 3261 section 8.2.1-8.2.3 before a request is acted upon.

    Returns the error response to send (405 unknown/unsupported method with Allow, 416 for a
    Request-URI scheme we cannot handle, 420 with Unsupported for Require tags we lack, 415 for a
    body type not in ``content_types``), or ``None`` when the request may be processed.
    """
    methods = set(methods)
    if request.method not in methods:
        code = 405 if request.method in KNOWN_METHODS else 501
        return make_response(request, code, headers=[("Allow", ", ".join(sorted(methods)))])
    if request.uri.scheme not in set(uri_schemes):
        return make_response(request, 416)
    supported_set = {s.lower() for s in supported}
    missing = [tag for tag in request.require if tag not in supported_set]
    if missing and request.method not in ("ACK", "CANCEL"):
        return make_response(request, 420, headers=[("Unsupported", ", ".join(missing))])
    if content_types is not None and request.body:
        ctype = request.content_type
        if ctype not in set(content_types):
            return make_response(request, 415, headers=[("Accept", ", ".join(content_types))])
    return None


__all__ = [
    "KNOWN_METHODS",
    "MAX_MESSAGE_SIZE",
    "AbsoluteUri",
    "KeepAlive",
    "Message",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamParser",
    "check_request",
    "make_ack_for_error",
    "make_cancel",
    "make_error_response",
    "make_request",
    "make_response",
    "parse_message",
    "split_commas",
]
