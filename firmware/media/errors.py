"""Typed exceptions for the media engine: one class per ``pbx_status`` code.

Every failing engine call raises a :class:`MediaError` subclass whose ``code`` is the
negative C status, e.g. ``NoFreePort`` when the RTP port range is exhausted.
"""
from __future__ import annotations


class MediaError(Exception):
    """Base class of every media engine error."""

    #: The C ``pbx_status`` value (negative).
    code: int = 0

    def __init__(self, message: str = "", code: int | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message or self.__class__.__doc__ or "media engine error")


class InvalidArgument(MediaError, ValueError):
    """An argument is out of range or malformed."""

    code = -1


class OutOfMemory(MediaError, MemoryError):
    """The engine could not allocate memory."""

    code = -2


class InvalidState(MediaError):
    """Not allowed in the current state (for example the engine is closed)."""

    code = -3


class MediaIOError(MediaError, OSError):
    """A system call failed."""

    code = -4


class NoFreePort(MediaError):
    """No free port pair left in the configured RTP range."""

    code = -5


class AddressInUse(MediaError):
    """The requested address or port is taken."""

    code = -6


class NotFound(MediaError, LookupError):
    """No such channel, bridge, player, recorder or file."""

    code = -7


class TableFull(MediaError):
    """A fixed-size engine table or queue is full."""

    code = -8


class BadFormat(MediaError, ValueError):
    """A file or buffer is not in the expected format."""

    code = -9


class Busy(MediaError):
    """The object is in use (for example a channel already in another bridge)."""

    code = -10


class NoSpace(MediaError, OSError):
    """No space left on the device."""

    code = -11


_BY_CODE: dict[int, type[MediaError]] = {
    cls.code: cls
    for cls in (InvalidArgument, OutOfMemory, InvalidState, MediaIOError, NoFreePort, AddressInUse,
                NotFound, TableFull, BadFormat, Busy, NoSpace)
}


def error_for(code: int, what: str = "") -> MediaError:
    """The exception instance for a negative status code."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return MediaError(f"{what}: unknown engine error {code}" if what else f"unknown engine error {code}", code)
    doc = (cls.__doc__ or "").strip().rstrip(".")
    return cls(f"{what}: {doc}" if what else doc)
