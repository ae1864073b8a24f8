"""Events the media engine reports to the asyncio side (frozen dataclasses, h11 style).

Drain them with :meth:`firmware.media.Engine.poll_events` when
:meth:`~firmware.media.Engine.fileno` is readable.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaEvent:
    """Base class of every engine event."""


@dataclass(frozen=True)
class DtmfReceived(MediaEvent):
    """A DTMF digit finished (reported once, at its end)."""

    channel_id: int
    #: "0"-"9", "*", "#", "A"-"D".
    digit: str
    #: How long the digit lasted, in milliseconds.
    duration_ms: int
    #: "rfc4733" (telephone-event packets) or "inband" (Goertzel detector on the audio).
    source: str


@dataclass(frozen=True)
class RtpTimeout(MediaEvent):
    """No RTP arrived on a receiving channel for its inactivity timeout."""

    channel_id: int
    #: The timeout that expired, in seconds.
    timeout_s: float


@dataclass(frozen=True)
class RtpResumed(MediaEvent):
    """RTP flows again on a channel that had timed out."""

    channel_id: int


@dataclass(frozen=True)
class RtpSourceLatched(MediaEvent):
    """The channel now sends to this (host, port): symmetric RTP adopted a new source."""

    channel_id: int
    addr: tuple[str, int]


@dataclass(frozen=True)
class PlayerDone(MediaEvent):
    """A player ended."""

    player_id: int
    #: "finished" (played to the end), "stopped" (stop() was called) or "target_gone"
    #: (its channel or bridge was closed).
    reason: str


@dataclass(frozen=True)
class RecorderError(MediaEvent):
    """A recording stopped because writing failed (disk full, I/O error); the call goes on."""

    recorder_id: int
    #: The operating system's text for the error, e.g. "No space left on device".
    reason: str
    #: errno of the failure.
    errno: int
    path: str
    #: Audio safely in the file, in seconds.
    seconds: float


@dataclass(frozen=True)
class RecorderStopped(MediaEvent):
    """A recording was finalised (header written, file synced and closed)."""

    recorder_id: int
    path: str
    #: Length of the recording in seconds.
    seconds: float


@dataclass(frozen=True)
class DleEvent(MediaEvent):
    """A voice modem sent DLE + code on a DLE-framed PCM channel (ITU-T V.253).

    Codes include the DTMF digits "0"-"9", "*", "#", "A"-"D", "b" busy, "d" dial tone,
    "s" silence, "q" quiet, "c" calling tone, "/" and "~" (DTMF start/end shielding) and
    "\\x03" (ETX, end of the voice stream).
    """

    channel_id: int
    code: str


@dataclass(frozen=True)
class ChannelError(MediaEvent):
    """A PCM channel's descriptor reached end of file or failed; the channel is silent now."""

    channel_id: int
    #: errno, or 0 for end of file.
    errno: int
    reason: str
