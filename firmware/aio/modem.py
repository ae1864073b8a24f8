"""The modem driver: a `ModemSession` on a real serial port (pyserial), with the watchdog's
reset and the re-discovery of the module BY IMEI after USB re-enumeration.

Thin glue in the aioquic style: bytes from the port go to the sans-I/O session, its output
goes to the port, one `loop.call_at` serves its timers, and its events go to `on_event`
(the B2BUA) after the driver did its own part (open/close the audio port, delete stored
SMS, start a reset). The call AUDIO never passes through here: `line.audio` names the port,
an open fd and its format for the media engine's PCM-fd channel.

    line = ModemLine(name="gsm1", model="ec25", device="/dev/ttyUSB2",
                     audio_device="/dev/ttyUSB1", on_event=callback, scan=["/dev/ttyUSB*"])
    await line.start()
    result = await line.dial("+48600100200")      # DialResult(status="answered", ...)
    line.audio                                     # AudioPort(path, fd, "s16le", dle=False, ...)
    await line.hangup(); await line.stop()
"""
from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import serial

from firmware.modem.at import AtEngine, Command
from firmware.modem.errors import AtTimeout, ModemError, ModemNotReady, ModemUnavailable
from firmware.modem.events import (AudioStart, AudioStop, CommandResult, Event, ModemFault, ModemReady,
                                   OperationResult, ResetRequired, SmsReceived, UssdResult)
from firmware.modem.health import Health
from firmware.modem.profiles import ModemProfile, get_profile
from firmware.modem.session import DialResult, ModemSession, PinGuard, SessionConfig

log = logging.getLogger("firmware.modem")

__all__ = ["ModemLine", "AudioPort", "find_sibling", "probe_imei", "DialResult"]


@dataclass(frozen=True)
class AudioPort:
    """Where the call audio is, for `engine.pcm_channel(fd, sample_format, dle)`."""

    path: str
    fd: int
    """An open, raw-mode, non-blocking descriptor owned by the driver (do not close it)."""
    sample_format: str
    """"s16le" (GSM USB audio), "ulaw" or "u8" (V.253 voice modem)."""
    dle: bool
    """DLE-shielded stream (V.253): the engine un-shields it and reports DLE codes."""
    rate: int = 8000
    frame_bytes: int = 320
    """Bytes per 20 ms the module expects per write (Huawei wants exactly 320)."""
    shared_with_at: bool = False
    """The AT port itself (V.253): the driver stops reading it while the engine owns it."""


_IF_PATTERNS = (
    re.compile(r"^(?P<head>.*-if)(?P<num>\d{2})(?P<tail>)$"),           # simulator / custom links
    re.compile(r"^(?P<head>.*:1\.)(?P<num>\d+)(?P<tail>-port\d+)$"),     # /dev/serial/by-path
)


def _interface_of(path: str) -> int | None:
    name = os.path.basename(path)
    for pat in _IF_PATTERNS:
        m = pat.match(name)
        if m:
            return int(m.group("num"))
    real = os.path.realpath(path)
    dev = os.path.basename(real)
    sys_if = f"/sys/class/tty/{dev}/device"
    if os.path.exists(sys_if):
        try:
            with open(os.path.join(os.path.realpath(sys_if), "bInterfaceNumber")) as f:
                return int(f.read().strip(), 16)
        except (OSError, ValueError):
            return None
    return None


def find_sibling(at_path: str, audio_interface: int) -> str | None:
    """The tty of USB interface `audio_interface` on the same device as `at_path`.

    Works with /dev/serial/by-path names (":1.N-portM"), links named "...-ifNN", and plain
    /dev/ttyUSBn through sysfs (the interface directories of one USB device are siblings).
    """
    name = os.path.basename(at_path)
    folder = os.path.dirname(at_path)
    for pat in _IF_PATTERNS:
        m = pat.match(name)
        if m:
            width = len(m.group("num")) if pat is _IF_PATTERNS[0] else 1
            cand = os.path.join(folder, f"{m.group('head')}{audio_interface:0{width}d}{m.group('tail')}")
            return cand if os.path.exists(cand) else None
    real = os.path.realpath(at_path)
    sysdev = f"/sys/class/tty/{os.path.basename(real)}/device"
    if not os.path.exists(sysdev):
        return None
    iface_dir = os.path.realpath(sysdev)
    usb_dir = os.path.dirname(iface_dir)
    base = os.path.basename(iface_dir).rsplit(".", 1)[0]
    want = os.path.join(usb_dir, f"{base}.{audio_interface}")
    for tty_dir in glob.glob(os.path.join(want, "tty*")) + glob.glob(os.path.join(want, "tty", "tty*")):
        dev = "/dev/" + os.path.basename(tty_dir)
        if os.path.exists(dev) and os.path.basename(tty_dir) != "tty":
            return dev
    return None


