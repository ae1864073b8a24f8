"""SIP URIs (RFC 3261 section 19.1), other absolute URIs, and name-addr header values.

Parsed parts are stored unescaped (``%75se%72`` becomes ``user``) and escaped again on output,
so two spellings of one URI compare equal. Parameter names are lower-cased.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from urllib.parse import unquote

from . import _abnf
from .errors import SipParseError

Params = Mapping[str, str | None]


_EMPTY: Mapping[str, str | None] = MappingProxyType({})


def _fast_new(cls: type, fields: dict[str, object]) -> object:
    """Build a frozen dataclass instance from already-validated fields (parser hot path)."""
    obj: object = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def unescape(text: str) -> str:
    """Undo ``%HH`` escaping (the result may hold any character, NUL included)."""
    if "%" not in text:
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def escape(text: str, safe: set[str]) -> str:
    """``%HH``-escape every character of ``text`` that is not in ``safe``."""
    if all(c in safe for c in text):
        return text
    out = []
    for c in text:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
    return "".join(out)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string (backslash before ``"`` and ``\\``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_string(text: str) -> str:
    """The content of a quoted-string, or ``text`` unchanged when it is not quoted."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return _abnf.QUOTED_PAIR.sub(r"\1", text[1:-1])
    return text


def format_host(host: str) -> str:
    """``host`` ready for a URI or a Via: IPv6 addresses get their brackets."""
    return f"[{host}]" if ":" in host else host


def _bad(what: str) -> SipParseError:
    return SipParseError(400, what)


def parse_params(text: str, pos: int, what: str) -> tuple[dict[str, str | None], int]:
    """Parse ``*( SEMI generic-param )`` from ``text[pos:]``; return the params and the end.

    Whitespace is allowed around ``;`` and ``=``. Names are lower-cased; values are kept as
    written (a quoted-string keeps its quotes). Parsing stops at a character that cannot
    start a parameter (a comma, for instance).
    """
    params: dict[str, str | None] = {}
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n or text[pos] != ";":
            return params, pos
        pos += 1
        while pos < n and text[pos] in " \t":
            pos += 1
        m = _abnf.TOKEN.match(text, pos)
        if m is None:
            raise _bad(f"Invalid {what} header")
        name = m.group().lower()
        pos = m.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        value: str | None = None
        if pos < n and text[pos] == "=":
            pos += 1
            while pos < n and text[pos] in " \t":
                pos += 1
            m = _abnf.GEN_VALUE.match(text, pos)
            if m is None:
                raise _bad(f"Invalid {what} header")
            value = m.group()
            pos = m.end()
        params[name] = value


