"""Simulated modems on pseudo-terminals, run by an asyncio loop (in a thread or the main one).

Each modem gets one pty per USB interface it has (the AT port, and the audio port where the
model has one), published as symlinks in a link directory, named like udev's by-path names:

    <link_dir>/<name>-usb<generation>-if<NN>      e.g. gsm1-usb1-if02 (AT), gsm1-usb1-if04 (audio)

A module reset (AT+CFUN=1,1, AT^RESET, or the control "power_cycle") closes the ptys -- the
host sees its port vanish -- and after the boot time opens new ones under the next
generation number: a NEW device name with the same IMEI, as after USB re-enumeration.

`Simulator` is the in-process Python API (thread-safe); `serve_control()` exposes the same
operations as JSON lines on a Unix or TCP socket (see README.md).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import os
import shutil
import subprocess
import tempfile
import threading
import tty
from pathlib import Path
from typing import Any, Callable

from . import audio as au
from .core import SimModem, SimOptions

__all__ = ["Simulator", "ModemHandle", "PtyPort"]


class PtyPort:
    """One pseudo-terminal with a stable symlink; we keep both ends open."""

    def __init__(self, link: str) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # a fresh pty echoes and edits lines; a modem port does neither
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        self.link = link
        tmp = f"{link}.{os.getpid()}.tmp"
        os.symlink(self.device, tmp)
        os.replace(tmp, link)
        self.backlog = bytearray()

    def write(self, data: bytes, *, droppable: bool) -> None:
        if not droppable and self.backlog:
            self.backlog += data
            data = bytes(self.backlog)
            self.backlog.clear()
        while data:
            try:
                n = os.write(self.master, data)
            except BlockingIOError:
                n = 0
            except OSError as e:
                if e.errno in (errno.EIO, errno.EBADF):
                    return
                raise
            data = data[n:]
            if n == 0:
                if not droppable:
                    self.backlog += data[-65536:]
                return

    def close(self) -> None:
        try:
            if os.path.islink(self.link) and os.readlink(self.link) == self.device:
                os.unlink(self.link)
        except OSError:
            pass
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class _Modem:
    """Runner-side state of one simulated modem (lives on the loop thread)."""

    def __init__(self, sim: "Simulator", name: str, options: SimOptions) -> None:
        self.sim = sim
        self.name = name
        self.loop = sim.loop
        self.core = SimModem(options, now=self.loop.time())
        self.generation = 0
        self.at: PtyPort | None = None
        self.audio: PtyPort | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.booting = False
        self.capture_path: str | None = None

    # ------------------------------------------------------------------ ports
    def open_ports(self) -> None:
        self.generation += 1
        m = self.core.m
        base = os.path.join(self.sim.link_dir, f"{self.name}-usb{self.generation}")
        self.at = PtyPort(f"{base}-if{m.at_if:02d}")
        self.loop.add_reader(self.at.master, self._readable, "at")
        if m.audio_if is not None:
            self.audio = PtyPort(f"{base}-if{m.audio_if:02d}")
            self.loop.add_reader(self.audio.master, self._readable, "audio")
        self.sim._publish(self)

    def close_ports(self) -> None:
        for p in (self.at, self.audio):
            if p is not None:
                self.loop.remove_reader(p.master)
                p.close()
        self.at = self.audio = None

    def info(self) -> dict:
        return {"name": self.name, "model": self.core.m.key, "imei": self.core.opt.imei,
                "at": self.at.link if self.at else None, "at_device": self.at.device if self.at else None,
                "audio": self.audio.link if self.audio else None,
                "generation": self.generation, "booting": self.booting}

    # ------------------------------------------------------------------ I/O
    def _readable(self, which: str) -> None:
        port = self.at if which == "at" else self.audio
        if port is None:
            return
        try:
            data = os.read(port.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            return
        now = self.loop.time()
        if which == "at":
            self.core.receive_at(data, now)
        else:
            self.core.receive_audio(data, now)
        self.flush()

    def flush(self) -> None:
        out = self.core.take_at()
        if out and self.at is not None:
            self.at.write(out, droppable=False)
        aud = self.core.take_audio()
        if aud and self.audio is not None:
            self.audio.write(aud, droppable=True)
        if self.core.take_reset():
            self.power_cycle()
        self.rearm()

    def rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = self.core.get_timer()
        if t is not None:
            self._timer = self.loop.call_at(t, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.core.handle_timer(self.loop.time())
        self.flush()

    def power_cycle(self) -> None:
        """The module goes down now and comes back after its boot time."""
        if self.booting:
            return
        self.booting = True
        self.core.set_hang("total")
        if self.core.m.reenumerate:
            self.loop.call_later(0.05, self.close_ports)
        self.loop.call_later(self.core.opt.boot_time, self._booted)

    def _booted(self) -> None:
        self.booting = False
        if self.core.m.reenumerate or self.at is None:
            self.close_ports()
            self.open_ports()
        self.core.reset(self.loop.time())
        self.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.close_ports()


class ModemHandle:
    """Thread-safe scripting of one simulated modem (see README.md for the meaning)."""

    def __init__(self, sim: "Simulator", name: str) -> None:
        self._sim = sim
        self.name = name

    def _call(self, op: str, **kw: Any) -> Any:
        return self._sim.call(op, self.name, **kw)

    @property
    def at_path(self) -> str:
        return self._call("ports")["at"]

    @property
    def audio_path(self) -> str | None:
        return self._call("ports")["audio"]

    def ports(self) -> dict:
        return self._call("ports")

    def wait_ports(self, generation: int, timeout: float = 10.0) -> dict:
        """Block until the modem came back from a reset as `generation` (or later)."""
        return self._sim.wait_for(lambda: (lambda p: p if p["generation"] >= generation and p["at"]
                                           and not p["booting"] else None)(self.ports()), timeout)

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("_") or op not in OPS:
            raise AttributeError(op)
        return lambda **kw: self._call(op, **kw)


# ---------------------------------------------------------------------- operations
# Each runs on the loop thread as fn(modem, now, **params) and returns something JSON-able.

def _op_ports(m: _Modem, now: float) -> dict:
    return m.info()


def _op_status(m: _Modem, now: float) -> dict:
    return {**m.core.status(), **m.info()}


def _op_incoming_call(m: _Modem, now: float, number: str | None = None, withheld: bool = False,
                      name: str | None = None) -> bool:
    return m.core.incoming_call(number, now, withheld=withheld, name=name)


def _op_remote_hangup(m: _Modem, now: float) -> bool:
    return m.core.remote_hangup(now)


def _op_remote_dtmf(m: _Modem, now: float, digits: str) -> bool:
    m.core.remote_dtmf(digits, now)
    return True


def _op_outgoing(m: _Modem, now: float, fate: str = "answer", number: str | None = None,
                 answer_delay: float | None = None) -> dict:
    if fate not in ("answer", "busy", "no_answer", "reject", "no_dialtone"):
        raise ValueError(f"unknown fate {fate!r}")
    if number:
        m.core.opt.per_number[number] = fate
    else:
        m.core.opt.outgoing = fate
    if answer_delay is not None:
        m.core.opt.answer_delay = float(answer_delay)
    return {"default": m.core.opt.outgoing, "per_number": dict(m.core.opt.per_number)}


def _op_sms(m: _Modem, now: float, sender: str, text: str, ucs2: bool = False, ref16: bool = False,
            reverse: bool = False) -> int:
    return m.core.deliver_sms(sender, text, now, ucs2=ucs2, ref16=ref16, reverse=reverse)


def _op_sms_pdu(m: _Modem, now: float, pdu: str) -> bool:
    m.core.deliver_pdu(pdu, now)
    return True


def _op_sent_sms(m: _Modem, now: float) -> list:
    return list(m.core.sent_messages)


def _op_ussd(m: _Modem, now: float, code: str, text: str, ucs2: bool = False) -> bool:
    m.core.opt.ussd[code] = (text, ucs2)
    return True


def _op_network(m: _Modem, now: float, up: bool = True) -> bool:
    m.core.set_network(bool(up), now)
    return True


def _op_hang(m: _Modem, now: float, mode: str | None = "at") -> bool:
    if mode not in (None, "at", "total"):
        raise ValueError("mode must be null, \"at\" or \"total\"")
    m.core.set_hang(mode)
    return True


def _op_garbage(m: _Modem, now: float, on: bool = True, burst: int = 0) -> bool:
    m.core.set_garbage(bool(on))
    if burst:
        m.core.emit_garbage(int(burst))
    return True


def _op_echo(m: _Modem, now: float, on: bool = True) -> bool:
    m.core.set_echo(bool(on))
    return True


def _op_power_cycle(m: _Modem, now: float) -> int:
    m.power_cycle()
    return m.generation + (1 if m.core.m.reenumerate else 0)


def _op_sim(m: _Modem, now: float, pin: str | None = None, present: bool | None = None,
            pin_tries: int | None = None) -> dict:
    o = m.core.opt
    if pin is not None:
        o.pin = pin or None
    if pin_tries is not None:
        m.core.pin_tries = int(pin_tries)
    if present is not None and bool(present) != o.sim_present:
        o.sim_present = bool(present)
        m.core.sim_state = "NOT INSERTED" if not o.sim_present else ("SIM PIN" if o.pin else "READY")
        m.core._urc(f"+CPIN: {m.core.sim_state}")
    return {"state": m.core.sim_state, "pin_tries": m.core.pin_tries}


def _op_audio_tone(m: _Modem, now: float, freqs: list[float] | float = 1000.0, level: float = 0.3,
                   cadence: list[float] | None = None) -> bool:
    fs = tuple(freqs) if isinstance(freqs, (list, tuple)) else (float(freqs),)
    cad = tuple(cadence) if cadence else None
    m.core.set_audio_source(lambda: au.Tone(fs, level, cad))
    return True


def _op_audio_wav(m: _Modem, now: float, path: str) -> bool:
    samples = au.load_wav(path)
    m.core.set_audio_source(lambda: au.Samples(samples, loop=True))
    return True


def _op_audio_echo(m: _Modem, now: float) -> bool:
    m.core.set_audio_source(au.Source, mode="echo")
    return True


def _op_audio_prompt(m: _Modem, now: float, path: str | None = None, text: str | None = None,
                     voice: str = "en") -> dict:
    """The far end plays a prompt (a WAV, or text spoken by espeak-ng) then echoes audio."""
    if text and not path:
        path = _speak(text, voice, m.sim.work_dir)
    if not path:
        raise ValueError("audio_prompt needs path or text")
    m.core.set_audio_source(au.Source, mode="echo")
    m.core.prompt_samples = au.load_wav(path)
    return {"path": path, "seconds": round(len(m.core.prompt_samples) / au.RATE, 2)}


def _op_capture_wav(m: _Modem, now: float, path: str | None = None) -> bool:
    cap = m.core.capture
    if cap.wav is not None:
        cap.wav.close()
        cap.wav = None
    if path:
        cap.wav = au.WavWriter(path)
    return True


def _op_heard(m: _Modem, now: float, seconds: float = 1.0) -> dict:
    """What the host sent lately: dominant frequency (Hz), RMS, total seconds captured."""
    last = m.core.capture.last(seconds)
    return {"dominant_hz": au.dominant_frequency(last), "rms": round(au.rms(last), 1),
            "seconds": round(m.core.capture.total / au.RATE, 2), "dtmf_sent": "".join(m.core.dtmf_heard)}


def _op_calls(m: _Modem, now: float) -> list:
    return list(m.core.calls_seen)


def _op_log(m: _Modem, now: float, last: int = 50) -> list:
    return list(m.core.log)[-int(last):]


OPS: dict[str, Callable[..., Any]] = {k[4:]: v for k, v in globals().items() if k.startswith("_op_")}


def _speak(text: str, voice: str, work_dir: str) -> str:
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    if not espeak:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    fd, raw = tempfile.mkstemp(suffix=".wav", dir=work_dir)
    os.close(fd)
    subprocess.run([espeak, "-v", voice, "-s", "150", "-w", raw, text], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    sox = shutil.which("sox")
    if sox:
        out = raw[:-4] + "-8k.wav"
        subprocess.run([sox, raw, "-r", "8000", "-c", "1", "-b", "16", out, "gain", "-n", "-3"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        return out
    return raw


class Simulator:
    """A set of simulated modems on ptys. Starts its own loop thread unless given a loop."""

    def __init__(self, link_dir: str, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.link_dir = os.path.abspath(link_dir)
        os.makedirs(self.link_dir, exist_ok=True)
        self.work_dir = tempfile.mkdtemp(prefix="modem-sim-")
        self.modems: dict[str, _Modem] = {}
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._cond = threading.Condition()
        if loop is None:
            self.loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run, name="modem-sim", daemon=True)
            self._thread.start()
        else:
            self.loop = loop

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _publish(self, m: _Modem) -> None:
        with self._cond:
            self._cond.notify_all()

    def _in_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def call(self, op: str, modem: str, **kw: Any) -> Any:
        """Run operation `op` on modem `modem` (from any thread)."""
        fn = OPS.get(op)
        if fn is None:
            raise ValueError(f"unknown operation {op!r}")

        def run() -> Any:
            m = self.modems.get(modem)
            if m is None:
                raise KeyError(f"no modem named {modem!r}")
            r = fn(m, self.loop.time(), **kw)
            m.flush()
            return r

        if self._in_loop():
            return run()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def wrapped() -> None:
            try:
                fut.set_result(run())
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(wrapped)
        return fut.result(timeout=30)

    def add_modem(self, name: str, options: SimOptions | None = None, **kw: Any) -> ModemHandle:
        """Create a modem and its ports; keyword arguments are SimOptions fields."""
        opts = options or SimOptions(**kw)

        def create() -> None:
            if name in self.modems:
                raise ValueError(f"modem {name!r} exists")
            m = _Modem(self, name, opts)
            self.modems[name] = m
            m.open_ports()
            m.flush()

        if self._in_loop():
            create()
        else:
            fut = asyncio.run_coroutine_threadsafe(self._async(create), self.loop)
            fut.result(timeout=30)
        return ModemHandle(self, name)

    @staticmethod
    async def _async(fn: Callable[[], Any]) -> Any:
        return fn()

    def modem(self, name: str) -> ModemHandle:
        return ModemHandle(self, name)

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        import time
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise TimeoutError(f"simulator condition not met within {timeout} s")
            time.sleep(0.05)

    # ------------------------------------------------------------------ control socket
    async def serve_control(self, address: str) -> asyncio.AbstractServer:
        """JSON lines on "unix:/path" or "tcp:HOST:PORT" (one request -> one response)."""
        if address.startswith("unix:"):
            path = address[5:]
            if os.path.exists(path):
                os.unlink(path)
            server = await asyncio.start_unix_server(self._client, path=path)
        elif address.startswith("tcp:"):
            host, _, port = address[4:].rpartition(":")
            server = await asyncio.start_server(self._client, host or "127.0.0.1", int(port))
        else:
            raise ValueError(f"control address must be unix:PATH or tcp:HOST:PORT, not {address!r}")
        self._servers.append(server)
        return server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write((json.dumps(self.handle_request(line), ensure_ascii=False) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def handle_request(self, line: bytes | str) -> dict:
        """One control request (a JSON object) -> its response object."""
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            rid = req.pop("id", None)
            cmd = req.pop("cmd", None)
            if cmd == "list":
                return {"id": rid, "ok": True, "result": [m.info() for m in self.modems.values()]}
            if cmd == "add_modem":
                name = req.pop("name")
                self.add_modem(name, SimOptions(**req))
                return {"id": rid, "ok": True, "result": self.modems[name].info()}
            modem = req.pop("modem", None) or (next(iter(self.modems)) if len(self.modems) == 1 else None)
            if modem is None:
                raise ValueError("say which modem (\"modem\": name)")
            return {"id": rid, "ok": True, "result": self.call(cmd, modem, **req)}
        except Exception as e:  # noqa: BLE001 - every bad request gets an error response
            return {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}

    def close(self) -> None:
        def stop() -> None:
            for s in self._servers:
                s.close()
            for m in self.modems.values():
                m.close()
            self.modems.clear()

        if self._thread is not None:
            if self.loop.is_running():
                self.loop.call_soon_threadsafe(stop)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=5)
            if not self.loop.is_running():
                self.loop.close()
        else:
            stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def link_dir_default() -> str:
    return str(Path(tempfile.gettempdir()) / "modem-sim")
