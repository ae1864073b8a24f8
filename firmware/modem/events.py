"""Events of the modem dialogue, as frozen dataclasses (h11 style).

Two layers emit them:

* the AT engine (`firmware.modem.at.AtEngine`): `CommandResult`, `Urc`, `EchoDetected`,
  `GarbageReceived`, `DleEvent` -- line-level facts, no model knowledge;
* the modem session (`firmware.modem.session.ModemSession`): everything below
  "Session events" -- what a caller (the B2BUA, the web page) acts on.

Times are seconds on the injected clock of the core that emitted the event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Event", "CommandResult", "Urc", "EchoDetected", "GarbageReceived", "DleEvent",
    "ModemReady", "IncomingCall", "CallerId", "Ringing", "RemoteRinging", "RemoteAnswered",
    "CallConnected", "RemoteHangup", "CallEnded", "DtmfReceived", "SmsReceived", "SmsSent",
    "UssdResult", "NetworkChanged", "SignalQuality", "SimState", "ModemFault", "ResetRequired",
    "AudioStart", "AudioStop", "OperationResult", "LineReleased",
]


class Event:
    """Base class of every modem event."""


# --------------------------------------------------------------------------- AT layer

@dataclass(frozen=True)
class CommandResult(Event):
    """A queued command ended: with a final result code or a timeout."""

    command: Any
    """The `firmware.modem.at.Command` that ended."""
    result: str
    """Final result: "OK", "ERROR", "+CME ERROR", "+CMS ERROR", "NO CARRIER", "BUSY",
    "NO ANSWER", "NO DIALTONE", "CONNECT", "VCON" or "TIMEOUT"."""
    lines: tuple[str, ...] = ()
    """Intermediate response lines (prefixed lines and their data lines), in order."""
    error: str | None = None
    """The text after "+CME ERROR:" / "+CMS ERROR:" (a number or a verbose text)."""
    at: float = 0.0
    """When the command ended."""

    @property
    def ok(self) -> bool:
        """True when the final result was OK (or CONNECT/VCON for call set-up)."""
        return self.result in ("OK", "CONNECT", "VCON")

    def first(self, prefix: str) -> str | None:
        """The payload of the first line starting with `prefix` (stripped), or None."""
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        return None


@dataclass(frozen=True)
class Urc(Event):
    """An unsolicited result code, classified by its name (the prefix without ':')."""

    name: str
    """"RING", "+CLIP", "+CMTI", "^CEND", "VOICE CALL", "NMBR", ... (no trailing colon)."""
    args: str
    """Everything after the name and its separator (":" or "="), stripped."""
    line: str
    """The line as received."""
    data: str | None = None
    """The second line of a two-line URC (the PDU of +CMT/+CDS)."""
    at: float = 0.0


@dataclass(frozen=True)
class EchoDetected(Event):
    """The modem echoed a command line back: echo is on (again)."""

    line: str
    at: float = 0.0


@dataclass(frozen=True)
class GarbageReceived(Event):
    """A line that is neither a response, a final result nor a known URC."""

    line: str
    at: float = 0.0


@dataclass(frozen=True)
class DleEvent(Event):
    """A DLE-shielded event code from a V.253 voice modem (ITU-T V.253 table 14)."""

    code: str
    """One character: '0'-'9', '*', '#', 'A'-'D' (DTMF), 'b' busy, 'd' dial tone, 's' silence,
    'q' quiet, 'l' loop-current interruption, 'h'/'H' local handset on/off hook, ..."""
    at: float = 0.0


# --------------------------------------------------------------------------- Session events

@dataclass(frozen=True)
class ModemReady(Event):
    """Init finished: the modem answers, is identified and its SIM state is known."""

    model: str
    """The profile key ("sim800", "sim7600", "ec25", "huawei", "voicemodem")."""
    imei: str | None
    iccid: str | None
    identity: str
    """What the module says it is (ATI / AT+CGMM)."""
    at: float = 0.0


@dataclass(frozen=True)
class IncomingCall(Event):
    """A call is ringing in. Emitted once per call, with the caller ID if the network gave one."""

    number: str | None
    """The caller's number as presented ("+48600100200"), None when withheld/unavailable."""
    withheld: bool = False
    """True when the caller restricted the presentation (CLI validity 1)."""
    name: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class CallerId(Event):
    """Caller identification as the modem reported it (+CLIP, or V.253 NMBR=/NAME= lines)."""

    number: str | None
    number_type: int | None = None
    """TON/NPI octet (145 international, 129 unknown/national)."""
    validity: int = 0
    """3GPP TS 27.007 CLI validity: 0 valid, 1 withheld, 2 not available."""
    name: str | None = None
    date: str | None = None
    """MMDD from an analog caller-ID message."""
    time: str | None = None
    """HHMM from an analog caller-ID message."""
    at: float = 0.0


@dataclass(frozen=True)
class Ringing(Event):
    """One RING (or +CRING: VOICE) of the current incoming call."""

    count: int
    at: float = 0.0


@dataclass(frozen=True)
class RemoteRinging(Event):
    """The called party is being alerted (outgoing call)."""

    at: float = 0.0


@dataclass(frozen=True)
class RemoteAnswered(Event):
    """The called party answered (outgoing call)."""

    at: float = 0.0