def format_params(params: Params) -> str:
    """``;name=value`` pairs of a header value."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def split_commas(text: str) -> list[str]:
    """Split a header value at the commas that are outside quotes and angle brackets."""
    if '"' not in text and "<" not in text:
        return [part.strip() for part in text.split(",")]
    parts = []
    start = 0
    quoted = angle = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts


@dataclass(frozen=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI."""

    host: str
    """Host name or address (IPv6 without brackets)."""
    user: str | None = None
    """User part, unescaped; ``None`` when the URI has no userinfo."""
    port: int | None = None
    """Port, or ``None`` for the default."""
    params: Params = field(default_factory=dict)
    """URI parameters (``transport``, ``lr``, ``maddr``...), names lower-case, values unescaped."""
    headers: tuple[tuple[str, str], ...] = ()
    """URI headers (``?Replaces=...``), unescaped."""
    scheme: str = "sip"
    """``sip`` or ``sips`` (lower-case)."""
    password: str | None = None
    """Password part of the userinfo (deprecated by RFC 3261 but legal), unescaped."""
    _text: str | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP or SIPS URI; raise :class:`SipParseError` (400) when malformed."""
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise _bad("Invalid SIP URI")
        return uri

    def __str__(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", self._format())
        return self._text  # type: ignore[return-value]

    def _format(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(escape(self.user, _abnf.USER_SAFE))
            if self.password is not None:
                out.append(":" + escape(self.password, _abnf.PASSWORD_SAFE))
            out.append("@")
        out.append(format_host(self.host))
        if self.port is not None:
            out.append(f":{self.port}")
        for k, v in self.params.items():
            out.append(";" + escape(k, _abnf.PARAM_SAFE))
            if v is not None:
                out.append("=" + escape(v, _abnf.PARAM_SAFE))
        if self.headers:
            out.append("?" + "&".join(escape(k, _abnf.HNV_SAFE) + "=" + escape(v, _abnf.HNV_SAFE)
                                      for k, v in self.headers))
        return "".join(out)

    @property
    def host_port(self) -> str:
        """``host[:port]`` as written in a Via or a URI."""
        return format_host(self.host) + ("" if self.port is None else f":{self.port}")

    @property
    def transport(self) -> str:
        """The ``transport`` parameter, lower-case (``udp`` when absent)."""
        value = self.params.get("transport")
        return value.lower() if value else "udp"

    @property
    def lr(self) -> bool:
        """Whether the URI has the loose-routing ``lr`` parameter."""
        return "lr" in self.params

    def get_param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive)."""
        return self.params.get(name.lower())

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with the given parameters set (``None`` values are flag parameters)."""
        merged = dict(self.params)
        merged.update({k.lower(): v for k, v in params.items()})
        return replace(self, params=merged)

    def without_params(self, *names: str) -> SipUri:
        """A copy without the given parameters."""
        drop = {n.lower() for n in names}
        return replace(self, params={k: v for k, v in self.params.items() if k not in drop})

    def equivalent(self, other: object) -> bool:
        """URI comparison of RFC 3261 section 19.1.4 (case rules, parameter rules)."""
        if not isinstance(other, SipUri):
            return False
        if (self.scheme, self.user, self.password) != (other.scheme, other.user, other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        for key in ("user", "ttl", "method", "maddr", "transport"):
            a, b = self.params.get(key), other.params.get(key)
            if (a is None) != (b is None) or (a is not None and b is not None and a.lower() != b.lower()):
                return False
        for key in set(self.params) & set(other.params):
            a, b = self.params[key], other.params[key]
            if (a or "").lower() != (b or "").lower():
                return False
        return sorted(self.headers) == sorted(other.headers)


@dataclass(frozen=True)
class AbsoluteUri:
    """A URI of another scheme (``tel:``, ``http:``, ``urn:``...), kept opaque."""

    scheme: str
    """Scheme, lower-case."""
    opaque: str
    """Everything after the colon, as written."""
    _text: str | None = field(default=None, init=False, compare=False, repr=False)

    def __str__(self) -> str:
        return self._text or f"{self.scheme}:{self.opaque}"

    @property
    def params(self) -> Params:
        """Always empty: parameters of unknown schemes are not interpreted."""
        return {}


Uri = SipUri | AbsoluteUri


_SIMPLE_SIP_URI = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/]+)@)?([A-Za-z0-9][A-Za-z0-9.\-]*)(?::(\d{1,4}))?")


_CACHE_LIMIT = 4096
_uri_cache: dict[str, Uri] = {}
_address_cache: dict[str, tuple[Address, ...]] = {}


def parse_uri(text: str) -> Uri:
    """Parse any absolute URI: ``sip``/``sips`` fully, other schemes as opaque text.

    Results are shared between callers (phones send the same URIs again and again): treat
    parsed URIs as immutable (their ``params`` are read-only mappings).
    """
    uri = _uri_cache.get(text)
    if uri is None:
        uri = _parse_uri(text)
        if len(_uri_cache) >= _CACHE_LIMIT:
            _uri_cache.clear()
        _uri_cache[text] = uri
    return uri


def _parse_uri(text: str) -> Uri:
    m = _SIMPLE_SIP_URI.fullmatch(text)
    if m is not None:
        scheme, user, host, port = m.groups()
        return _fast_new(SipUri, {  # type: ignore[return-value]
            "host": host, "user": user, "port": None if port is None else int(port), "params": _EMPTY,
            "headers": (), "scheme": scheme, "password": None, "_text": text})
    m = _abnf.SIP_URI.fullmatch(text)
    if m is None:
        colon = text.find(":")
        if colon > 0 and _abnf.SCHEME.fullmatch(text, 0, colon) and text[:colon].lower() not in ("sip", "sips"):
            opaque = text[colon + 1:]
            if opaque and not any(c in opaque for c in " \t\r\n<>\""):
                uri = AbsoluteUri(text[:colon].lower(), opaque)
                object.__setattr__(uri, "_text", text)
                return uri
        raise _bad("Invalid URI")
    user = password = None
    userinfo = m.group("userinfo")
    if userinfo is not None:
        u, sep, p = userinfo.partition(":")
        if not _abnf.USER.fullmatch(u) or (sep and not _abnf.PASSWORD.fullmatch(p)):
            raise _bad("Invalid URI")
        user = unescape(u)
        password = unescape(p) if sep else None
    host = m.group("host")
    if host[0] == "[":
        host = host[1:-1]
    port_text = m.group("port")
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise _bad("Invalid URI")
    params: dict[str, str | None] = {}
    ptext = m.group("params")
    if ptext:
        for item in ptext[1:].split(";"):
            name, eq, value = item.partition("=")
            if not _abnf.PARAM.fullmatch(name) or (eq and not _abnf.PARAM.fullmatch(value)):
                raise _bad("Invalid URI")
            params[unescape(name).lower()] = unescape(value) if eq else None
    headers: tuple[tuple[str, str], ...] = ()
    htext = m.group("headers")
    if htext is not None:
        pairs = []
        for item in htext.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq or not _abnf.HNV.fullmatch(name) or not _abnf.HNV.fullmatch(value):
                raise _bad("Invalid URI")
            pairs.append((unescape(name), unescape(value)))
        headers = tuple(pairs)
    return _fast_new(SipUri, {  # type: ignore[return-value]
        "host": host, "user": user, "port": port, "params": MappingProxyType(params), "headers": headers,
        "scheme": m.group("scheme").lower(), "password": password, "_text": text})


@dataclass(frozen=True)
class Address:
    """A name-addr or addr-spec header value: From, To, Contact, Route, Refer-To..."""

    uri: Uri
    """The address."""
    display_name: str | None = None
    """Display name, unquoted (``None`` when absent)."""
    params: Params = field(default_factory=dict)
    """Header parameters (``tag``, ``expires``, ``q``...), names lower-case, values as written."""

    @classmethod
    def parse(cls, text: str, what: str = "address") -> Address:
        """Parse one address occupying all of ``text``; ``what`` names it in errors.

        Results are shared between callers: treat them as immutable.
        """
        cached = _address_cache.get(text)
        if cached is not None and len(cached) == 1:
            return cached[0]
        addr, pos = _parse_address(text, 0, what)
        if pos != len(text):
            raise _bad(f"Invalid {what} header")
        _remember(text, (addr,))
        return addr

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter, or ``None``."""
        return self.params.get("tag")

    def get_param(self, name: str) -> str | None:
        """Value of header parameter ``name`` (case-insensitive), quotes removed."""
        value = self.params.get(name.lower())
        return None if value is None else unquote_string(value)

    def with_tag(self, tag: str | None) -> Address:
        """A copy with the ``tag`` parameter set (or removed with ``None``)."""
        params = {k: v for k, v in self.params.items() if k != "tag"}
        if tag is not None:
            params["tag"] = tag
        return replace(self, params=params)

    def with_params(self, **params: str | None) -> Address:
        """A copy with header parameters added or replaced."""
        merged = dict(self.params)
        merged.update({k.lower(): v for k, v in params.items()})
        return replace(self, params=merged)

    def __str__(self) -> str:
        prefix = ""
        if self.display_name:
            prefix = quote_string(self.display_name) + " "
        return f"{prefix}<{self.uri}>{format_params(self.params)}"


