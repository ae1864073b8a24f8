"""Typed exceptions of the modem package (one base class, h11-style split)."""
from __future__ import annotations


class ModemError(Exception):
    """Base class of every modem error."""

    q850: int | None = None
    """The Q.850 cause a B2BUA should use when this error fails a call."""


class AtCommandError(ModemError):
    """A command ended with ERROR, +CME ERROR or +CMS ERROR."""

    def __init__(self, command: str, result: str, error: str | None = None) -> None:
        self.command = command
        self.result = result
        self.error = error
        detail = f"{result}: {error}" if error else result
        super().__init__(f"{command} -> {detail}")


class AtTimeout(ModemError):
    """A command got no final result before its timeout."""

    q850 = 41  # temporary failure

    def __init__(self, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout
        super().__init__(f"{command}: no final result within {timeout:g} s")


class ModemNotReady(ModemError):
    """The request needs a modem that finished init (and is not being reset)."""

    q850 = 34  # no circuit/channel available


class ModemBusy(ModemError):
    """The request conflicts with the call state (a second call, answer with nothing ringing)."""

    q850 = 17


class ModemUnavailable(ModemError):
    """The module was lost (reset, unplugged) while the request ran."""

    q850 = 38  # network out of order


class PduError(ValueError, ModemError):
    """An SMS PDU (or USSD payload) could not be encoded or decoded."""


class ProfileError(ValueError, ModemError):
    """Unknown model name or an inconsistent profile."""