@dataclass(frozen=True)
class CallConnected(Event):
    """A call (either direction) is up; audio follows with `AudioStart`."""

    direction: str
    """"in" or "out"."""
    number: str | None
    at: float = 0.0


@dataclass(frozen=True)
class RemoteHangup(Event):
    """The far end (or the network) ended the call."""

    cause: str
    """"normal", "busy", "no_answer", "rejected", "missed" (caller gave up while ringing),
    "no_carrier", "congestion", "disconnect_tone", "loop_current_drop", "dial_tone", ..."""
    q850: int | None = None
    """ITU-T Q.850 cause value when the modem reported one (Huawei ^CEND, +CEER)."""
    duration: float | None = None
    """Call duration in seconds when the modem reported one."""
    at: float = 0.0


@dataclass(frozen=True)
class CallEnded(Event):
    """The call is over and the line is idle again (after either side hung up)."""

    by: str
    """"local" or "remote"."""
    cause: str
    q850: int | None = None
    at: float = 0.0


@dataclass(frozen=True)
class DtmfReceived(Event):
    """A DTMF digit detected by the module's own detector (the engine detects in-band)."""

    digit: str
    source: str = "module"
    """"module" (+RXDTMF / +DTMF / +QTONEDET URC) or "dle" (V.253 DLE code)."""
    at: float = 0.0


@dataclass(frozen=True)
class SmsReceived(Event):
    """A whole SMS (all parts of a concatenated one), decoded."""

    sender: str
    """"+48600100200", a national number, or an alphanumeric sender ("Orange")."""
    text: str
    timestamp: str | None
    """Service-centre time stamp, ISO 8601 with offset ("2024-03-05T14:07:30+01:00")."""
    smsc: str | None = None
    parts: int = 1
    storage: str | None = None
    """Where the parts sit until `ModemSession.sms_stored` deletes them ("SM", "ME")."""
    indexes: tuple[int, ...] = ()
    """Storage indexes of the parts (empty for directly delivered +CMT messages)."""
    complete: bool = True
    """False when parts never arrived and the storage had to be swept anyway."""
    at: float = 0.0


@dataclass(frozen=True)
class SmsSent(Event):
    """An SMS left the modem; one message reference per part."""

    number: str
    refs: tuple[int, ...]
    at: float = 0.0


@dataclass(frozen=True)
class UssdResult(Event):
    """A USSD answer from the network (+CUSD), decoded to text."""

    text: str
    status: int
    """27.007 <m>: 0 no further action, 1 further action required, 2 terminated by network,
    4 not supported, 5 network time-out."""
    dcs: int | None = None
    at: float = 0.0


@dataclass(frozen=True)
class NetworkChanged(Event):
    """Registration state changed (+CREG/+CGREG/+CEREG)."""

    registered: bool
    status: int
    """27.007 <stat>: 0 not searching, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming."""
    technology: str | None = None
    """"CREG" (circuit-switched), "CGREG", "CEREG" (LTE)."""
    operator: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class SignalQuality(Event):
    """Signal strength from +CSQ (or ^RSSI / +QIND: "csq")."""

    rssi: int
    """27.007 rssi: 0..31, 99 unknown."""
    ber: int = 99
    dbm: int | None = None
    """-113 + 2 * rssi, None when unknown."""
    at: float = 0.0


@dataclass(frozen=True)
class SimState(Event):
    """SIM state (+CPIN) with the remaining PIN/PUK tries when the model can tell."""

    state: str
    """"ready", "pin", "puk", "pin2", "puk2", "absent", "not_ready", "error", "blocked"."""
    pin_tries: int | None = None
    puk_tries: int | None = None
    detail: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class ModemFault(Event):
    """Something went wrong that an installer should see (also kept in the fault ring)."""

    kind: str
    """"timeout", "garbage", "echo", "pin_failed", "puk_required", "audio_not_rearmed",
    "reset", "port_lost", "unexpected_reboot", "wrong_modem", "sms_decode", ..."""
    detail: str
    at: float = 0.0


@dataclass(frozen=True)
class ResetRequired(Event):
    """The watchdog gave up on the module: the I/O layer must reset and re-find it."""

    reason: str
    at: float = 0.0


@dataclass(frozen=True)
class AudioStart(Event):
    """The call audio flows now: open the model's audio port as an engine PCM-fd channel."""

    port: str
    """"audio" (a separate audio tty) or "at" (the AT port itself, V.253 voice modems)."""
    sample_format: str
    """Engine channel format: "s16le", "ulaw" or "u8"."""
    dle: bool
    """True when the stream is DLE-shielded (ITU-T V.253)."""
    rate: int = 8000
    at: float = 0.0


@dataclass(frozen=True)
class AudioStop(Event):
    """The call audio stops: close the engine channel NOW (synchronously, in the callback)."""

    at: float = 0.0


@dataclass(frozen=True)
class LineReleased(Event):
    """An analog line went back on hook (ATH / AT+VLS=0 answered)."""

    seconds_after_hangup: float
    at: float = 0.0


@dataclass(frozen=True)
class OperationResult(Event):
    """A request made on the session (answer, dial, send_sms, ...) finished."""

    op: int
    ok: bool
    value: Any = None
    error: BaseException | None = field(default=None, compare=False)
    at: float = 0.0