def probe_imei(path: str, imei_cmd: str = "AT+CGSN", *, baudrate: int = 115200,
               timeout: float = 3.0) -> str | None:
    """Ask the modem on `path` for its IMEI (blocking; run it in a thread). None if the port
    does not answer like a modem or cannot be opened (busy, gone, not a tty)."""
    try:
        ser = serial.serial_for_url(path, baudrate, timeout=0.1, exclusive=True)
    except (serial.SerialException, OSError, ValueError):
        return None
    try:
        ser.reset_input_buffer()
        eng = AtEngine()
        deadline = time.monotonic() + timeout
        for text in ("AT", "ATE0", imei_cmd):
            cmd = Command(text, timeout=max(0.2, min(1.5, deadline - time.monotonic())), raw=True, late=0.3)
            eng.send(cmd, time.monotonic())
            res = None
            while res is None and time.monotonic() < deadline + 1:
                out = eng.data_to_send()
                if out:
                    ser.write(out)
                data = ser.read(4096)
                now = time.monotonic()
                if data:
                    eng.receive_data(data, now)
                eng.handle_timer(now)
                while (ev := eng.next_event()) is not None:
                    if isinstance(ev, CommandResult) and ev.command is cmd:
                        res = ev
            if res is None or res.result == "TIMEOUT":
                return None
            if text == imei_cmd and res.ok:
                m = re.search(r"(\d{14,17})", " ".join(res.lines))
                return m.group(1) if m else None
        return None
    except (serial.SerialException, OSError):
        return None
    finally:
        try:
            ser.close()
        except (serial.SerialException, OSError):
            pass


