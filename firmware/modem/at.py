"""A line-oriented AT command engine, sans-I/O (fed bytes and time, emits events).

Rule 1: this module never reads a clock, a port or a socket: `receive_data(data, now)`,
`handle_timer(now)` and `send(command, now)` are its only inputs; `data_to_send()`,
`next_event()` and `get_timer()` its only outputs.
Rule 2: it knows nothing about modem models: which lines are unsolicited is a table
(`URC_NAMES`), extendable per profile; what a command expects is declared on the `Command`.

The dialogue (ITU-T V.250 / 3GPP TS 27.007):

* one command is in flight at a time; the rest wait in a queue (urgent ones jump it);
* a command ends with a final result code (OK, ERROR, +CME ERROR: <err>, +CMS ERROR: <err>,
  and for call set-up commands NO CARRIER, BUSY, NO ANSWER, NO DIALTONE, CONNECT, VCON) or
  with its own timeout -- never hangs;
* intermediate lines starting with the command's expected prefix belong to it, two-line
  responses (+CMGR/+CMGL header + PDU) keep their data line whatever it says (an SMS body
  "OK" in text mode is data, not a result);
* unsolicited result codes are recognised by name whatever command is pending, including in
  the middle of a response; +CMT/+CDS take the next line as their PDU;
* modems that answer OK *before* the data line (seen on some Huawei and SIMCom firmware for
  AT+CUSD / AT+CGSN) are covered by `Command.late`: after OK the command waits that long for
  its data before completing;
* framing tolerates \\r\\n, \\r\\r\\n (SIMCom), bare \\r or \\n, NUL bytes and binary noise;
* echoed command lines (echo turned back on, ATE1 default after a module reset) are
  recognised and skipped, and reported once as `EchoDetected` so the session re-sends ATE0;
* the "> " prompt of AT+CMGS is detected without a line end, then the PDU and Ctrl-Z go out;
* after a timeout the queue pauses until the line is quiet, so a late answer to the timed-out
  command is not taken for the next command's answer;
* V.253 voice data after CONNECT is DLE-scanned (events reported, samples skipped) until the
  host takes the port back and the modem ends the stream with <DLE><ETX>.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .dle import DleDecoder
from .events import CommandResult, DleEvent, EchoDetected, Event, GarbageReceived, Urc

__all__ = ["Command", "AtEngine", "URC_NAMES", "URC_EXACT", "split_name", "FINAL_CALL"]

#: Final results of every command.
FINAL_ALWAYS = ("OK", "ERROR")
#: Call-progress results: final for call set-up commands, unsolicited otherwise.
FINAL_CALL = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "CONNECT", "VCON")

#: Unsolicited result codes recognised by name (the text before ':' or '=').
URC_NAMES = frozenset({
    # 27.007 / 27.005
    "+CRING", "+CLIP", "+CCWA", "+CMTI", "+CMT", "+CDS", "+CDSI", "+CBM", "+CUSD", "+CPIN",
    "+CREG", "+CGREG", "+CEREG", "+CLCC", "+CSQ", "+CIEV", "+CSSI", "+CSSU", "+COLP", "+CFUN",
    # SIMCom
    "VOICE CALL", "MISSED_CALL", "+RXDTMF", "+DTMF", "+CPCMREG", "+SIMCARD", "+CPSI",
    # Quectel
    "+QIND", "+QTONEDET", "^DSCI", "+QUSIM", "+QPCMV",
    # Huawei
    "^CEND", "^ORIG", "^CONF", "^CONN", "^RSSI", "^BOOT", "^MODE", "^SRVST", "^SIMST",
    "^HCSQ", "^CVOICE", "^RFSWITCH", "^DSFLOWRPT", "^SYSSTART", "^STIN", "^CPIN",
    # V.253 / analog caller ID (NAME = value)
    "DATE", "TIME", "NMBR", "NAME", "DDN_NMBR", "MESG", "CALLER NUMBER",
})
#: Unsolicited lines matched whole.
URC_EXACT = frozenset({
    "RING", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "MO RING", "MO CONNECTED",
    "RDY", "Call Ready", "SMS Ready", "PB DONE", "NORMAL POWER DOWN", "POWER DOWN",
    "UNDER-VOLTAGE POWER DOWN", "UNDER-VOLTAGE WARNNING", "OVER-VOLTAGE POWER DOWN",
    "START", "^SYSSTART", "VCON", "CONNECT",
})
#: URCs whose next line is part of them (PDU mode).
URC_TWO_LINE = frozenset({"+CMT", "+CDS", "+CBM"})
#: Responses whose header is followed by one data line (the PDU, or the text-mode body).
RESPONSE_TWO_LINE = frozenset({"+CMGR", "+CMGL"})
#: Caller-ID lines use '=' (V.253 / Rockwell "NMBR = 5551234").
_EQUALS_NAMES = frozenset({"DATE", "TIME", "NMBR", "NAME", "DDN_NMBR", "MESG", "CALLER NUMBER"})

_CTRL = {c: None for c in range(32) if c not in (9,)}


def split_name(line: str) -> tuple[str, str]:
    """("+CSQ", "23,0") for "+CSQ: 23,0"; ("NMBR", "5551234") for "NMBR = 5551234".

    Lines without a separator give (line, "").
    """
    head, sep, rest = line.partition("=")
    if sep and head.strip().upper() in _EQUALS_NAMES:
        return head.strip().upper(), rest.strip()
    head, sep, rest = line.partition(":")
    if sep and head.strip():
        return head.strip(), rest.strip()
    return line, ""


@dataclass(frozen=True, eq=False)
class Command:
    """One AT command and what its answer looks like. Compared by identity."""

    text: str
    """The command line without the trailing CR ("AT+CSQ")."""
    timeout: float = 5.0
    """Seconds from sending to the final result."""
    prefix: tuple[str, ...] = ()
    """Names of the intermediate lines it expects ("+CSQ",)."""
    raw: bool = False
    """Unprefixed lines (IMEI of AT+CGSN, ATI text) are its data."""
    payload: bytes | None = None
    """Sent after the "> " prompt, followed by Ctrl-Z (AT+CMGS PDU)."""
    call: bool = False
    """Call set-up command: NO CARRIER/BUSY/NO ANSWER/NO DIALTONE/CONNECT/VCON are final."""
    late: float = 0.0
    """If OK arrives before any expected line, wait this long for it (quirk tolerance)."""
    data_after: bool = False
    """CONNECT switches the port to V.253 voice data (AT+VTR, AT+VTX, AT+VRX)."""
    tag: object = None
    """Free for the caller (correlates results to requests)."""

    def __post_init__(self) -> None:
        if isinstance(self.prefix, str):
            object.__setattr__(self, "prefix", (self.prefix,))
        object.__setattr__(self, "prefix", tuple(p.rstrip(":") for p in self.prefix))
        if not self.text or "\r" in self.text or "\n" in self.text:
            raise ValueError(f"invalid AT command line {self.text!r}")
        if self.timeout <= 0:
            raise ValueError("command timeout must be positive")

    @property
    def expects_data(self) -> bool:
        return bool(self.prefix) or self.raw


@dataclass
class _InFlight:
    command: Command
    deadline: float
    lines: list[str] = field(default_factory=list)
    awaiting_prompt: bool = False
    late_until: float | None = None
    late_result: str = "OK"


class AtEngine:
    """The AT dialogue over one serial port. See the module docstring."""

    def __init__(self, *, now: float = 0.0, extra_urcs: frozenset[str] | set[str] = frozenset(),
                 resync_quiet: float = 0.3, resync_max: float = 3.0, max_line: int = 8192,
                 echo_memory: int = 4) -> None:
        self._urc_names = URC_NAMES | frozenset(extra_urcs)
        self._resync_quiet = resync_quiet
        self._resync_max = resync_max
        self._max_line = max_line
        self._queue: deque[Command] = deque()
        self._inflight: _InFlight | None = None
        self._out = bytearray()
        self._buf = bytearray()
        self._events: deque[Event] = deque()
        self._two_line: tuple[str, str, str] | None = None  # ("urc"|"resp", name, header line)
        self._recent: deque[str] = deque(maxlen=echo_memory)
        self._recent_payload: deque[str] = deque(maxlen=2)
        self._hold_until: float | None = None
        self._hold_started = 0.0
        self._data_mode = False
        self._data_deadline: float | None = None
        self._dle = DleDecoder()
        self._after_data_until = 0.0
        self.last_rx = now
        """When the last byte arrived."""
        self.last_final = now
        """When a command last ended with a final result code (liveness)."""
        self.garbage_lines = 0

    # ------------------------------------------------------------------ inputs
    def send(self, command: Command, now: float, *, urgent: bool = False) -> None:
        """Queue a command; it goes out when the port is free."""
        if urgent:
            self._queue.appendleft(command)
        else:
            self._queue.append(command)
        self._pump(now)

    def write_raw(self, data: bytes) -> None:
        """Bytes to send as they are (DLE shielded codes, an abort character)."""
        self._out += data

    def abort_pending(self, now: float) -> bool:
        """Abort a dial in progress (V.250 6.3.1: any character aborts a dial). True if sent."""
        inf = self._inflight
        if inf is not None and inf.command.call:
            self._out += b"\r"
            return True
        return False

    def cancel_all(self, now: float, result: str = "ABORTED") -> None:
        """End the in-flight and queued commands at once (port lost, module reset)."""
        if self._inflight is not None:
            self._finish(self._inflight, result, None, now)
        while self._queue:
            cmd = self._queue.popleft()
            self._events.append(CommandResult(cmd, result, (), None, now))
        self._inflight = None
        self._hold_until = None
        self._two_line = None
        self._buf.clear()
        self._data_mode = False
        self._data_deadline = None

    def enter_data_mode(self, now: float, timeout: float | None = None) -> None:
        """Treat input as DLE-shielded voice data until <DLE><ETX> (or `timeout` s pass)."""
        self._data_mode = True
        self._dle = DleDecoder()
        self._data_deadline = None if timeout is None else now + timeout

    def leave_data_mode(self) -> None:
        """Back to lines without waiting for <DLE><ETX> (the modem never sent it)."""
        self._data_mode = False
        self._data_deadline = None
        self._dle = DleDecoder()

    @property
    def in_data_mode(self) -> bool:
        return self._data_mode

    @property
    def busy(self) -> bool:
        """A command is in flight or queued."""
        return self._inflight is not None or bool(self._queue)

    @property
    def pending(self) -> Command | None:
        return self._inflight.command if self._inflight else None

    def receive_data(self, data: bytes, now: float) -> None:
        if not data:
            return
        self.last_rx = now
        if self._hold_until is not None:
            self._hold_until = min(now + self._resync_quiet, self._hold_started + self._resync_max)
        if self._data_mode:
            data = self._feed_data_mode(data, now)
            if not data:
                self._pump(now)
                return
        self._buf += data
        self._scan(now)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        if self._data_mode and self._data_deadline is not None and now >= self._data_deadline - 1e-6:
            self._data_mode = False
            self._data_deadline = None
        inf = self._inflight
        if inf is not None:
            if inf.late_until is not None and now >= inf.late_until - 1e-6:
                self._finish(inf, inf.late_result, None, now)
            elif now >= inf.deadline - 1e-6:
                if inf.awaiting_prompt:
                    self._out += b"\x1b"  # ESC leaves the SMS prompt without sending (27.005 3.5.1)
                self._finish(inf, "TIMEOUT", None, now)
                self._hold_started = now
                self._hold_until = now + self._resync_quiet
        if self._hold_until is not None and now >= self._hold_until - 1e-6:
            self._hold_until = None
        self._pump(now)

    # ------------------------------------------------------------------ outputs
    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = []
        inf = self._inflight
        if inf is not None:
            times.append(inf.late_until if inf.late_until is not None else inf.deadline)
        if self._hold_until is not None:
            times.append(self._hold_until)
        if self._data_mode and self._data_deadline is not None:
            times.append(self._data_deadline)
        return min(times) if times else None

    # ------------------------------------------------------------------ internals
    def _pump(self, now: float) -> None:
        if self._inflight is not None or self._hold_until is not None or self._data_mode:
            return
        if not self._queue:
            return
        cmd = self._queue.popleft()
        self._inflight = _InFlight(cmd, now + cmd.timeout, awaiting_prompt=cmd.payload is not None)
        self._recent.append(cmd.text.strip().upper())
        self._out += cmd.text.encode("ascii", "replace") + b"\r"

    def _finish(self, inf: _InFlight, result: str, error: str | None, now: float) -> None:
        if self._inflight is inf:
            self._inflight = None
        if result not in ("TIMEOUT", "ABORTED"):
            self.last_final = now
        self._events.append(CommandResult(inf.command, result, tuple(inf.lines), error, now))
        if result in ("CONNECT",) and inf.command.data_after:
            self.enter_data_mode(now)

    def _feed_data_mode(self, data: bytes, now: float) -> bytes:
        # Scan byte-wise so the text after <DLE><ETX> goes back to the line parser.
        etx = -1
        pos = 0
        if self._dle.pending_dle and data[:1] == b"\x03":
            self._after_data_until = now + 2.0
            self._dle = DleDecoder()
            self._data_mode = False
            self._data_deadline = None
            return data[1:]
        while True:
            j = data.find(b"\x10\x03", pos)
            if j < 0:
                break
            # make sure this DLE is not the second half of an escaped <DLE><DLE>
            k = j
            while k > 0 and data[k - 1] == 0x10:
                k -= 1
            if (j - k) % 2 == 0:
                etx = j
                break
            pos = j + 1
        if etx >= 0:
            self._after_data_until = now + 2.0
        head = data if etx < 0 else data[:etx + 2]
        _, codes = self._dle.feed(head)
        for code in codes:
            if code == "\x03":
                self._data_mode = False
                self._data_deadline = None
            else:
                self._events.append(DleEvent(code, now))
        if etx >= 0:
            self._data_mode = False
            self._data_deadline = None
            self._dle = DleDecoder()
            return data[etx + 2:]
        return b""

    def _scan(self, now: float) -> None:
        buf = self._buf
        while True:
            if self._data_mode:
                rest = bytes(buf)
                buf.clear()
                tail = self._feed_data_mode(rest, now)
                if not tail:
                    return
                buf += tail
            cut = -1
            for i, b in enumerate(buf):
                if b in (13, 10):
                    cut = i
                    break
            if cut < 0:
                self._check_prompt(now)
                if len(buf) > self._max_line:
                    line = bytes(buf[: self._max_line])
                    buf.clear()
                    self._line(self._decode(line), now, overflow=True)
                return
            raw = bytes(buf[:cut])
            del buf[: cut + 1]
            text = self._decode(raw)
            if text:
                self._line(text, now)

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw.decode("utf-8", "replace").translate(_CTRL).strip()

    def _check_prompt(self, now: float) -> None:
        inf = self._inflight
        if inf is None or not inf.awaiting_prompt:
            return
        partial = self._decode(bytes(self._buf))
        if partial.startswith(">"):
            self._buf.clear()
            inf.awaiting_prompt = False
            payload = inf.command.payload or b""
            self._recent_payload.append(payload.decode("ascii", "replace").strip().upper())
            self._out += payload + b"\x1a"

    def _is_echo(self, line: str) -> bool:
        up = line.upper()
        if up.startswith(">"):
            up = up.lstrip("> ").strip()
            if not up:
                return True
        if up.startswith("AT") and up in self._recent:
            return True
        return bool(up) and up in self._recent_payload

    def _line(self, line: str, now: float, overflow: bool = False) -> None:
        if overflow:
            self.garbage_lines += 1
            self._events.append(GarbageReceived(line[:80] + "...", now))
            return
        inf = self._inflight
        # The data line of a two-line URC/response is taken whatever it contains.
        if self._two_line is not None:
            kind, name, header = self._two_line
            self._two_line = None
            if kind == "urc":
                self._events.append(Urc(name, split_name(header)[1], header, line, now))
                return
            if inf is not None:
                inf.lines.append(line)
            return
        if line == ">":
            return  # a prompt nobody asked for (a late one after ESC)
        if self._is_echo(line):
            self._events.append(EchoDetected(line, now))
            return
        name, args = split_name(line)
        up = line.upper()
        # Final result codes of the command in flight.
        if inf is not None:
            final = self._final_of(line, up, inf.command)
            if final is not None:
                result, error = final
                if (result == "OK" and inf.command.late > 0 and inf.late_until is None
                        and not self._has_expected(inf)):
                    inf.late_until = now + inf.command.late
                    inf.late_result = result
                    return
                self._finish(inf, result, error, now)
                return
            if name in inf.command.prefix or (inf.command.prefix and name.upper() in inf.command.prefix):
                inf.lines.append(line)
                if name in RESPONSE_TWO_LINE:
                    self._two_line = ("resp", name, line)
                if inf.late_until is not None:
                    self._finish(inf, inf.late_result, None, now)
                return
        if self._is_urc(name, line):
            if name in URC_TWO_LINE:
                self._two_line = ("urc", name, line)
                return
            uname = line if line in URC_EXACT else name
            self._events.append(Urc(uname, "" if line in URC_EXACT else args, line, None, now))
            return
        if inf is not None and inf.late_until is None and (inf.command.raw or not inf.command.prefix):
            inf.lines.append(line)
            return
        if inf is not None and inf.late_until is not None and inf.command.raw:
            inf.lines.append(line)
            self._finish(inf, inf.late_result, None, now)
            return
        if self._hold_until is not None:
            return  # a late answer to the command that timed out
        if inf is None and up in ("OK", "VCON") and now <= self._after_data_until:
            self._after_data_until = 0.0
            return  # V.253: the modem's OK after <DLE><ETX> ends the voice data state
        self.garbage_lines += 1
        self._events.append(GarbageReceived(line, now))

    def _has_expected(self, inf: _InFlight) -> bool:
        if not inf.lines:
            return False
        if inf.command.raw:
            return True
        return any(split_name(x)[0] in inf.command.prefix for x in inf.lines)

    def _is_urc(self, name: str, line: str) -> bool:
        if line in URC_EXACT:
            return True
        return name in self._urc_names and name != line

    @staticmethod
    def _final_of(line: str, up: str, cmd: Command) -> tuple[str, str | None] | None:
        if up == "OK" or up == "ERROR":
            return up, None
        if up.startswith("+CME ERROR"):
            return "+CME ERROR", line.partition(":")[2].strip() or None
        if up.startswith("+CMS ERROR"):
            return "+CMS ERROR", line.partition(":")[2].strip() or None
        if cmd.call:
            for code in FINAL_CALL:
                if up == code or (code == "CONNECT" and up.startswith("CONNECT ")):
                    return code, None
        return None
