"""Header fields: the ordered container and the typed values of the headers the box uses."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from . import _abnf
from ._entropy import token_hex
from .errors import SipParseError
from .uri import (
    Address,
    Params,
    _fast_new,
    format_host,
    format_params,
    parse_address_list,
    parse_params,
    quote_string,
    split_commas,
    unquote_string,
)

MAGIC_COOKIE = "z9hG4bK"
"""Branch prefix of RFC 3261 transaction identifiers (section 8.1.1.7)."""

COMPACT_FORMS: dict[str, str] = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "y": "identity", "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
}
"""Compact header names (RFC 3261 section 7.3.3 and extensions) and their long forms."""

_CANONICAL = {
    name.lower(): name for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
        "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
        "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
        "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization",
        "P-Asserted-Identity", "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
        "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By",
        "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition", "Require",
        "Retry-After", "Route", "RSeq", "Server", "Session-Expires", "Subject",
        "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
        "Via", "Warning", "WWW-Authenticate",
    )
}

SINGLE_VALUED = frozenset(("call-id", "cseq", "from", "to", "max-forwards", "content-length",
                           "content-type"))
"""Headers that must appear at most once (RFC 4475 section 3.3.8)."""

_name_memo: dict[str, tuple[str, str]] = {}
_MISSING = object()


def normalize_name(name: str) -> tuple[str, str]:
    """``(key, display)`` of a header name: the lower-case long form, and how to write it."""
    try:
        return _name_memo[name]
    except KeyError:
        pass
    lower = name.lower()
    key = COMPACT_FORMS.get(lower, lower)
    result = (key, _CANONICAL.get(key, name))
    if len(_name_memo) < 4096:
        _name_memo[name] = result
    return result


class Headers:
    """Header fields in wire order: case-insensitive, compact names expanded, raw values.

    Each entry is one header line (a folded line unfolded). A comma-separated line counts as one
    entry; :meth:`values` splits such lists. Typed accessors of the messages cache their parsed
    values here (one entry per header name); a mutation drops the entry of the header it
    touches.
    """

    __slots__ = ("_cache", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._cache: dict[str, Any] = {}
        for name, value in items:
            key, display = normalize_name(name)
            self._items.append((key, display, value))

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((display, value) for _, display, value in self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalize_name(name)[0]
        for item in self._items:
            if item[0] == key:
                return True
        return False

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and list(self) == list(other)

    def copy(self) -> Headers:
        """An independent copy."""
        h = Headers()
        h._items = list(self._items)
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = normalize_name(name)[0]
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every line of ``name``, in order."""
        key = normalize_name(name)[0]
        return [v for k, _, v in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every comma-separated element of every ``name`` line, in order."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(split_commas(v))
        return out

    def count(self, name: str) -> int:
        """How many lines of ``name`` there are."""
        key = normalize_name(name)[0]
        return sum(1 for k, _, _ in self._items if k == key)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        key, display = normalize_name(name)
        self._items.append((key, display, value))
        self._cache.pop(key, None)

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before the first line of the same name (or at the top)."""
        key, display = normalize_name(name)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items.insert(i, (key, display, value))
                break
        else:
            self._items.insert(0, (key, display, value))
        self._cache.pop(key, None)

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` with one line (where the first one was)."""
        key, display = normalize_name(name)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, display, value)
                self._items[i + 1:] = [it for it in self._items[i + 1:] if it[0] != key]
                break
        else:
            self._items.append((key, display, value))
        self._cache.pop(key, None)

    def remove(self, name: str) -> None:
        """Remove every line of ``name``."""
        key = normalize_name(name)[0]
        self._items = [it for it in self._items if it[0] != key]
        self._cache.pop(key, None)

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first comma-separated element of ``name`` (the top Via, say)."""
        key = normalize_name(name)[0]
        for i, (k, display, v) in enumerate(self._items):
            if k == key:
                if "," in v:
                    parts = split_commas(v)
                    parts[0] = value
                    value = ", ".join(parts)
                self._items[i] = (k, display, value)
                self._cache.pop(key, None)
                return
        raise KeyError(name)

    def remove_first_value(self, name: str) -> None:
        """Remove the first comma-separated element of ``name`` (popping a Route, say)."""
        key = normalize_name(name)[0]
        for i, (k, display, v) in enumerate(self._items):
            if k == key:
                parts = split_commas(v)
                if len(parts) > 1:
                    self._items[i] = (k, display, ", ".join(parts[1:]))
                else:
                    del self._items[i]
                self._cache.pop(key, None)
                return
        raise KeyError(name)

    def forget_parsed(self) -> None:
        """Drop the cached parsed values; they are parsed again when next used."""
        self._cache.clear()

    def typed(self, key: str, parser: Callable[[Headers], Any]) -> Any:
        """``parser(self)``, computed once until the headers change."""
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._cache[key] = parser(self)
        return value


def _bad(reason: str) -> SipParseError:
    return SipParseError(400, reason)


@dataclass(frozen=True)
class Via:
    """One Via header value (RFC 3261 section 20.42, RFC 3581 rport)."""

    transport: str
    """Transport token, upper-case (``UDP``, ``TCP``, ``TLS``...)."""
    host: str
    """sent-by host (IPv6 without brackets)."""
    port: int | None = None
    """sent-by port, or ``None``."""
    params: Params = field(default_factory=dict)
    """Parameters, names lower-case (``branch``, ``received``, ``rport``, ``maddr``...)."""
    protocol: str = "SIP/2.0"
    """sent-protocol name and version."""

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value; raise :class:`SipParseError` (400) when malformed."""
        m = _abnf.VIA.fullmatch(text)
        if m is None:
            raise _bad("Invalid Via header")
        name, version, transport, host, port_text, ptext = m.groups()
        if host[0] == "[":
            host = host[1:-1]
        port = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise _bad("Invalid Via header")
        params: Params = {}
        if ptext:
            params, pos = parse_params(ptext, 0, "Via")
            if pos != len(ptext):
                raise _bad("Invalid Via header")
        return _fast_new(cls, {"transport": transport.upper(), "host": host,  # type: ignore[return-value]
                               "port": port, "params": params,
                               "protocol": f"{name.upper()}/{version}"})

    @property
    def branch(self) -> str | None:
        """The branch parameter, or ``None``."""
        return self.params.get("branch")

    @property
    def rfc3261(self) -> bool:
        """Whether the branch is an RFC 3261 transaction identifier (magic cookie + id)."""
        b = self.params.get("branch")
        return b is not None and len(b) > len(MAGIC_COOKIE) and b.startswith(MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        """The ``received`` parameter, or ``None``."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The ``rport`` parameter's value, or ``None`` (also when present without a value)."""
        v = self.params.get("rport")
        return int(v) if v is not None and v.isdigit() else None

    @property
    def has_rport(self) -> bool:
        """Whether the ``rport`` parameter is present (RFC 3581)."""
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as written."""
        return format_host(self.host) + ("" if self.port is None else f":{self.port}")

    def with_params(self, **params: str | None) -> Via:
        """A copy with parameters added or replaced."""
        merged = dict(self.params)
        merged.update({k.lower(): v for k, v in params.items()})
        return replace(self, params=merged)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 64 random bits)."""
    return MAGIC_COOKIE + token_hex(8)


def new_tag() -> str:
    """A fresh From/To tag (64 random bits)."""
    return token_hex(8)


def new_call_id(host: str = "") -> str:
    """A fresh Call-ID (128 random bits, ``@host`` appended when given)."""
    cid = token_hex(16)
    return f"{cid}@{host}" if host else cid


@dataclass(frozen=True)
class CSeq:
    """A CSeq header value."""

    seq: int
    """Sequence number (0 to 2**31 - 1)."""
    method: str
    """Method, as written (case-sensitive)."""

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; raise :class:`SipParseError` (400) when malformed."""
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or not _abnf.TOKEN.fullmatch(parts[1]):
            raise _bad("Invalid CSeq header")
        seq = int(parts[0])
        if seq >= 2 ** 31:
            raise _bad("Invalid CSeq header: sequence number too large")
        return _fast_new(cls, {"seq": seq, "method": parts[1]})  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@dataclass(frozen=True)
class Credentials:
    """An Authorization or Proxy-Authorization value (RFC 3261 section 22, RFC 7616)."""

    scheme: str
    """Scheme as written (``Digest``)."""
    params: dict[str, str]
    """Parameters, names lower-case, values unquoted."""

    def get(self, name: str) -> str | None:
        """Parameter ``name`` or ``None``."""
        return self.params.get(name)


Challenge = Credentials
"""A WWW-Authenticate or Proxy-Authenticate value has the same shape."""


_TOK = f"[{_abnf.TOKEN_CHARS}]+"
_AUTH_PARAM = f'({_TOK})[ \\t]*=[ \\t]*(?:"({_abnf.QUOTED_TEXT})"|({_TOK}))'
_AUTH_WELL_FORMED = re.compile(f"({_TOK})[ \\t]+(?:{_AUTH_PARAM})(?:[ \\t]*,[ \\t]*(?:{_AUTH_PARAM}))*[ \\t]*",
                               re.DOTALL)
_AUTH_PARAMS = re.compile(_AUTH_PARAM, re.DOTALL)


def parse_auth(text: str, what: str) -> Credentials:
    """Parse ``scheme name=value, name="value"...``; raise :class:`SipParseError` when malformed."""
    text = text.strip()
    whole = _AUTH_WELL_FORMED.fullmatch(text)
    if whole is not None:
        # the common, well-formed case in one regular expression; anything else takes the
        # step-by-step path below, which says what is wrong
        found: dict[str, str] = {}
        for name, quoted, token in _AUTH_PARAMS.findall(text, whole.end(1)):
            if token:
                found[name.lower()] = token
            else:
                found[name.lower()] = _abnf.QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
        return _fast_new(Credentials, {"scheme": whole.group(1), "params": found})  # type: ignore[return-value]
    m = _abnf.TOKEN.match(text)
    if m is None:
        raise _bad(f"Invalid {what} header")
    scheme = m.group()
    pos = m.end()
    n = len(text)
    params: dict[str, str] = {}
    first = True
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n:
            break
        if not first:
            if text[pos] != ",":
                raise _bad(f"Invalid {what} header")
            pos += 1
            while pos < n and text[pos] in " \t":
                pos += 1
        elif pos == m.end():
            raise _bad(f"Invalid {what} header")
        first = False
        nm = _abnf.TOKEN.match(text, pos)
        if nm is None:
            raise _bad(f"Invalid {what} header")
        pos = nm.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n or text[pos] != "=":
            raise _bad(f"Invalid {what} header")
        pos += 1
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == '"':
            vm = _abnf.QUOTED.match(text, pos)
            if vm is None:
                raise _bad(f"Invalid {what} header")
            value = _abnf.QUOTED_PAIR.sub(r"\1", vm.group(1))
        else:
            vm = _abnf.TOKEN.match(text, pos)
            if vm is None:
                raise _bad(f"Invalid {what} header")
            value = vm.group()
        pos = vm.end()
        params[nm.group().lower()] = value
    if not params:
        raise _bad(f"Invalid {what} header")
    return Credentials(scheme, params)


_UNQUOTED_AUTH = frozenset(("algorithm", "stale", "nc", "qop"))


def format_auth(scheme: str, params: Iterable[tuple[str, str]], *, quote_qop: bool = False) -> str:
    """Write an authentication header value; ``algorithm``, ``stale``, ``nc`` and ``qop`` stay bare
    (``qop`` is quoted in challenges: pass ``quote_qop=True``)."""
    parts = []
    for k, v in params:
        bare = k in _UNQUOTED_AUTH and not (k == "qop" and quote_qop)
        parts.append(f"{k}={v}" if bare else f"{k}={quote_string(v)}")
    return f"{scheme} " + ", ".join(parts)


@dataclass(frozen=True)
class SessionExpires:
    """A Session-Expires value (RFC 4028)."""

    delta: int
    """Session interval in seconds."""
    refresher: str | None = None
    """``uac``, ``uas`` or ``None``."""
    params: Params = field(default_factory=dict)
    """Every parameter, names lower-case."""

    def __str__(self) -> str:
        params = dict(self.params)
        if self.refresher is not None:
            params["refresher"] = self.refresher
        return f"{self.delta}{format_params(params)}"


def parse_session_expires(text: str) -> SessionExpires:
    """Parse a Session-Expires value; raise :class:`SipParseError` (400) when malformed."""
    delta_text, pos = _leading_token(text)
    if not delta_text.isdigit():
        raise _bad("Invalid Session-Expires header")
    params, end = parse_params(text, pos, "Session-Expires")
    if end != len(text):
        raise _bad("Invalid Session-Expires header")
    refresher = params.get("refresher")
    return SessionExpires(int(delta_text), refresher.lower() if refresher else None, params)


@dataclass(frozen=True)
class Replaces:
    """A Replaces value (RFC 3891): which dialog a new INVITE replaces."""

    call_id: str
    """Call-ID of the dialog to replace."""
    to_tag: str
    """To-tag of that dialog (as seen by the sender of the Replaces)."""
    from_tag: str
    """From-tag of that dialog."""
    early_only: bool = False
    """Whether only an early dialog may be replaced."""

    def __str__(self) -> str:
        extra = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{extra}"


def parse_replaces(text: str) -> Replaces:
    """Parse a Replaces value (also the unescaped ``?Replaces=`` of a Refer-To URI)."""
    t = text.strip()
    semi = t.find(";")
    call_id = t[:semi].strip() if semi > 0 else ""
    if not call_id:
        raise _bad("Invalid Replaces header")
    params, end = parse_params(t, semi, "Replaces")
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if end != len(t) or not to_tag or not from_tag:
        raise _bad("Invalid Replaces header")
    return Replaces(call_id, to_tag, from_tag, "early-only" in params)


@dataclass(frozen=True)
class Event:
    """An Event value (RFC 6665): package and parameters (``id``)."""

    package: str
    """Event package (``dialog``, ``refer``, ``message-summary``...), lower-case."""
    params: Params = field(default_factory=dict)
    """Parameters, names lower-case."""

    @property
    def id(self) -> str | None:
        """The ``id`` parameter, or ``None``."""
        return self.params.get("id")

    def __str__(self) -> str:
        return self.package + format_params(self.params)


def parse_event(text: str) -> Event:
    """Parse an Event value; raise :class:`SipParseError` (400) when malformed."""
    package, pos = _leading_token(text)
    if not package:
        raise _bad("Invalid Event header")
    params, end = parse_params(text, pos, "Event")
    if end != len(text):
        raise _bad("Invalid Event header")
    return Event(package.lower(), params)


@dataclass(frozen=True)
class SubscriptionState:
    """A Subscription-State value (RFC 6665)."""

    state: str
    """``active``, ``pending`` or ``terminated`` (lower-case)."""
    expires: int | None = None
    """Remaining seconds, or ``None``."""
    reason: str | None = None
    """Reason of termination, or ``None``."""
    params: Params = field(default_factory=dict)
    """Every parameter, names lower-case."""

    def __str__(self) -> str:
        params = dict(self.params)
        if self.expires is not None:
            params["expires"] = str(self.expires)
        if self.reason is not None:
            params["reason"] = self.reason
        return self.state + format_params(params)


def parse_subscription_state(text: str) -> SubscriptionState:
    """Parse a Subscription-State value; raise :class:`SipParseError` (400) when malformed."""
    state, pos = _leading_token(text)
    params, end = parse_params(text, pos, "Subscription-State")
    if not state or end != len(text):
        raise _bad("Invalid Subscription-State header")
    expires = params.get("expires")
    if expires is not None and not expires.isdigit():
        raise _bad("Invalid Subscription-State header")
    return SubscriptionState(state.lower(), int(expires) if expires is not None else None,
                             params.get("reason"), params)


@dataclass(frozen=True)
class Reason:
    """A Reason value (RFC 3326): ``SIP;cause=200;text="Call completed elsewhere"``."""

    protocol: str
    """``SIP`` or ``Q.850``."""
    cause: int | None = None
    """The cause code, or ``None``."""
    text: str | None = None
    """The text, unquoted, or ``None``."""

    def __str__(self) -> str:
        out = self.protocol
        if self.cause is not None:
            out += f";cause={self.cause}"
        if self.text is not None:
            out += ";text=" + quote_string(self.text)
        return out


def parse_reason(text: str) -> Reason:
    """Parse one Reason value; raise :class:`SipParseError` (400) when malformed."""
    protocol, pos = _leading_token(text)
    params, end = parse_params(text, pos, "Reason")
    if not protocol or end != len(text):
        raise _bad("Invalid Reason header")
    cause = params.get("cause")
    if cause is not None and not cause.isdigit():
        raise _bad("Invalid Reason header")
    txt = params.get("text")
    return Reason(protocol, int(cause) if cause is not None else None,
                  unquote_string(txt) if txt is not None else None)


def _leading_token(text: str) -> tuple[str, int]:
    n = len(text)
    pos = 0
    while pos < n and text[pos] in " \t":
        pos += 1
    m = _abnf.TOKEN.match(text, pos)
    if m is None:
        return "", pos
    return m.group(), m.end()


def parse_int(text: str, what: str, maximum: int) -> int:
    """A non-negative integer header value no larger than ``maximum``."""
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise _bad(f"Invalid {what} header")
    value = int(text)
    if value > maximum:
        raise _bad(f"Invalid {what} header: value too large")
    return value


def parse_addresses(values: list[str], what: str) -> list[Address]:
    """Addresses of every line of a list header (Contact, Route, Record-Route...)."""
    out: list[Address] = []
    for v in values:
        out.extend(parse_address_list(v, what))
    return out


def parse_tokens(values: list[str]) -> list[str]:
    """Lower-case option tags or methods of Supported/Require/Allow... lines."""
    out = []
    for v in values:
        for part in split_commas(v):
            if part:
                out.append(part.lower())
    return out


def format_addresses(addresses: Iterable[Address]) -> str:
    """A comma-separated list of addresses."""
    return ", ".join(str(a) for a in addresses)
