"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for G.711 voice with RFC 4733 events.

:func:`parse_sdp` / :meth:`SessionDescription.serialize` keep every line they do not interpret,
so a description survives a round trip. :class:`SdpSession` is our side of one session: a stable
``o=`` line whose version grows only when what we offer changes, offers, and answers that keep
the offerer's codec order and mirror its telephone-event payload type.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ._entropy import token_bytes
from .errors import SdpError

STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000),
    13: ("CN", 8000), 18: ("G729", 8000),
}
"""RFC 3551 static audio payload types the box may meet."""

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def _bad(reason: str, status: int = 400) -> SdpError:
    return SdpError(reason, status)


@dataclass(frozen=True)
class Codec:
    """An RTP payload format of an m-line."""

    payload_type: int
    """RTP payload type."""
    name: str
    """Encoding name as written (``PCMU``, ``telephone-event``)."""
    clock_rate: int
    """Clock rate in Hz."""
    channels: int | None = None
    """Channels, when given in the rtpmap."""
    fmtp: str | None = None
    """Format parameters (``0-15`` for telephone-event)."""

    @property
    def key(self) -> tuple[str, int]:
        """``(lower-case name, clock rate)``: what makes two codecs the same."""
        return (self.name.lower(), self.clock_rate)


PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, fmtp="0-16")


@dataclass
class Origin:
    """The ``o=`` line."""

    username: str = "-"
    """Username (``-`` when none)."""
    session_id: str = "0"
    """Session id (digits)."""
    version: int = 0
    """Session version: increases with every change."""
    nettype: str = "IN"
    """Network type."""
    addrtype: str = "IP4"
    """``IP4`` or ``IP6``."""
    address: str = "0.0.0.0"
    """Unicast address of the originator."""

    def __str__(self) -> str:
        return f"{self.username} {self.session_id} {self.version} {self.nettype} {self.addrtype} {self.address}"