_NAME_ADDR = re.compile(r'[ \t]*(?:"((?:[^"\\]|\\.)*)"[ \t]*|([^"<;,]*?)[ \t]*)<([^<>]*)>', re.DOTALL)


def _parse_address(text: str, pos: int, what: str) -> tuple[Address, int]:
    m = _NAME_ADDR.match(text, pos)
    if m is not None:
        quoted, tokens, raw = m.groups()
        display: str | None = None
        if quoted is not None:
            display = _abnf.QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted
        elif tokens:
            words = tokens.split()
            if any(not _abnf.TOKEN.fullmatch(w) for w in words):
                raise _bad(f"Invalid {what} header")
            display = " ".join(words)
        if not raw or " " in raw or "\t" in raw:
            raise _bad(f"Invalid {what} header")
        uri = _uri_or_error(raw, what)
        pos = m.end()
    else:
        n = len(text)
        while pos < n and text[pos] in " \t":
            pos += 1
        end = pos
        while end < n and text[end] not in ";,":
            end += 1
        raw = text[pos:end].rstrip(" \t")
        if not raw or any(c in raw for c in " \t\"<"):
            raise _bad(f"Invalid {what} header")
        uri = _uri_or_error(raw, what)
        if isinstance(uri, SipUri) and uri.headers:
            raise _bad(f"Invalid {what} header: URI with headers must be enclosed in <>")
        display = None
        pos = end
    params, pos = parse_params(text, pos, what)
    return _fast_new(Address, {"uri": uri, "display_name": display,  # type: ignore[return-value]
                               "params": MappingProxyType(params) if params else _EMPTY}), pos


def _uri_or_error(raw: str, what: str) -> Uri:
    try:
        return parse_uri(raw)
    except SipParseError:
        raise _bad(f"Invalid {what} header") from None


def _remember(text: str, addresses: tuple[Address, ...]) -> None:
    if len(_address_cache) >= _CACHE_LIMIT:
        _address_cache.clear()
    _address_cache[text] = addresses


def parse_address_list(text: str, what: str) -> list[Address]:
    """Parse a comma-separated list of addresses (Contact, Route, Record-Route)."""
    cached = _address_cache.get(text)
    if cached is not None:
        return list(cached)
    out = []
    pos = 0
    n = len(text)
    while True:
        addr, pos = _parse_address(text, pos, what)
        out.append(addr)
        if pos >= n:
            _remember(text, tuple(out))
            return out
        if text[pos] != ",":
            raise _bad(f"Invalid {what} header")
        pos += 1
