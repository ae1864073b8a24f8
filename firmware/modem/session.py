"""The modem session: one model's dialogue on top of the AT engine (sans-I/O).

Fed like the engine (`receive_data(data, now)`, `handle_timer(now)`), asked to do things
(`start`, `answer`, `dial`, `hangup`, `send_dtmf`, `send_sms`, `ussd`) which return an
operation number and end with an `OperationResult` event; everything the modem says comes
out of `next_event()` as the events of `firmware.modem.events`.

Procedures (init, a dial, an SMS sweep) are generators that yield `Command`s and get their
`CommandResult`s back, or yield `_Sleep`/`_Wait` to pause on the injected clock. Several run
at once; the engine serialises their commands. One session lives as long as the port is
open: after a module reset the I/O layer builds a new one, handing over the `Health` and the
`PinGuard` that must outlive it.

Call state (one voice channel per module)::

    IDLE --RING/+CLIP--> RINGING --answer()--> ANSWERING --OK/VCON+audio--> ACTIVE
    IDLE --dial()--> DIALING --alerting--> ALERTING --answered--> ACTIVE
    any --remote end (NO CARRIER, BUSY, ^CEND, VOICE CALL: END, DLE b/d/l, ...)--> IDLE
    any --hangup()--> HANGING_UP --ATH/AT+CHUP done--> IDLE
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generator

from . import pdu as pdumod
from .at import AtEngine, Command
from .dle import DTMF_CODES, EVENT_NAMES
from .errors import (AtCommandError, AtTimeout, ModemBusy, ModemError, ModemNotReady,
                     ModemUnavailable, PduError)
from .events import (AudioStart, AudioStop, CallConnected, CallEnded, CallerId, CommandResult,
                     DleEvent, DtmfReceived, EchoDetected, Event, GarbageReceived, IncomingCall,
                     LineReleased, ModemFault, ModemReady, NetworkChanged, OperationResult,
                     RemoteAnswered, RemoteHangup, RemoteRinging, ResetRequired, Ringing,
                     SignalQuality, SimState, SmsReceived, SmsSent, Urc, UssdResult)
from .health import Health
from .profiles import ModemProfile

__all__ = ["SessionConfig", "PinGuard", "DialResult", "ModemSession", "CallState", "q850_cause"]


@dataclass
class SessionConfig:
    """Tunables of a session. Times in seconds."""

    pin: str | None = None
    """SIM PIN for the single automatic attempt; None: never enter a PIN."""
    expected_imei: str | None = None
    """If set, a modem with another IMEI on the port is refused (fault "wrong_modem")."""
    ping_interval: float = 30.0
    """Send AT when the port was silent this long (watchdog)."""
    ping_timeout: float = 3.0
    max_misses: int = 3
    """Consecutive commands without a final result before the module is reset."""
    command_timeout: float = 5.0
    signal_interval: float = 60.0
    sweep_interval: float = 300.0
    """Read-and-delete sweep of the SMS storage (AT+CMGL=4)."""
    ring_timeout: float = 8.0
    """No RING for this long while ringing: the caller gave up."""
    clip_wait: float = 1.5
    """After the first RING, how long to wait for +CLIP before announcing the call anyway."""
    dial_timeout: float = 60.0
    """An outgoing call not answered within this is hung up as no_answer."""
    answer_timeout: float = 20.0
    sms_timeout: float = 60.0
    ussd_timeout: float = 30.0
    concat_timeout: float = 3600.0
    """Parts of a concatenated SMS waiting longer than this are delivered incomplete."""
    sync_attempts: int = 10
    """Tries of a bare AT at start (a module still booting answers nothing)."""


@dataclass
class PinGuard:
    """What was done with the SIM PIN: at most one automatic attempt per SIM insertion and
    never again after a failure (until `clear()` -- a new PIN configured by the operator).

    A PIN the SIM accepted is proven: it is entered again when a module reset re-powers the
    SIM. Only an attempt that failed blocks further automatic attempts."""

    attempted: bool = False
    failed: bool = False

    def sim_removed(self) -> None:
        self.attempted = False

    def clear(self) -> None:
        self.attempted = False
        self.failed = False

    def as_dict(self) -> dict:
        return {"attempted": self.attempted, "failed": self.failed}

    @classmethod
    def from_dict(cls, d: dict) -> "PinGuard":
        return cls(bool(d.get("attempted")), bool(d.get("failed")))


@dataclass(frozen=True)
class DialResult:
    """How an outgoing call attempt ended up."""

    status: str
    """"answered", "busy", "no_answer", "no_carrier", "no_dialtone", "rejected",
    "congestion", "invalid_number", "error"."""
    cause: str = ""
    q850: int | None = None

    @property
    def answered(self) -> bool:
        return self.status == "answered"


class CallState:
    IDLE = "idle"
    RINGING = "ringing"
    ANSWERING = "answering"
    DIALING = "dialing"
    ALERTING = "alerting"
    ACTIVE = "active"
    HANGING_UP = "hanging_up"


#: Q.850 cause -> (our cause name, dial status)
_Q850 = {
    1: ("invalid_number", "invalid_number"), 3: ("invalid_number", "invalid_number"),
    16: ("normal", "no_carrier"), 17: ("busy", "busy"), 18: ("no_answer", "no_answer"),
    19: ("no_answer", "no_answer"), 21: ("rejected", "rejected"), 22: ("invalid_number", "invalid_number"),
    27: ("congestion", "congestion"), 28: ("invalid_number", "invalid_number"),
    31: ("normal", "no_carrier"), 34: ("congestion", "congestion"), 38: ("congestion", "congestion"),
    41: ("congestion", "congestion"), 42: ("congestion", "congestion"), 47: ("congestion", "congestion"),
}
_STATUS_Q850 = {"busy": 17, "no_answer": 19, "no_carrier": 16, "no_dialtone": 34, "rejected": 21,
                "congestion": 34, "invalid_number": 1, "normal": 16}


def q850_cause(status: str) -> int | None:
    """The Q.850 cause a call record should carry for one of our cause names."""
    return _STATUS_Q850.get(status)


@dataclass
class _Sleep:
    seconds: float


@dataclass
class _Wait:
    key: str
    timeout: float


class _Proc:
    __slots__ = ("gen", "op", "urgent", "name", "sleep_until", "wait_key", "wait_until")

    def __init__(self, gen: Generator, op: int | None, urgent: bool, name: str) -> None:
        self.gen = gen
        self.op = op
        self.urgent = urgent
        self.name = name
        self.sleep_until: float | None = None
        self.wait_key: str | None = None
        self.wait_until: float | None = None


@dataclass
class _Call:
    direction: str
    number: str | None = None
    withheld: bool = False
    name: str | None = None
    rings: int = 0
    first_ring: float = 0.0
    last_ring: float = 0.0
    announced: bool = False
    cid_seen: bool = False
    connected_at: float | None = None
    dial_op: int | None = None
    hangup_requested_at: float | None = None
    audio_on: bool = False


@dataclass
class _SmsGroup:
    parts: dict[int, pdumod.SmsDeliver] = field(default_factory=dict)
    indexes: dict[int, int] = field(default_factory=dict)
    first_seen: float = 0.0


_LATE = 0.3  # s to wait for a data line some firmware sends after its OK (see at.Command.late)
_EPS = 1e-6  # timers compare against the sums they were armed with; floats round
_PHONE_RE = re.compile(r"^\+?[0-9*#]{1,32}$")
_IMEI_RE = re.compile(r"(\d{14,17})")
_ICCID_RE = re.compile(r"([0-9A-Fa-f]{18,22})")


def _fields(args: str) -> list[str]:
    """Split a 27.007 parameter list on commas outside quotes; quotes removed."""
    out, cur, q = [], [], False
    for ch in args:
        if ch == '"':
            q = not q
        elif ch == "," and not q:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _int(s: str | None, default: int | None = None) -> int | None:
    try:
        return int(str(s).strip())
    except (TypeError, ValueError):
        return default


class ModemSession:
    """One modem model's dialogue over one open port. See the module docstring."""

    def __init__(self, profile: ModemProfile, *, now: float, config: SessionConfig | None = None,
                 health: Health | None = None, pin_guard: PinGuard | None = None) -> None:
        self.profile = profile
        self.config = config or SessionConfig()
        self.health = health or Health()
        self.pin_guard = pin_guard or PinGuard()
        self.engine = AtEngine(now=now, extra_urcs=profile.extra_urcs)
        self._events: deque[Event] = deque()
        self._procs: list[_Proc] = []
        self._by_cmd: dict[int, _Proc] = {}
        self._next_op = 1
        self._now = now
        # state visible in status()
        self.ready = False
        self.resetting = False
        self.imei: str | None = None
        self.iccid: str | None = None
        self.identity = ""
        self.sim_state = "unknown"
        self.pin_tries: int | None = None
        self.puk_tries: int | None = None
        self.creg: int | None = None
        self.cereg: int | None = None
        self.operator: str | None = None
        self.rssi: int | None = None
        self.ber: int | None = None
        self.last_ussd: dict | None = None
        self.call_state = CallState.IDLE
        self.call: _Call | None = None
        self.codec_id: int | None = None
        self.sample_format = profile.audio.sample_format
        # housekeeping
        self._misses = 0
        self._last_ping = now
        self._next_signal = now + self.config.signal_interval
        self._next_sweep = now + self.config.sweep_interval
        self._sweeping = False
        self._handed: set[int] = set()
        self._reading: set[int] = set()
        self._groups: dict[tuple, _SmsGroup] = {}
        self._sms_ref = (int(now * 1000) & 0xFF) or 1
        self._reset_deferred: str | None = None
        self._echo_fix_at = -1e9
        self._clip_deadline: float | None = None
        self._dial_deadline: float | None = None
        self._remote_end_at: float | None = None
        self._post_call_running = False
        self._waiting_data_end = False
        self._analog_cid: dict[str, str] = {}
        self._early_cid: tuple | None = None
        self._ring_early_cid: tuple | None = None

    # ================================================================== I/O side
    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes read from the AT port."""
        self._now = now
        self.engine.receive_data(data, now)
        self._drain_engine()

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.engine.handle_timer(now)
        self._drain_engine()
        for p in list(self._procs):
            if p.sleep_until is not None and now >= p.sleep_until - _EPS:
                p.sleep_until = None
                self._step(p, None)
            elif p.wait_until is not None and now >= p.wait_until - _EPS:
                p.wait_key = None
                p.wait_until = None
                self._step(p, None)
        self._housekeeping(now)

    def data_to_send(self) -> bytes:
        return self.engine.data_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [t for t in (self.engine.get_timer(), self._clip_deadline, self._dial_deadline)
                 if t is not None]
        for p in self._procs:
            if p.sleep_until is not None:
                times.append(p.sleep_until)
            if p.wait_until is not None:
                times.append(p.wait_until)
        if self.ready and not self.resetting:
            times.append(self._last_ping + self.config.ping_interval)
            times.append(self._next_signal)
            times.append(self._next_sweep)
        if self.call_state == CallState.RINGING and self.call is not None:
            times.append(self.call.last_ring + self.config.ring_timeout)
        return min(times) if times else None

    def port_lost(self, now: float, reason: str = "port closed") -> None:
        """The port vanished (EOF/EIO, USB unplug): end everything; the owner re-finds it."""
        self._now = now
        self.health.record("port_lost", reason, now)
        self._emit(ModemFault("port_lost", reason, now))
        self._shutdown(now, ModemUnavailable(reason))

    # ================================================================== requests
    def start(self, now: float) -> int:
        """Run init (sync, echo off, identity, SIM/PIN, SMS, network). Ends with ModemReady."""
        self._now = now
        return self._spawn(self._proc_init(), "init")

    def answer(self, now: float) -> int:
        """Answer the ringing call (ATA, or AT+VLS=1 + AT+VTR on an analog line)."""
        self._now = now
        if self.call_state != CallState.RINGING:
            return self._fail_now(ModemBusy(f"nothing to answer (call state {self.call_state})"))
        self.call_state = CallState.ANSWERING
        return self._spawn(self._proc_answer(), "answer", urgent=True)

    def dial(self, number: str, now: float) -> int:
        """Call `number`; the operation ends with a `DialResult` (answered or why not)."""
        self._now = now
        number = number.strip().replace(" ", "")
        if not _PHONE_RE.match(number):
            return self._fail_now(ValueError(f"not a dialable number: {number!r}"))
        if not self.ready or self.resetting:
            return self._fail_now(ModemNotReady("modem not ready"))
        if self.call_state != CallState.IDLE:
            return self._fail_now(ModemBusy(f"line busy (call state {self.call_state})"))
        self.call_state = CallState.DIALING
        self.call = _Call("out", number)
        op = self._new_op()
        self.call.dial_op = op
        self._spawn(self._proc_dial(number), "dial", op=None)
        return op

    def hangup(self, now: float) -> int:
        """End the call in any state (aborts a dial, rejects a ringing call)."""
        self._now = now
        if self.call_state in (CallState.IDLE, CallState.HANGING_UP):
            return self._spawn(self._proc_noop(), "hangup")
        prev = self.call_state
        self.call_state = CallState.HANGING_UP
        if self.call is not None:
            self.call.hangup_requested_at = now
        if prev in (CallState.DIALING, CallState.ALERTING) and self.call and self.call.dial_op:
            self._finish_dial(DialResult("no_carrier", "cancelled"))
        self.engine.abort_pending(now)
        return self._spawn(self._proc_hangup(prev), "hangup", urgent=True)

    def send_dtmf(self, digits: str, now: float) -> int:
        """DTMF to the far end with AT+VTS, one digit per command."""
        self._now = now
        if any(d not in DTMF_CODES for d in digits) or not digits:
            return self._fail_now(ValueError(f"not DTMF digits: {digits!r}"))
        if self.call_state != CallState.ACTIVE:
            return self._fail_now(ModemBusy("no active call"))
        if self.profile.kind == "fxo":
            return self._fail_now(ModemBusy("analog line: DTMF is sent in-band by the media engine"))
        return self._spawn(self._proc_dtmf(digits), "dtmf", urgent=True)

    def send_sms(self, number: str, text: str, now: float) -> int:
        """Send `text` (split into parts as needed); ends with the list of message references."""
        self._now = now
        if not self.profile.sms:
            return self._fail_now(ModemError(f"{self.profile.name} cannot send SMS"))
        if not self.ready or self.resetting:
            return self._fail_now(ModemNotReady("modem not ready"))
        try:
            self._sms_ref = (self._sms_ref % 255) + 1
            parts = pdumod.encode_submit(number, text, ref=self._sms_ref)
        except PduError as e:
            return self._fail_now(e)
        return self._spawn(self._proc_send_sms(number, parts), "sms")

    def ussd(self, code: str, now: float) -> int:
        """Run a USSD code; the operation ends with the network's answer as text."""
        self._now = now
        if not self.profile.ussd:
            return self._fail_now(ModemError(f"{self.profile.name} has no USSD"))
        if not self.ready or self.resetting:
            return self._fail_now(ModemNotReady("modem not ready"))
        if not re.match(r"^[0-9*#+]{1,64}$", code):
            return self._fail_now(ValueError(f"not a USSD code: {code!r}"))
        return self._spawn(self._proc_ussd(code), "ussd")

    def sms_stored(self, sms: SmsReceived, now: float) -> None:
        """The owner has the message safe: delete its parts from the modem storage."""
        self._now = now
        idx = [i for i in sms.indexes if i in self._handed]
        if idx:
            self._spawn(self._proc_delete(idx), "sms-delete", op=False)

    def sms_rejected(self, sms: SmsReceived, now: float) -> None:
        """The owner could not store it: keep it on the SIM; the next sweep offers it again."""
        for i in sms.indexes:
            self._handed.discard(i)

    def dle_event(self, code: str, now: float) -> None:
        """A DLE code reported by the media engine while it owns the voice-modem port."""
        self._now = now
        self._on_dle(code, now)

    def request_reset(self, reason: str, now: float) -> None:
        """Ask for a module reset now (or right after the call, never during one)."""
        self._now = now
        self._trip(reason, now)

    def snapshot(self) -> dict[str, Any]:
        """The session's state for a status page (no faults: those live in `health`)."""
        registered = any(s in (1, 5) for s in (self.creg, self.cereg) if s is not None)
        return {
            "model": self.profile.key,
            "imei": self.imei,
            "iccid": self.iccid,
            "identity": self.identity,
            "ready": self.ready,
            "registered": registered,
            "registration": {"creg": self.creg, "cereg": self.cereg},
            "operator": self.operator,
            "signal": None if self.rssi is None else {
                "rssi": self.rssi, "ber": self.ber,
                "dbm": None if self.rssi == 99 else -113 + 2 * self.rssi},
            "sim": {"state": self.sim_state, "pin_tries": self.pin_tries,
                    "puk_tries": self.puk_tries, "pin_failed": self.pin_guard.failed},
            "in_call": self.call_state not in (CallState.IDLE,),
            "call_state": self.call_state,
            "last_ussd": self.last_ussd,
        }

    # ================================================================== procedure runner
    def _new_op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def _fail_now(self, err: BaseException) -> int:
        op = self._new_op()
        self._emit(OperationResult(op, False, None, err, self._now))
        return op

    def _spawn(self, gen: Generator, name: str, *, urgent: bool = False, op: int | None | bool = True) -> int:
        opn = self._new_op() if op is True else (op or 0)
        p = _Proc(gen, opn or None, urgent, name)
        self._procs.append(p)
        self._step(p, None)
        return opn

    def _step(self, p: _Proc, value: Any) -> None:
        try:
            y = p.gen.send(value)
        except StopIteration as e:
            self._end_proc(p, True, e.value, None)
            return
        except (ModemError, ValueError) as e:
            self._end_proc(p, False, None, e)
            return
        if isinstance(y, Command):
            self._by_cmd[id(y)] = p
            self.engine.send(y, self._now, urgent=p.urgent)
        elif isinstance(y, _Sleep):
            p.sleep_until = self._now + y.seconds
        elif isinstance(y, _Wait):
            p.wait_key = y.key
            p.wait_until = self._now + y.timeout
        else:
            self._end_proc(p, False, None, TypeError(f"procedure yielded {y!r}"))

    def _end_proc(self, p: _Proc, ok: bool, value: Any, err: BaseException | None) -> None:
        if p not in self._procs:
            return  # already ended by a shutdown (its result went out then)
        self._procs.remove(p)
        if p.op:
            self._emit(OperationResult(p.op, ok, value, err, self._now))
        elif err is not None and not isinstance(err, ModemUnavailable):
            self._fault("procedure", f"{p.name}: {err}")

    def _signal(self, key: str, value: Any) -> bool:
        for p in list(self._procs):
            if p.wait_key == key:
                p.wait_key = None
                p.wait_until = None
                self._step(p, value)
                return True
        return False

    def _shutdown(self, now: float, err: ModemError) -> None:
        self.engine.cancel_all(now)
        self._by_cmd.clear()
        procs, self._procs = self._procs, []
        for p in procs:
            try:
                p.gen.close()
            except Exception:  # noqa: BLE001 - a generator's cleanup must not stop shutdown
                pass
            if p.op:
                self._emit(OperationResult(p.op, False, None, err, now))
        if self.call is not None and self.call.dial_op:
            self._emit(OperationResult(self.call.dial_op, False, None, err, now))
            self.call.dial_op = None
        if self.call_state != CallState.IDLE:
            if self.call is not None and self.call.audio_on:
                self._emit(AudioStop(now))
            self._emit(CallEnded("remote", "modem_lost", 38, now))
        self.call_state = CallState.IDLE
        self.call = None
        self.ready = False
        self._drain_engine()

    # ================================================================== engine events
    def _drain_engine(self) -> None:
        while True:
            ev = self.engine.next_event()
            if ev is None:
                break
            if isinstance(ev, CommandResult):
                self._on_result(ev)
            elif isinstance(ev, Urc):
                self._on_urc(ev)
            elif isinstance(ev, DleEvent):
                self._on_dle(ev.code, ev.at)
            elif isinstance(ev, EchoDetected):
                self._on_echo(ev)
            elif isinstance(ev, GarbageReceived):
                if self.health.record("garbage", ev.line[:60], ev.at, min_interval=10.0):
                    self._emit(ModemFault("garbage", ev.line[:60], ev.at))
        if self._waiting_data_end and not self.engine.in_data_mode:
            self._waiting_data_end = False
            self._signal("data_end", True)

    def _on_result(self, r: CommandResult) -> None:
        if r.result == "TIMEOUT":
            self._misses += 1
            self.health.record("timeout", f"{r.command.text} ({self._misses} in a row)", r.at,
                               min_interval=5.0)
            if self._misses >= self.config.max_misses:
                self._trip(f"{self._misses} commands in a row without an answer", r.at)
        elif r.result != "ABORTED":
            self._misses = 0
            self.health.alive(r.at)
        p = self._by_cmd.pop(id(r.command), None)
        if p is not None and p in self._procs:
            self._step(p, r)

    def _on_echo(self, ev: EchoDetected) -> None:
        if not self.ready:
            return  # echo is the power-on default (V.250 E1); init sends ATE0
        if self.health.record("echo", "modem echoes commands; sending ATE0", ev.at, min_interval=30.0):
            self._emit(ModemFault("echo", "modem echoes commands; sending ATE0", ev.at))
        if ev.at - self._echo_fix_at > 5.0 and self.ready:
            self._echo_fix_at = ev.at
            self._spawn(self._proc_simple("ATE0"), "echo-off", op=False)

    # ================================================================== housekeeping
    def _housekeeping(self, now: float) -> None:
        if self._clip_deadline is not None and now >= self._clip_deadline - _EPS:
            self._clip_deadline = None
            if self._analog_cid:
                self._finish_analog_cid(now)
            else:
                self._announce_incoming(now)
        if self._dial_deadline is not None and now >= self._dial_deadline - _EPS:
            self._dial_deadline = None
            if self.call_state in (CallState.DIALING, CallState.ALERTING):
                self._finish_dial(DialResult("no_answer", "no answer within %gs" % self.config.dial_timeout, 19))
                self.hangup(now)
        if self.call_state == CallState.RINGING and self.call is not None \
                and now >= self.call.last_ring + self.config.ring_timeout - _EPS:
            self._remote_end("missed", None, None, now)
        if not self.ready or self.resetting:
            return
        if self.engine.in_data_mode:
            # V.253 voice data: the media engine owns the port; silence here is not a hang
            self._last_ping = now
            self._misses = 0
        elif now >= self._last_ping + self.config.ping_interval - _EPS:
            self._last_ping = now
            if not self.engine.busy:
                if now - self.engine.last_final >= self.config.ping_interval * 0.5:
                    self._spawn(self._proc_ping(), "ping", op=False)
            elif now - self.engine.last_rx >= self.config.ping_interval:
                # A long command (SMS sweep, send) in flight and not a byte for a whole
                # interval: as good as a missed ping, so a hang is caught in time.
                self._misses += 1
                self.health.record("silent", f"no byte for {now - self.engine.last_rx:.0f} s while "
                                   f"waiting for {self.engine.pending.text if self.engine.pending else '?'}",
                                   now, min_interval=5.0)
                if self._misses >= self.config.max_misses:
                    self._trip(f"{self._misses} intervals without an answer", now)
        if now >= self._next_signal - _EPS:
            self._next_signal = now + self.config.signal_interval
            if self.profile.kind == "gsm" and self.call_state in (CallState.IDLE, CallState.ACTIVE):
                self._spawn(self._proc_signal(), "signal", op=False)
        if now >= self._next_sweep - _EPS:
            self._next_sweep = now + self.config.sweep_interval
            if self.profile.sms and not self._sweeping:
                self._spawn(self._proc_sweep(), "sweep", op=False)
        if self._reset_deferred and self.call_state == CallState.IDLE:
            self._run_deferred_reset(now)

    def _trip(self, reason: str, now: float) -> None:
        if self.resetting:
            return
        if self.call_state != CallState.IDLE:
            if self._reset_deferred is None:
                self._reset_deferred = reason
                self._fault("reset_deferred", f"{reason}; not resetting during a call")
            self._misses = 0
            return
        self.resetting = True
        self.health.state = "resetting"
        self.health.resets += 1
        self.health.record("reset", reason, now)
        self._emit(ModemFault("reset", reason, now))
        self._shutdown(now, ModemUnavailable(f"module reset: {reason}"))
        self.engine.write_raw(self.profile.reset_cmd.encode() + b"\r")
        self._emit(ResetRequired(reason, now))

    # ================================================================== helpers for procs
    def _cmd(self, text: str, *, timeout: float | None = None, **kw: Any) -> Command:
        return Command(text, timeout or self.config.command_timeout, **kw)

    @staticmethod
    def _check(r: CommandResult) -> CommandResult:
        if r.result == "TIMEOUT":
            raise AtTimeout(r.command.text, r.command.timeout)
        if r.result == "ABORTED":
            raise ModemUnavailable(f"{r.command.text}: port lost")
        if not r.ok:
            raise AtCommandError(r.command.text, r.result, r.error)
        return r

    def _fault(self, kind: str, detail: str, *, min_interval: float = 0.0) -> None:
        if self.health.record(kind, detail, self._now, min_interval=min_interval):
            self._emit(ModemFault(kind, detail, self._now))

    def _emit(self, ev: Event) -> None:
        self._events.append(ev)

    def _proc_noop(self) -> Generator:
        return None
        yield  # noqa: unreachable - makes this a generator

    def _proc_simple(self, text: str) -> Generator:
        r = yield self._cmd(text)
        return r.ok

    def _proc_ping(self) -> Generator:
        yield self._cmd("AT", timeout=self.config.ping_timeout)

    def _try(self, text: str, **kw: Any) -> Generator:
        """Run a command whose failure is a fault, not an error of the procedure."""
        r = yield self._cmd(text, **kw)
        if not r.ok:
            if r.result == "ABORTED":
                raise ModemUnavailable("port lost")
            self._fault("command", f"{text} -> {r.result}{': ' + r.error if r.error else ''}",
                        min_interval=0.0)
        return r

    # ================================================================== init
    def _proc_init(self) -> Generator:
        prof = self.profile
        synced = False
        for _ in range(self.config.sync_attempts):
            # ATV1: verbose result codes even if someone left the module in ATV0
            r = yield self._cmd("ATV1", timeout=1.0)
            if r.result in ("OK", "ERROR"):
                synced = True
                break
            yield _Sleep(0.5)
        if not synced:
            raise AtTimeout("ATV1", 1.0)
        self._check((yield self._cmd("ATE0")))
        yield from self._try("AT+CMEE=1")
        r = yield self._cmd(prof.identity_cmd, raw=True, late=_LATE)
        self.identity = " ".join(x for x in r.lines if x)[:120] if r.ok else ""
        r = yield self._cmd(prof.imei_cmd, raw=True, late=0.5)
        if r.ok:
            m = _IMEI_RE.search(" ".join(r.lines))
            self.imei = m.group(1) if m else None
        if self.config.expected_imei and self.imei and self.imei != self.config.expected_imei:
            self._fault("wrong_modem", f"IMEI {self.imei} on this port, expected {self.config.expected_imei}")
            raise ModemError(f"wrong modem: IMEI {self.imei}")
        if prof.kind == "fxo":
            yield from self._init_fxo()
        else:
            yield from self._init_gsm()
        self.ready = True
        self.health.state = "ok"
        self.health.alive(self._now)
        self._last_ping = self._now
        self._emit(ModemReady(prof.key, self.imei, self.iccid, self.identity, self._now))
        if prof.sms:
            self._spawn(self._proc_sweep(), "sweep", op=False)
        return self.imei

    def _init_fxo(self) -> Generator:
        prof = self.profile
        for text in prof.init:
            self._check((yield self._cmd(text)))
        r = yield self._cmd("AT+VSM=?", prefix=("+VSM",), raw=True)
        self.codec_id, self.sample_format = self._pick_codec(r.lines if r.ok else ())
        self.sim_state = "none"

    def _pick_codec(self, lines: tuple[str, ...] | list[str]) -> tuple[int, str]:
        """Choose the compression method from the AT+VSM=? list by its name."""
        assert self.profile.fxo is not None
        entries = []
        for line in lines:
            body = line.split(":", 1)[1] if line.startswith("+VSM") else line
            f = _fields(body)
            if len(f) >= 3 and _int(f[0]) is not None:
                entries.append((_int(f[0]), f[1].upper(), _int(f[2])))
        for want in self.profile.fxo.preferred_codecs:
            for cml, name, bits in entries:
                if want in name and bits in (8, None):
                    fmt = "ulaw" if any(k in name for k in ("ULAW", "G711U", "U-LAW", "MULAW")) else "u8"
                    return int(cml), fmt
        self._fault("codec", "no u-law or 8-bit linear method in AT+VSM=?; trying 128 (8-bit linear)")
        return 128, "u8"

    def _init_gsm(self) -> Generator:
        prof = self.profile
        yield from self._sim_procedure()
        if prof.iccid_cmd:
            r = yield self._cmd(prof.iccid_cmd, raw=True, late=_LATE,
                                prefix=(prof.iccid_prefix,) if prof.iccid_prefix else ())
            if r.ok:
                m = _ICCID_RE.search(" ".join(r.lines))
                self.iccid = m.group(1).upper().rstrip("F") if m else None
        for text in ("AT+CLIP=1", "AT+CRC=1", "AT+CMGF=0",
                     f'AT+CPMS="{prof.sms_storage}","{prof.sms_storage}","{prof.sms_storage}"',
                     "AT+CNMI=2,1,0,0,0", "AT+CREG=1"):
            yield from self._try(text)
        if prof.lte:
            yield from self._try("AT+CEREG=1")
        if prof.dtmf_enable:
            yield from self._try(prof.dtmf_enable)
        for text in prof.init:
            yield from self._try(text)
        yield from self._try("AT+COPS=3,0")
        yield from self._read_registration()
        yield from self._proc_signal()

    def _read_registration(self) -> Generator:
        r = yield self._cmd("AT+CREG?", prefix=("+CREG",), late=_LATE)
        if r.ok:
            for line in r.lines:
                self._on_reg("CREG", line.partition(":")[2])
        if self.profile.lte:
            r = yield self._cmd("AT+CEREG?", prefix=("+CEREG",), late=_LATE)
            if r.ok:
                for line in r.lines:
                    self._on_reg("CEREG", line.partition(":")[2])
        r = yield self._cmd("AT+COPS?", prefix=("+COPS",))
        if r.ok and r.lines:
            f = _fields(r.lines[0].partition(":")[2])
            op = f[2] if len(f) >= 3 and f[2] else None
            if op != self.operator:
                self.operator = op

    def _proc_signal(self) -> Generator:
        r = yield self._cmd("AT+CSQ", prefix=("+CSQ",), late=_LATE)
        if r.ok:
            payload = r.first("+CSQ:")
            f = _fields(payload or "")
            self._set_signal(_int(f[0]), _int(f[1], 99) if len(f) > 1 else 99)

    def _set_signal(self, rssi: int | None, ber: int | None) -> None:
        if rssi is None:
            return
        if rssi != self.rssi or ber != self.ber:
            self.rssi, self.ber = rssi, ber
            dbm = None if rssi == 99 else -113 + 2 * rssi
            self._emit(SignalQuality(rssi, ber if ber is not None else 99, dbm, self._now))

    # ================================================================== SIM / PIN
    _CPIN = {"READY": "ready", "SIM PIN": "pin", "SIM PUK": "puk", "SIM PIN2": "pin2",
             "SIM PUK2": "puk2", "NOT INSERTED": "absent", "NOT READY": "not_ready",
             "SIM NOT INSERTED": "absent", "PH-SIM PIN": "pin"}

    def _parse_cpin(self, text: str) -> str:
        return self._CPIN.get(text.strip().strip('"').upper(), "error")

    def _sim_procedure(self) -> Generator:
        r = yield self._cmd("AT+CPIN?", prefix=("+CPIN",), late=_LATE)
        if r.ok:
            state = self._parse_cpin(r.first("+CPIN:") or "")
        elif r.result == "+CME ERROR" and r.error and r.error.strip() in ("10", "SIM not inserted"):
            state = "absent"
        else:
            state = "error"
        yield from self._read_tries()
        self._set_sim(state)
        if state == "pin":
            yield from self._maybe_enter_pin()
        elif state == "puk":
            self._fault("puk_required", "SIM is PUK-locked; enter the PUK with a phone "
                        f"({self.puk_tries if self.puk_tries is not None else '?'} tries left)")

    def _maybe_enter_pin(self) -> Generator:
        guard = self.pin_guard
        pin = self.config.pin
        why = None
        if not pin:
            why = "SIM asks for a PIN and none is configured"
        elif guard.failed:
            why = "a PIN attempt failed before: not trying again automatically"
        elif guard.attempted:
            why = "the automatic PIN attempt for this SIM insertion was already used"
        elif self.pin_tries is not None and self.pin_tries < 2:
            why = f"only {self.pin_tries} PIN try left: not risking the PUK lock"
        elif not re.match(r"^\d{4,8}$", pin):
            why = "configured PIN is not 4-8 digits"
        if why:
            self._fault("pin_required", why)
            return
        guard.attempted = True
        r = yield self._cmd(f'AT+CPIN="{pin}"', timeout=15.0)
        if not r.ok:
            guard.failed = True
            yield from self._read_tries()
            self._fault("pin_failed", f"PIN rejected ({r.result} {r.error or ''}); "
                        f"{self.pin_tries if self.pin_tries is not None else '?'} tries left")
            r2 = yield self._cmd("AT+CPIN?", prefix=("+CPIN",))
            self._set_sim(self._parse_cpin(r2.first("+CPIN:") or "") if r2.ok else "error")
            return
        guard.attempted = False  # a PIN proven good may be entered again after a module reset
        for _ in range(10):
            r2 = yield self._cmd("AT+CPIN?", prefix=("+CPIN",))
            if r2.ok and self._parse_cpin(r2.first("+CPIN:") or "") == "ready":
                break
            yield _Sleep(1.0)
        yield from self._read_tries()
        self._set_sim("ready")

    def _read_tries(self) -> Generator:
        prof = self.profile
        if not prof.pin_tries_cmd:
            return
        r = yield self._cmd(prof.pin_tries_cmd, late=_LATE,
                            prefix=(prof.pin_tries_prefix,) if prof.pin_tries_prefix else ())
        if not r.ok or not r.lines:
            return
        f = _fields(r.lines[0].partition(":")[2])
        pin = puk = None
        if prof.pin_tries_parser == "spic":      # +SPIC: <pin1>,<puk1>,<pin2>,<puk2>
            pin, puk = _int(f[0]), _int(f[1]) if len(f) > 1 else None
        elif prof.pin_tries_parser == "qpinc":   # +QPINC: "SC",<pin>,<puk>
            pin, puk = (_int(f[1]), _int(f[2])) if len(f) > 2 else (None, None)
        elif prof.pin_tries_parser == "huawei":  # ^CPIN: <code>,[<times>],<puk>,<pin>,<puk2>,<pin2>
            if len(f) > 3:
                puk, pin = _int(f[2]), _int(f[3])
        self.pin_tries, self.puk_tries = pin, puk

    def _set_sim(self, state: str) -> None:
        if state == "absent" and self.sim_state not in ("absent", "unknown"):
            self.pin_guard.sim_removed()
        self.sim_state = state
        self._emit(SimState(state, self.pin_tries, self.puk_tries, "", self._now))

    # ================================================================== URCs
    def _on_urc(self, u: Urc) -> None:
        name = u.name
        prof = self.profile
        now = u.at
        if name in ("RING", "+CRING"):
            if name == "+CRING" and u.args.upper() not in ("VOICE", "") and not u.args.upper().startswith("VOICE"):
                return
            self._on_ring(now)
        elif name == "+CLIP":
            f = _fields(u.args)
            number = f[0] or None
            ntype = _int(f[1]) if len(f) > 1 else None
            validity = _int(f[5], 0) if len(f) > 5 and f[5] else (0 if number else 2)
            alpha = f[4] if len(f) > 4 and f[4] else None
            if ntype == 145 and number and not number.startswith("+"):
                number = "+" + number
            self._on_cid(number, ntype, validity or 0, alpha, None, None, now)
        elif name in ("NMBR", "NAME", "DATE", "TIME", "DDN_NMBR", "CALLER NUMBER"):
            self._on_analog_cid(name, u.args, now)
        elif name == "NO CARRIER":
            self._remote_end("no_carrier" if self.call_state in (CallState.DIALING, CallState.ALERTING)
                             else ("missed" if self.call_state == CallState.RINGING else "normal"),
                             None, None, now)
        elif name in ("BUSY", "NO ANSWER", "NO DIALTONE"):
            # results of our own dialling; on any other call they mean nothing
            if self.call_state in (CallState.DIALING, CallState.ALERTING):
                cause = {"BUSY": "busy", "NO ANSWER": "no_answer", "NO DIALTONE": "no_dialtone"}[name]
                self._remote_end(cause, _STATUS_Q850.get(cause), None, now)
        elif name in ("MO RING",) or name == "^CONF":
            self._alerting(now)
        elif name == "MO CONNECTED":
            self._answered_out(now)
        elif name == "VOICE CALL":
            what = u.args.upper()
            if what.startswith("BEGIN"):
                if self.call_state in (CallState.DIALING, CallState.ALERTING):
                    self._answered_out(now)
            elif what.startswith("END") and self.call_state not in (CallState.DIALING, CallState.ALERTING):
                # While dialling, SIMCom follows "VOICE CALL: END" with BUSY / NO ANSWER /
                # NO CARRIER, which carry the reason: wait for that one.
                dur = self._hms(u.args.partition(":")[2])
                self._remote_end("normal", 16, dur, now)
        elif name == "MISSED_CALL":
            if self.call_state == CallState.RINGING:
                self._remote_end("missed", None, None, now)
        elif name == "^ORIG":
            pass
        elif name == "^CONN":
            if self.call_state in (CallState.DIALING, CallState.ALERTING):
                self._answered_out(now)
        elif name == "^CEND":
            f = _fields(u.args)
            dur = _int(f[1]) if len(f) > 1 else None
            cc = _int(f[3]) if len(f) > 3 else None
            cause = _Q850.get(cc, ("normal", "no_carrier"))[0] if cc is not None else "normal"
            if self.call_state == CallState.RINGING:
                cause = "missed"
            self._remote_end(cause, cc, float(dur) if dur is not None else None, now)
        elif name in ("^DSCI", "+CLCC"):
            self._on_call_list(name, u.args, now)
        elif name == prof.dtmf_urc or name in ("+RXDTMF", "+DTMF", "+QTONEDET"):
            v = u.args.strip().strip('"')
            digit = chr(_int(v, 0) or 0) if (name == "+QTONEDET" and v.isdigit()) else v[:1]
            if digit and digit in DTMF_CODES and self.call_state == CallState.ACTIVE:
                self._emit(DtmfReceived(digit, "module", now))
        elif name == "+CMTI":
            f = _fields(u.args)
            idx = _int(f[1]) if len(f) > 1 else None
            if idx is not None and idx not in self._handed and idx not in self._reading:
                self._reading.add(idx)
                self._spawn(self._proc_read_sms(idx), "sms-read", op=False)
        elif name == "+CMT":
            self._on_sms_pdu(u.data or "", None, now)
        elif name == "+CUSD":
            self._on_cusd(u.args, now)
        elif name in ("+CREG", "+CGREG", "+CEREG"):
            self._on_reg(name[1:], u.args)
        elif name == "^RSSI":
            self._set_signal(_int(u.args), 99)
        elif name == "+QIND":
            f = _fields(u.args)
            if f and f[0].lower() == "csq" and len(f) >= 2:
                self._set_signal(_int(f[1]), _int(f[2], 99) if len(f) > 2 else 99)
        elif name in ("+CPIN", "^SIMST", "+SIMCARD"):
            self._on_sim_urc(name, u.args)
        elif name in ("RDY", "START", "^SYSSTART", "Call Ready"):
            if self.ready and not self.resetting:
                self._fault("unexpected_reboot", f"module announced {name!r}: re-initialising")
                self._restart_after_reboot()
        elif name in ("NORMAL POWER DOWN", "POWER DOWN", "UNDER-VOLTAGE POWER DOWN", "OVER-VOLTAGE POWER DOWN"):
            self._fault("power", name)

    @staticmethod
    def _hms(text: str) -> float | None:
        t = text.strip()
        if len(t) == 6 and t.isdigit():
            return float(int(t[:2]) * 3600 + int(t[2:4]) * 60 + int(t[4:]))
        v = _int(t)
        return float(v) if v is not None else None

    def _restart_after_reboot(self) -> None:
        now = self._now
        self._shutdown(now, ModemUnavailable("module rebooted"))
        self.resetting = False
        self._spawn(self._proc_init(), "reinit", op=False)

    def _on_sim_urc(self, name: str, args: str) -> None:
        if name == "+CPIN":
            state = self._parse_cpin(args)
        elif name == "+SIMCARD":
            state = "absent" if "NOT" in args.upper() else "not_ready"
        else:  # ^SIMST: 255 = no SIM / 1 = valid
            state = "absent" if args.strip().startswith("255") else "not_ready"
        if state == self.sim_state:
            return
        self._set_sim(state)
        if state == "pin" and self.ready:
            self._spawn(self._proc_pin_later(), "pin", op=False)
        elif state == "puk":
            self._fault("puk_required", "SIM is PUK-locked")

    def _proc_pin_later(self) -> Generator:
        yield from self._read_tries()
        yield from self._maybe_enter_pin()

    def _on_reg(self, kind: str, args: str) -> None:
        f = _fields(args)
        if not f or not f[0]:
            return
        # Response "+CREG: <n>,<stat>[,<lac>,<ci>]" vs URC "+CREG: <stat>[,<lac>,<ci>[,<AcT>]]":
        # the URC's second field is a quoted LAC, the response's is a bare <stat>.
        raw = args.split(",")
        if len(f) >= 2 and not raw[1].strip().startswith('"') and _int(f[1]) is not None:
            stat = _int(f[1])
        else:
            stat = _int(f[0])
        if stat is None:
            return
        if kind == "CEREG":
            old, self.cereg = self.cereg, stat
        elif kind == "CGREG":
            return
        else:
            old, self.creg = self.creg, stat
        if old != stat:
            registered = any(s in (1, 5) for s in (self.creg, self.cereg) if s is not None)
            self._emit(NetworkChanged(registered, stat, kind, self.operator, self._now))
            if stat in (1, 5) and self.ready:
                self._spawn(self._proc_operator(), "cops", op=False)

    def _proc_operator(self) -> Generator:
        r = yield self._cmd("AT+COPS?", prefix=("+COPS",))
        if r.ok and r.lines:
            f = _fields(r.lines[0].partition(":")[2])
            self.operator = f[2] if len(f) >= 3 and f[2] else None

    # ================================================================== incoming calls
    def _on_ring(self, now: float) -> None:
        if self.call_state == CallState.IDLE:
            self.call_state = CallState.RINGING
            self.call = _Call("in", first_ring=now)
            if self.profile.kind == "gsm":
                self._clip_deadline = now + self.config.clip_wait
            early, self._early_cid = self._early_cid, None
            if early is not None and now - early[-1] <= 2.0:
                self._ring_early_cid = early  # used only if no +CLIP follows this RING
        if self.call_state != CallState.RINGING or self.call is None:
            return
        self.call.rings += 1
        self.call.last_ring = now
        self._emit(Ringing(self.call.rings, now))
        if self._analog_cid:
            self._finish_analog_cid(now)
        if self.call.rings >= 2 and not self.call.announced:
            self._announce_incoming(now)

    def _on_cid(self, number: str | None, ntype: int | None, validity: int, name: str | None,
                date: str | None, time_: str | None, now: float) -> None:
        if self.call_state == CallState.IDLE:
            # +CLIP ahead of RING (some firmware): kept for a RING that follows at once; a
            # stray one (noise, a late repeat) never makes a call by itself.
            self._early_cid = (number, ntype, validity, name, date, time_, now)
            return
        if self.call_state != CallState.RINGING or self.call is None:
            return  # caller ID outside a ringing call (call waiting, stale): never re-routed
        if self.call.cid_seen:
            return
        self.call.cid_seen = True
        self.call.number = number if validity == 0 else None
        self.call.withheld = validity == 1
        self.call.name = name
        self._emit(CallerId(number, ntype, validity, name, date, time_, now))
        self._announce_incoming(now)

    def _on_analog_cid(self, name: str, value: str, now: float) -> None:
        """V.253 caller ID: DATE=, TIME=, NMBR=, NAME= lines between the first two RINGs.
        They are collected and reported together (at the second RING or 0.5 s after the
        last line), so NAME (which follows NMBR) is not lost."""
        if self.call_state == CallState.IDLE:
            self._on_ring(now)  # CID ahead of the first RING (DTMF-CID / UK lines)
            if self.call is not None:
                self.call.rings = 0
        if self.call_state != CallState.RINGING or self.call is None or self.call.cid_seen:
            return
        self._analog_cid[name] = value.strip()
        self._clip_deadline = now + 0.5

    def _finish_analog_cid(self, now: float) -> None:
        cid, self._analog_cid = self._analog_cid, {}
        v = cid.get("NMBR") or cid.get("DDN_NMBR") or cid.get("CALLER NUMBER") or ""
        up = v.upper()
        withheld = up in ("P", "PRIVATE")
        unavailable = up in ("O", "OUT OF AREA", "") or not any(c.isdigit() for c in v)
        number = None if withheld or unavailable else v
        validity = 1 if withheld else (2 if number is None else 0)
        self._on_cid(number, None, validity, cid.get("NAME"), cid.get("DATE"), cid.get("TIME"), now)

    def _announce_incoming(self, now: float) -> None:
        self._clip_deadline = None
        c = self.call
        if c is None or c.announced or self.call_state != CallState.RINGING:
            return
        early, self._ring_early_cid = self._ring_early_cid, None
        if early is not None and not c.cid_seen:
            self._on_cid(*early[:-1], now)  # announces
            return
        c.announced = True
        self._emit(IncomingCall(c.number, c.withheld, c.name, now))

    def _proc_answer(self) -> Generator:
        prof = self.profile
        r = yield self._cmd(prof.answer_cmd, timeout=self.config.answer_timeout, call=True)
        if self.call_state != CallState.ANSWERING:
            raise ModemBusy("call ended while answering")
        if not r.ok:
            self._remote_end("missed" if r.result == "NO CARRIER" else "error", None, None, self._now)
            self._check(r)
        self._connected("in")
        if prof.kind == "fxo":
            yield from self._fxo_start_voice()
        else:
            yield from self._enable_audio()
        return True

    # ================================================================== outgoing calls
    def _proc_dial(self, number: str) -> Generator:
        prof = self.profile
        self._dial_deadline = self._now + self.config.dial_timeout
        if prof.kind == "fxo":
            r = yield self._cmd(f"ATD{number};", timeout=self.config.dial_timeout, call=True)
            if self.call_state not in (CallState.DIALING, CallState.ALERTING):
                return
            if r.result in ("VCON", "OK", "CONNECT"):
                self._answered_out(self._now)
                yield from self._fxo_start_voice()
                self._finish_dial(DialResult("answered"))
                return
            status = {"BUSY": "busy", "NO ANSWER": "no_answer", "NO DIALTONE": "no_dialtone",
                      "NO CARRIER": "no_carrier", "TIMEOUT": "no_answer"}.get(r.result, "error")
            self._remote_end(status, _STATUS_Q850.get(status), None, self._now)
            if r.result == "TIMEOUT":
                yield from self._try(prof.hangup_cmd)
            return
        r = yield self._cmd(f"ATD{number};", timeout=20.0, call=True)
        if self.call_state not in (CallState.DIALING, CallState.ALERTING):
            return
        if r.result == "OK":
            return  # progress comes as URCs
        if r.result in ("BUSY", "NO ANSWER", "NO DIALTONE", "NO CARRIER"):
            status = {"BUSY": "busy", "NO ANSWER": "no_answer", "NO DIALTONE": "no_dialtone",
                      "NO CARRIER": "no_carrier"}[r.result]
            self._remote_end(status, _STATUS_Q850.get(status), None, self._now)
            return
        # ERROR / +CME ERROR (no network, barred) / TIMEOUT
        self._finish_dial(DialResult("error", f"{r.result} {r.error or ''}".strip(), 34))
        self._end_call("local", "error", 34, self._now)

    def _alerting(self, now: float) -> None:
        if self.call_state == CallState.DIALING:
            self.call_state = CallState.ALERTING
            self._emit(RemoteRinging(now))

    def _answered_out(self, now: float) -> None:
        if self.call_state not in (CallState.DIALING, CallState.ALERTING):
            return
        self._dial_deadline = None
        self._emit(RemoteAnswered(now))
        self._connected("out")
        if self.profile.kind != "fxo":
            self._spawn(self._proc_out_audio(), "audio-on", op=False, urgent=True)

    def _proc_out_audio(self) -> Generator:
        """Audio on, then the dial request ends: the caller can wire the audio at once."""
        yield from self._enable_audio()
        self._finish_dial(DialResult("answered"))

    def _finish_dial(self, res: DialResult) -> None:
        c = self.call
        if c is not None and c.dial_op:
            op, c.dial_op = c.dial_op, None
            self._emit(OperationResult(op, True, res, None, self._now))

    def _on_call_list(self, name: str, args: str, now: float) -> None:
        f = _fields(args)
        if len(f) < 3:
            return
        direction, stat = _int(f[1]), _int(f[2])
        if direction == 0:  # mobile originated
            if stat == 3:
                self._alerting(now)
            elif stat == 0:
                self._answered_out(now)
            elif stat in (6, 7):
                self._remote_end("normal" if self.call_state == CallState.ACTIVE else "no_carrier",
                                 None, None, now)
        elif direction == 1 and stat in (6, 7):
            self._remote_end("missed" if self.call_state == CallState.RINGING else "normal", None, None, now)

    # ================================================================== connected / audio
    def _connected(self, direction: str) -> None:
        self.call_state = CallState.ACTIVE
        if self.call is None:
            self.call = _Call(direction)
        self.call.connected_at = self._now
        self._emit(CallConnected(direction, self.call.number, self._now))

    def _enable_audio(self) -> Generator:
        spec = self.profile.audio
        if spec.kind != "usb-serial":
            return
        for text in spec.enable:
            r = yield self._cmd(text)
            if not r.ok:
                self._fault("audio", f"{text} -> {r.result}: no call audio")
                return
        if self.call_state == CallState.ACTIVE and self.call is not None:
            self.call.audio_on = True
            self._emit(AudioStart("audio", spec.sample_format, False, 8000, self._now))

    def _fxo_start_voice(self) -> Generator:
        codec = self.codec_id if self.codec_id is not None else 128
        self._check((yield self._cmd(f"AT+VSM={codec},8000")))
        r = yield self._cmd("AT+VTR", timeout=5.0, call=True, data_after=True)
        self._check(r)
        if self.call is None:
            self.call = _Call("in")
        self.call.audio_on = True
        self._emit(AudioStart("at", self.sample_format, True, 8000, self._now))

    # ================================================================== call end
    def _remote_end(self, cause: str, q850: int | None, duration: float | None, now: float) -> None:
        st = self.call_state
        if st in (CallState.IDLE, CallState.HANGING_UP):
            return
        if st in (CallState.DIALING, CallState.ALERTING):
            status = cause if cause in ("busy", "no_answer", "no_dialtone", "rejected", "congestion",
                                        "invalid_number") else "no_carrier"
            self._finish_dial(DialResult(status, cause, q850 if q850 is not None else _STATUS_Q850.get(status)))
        if q850 is None:
            q850 = _STATUS_Q850.get(cause)
        self._emit(RemoteHangup(cause, q850, duration, now))
        self._end_call("remote", cause, q850, now)

    def _end_call(self, by: str, cause: str, q850: int | None, now: float) -> None:
        c = self.call
        audio_was_on = c is not None and c.audio_on
        was_connected = c is not None and c.connected_at is not None
        self._clip_deadline = None
        self._dial_deadline = None
        if audio_was_on:
            c.audio_on = False  # type: ignore[union-attr]
            self._emit(AudioStop(now))
        self.call_state = CallState.IDLE
        if self.profile.kind == "fxo" and (was_connected or audio_was_on):
            self._remote_end_at = now
            self.call_state = CallState.HANGING_UP
            self._spawn(self._proc_fxo_release(audio_was_on, by, cause, q850), "fxo-release", op=False,
                        urgent=True)
            return
        self.call = None
        self._emit(CallEnded(by, cause, q850, now))
        if self._reset_deferred:
            self._run_deferred_reset(now)
        elif was_connected:
            self._spawn(self._proc_post_call(), "post-call", op=False)

    def _run_deferred_reset(self, now: float) -> None:
        reason, self._reset_deferred = self._reset_deferred, None
        if reason:
            self._trip(reason, now)

    def _proc_hangup(self, prev: str) -> Generator:
        prof = self.profile
        c = self.call
        now = self._now
        if prof.kind == "fxo":
            audio_on = c is not None and c.audio_on
            if audio_on:
                c.audio_on = False  # type: ignore[union-attr]
                self._emit(AudioStop(now))
            self._remote_end_at = now
            yield from self._fxo_release(audio_on)
            self.call = None
            self._emit(CallEnded("local", "normal", 16, self._now))
            return True
        if c is not None and c.audio_on:
            c.audio_on = False
            self._emit(AudioStop(now))
        r = yield self._cmd(prof.hangup_cmd)
        if not r.ok and prof.hangup_cmd != "ATH":
            r = yield self._cmd("ATH")
        self.call_state = CallState.IDLE
        self.call = None
        self._emit(CallEnded("local", "normal", 16, self._now))
        if self._reset_deferred:
            self._run_deferred_reset(self._now)
            return True
        if prev in (CallState.ACTIVE,):
            self._spawn(self._proc_post_call(), "post-call", op=False)
        self._check(r)
        return True

    def _proc_post_call(self) -> Generator:
        """After a call: audio disable commands, then the check that it is re-armed."""
        spec = self.profile.audio
        if self._post_call_running:
            return
        self._post_call_running = True
        try:
            for text in spec.disable:
                yield from self._try(text)
            if spec.check and spec.check_idle and self.profile.kind == "gsm":
                r = yield self._cmd(spec.check, prefix=(spec.check.split("?")[0][2:],), raw=True, late=_LATE)
                if not r.ok or not any(spec.check_idle in line for line in r.lines):
                    got = "; ".join(r.lines) or r.result
                    self._fault("audio_not_rearmed", f"{spec.check} answered {got!r}, "
                                f"expected {spec.check_idle!r}: resetting the module")
                    self._trip("audio path not re-armed after the call", self._now)
        finally:
            self._post_call_running = False

    def _proc_fxo_release(self, audio_on: bool, by: str, cause: str, q850: int | None) -> Generator:
        yield from self._fxo_release(audio_on)
        self.call = None
        self._emit(CallEnded(by, cause, q850, self._now))

    def _fxo_release(self, audio_on: bool) -> Generator:
        """Leave the voice data state (vendor end sequences), then go on hook."""
        fxo = self.profile.fxo
        assert fxo is not None
        self.call_state = CallState.HANGING_UP
        if audio_on:
            self.engine.enter_data_mode(self._now, timeout=fxo.end_wait * len(fxo.end_sequences) + 1)
            for seq in fxo.end_sequences:
                self.engine.write_raw(seq)
                self._waiting_data_end = True
                yield _Wait("data_end", fxo.end_wait)
                if not self.engine.in_data_mode:
                    break
            self._waiting_data_end = False
            if self.engine.in_data_mode:
                self._fault("fxo_abort", "modem did not end voice data after <DLE>^, <DLE>!, <DLE><ETX>")
                self.engine.leave_data_mode()
            if fxo.at_after_abort:
                yield _Sleep(fxo.pause_after_abort)
                yield self._cmd("AT", timeout=1.0)
        r = yield self._cmd("ATH", timeout=3.0)
        if not r.ok:
            yield _Sleep(0.5)
            r = yield self._cmd("ATH", timeout=3.0)
        yield from self._try("AT+VLS=0", timeout=3.0)
        self.call_state = CallState.IDLE
        t0 = self._remote_end_at if self._remote_end_at is not None else self._now
        self._emit(LineReleased(self._now - t0, self._now))
        if not r.ok:
            self._fault("fxo_release", f"ATH -> {r.result}")

    def _on_dle(self, code: str, now: float) -> None:
        if code in DTMF_CODES:
            if self.call_state == CallState.ACTIVE:
                self._emit(DtmfReceived(code, "dle", now))
            return
        fxo = self.profile.fxo
        if fxo is None:
            return
        if code in fxo.hangup_codes and self.call_state in (CallState.ACTIVE, CallState.DIALING,
                                                           CallState.ALERTING):
            cause = {"b": "disconnect_tone", "d": "dial_tone", "l": "loop_current_drop"}.get(
                code, EVENT_NAMES.get(code, code))
            self._remote_end(cause, 16, None, now)
        elif code in EVENT_NAMES:
            self._emit(DleEvent(code, now))  # silence, quiet, handset, ...: for the owner to judge

    # ================================================================== DTMF out
    def _proc_dtmf(self, digits: str) -> Generator:
        for d in digits:
            arg = f'"{d}"' if self.profile.vts_quoted else d
            self._check((yield self._cmd(f"AT+VTS={arg}", timeout=10.0)))
        return digits

    # ================================================================== SMS
    def _proc_send_sms(self, number: str, parts: list[pdumod.SubmitPdu]) -> Generator:
        refs = []
        for part in parts:
            r = yield self._cmd(f"AT+CMGS={part.tpdu_length}", timeout=self.config.sms_timeout,
                                prefix=("+CMGS",), payload=part.hex.encode("ascii"))
            self._check(r)
            mr = _int(r.first("+CMGS:"))
            refs.append(mr if mr is not None else -1)
        self._emit(SmsSent(number, tuple(refs), self._now))
        return refs

    def _proc_read_sms(self, idx: int) -> Generator:
        try:
            r = yield self._cmd(f"AT+CMGR={idx}", prefix=("+CMGR",), timeout=10.0)
            if r.ok and len(r.lines) >= 2:
                self._on_sms_pdu(r.lines[1], idx, self._now)
            elif not r.ok:
                self._fault("sms_read", f"AT+CMGR={idx} -> {r.result} {r.error or ''}")
        finally:
            self._reading.discard(idx)

    def _proc_sweep(self) -> Generator:
        if self._sweeping:
            return
        self._sweeping = True
        try:
            r = yield self._cmd("AT+CMGL=4", prefix=("+CMGL",), timeout=30.0)
            if r.ok:
                lines = list(r.lines)
                i = 0
                while i + 1 < len(lines):
                    head, body = lines[i], lines[i + 1]
                    i += 2
                    idx = _int(_fields(head.partition(":")[2])[0])
                    if idx is None or idx in self._handed or idx in self._reading:
                        continue
                    self._on_sms_pdu(body, idx, self._now)
            self._expire_groups(self._now)
        finally:
            self._sweeping = False

    def _proc_delete(self, indexes: list[int]) -> Generator:
        for i in indexes:
            r = yield self._cmd(f"AT+CMGD={i}", timeout=10.0)
            if r.ok:
                self._handed.discard(i)
            else:
                self._fault("sms_delete", f"AT+CMGD={i} -> {r.result}")
                self._handed.discard(i)

    def _on_sms_pdu(self, hexpdu: str, idx: int | None, now: float) -> None:
        storage = self.profile.sms_storage
        try:
            msg = pdumod.decode_pdu(hexpdu.strip())
        except PduError as e:
            self._fault("sms_decode", f"index {idx}: {e}; pdu={hexpdu.strip()[:400]}")
            if idx is not None:
                self._handed.add(idx)
                self._spawn(self._proc_delete([idx]), "sms-delete", op=False)
            return
        if not isinstance(msg, pdumod.SmsDeliver):
            if idx is not None:  # status reports / stored drafts: not for the owner
                self._handed.add(idx)
                self._spawn(self._proc_delete([idx]), "sms-delete", op=False)
            return
        if idx is not None:
            self._handed.add(idx)
        if msg.concat is None or msg.concat.total <= 1:
            self._emit(SmsReceived(msg.sender.number, msg.text, msg.timestamp, msg.smsc, 1,
                                   storage if idx is not None else None,
                                   (idx,) if idx is not None else (), True, now))
            return
        key = (msg.sender.number, msg.concat.ref, msg.concat.total, msg.concat.bits)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _SmsGroup(first_seen=now)
        if msg.concat.seq in g.parts:
            if idx is not None and g.indexes.get(msg.concat.seq) != idx:
                self._spawn(self._proc_delete([idx]), "sms-delete", op=False)  # duplicate part
            return
        g.parts[msg.concat.seq] = msg
        if idx is not None:
            g.indexes[msg.concat.seq] = idx
        if len(g.parts) == msg.concat.total:
            del self._groups[key]
            self._deliver_group(g, True, now)

    def _deliver_group(self, g: _SmsGroup, complete: bool, now: float) -> None:
        parts = list(g.parts.values())
        first = min(parts, key=lambda p: p.concat.seq if p.concat else 0)
        text = pdumod.join_parts(parts)
        idx = tuple(g.indexes[s] for s in sorted(g.indexes))
        self._emit(SmsReceived(first.sender.number, text, first.timestamp, first.smsc,
                               len(parts), self.profile.sms_storage if idx else None, idx,
                               complete, now))

    def _expire_groups(self, now: float) -> None:
        for key, g in list(self._groups.items()):
            if now - g.first_seen >= self.config.concat_timeout:
                del self._groups[key]
                self._fault("sms_incomplete", f"parts {sorted(g.parts)} of {key[2]} from {key[0]} "
                            "after %gs: delivered incomplete" % self.config.concat_timeout)
                self._deliver_group(g, False, now)

    # ================================================================== USSD
    def _proc_ussd(self, code: str) -> Generator:
        payload = pdumod.encode_ussd(code, packed=self.profile.ussd_packed)
        r = yield self._cmd(f'AT+CUSD=1,"{payload}",15', timeout=self.config.ussd_timeout)
        self._check(r)
        res = yield _Wait("ussd", self.config.ussd_timeout)
        if res is None:
            yield from self._try("AT+CUSD=2")
            raise AtTimeout(f"USSD {code}", self.config.ussd_timeout)
        assert isinstance(res, UssdResult)
        if res.status == 1:
            yield from self._try("AT+CUSD=2")  # we never continue a menu session
        if res.status in (4,):
            raise AtCommandError(f"USSD {code}", "not supported by the network")
        return res.text

    def _on_cusd(self, args: str, now: float) -> None:
        f = _fields(args)
        status = _int(f[0], 0) or 0
        raw = f[1] if len(f) > 1 else ""
        dcs = _int(f[2]) if len(f) > 2 else None
        try:
            text = pdumod.decode_ussd(raw, dcs, packed=self.profile.ussd_packed)
        except PduError as e:
            text = raw
            self._fault("ussd_decode", str(e))
        ev = UssdResult(text, status, dcs, now)
        self.last_ussd = {"text": text, "status": status, "at": now}
        self._emit(ev)
        self._signal("ussd", ev)