class ModemLine:
    """One GSM or FXO line on a modem. See the module docstring for the lifecycle."""

    def __init__(self, name: str, model: str, device: str | None = None,
                 audio_device: str | None = None, *, pin: str | None = None, imei: str | None = None,
                 on_event: Callable[[Event], Any] | None = None, scan: list[str] | None = None,
                 clock: Callable[[], float] | None = None, config: SessionConfig | None = None,
                 baudrate: int = 115200, power_cycle: Callable[[], Any] | None = None,
                 state_path: str | None = None, rediscover_timeout: float = 120.0,
                 retry_interval: float = 5.0, wall_clock: Callable[[], float] | None = time.time) -> None:
        self.name = name
        self.profile: ModemProfile = get_profile(model)
        self.device = device
        self.audio_device = audio_device
        self.imei = imei
        self.on_event = on_event
        self.scan = list(scan or [])
        self.baudrate = baudrate
        self.power_cycle_hook = power_cycle
        self.rediscover_timeout = rediscover_timeout
        self.retry_interval = retry_interval
        self.config = config or SessionConfig()
        if pin is not None:
            self.config.pin = pin
        if imei is not None:
            self.config.expected_imei = imei
        self.health = Health(wall_clock=wall_clock)
        self.state_path = state_path
        self.pin_guard = self._load_guard()
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ser: serial.SerialBase | None = None
        self._fd: int | None = None
        self._reader_thread: threading.Thread | None = None
        self._audio_ser: serial.SerialBase | None = None
        self.audio: AudioPort | None = None
        """Valid while a call is connected (after AudioStart, until AudioStop)."""
        self.session: ModemSession | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._futures: dict[int, asyncio.Future] = {}
        self._trouble: asyncio.Event | None = None
        self._trouble_reason: tuple[str, bool] | None = None
        self._supervisor: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None
        self._stopping = False
        self._reading = False
        self._lost = False
        self.last_ussd: dict | None = None
        self._guard_saved = self.pin_guard.as_dict()

    # ================================================================== lifecycle
    def _now(self) -> float:
        assert self._loop is not None
        return self._clock() if self._clock else self._loop.time()

    async def start(self, *, wait: float | None = 60.0) -> bool:
        """Open the port (or find it by IMEI), run init; True once ready within `wait` s.

        A missing or silent modem does not raise: the line keeps trying in the background
        and reports itself in `status()`.
        """
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._trouble = asyncio.Event()
        self._stopping = False
        self._supervisor = self._loop.create_task(self._supervise(), name=f"modem-{self.name}")
        if wait is None:
            return False
        try:
            await asyncio.wait_for(self._ready.wait(), wait)
            return True
        except asyncio.TimeoutError:
            return False

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the modem is in service; raises ModemNotReady after `timeout` s."""
        assert self._ready is not None, "start() first"
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            raise ModemNotReady(f"{self.name}: not ready within {timeout:g} s "
                                f"(health {self.health.state})") from None

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
        self._close_port()
        self._fail_all(ModemUnavailable(f"{self.name} stopped"))
        self.health.state = "stopped"

    @property
    def audio_kind(self) -> str:
        """"usb-serial" (a separate audio tty), "dle" (V.253 on the AT port) or "none"
        (SIM800: analog audio, needs a USB sound card -- no port to hand over)."""
        return self.profile.audio.kind

    @property
    def ready(self) -> bool:
        return bool(self.session and self.session.ready and not self.session.resetting)

    # ================================================================== requests
    async def answer(self, timeout: float = 30.0) -> None:
        """Answer the ringing call; returns once it is connected (and its audio is on)."""
        await self._request(lambda s, now: s.answer(now), timeout)

    async def dial(self, number: str, timeout: float | None = None) -> DialResult:
        """Place a call; returns how it went (answered, busy, no_answer, ...)."""
        t = timeout or self.config.dial_timeout + 30
        return await self._request(lambda s, now: s.dial(number, now), t)

    async def hangup(self, timeout: float = 30.0) -> None:
        """End the call (or reject the ringing one); an analog line is back on hook after."""
        await self._request(lambda s, now: s.hangup(now), timeout)

    async def send_dtmf(self, digits: str, timeout: float = 30.0) -> None:
        """Send DTMF with AT+VTS (GSM). Analog lines raise ModemBusy: use in-band DTMF."""
        await self._request(lambda s, now: s.send_dtmf(digits, now), timeout)

    async def send_sms(self, number: str, text: str, timeout: float | None = None) -> list[int]:
        """Send an SMS (any length, any script); returns one message reference per part."""
        t = timeout or self.config.sms_timeout * 4 + 30
        return await self._request(lambda s, now: s.send_sms(number, text, now), t)

    async def ussd(self, code: str, timeout: float | None = None) -> str:
        """Run a USSD code ("*100#"); returns the network's answer as text."""
        t = timeout or self.config.ussd_timeout * 2 + 5
        text = await self._request(lambda s, now: s.ussd(code, now), t)
        return text

    def dle_event(self, code: str) -> None:
        """Feed a DLE code the media engine reported on a V.253 voice-modem channel."""
        if self.session is not None:
            self.session.dle_event(code, self._now())
            self._process()

    def status(self) -> dict[str, Any]:
        """Everything the web page shows about the line: model, imei, iccid, registered,
        operator, signal, sim, health, faults (newest last), in_call, last_ussd, audio."""
        s = self.session.snapshot() if self.session else {
            "model": self.profile.key, "imei": self.imei, "iccid": None, "registered": False,
            "operator": None, "signal": None, "sim": None, "in_call": False, "ready": False}
        return {
            **s,
            "name": self.name,
            "kind": self.profile.kind,
            "device": self.device,
            "audio_device": self.audio_device,
            "imei": s.get("imei") or self.imei,
            "health": self.health.as_dict(),
            "faults": self.health.fault_list(),
            "last_ussd": self.last_ussd,
            "audio": None if self.audio is None else {
                "path": self.audio.path, "sample_format": self.audio.sample_format,
                "dle": self.audio.dle, "rate": self.audio.rate},
            "audio_note": self.profile.audio.note or None,
        }

    async def _request(self, start: Callable[[ModemSession, float], int], timeout: float) -> Any:
        s = self.session
        if s is None or self._loop is None:
            raise ModemNotReady(f"{self.name}: modem not connected")
        op = start(s, self._now())
        fut = self._loop.create_future()
        self._futures[op] = fut
        self._process()
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AtTimeout(f"{self.name}: request", timeout) from None
        finally:
            self._futures.pop(op, None)

    def _fail_all(self, err: BaseException) -> None:
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(err)
        self._futures.clear()

    # ================================================================== session glue
    def _process(self) -> None:
        s = self.session
        if s is None:
            return
        while True:
            ev = s.next_event()
            if ev is None:
                break
            try:
                self._handle(s, ev)
            except Exception:  # noqa: BLE001 - one bad handler must not stop the line
                log.exception("%s: handling %r", self.name, ev)
        if s is self.session:
            out = s.data_to_send()
            if out:
                self._write(out)
            self._rearm()
        self._save_guard()

    def _handle(self, s: ModemSession, ev: Event) -> None:
        if isinstance(ev, OperationResult):
            fut = self._futures.get(ev.op)
            if fut is not None and not fut.done():
                if ev.ok:
                    fut.set_result(ev.value)
                else:
                    fut.set_exception(ev.error or ModemError("failed"))
            return
        if isinstance(ev, AudioStart):
            self._audio_start(ev)
            self._deliver(ev)
            return
        if isinstance(ev, AudioStop):
            self._deliver(ev)  # the owner closes its engine channel first
            self._audio_stop()
            return
        if isinstance(ev, SmsReceived):
            # deleted from the SIM only once the owner returned from storing it
            if self.on_event is not None and self._deliver(ev):
                s.sms_stored(ev, self._now())
            else:
                s.sms_rejected(ev, self._now())
            return
        if isinstance(ev, ModemReady):
            self.imei = ev.imei or self.imei
            if self._ready is not None:
                self._ready.set()
        if isinstance(ev, UssdResult):
            self.last_ussd = s.last_ussd
        if isinstance(ev, ResetRequired):
            self._detach_reader()  # the answer to the reset command is read by _recover
            self._flag_trouble(ev.reason, reset=True)
        self._deliver(ev)

    def _deliver(self, ev: Event) -> bool:
        if self.on_event is None:
            return True
        try:
            self.on_event(ev)
            return True
        except Exception:  # noqa: BLE001 - the owner's bug must not kill the modem line
            log.exception("%s: on_event(%r) raised", self.name, ev)
            return False

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        s = self.session
        if s is None or self._loop is None:
            return
        t = s.get_timer()
        if t is not None:
            delay = max(0.0, t - self._now())
            self._timer = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.session is not None:
            self.session.handle_timer(self._now())
            self._process()

    # ================================================================== port I/O
    def _open_port(self, path: str) -> None:
        ser = serial.serial_for_url(path, self.baudrate, timeout=0, write_timeout=2, exclusive=True)
        ser.reset_input_buffer()
        self._ser = ser
        self._lost = False
        try:
            self._fd = ser.fileno()
        except (AttributeError, serial.SerialException, OSError):  # no descriptor: reader thread
            self._fd = None
        self.device = path
        self._attach_reader()

    def _attach_reader(self) -> None:
        assert self._loop is not None and self._ser is not None
        if self._reading:
            return
        self._reading = True
        if self._fd is not None:
            self._loop.add_reader(self._fd, self._on_readable)
        else:
            ser = self._ser
            loop = self._loop

            def pump() -> None:  # URL handlers without a descriptor (loop://, rfc2217://)
                while self._reading and self._ser is ser:
                    try:
                        data = ser.read(ser.in_waiting or 1)
                    except Exception as e:  # noqa: BLE001 - pyserial URL handlers raise anything once closed
                        if self._reading and self._ser is ser:
                            loop.call_soon_threadsafe(self._port_lost, f"read: {e}")
                        return
                    if data:
                        loop.call_soon_threadsafe(self._feed, data)

            ser.timeout = 0.1
            self._reader_thread = threading.Thread(target=pump, daemon=True, name=f"modem-{self.name}-rx")
            self._reader_thread.start()

    def _detach_reader(self) -> None:
        if not self._reading:
            return
        self._reading = False
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
        t, self._reader_thread = self._reader_thread, None
        if t is not None and t is not threading.current_thread():
            t.join(1.0)  # its read times out within 0.1 s

    def _on_readable(self) -> None:
        ser = self._ser
        if ser is None:
            return
        try:
            data = ser.read(65536)
        except (serial.SerialException, OSError) as e:
            self._port_lost(f"read: {e}")
            return
        if data:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self.session is not None:
            self.session.receive_data(data, self._now())
            self._process()

    def _write(self, data: bytes) -> None:
        ser = self._ser
        if ser is None or self._lost:
            return
        try:
            ser.write(data)
        except (serial.SerialException, OSError) as e:
            self._port_lost(f"write: {e}")

    def _close_port(self) -> None:
        self._detach_reader()
        self._audio_stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
        self._ser = None
        self._fd = None

    def _port_lost(self, reason: str) -> None:
        if self._ser is None or self._lost:
            return
        self._lost = True
        s = self.session
        self._detach_reader()
        if s is not None:
            s.port_lost(self._now(), reason)
            self._process()
        self._flag_trouble(f"port lost: {reason}", reset=False)

    # ================================================================== audio
    def _audio_start(self, ev: AudioStart) -> None:
        spec = self.profile.audio
        if ev.port == "at":
            assert self._ser is not None
            self._detach_reader()
            fd = self._fd if self._fd is not None else -1
            self.audio = AudioPort(self.device or "", fd, ev.sample_format, True, ev.rate,
                                   spec.frame_bytes, shared_with_at=True)
            return
        path = self._audio_path()
        if path is None:
            self.health.record("audio", "audio port not found", self._now())
            self._deliver(ModemFault("audio", f"{self.name}: audio port not found", self._now()))
            return
        try:
            aser = serial.serial_for_url(path, self.baudrate, timeout=0, write_timeout=0, exclusive=True)
            aser.reset_input_buffer()
            self._audio_ser = aser
            self.audio = AudioPort(path, aser.fileno(), ev.sample_format, False, ev.rate, spec.frame_bytes)
        except (serial.SerialException, OSError, AttributeError) as e:
            self.health.record("audio", f"cannot open {path}: {e}", self._now())
            self._deliver(ModemFault("audio", f"{self.name}: cannot open {path}: {e}", self._now()))

    def _audio_stop(self) -> None:
        if self.audio is not None and self.audio.shared_with_at:
            self.audio = None
            if self._ser is not None:
                self._attach_reader()
            return
        self.audio = None
        if self._audio_ser is not None:
            try:
                self._audio_ser.close()
            except (serial.SerialException, OSError):
                pass
            self._audio_ser = None

    def _audio_path(self) -> str | None:
        iface = self.profile.audio.interface
        if self.device and iface is not None:
            sib = find_sibling(self.device, iface)
            if sib:
                self.audio_device = sib
                return sib
        if self.audio_device and os.path.exists(self.audio_device):
            return self.audio_device
        return None

    # ================================================================== supervision
    def _flag_trouble(self, reason: str, *, reset: bool) -> None:
        prev = self._trouble_reason
        self._trouble_reason = (reason, reset or bool(prev and prev[1]))
        if self._trouble is not None:
            self._trouble.set()

    async def _supervise(self) -> None:
        """Connect, then wait for trouble (reset request, lost port) and recover."""
        first = True
        while not self._stopping:
            if self.session is None:
                if not await self._connect(first):
                    first = False
                    await asyncio.sleep(self.retry_interval)
                    continue
                first = False
            assert self._trouble is not None
            await self._trouble.wait()
            self._trouble.clear()
            reason, reset = self._trouble_reason or ("?", False)
            self._trouble_reason = None
            await self._recover(reason, reset)

    async def _connect(self, first: bool) -> bool:
        path = self.device if self.device and (os.path.exists(self.device) or "://" in self.device) else None
        if path is None or (not first and self.imei and self.scan):
            path = await self._find_by_imei() if (self.imei and self.scan) else path
        if path is None:
            self.health.state = "lost"
            if self.health.record("not_found", f"no modem at {self.device!r}"
                                  f"{' or with IMEI ' + self.imei if self.imei else ''}",
                                  self._now(), min_interval=60.0):
                self._deliver(ModemFault("not_found", f"{self.name}: modem not found", self._now()))
            return False
        try:
            self._open_port(path)
        except (serial.SerialException, OSError, ValueError) as e:
            self.health.record("open", f"{path}: {e}", self._now(), min_interval=60.0)
            return False
        self.session = ModemSession(self.profile, now=self._now(), config=self.config,
                                    health=self.health, pin_guard=self.pin_guard)
        op = self.session.start(self._now())
        fut = self._loop.create_future()  # type: ignore[union-attr]
        self._futures[op] = fut
        self._process()
        try:
            await asyncio.wait_for(fut, 120)
        except (ModemError, asyncio.TimeoutError) as e:
            self.health.record("init", f"{path}: {e}", self._now())
            self._deliver(ModemFault("init", f"{self.name}: init failed: {e}", self._now()))
            self._close_port()
            self.session = None
            return False
        finally:
            self._futures.pop(op, None)
        if self.config.expected_imei is None and self.session and self.session.imei:
            self.imei = self.session.imei
        return True

    async def _recover(self, reason: str, reset: bool) -> None:
        """Reset the module if asked (never in a call: the session already held it back),
        then find it again -- by IMEI when it re-enumerates -- and restart the session."""
        self.health.state = "resetting"
        self._ready = asyncio.Event() if self._ready is None else self._ready
        self._ready.clear()
        self._fail_all(ModemUnavailable(f"{self.name}: {reason}"))
        old_device = self.device
        if reset and self._ser is not None:
            answered = await self._await_reset_answer()
            if not answered and self.power_cycle_hook is not None:
                self.health.record("power_cycle", "reset command unanswered: power cycling", self._now())
                res = self.power_cycle_hook()
                if asyncio.iscoroutine(res):
                    await res
        self._close_port()
        self.session = None
        self._rearm()
        # A booting module does not answer yet: probing starts early and simply repeats.
        await asyncio.sleep(min(self.profile.boot_time, 1.0) if reset else 0.5)
        deadline = self._now() + self.rediscover_timeout
        while not self._stopping:
            if self.imei and self.scan:
                self.device = None
            else:
                self.device = old_device
            if await self._connect(False):
                self.health.record("recovered", f"back in service on {self.device} after: {reason}", self._now())
                self._deliver(ModemFault("recovered", f"{self.name}: back on {self.device}", self._now()))
                return
            if self._now() > deadline:
                self.health.state = "lost"
                self.health.record("lost", f"not found {self.rediscover_timeout:g} s after: {reason}", self._now())
                self._deliver(ModemFault("lost", f"{self.name}: modem not found again", self._now()))
                deadline = self._now() + self.rediscover_timeout
            await asyncio.sleep(min(self.retry_interval, 2.0))

    async def _await_reset_answer(self) -> bool:
        """After the reset command: did the module react (OK, or the port vanished)?"""
        ser = self._ser
        if ser is None:
            return True
        self._detach_reader()
        end = self._now() + 2.0
        buf = b""
        while self._now() < end:
            try:
                buf += ser.read(4096)
            except (serial.SerialException, OSError):
                return True  # the port went away: the module is rebooting
            if b"OK" in buf:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _find_by_imei(self) -> str | None:
        """Scan the candidate ports for the one whose module reports our IMEI."""
        assert self.imei is not None
        for path in self._candidates():
            got = await asyncio.to_thread(probe_imei, path, self.profile.imei_cmd, baudrate=self.baudrate)
            if got == self.imei:
                return path
        return None

    def _candidates(self) -> list[str]:
        out: list[str] = []
        at_if = self.profile.at_interface
        for pattern in self.scan:
            for path in sorted(glob.glob(pattern)):
                if path in out or not os.path.exists(path):
                    continue
                if at_if is not None:
                    iface = _interface_of(path)
                    if iface is not None and iface != at_if:
                        continue
                out.append(path)
        return out

    # ================================================================== PIN guard persistence
    def _load_guard(self) -> PinGuard:
        if self.state_path and os.path.exists(self.state_path):
            try:
                with open(self.state_path, encoding="utf-8") as f:
                    return PinGuard.from_dict(json.load(f).get("pin_guard", {}))
            except (OSError, ValueError):
                log.warning("%s: unreadable state file %s", self.name, self.state_path)
        return PinGuard()

    def _save_guard(self) -> None:
        now = self.pin_guard.as_dict()
        if now == self._guard_saved or not self.state_path:
            self._guard_saved = now
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"pin_guard": now}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        self._guard_saved = now