@dataclass
class Connection:
    """A ``c=`` line."""

    address: str
    """Connection address (``0.0.0.0`` means hold in RFC 2543 style)."""
    addrtype: str = "IP4"
    """``IP4`` or ``IP6``."""
    nettype: str = "IN"
    """Network type."""

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass
class MediaDescription:
    """One ``m=`` section."""

    media: str
    """``audio``, ``video``..."""
    port: int
    """Port (0: stream rejected or disabled)."""
    proto: str
    """Transport protocol (``RTP/AVP``)."""
    formats: list[str]
    """Formats (payload type numbers for RTP), in preference order."""
    connection: Connection | None = None
    """Media-level ``c=``, when present."""
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    """``a=`` lines in order: ``("rtpmap", "0 PCMU/8000")``, ``("sendrecv", None)``..."""
    other: list[tuple[str, str]] = field(default_factory=list)
    """Other lines of the section (``i=``, ``b=``, ``k=``), kept as they were."""

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name`` (``""`` for a flag attribute), or ``None``."""
        for k, v in self.attributes:
            if k == name:
                return "" if v is None else v
        return None

    def attribute_values(self, name: str) -> list[str]:
        """Values of every ``a=name``."""
        return [v or "" for k, v in self.attributes if k == name]

    @property
    def codecs(self) -> list[Codec]:
        """Payload formats in m-line order, from rtpmap/fmtp or the static table."""
        rtpmap: dict[str, tuple[str, int, int | None]] = {}
        fmtp: dict[str, str] = {}
        for value in self.attribute_values("rtpmap"):
            parsed = _rtpmap(value)
            if parsed is not None:
                rtpmap[parsed[0]] = parsed[1:]
        for value in self.attribute_values("fmtp"):
            key, _, params = value.partition(" ")
            fmtp[key] = params.strip()
        out = []
        for f in self.formats:
            if not f.isdigit():
                continue
            pt = int(f)
            channels: int | None = None
            if f in rtpmap:
                name, rate, channels = rtpmap[f]
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate = STATIC_PAYLOAD_TYPES[pt]
            else:
                continue
            out.append(Codec(pt, name, rate, channels, fmtp.get(f)))
        return out

    @property
    def direction(self) -> str | None:
        """``sendrecv``/``sendonly``/``recvonly``/``inactive`` when the section says so."""
        for k, _ in self.attributes:
            if k in DIRECTIONS:
                return k
        return None

    @property
    def ptime(self) -> int | None:
        """Packet time in ms (``a=ptime``), or ``None``."""
        value = self.attribute("ptime")
        return int(value) if value and value.isdigit() else None

    def set_direction(self, direction: str) -> None:
        """Replace the direction attribute."""
        self.attributes = [(k, v) for k, v in self.attributes if k not in DIRECTIONS]
        self.attributes.append((direction, None))


def _rtpmap(value: str) -> tuple[str, str, int, int | None] | None:
    pt, _, enc = value.partition(" ")
    parts = enc.strip().split("/")
    if len(parts) < 2 or not parts[1].isdigit() or (len(parts) > 2 and not parts[2].isdigit()):
        return None
    return pt, parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else None


@dataclass
class SessionDescription:
    """A parsed SDP body."""

    origin: Origin
    """The ``o=`` line."""
    session_name: str = "-"
    """The ``s=`` line."""
    connection: Connection | None = None
    """Session-level ``c=``."""
    timing: str = "0 0"
    """The ``t=`` line."""
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    """Session-level ``a=`` lines."""
    media: list[MediaDescription] = field(default_factory=list)
    """The ``m=`` sections in order."""
    other: list[tuple[str, str]] = field(default_factory=list)
    """Other session-level lines (``i= u= e= p= b= z= k= r=``), kept as they were."""
    version: int = 0
    """The ``v=`` line (always 0)."""

    def serialize(self) -> bytes:
        """The body, CRLF line ends."""
        return str(self).encode("utf-8")

    def __str__(self) -> str:
        other = self.other
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        lines += [f"{k}={v}" for k, v in other if k in "iuep"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += [f"{k}={v}" for k, v in other if k == "b"]
        lines.append(f"t={self.timing}")
        lines += [f"{k}={v}" for k, v in other if k in "trzk" or k not in "iuepb"]
        lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes]
        for m in self.media:
            lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}".rstrip())
            lines += [f"{k}={v}" for k, v in m.other if k == "i"]
            if m.connection is not None:
                lines.append(f"c={m.connection}")
            lines += [f"{k}={v}" for k, v in m.other if k != "i"]
            lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in m.attributes]
        return "\r\n".join(lines) + "\r\n"

    def audio(self) -> MediaDescription | None:
        """The first audio section with a non-zero port, or ``None``."""
        return next((m for m in self.media if m.media == "audio" and m.port), None)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The connection that applies to ``media`` (media-level first)."""
        return media.connection or self.connection

    def direction_of(self, media: MediaDescription) -> str:
        """Direction of ``media`` (media level, then session level, then ``sendrecv``)."""
        return media.direction or next((k for k, _ in self.attributes if k in DIRECTIONS), "sendrecv")

    def remote_rtp(self) -> tuple[str, int] | None:
        """``(address, port)`` where the first audio stream wants its RTP, or ``None``."""
        m = self.audio()
        if m is None:
            return None
        c = self.connection_for(m)
        return None if c is None else (c.address, m.port)

    @property
    def is_hold(self) -> bool:
        """Whether the audio stream is put on hold: sendonly/inactive, or ``c=0.0.0.0``."""
        m = self.audio()
        if m is None:
            return False
        c = self.connection_for(m)
        if c is not None and c.address in ("0.0.0.0", "::"):
            return True
        return self.direction_of(m) in ("sendonly", "inactive")


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raise :class:`SdpError` (400) naming what is wrong."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("SDP is not UTF-8 text") from None
    else:
        text = data
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise _bad("SDP must start with v=0")
    origin: Origin | None = None
    sdp = SessionDescription(Origin())
    current: MediaDescription | None = None
    seen_t = False
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise _bad(f"Malformed SDP line: {line[:40]}")
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            parts = value.split()
            if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
                raise _bad(f"Invalid m= line: {value[:40]}")
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise _bad(f"Invalid m= line: {value[:40]}")
            current = MediaDescription(parts[0], port, parts[2], parts[3:])
            sdp.media.append(current)
        elif kind == "c":
            conn = _parse_connection(value)
            if current is None:
                sdp.connection = conn
            else:
                current.connection = conn
        elif kind == "a":
            name, sep, val = value.partition(":")
            attr = (name, val if sep else None)
            (sdp.attributes if current is None else current.attributes).append(attr)
        elif current is not None:
            current.other.append((kind, value))
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[2].isdigit():
                raise _bad(f"Invalid o= line: {value[:40]}")
            origin = Origin(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])
        elif kind == "s":
            sdp.session_name = value or "-"
        elif kind == "t":
            if not seen_t:
                sdp.timing = value
                seen_t = True
            else:
                sdp.other.append((kind, value))
        else:
            sdp.other.append((kind, value))
    if origin is None:
        raise _bad("SDP has no o= line")
    sdp.origin = origin
    for m in sdp.media:
        if m.port and m.media == "audio":
            if sdp.connection_for(m) is None:
                raise _bad("SDP audio stream has no c= line")
            for value in m.attribute_values("rtpmap"):
                if _rtpmap(value) is None:
                    raise _bad(f"Invalid rtpmap attribute: {value}")
    return sdp


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise _bad(f"Invalid c= line: {value[:40]}")
    return Connection(parts[2].split("/")[0], parts[1], parts[0])


@dataclass(frozen=True)
class Answer:
    """Outcome of answering an offer."""

    sdp: SessionDescription
    """Our answer."""
    codec: Codec
    """The voice codec chosen (the first of the offer's order that we support)."""
    telephone_event: Codec | None
    """The offer's telephone-event format (its payload type mirrored), if both support it."""
    remote: tuple[str, int]
    """Where the offerer wants RTP: ``(address, port)``."""
    remote_direction: str
    """The offerer's direction (``sendonly`` when it holds us, also for ``c=0.0.0.0``)."""
    ptime: int | None
    """The offerer's ptime, if given."""

    @property
    def hold(self) -> bool:
        """Whether the offer puts the call on hold."""
        return self.remote_direction in ("sendonly", "inactive")


class SdpSession:
    """Our side of one SDP session (one call leg): offers, answers, and the o= version."""

    def __init__(self, address: str, *, username: str = "-", session_id: str | None = None,
                 session_name: str = "-") -> None:
        self.address = address
        """Our media address (the box's address in every SDP)."""
        self.origin = Origin(username, session_id or str((int.from_bytes(token_bytes(8), "big") >> 2) + 1), 0,
                             addrtype="IP6" if ":" in address else "IP4", address=address)
        self.session_name = session_name
        self._last: str | None = None

    def offer(self, port: int, codecs: Sequence[Codec] = (PCMU, PCMA), *,
              telephone_event: Codec | None = TELEPHONE_EVENT, direction: str = "sendrecv",
              ptime: int | None = 20) -> SessionDescription:
        """An offer of one audio stream on ``port``."""
        fmts = list(codecs) + ([telephone_event] if telephone_event else [])
        return self._finish(self._audio(port, fmts, direction, ptime))

    def answer(self, offer: SessionDescription, port: int, supported: Sequence[Codec] = (PCMU, PCMA), *,
               telephone_event: bool = True, direction: str | None = None,
               ptime: int | None = 20) -> Answer:
        """Answer ``offer`` (RFC 3264 section 6): the first acceptable audio stream is accepted
        with the common codecs in the offerer's order, every other stream is rejected (port 0).
        ``direction`` is what we want (default: mirror the offer). Raises :class:`SdpError`
        (488) when no voice codec is common."""
        wanted = {c.key for c in supported}
        chosen: MediaDescription | None = None
        answer_media: list[MediaDescription] = []
        result: tuple[Codec, Codec | None, list[Codec]] | None = None
        for m in offer.media:
            if chosen is None and m.media == "audio" and m.port and m.proto.upper() == "RTP/AVP":
                common = [c for c in m.codecs if c.key in wanted]
                if common:
                    te = next((c for c in m.codecs if c.name.lower() == "telephone-event"
                               and c.clock_rate == 8000), None) if telephone_event else None
                    chosen = m
                    result = (common[0], te, common + ([te] if te else []))
                    answer_media.append(MediaDescription("audio", port, m.proto, []))
                    continue
            answer_media.append(MediaDescription(m.media, 0, m.proto, list(m.formats)))
        if chosen is None or result is None:
            raise _bad("No common codec", 488)
        codec, te, fmts = result
        conn = offer.connection_for(chosen)
        assert conn is not None
        remote_dir = offer.direction_of(chosen)
        if conn.address in ("0.0.0.0", "::") and remote_dir == "sendrecv":
            remote_dir = "sendonly"
        ours = direction or _REVERSE[remote_dir]
        if remote_dir == "inactive":
            ours = "inactive"
        elif remote_dir == "sendonly" and ours in ("sendrecv", "recvonly"):
            ours = "recvonly"
        elif remote_dir == "recvonly" and ours in ("sendrecv", "sendonly"):
            ours = "sendonly"
        audio = self._audio(port, fmts, ours, ptime).media[0]
        answer_media[offer.media.index(chosen)] = audio
        sdp = SessionDescription(self.origin, self.session_name, Connection(self.address, self.origin.addrtype),
                                 media=answer_media)
        return Answer(self._finish(sdp), codec, te, (conn.address, chosen.port), remote_dir, chosen.ptime)

    def _audio(self, port: int, codecs: Iterable[Codec], direction: str, ptime: int | None) -> SessionDescription:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        m = MediaDescription("audio", port, "RTP/AVP", [])
        for c in codecs:
            m.formats.append(str(c.payload_type))
            rate = f"{c.clock_rate}/{c.channels}" if c.channels else str(c.clock_rate)
            m.attributes.append(("rtpmap", f"{c.payload_type} {c.name}/{rate}"))
            if c.fmtp:
                m.attributes.append(("fmtp", f"{c.payload_type} {c.fmtp}"))
        if ptime:
            m.attributes.append(("ptime", str(ptime)))
        m.attributes.append((direction, None))
        return SessionDescription(self.origin, self.session_name,
                                  Connection(self.address, self.origin.addrtype), media=[m])

    def _finish(self, sdp: SessionDescription) -> SessionDescription:
        body = str(replace(sdp, origin=replace(self.origin, version=0)))
        if self._last is not None and body != self._last:
            self.origin.version += 1
        self._last = body
        sdp.origin = replace(self.origin)
        return sdp


__all__ = [
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Answer",
    "Codec",
    "Connection",
    "MediaDescription",
    "Origin",
    "SdpSession",
    "SessionDescription",
    "parse_sdp",
]
