"""One simulated modem, sans-I/O: fed the host's bytes and the time, it answers like the
model's datasheet says, plays the far end of calls and keeps a SIM with its SMS storage.

The runner (`runner.py`) puts it on pseudo-terminals; tests may drive it in memory.
Outputs: `take_at()` (bytes for the AT port), `take_audio()` (the audio port), `take_reset()`
(the module asked to reset: ports must vanish and come back). `get_timer()`/`handle_timer()`
pace ring cadences, call progress, network answers and 20 ms audio frames.
"""
from __future__ import annotations

import random
import re
import time as _time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from firmware.modem import pdu as pdumod
from firmware.modem.dle import dle_escape

from . import audio as au
from .models import MODELS, VSM_FORMATS, VSM_LIST, SimModel

__all__ = ["SimOptions", "SimModem"]


@dataclass
class SimOptions:
    """How the simulated modem and its SIM/network behave. Times in seconds."""

    model: str = "ec25"
    imei: str = "867698041234567"
    iccid: str = "8948031234567890123"
    operator: str = "Orange PL"
    pin: str | None = None
    """SIM PIN (the SIM asks for it after every power-up), None: PIN disabled."""
    puk: str = "12345678"
    pin_tries: int = 3
    sim_present: bool = True
    storage_capacity: int = 30
    ring_interval: float = 3.0
    max_rings: int = 15
    answer_delay: float = 1.0
    alert_delay: float = 0.5
    busy_delay: float = 1.5
    no_answer_time: float = 20.0
    outgoing: str = "answer"
    """Default fate of outgoing calls: "answer", "busy", "no_answer", "reject"."""
    per_number: dict[str, str] = field(default_factory=dict)
    ussd: dict[str, tuple[str, bool]] = field(default_factory=lambda: {
        "*100#": ("Balance: 12.50 PLN, valid until 2025-01-31", False)})
    """code -> (answer text, send it as UCS-2)."""
    ussd_delay: float = 0.4
    boot_time: float = 1.0
    fxo_end: str = "any"
    """Which host sequence ends +VTR: "^" (V.253), "!" (Rockwell), "etx", or "any"."""
    fxo_hangup_signal: str = "busy"
    """What the analog line does when the far end hangs up: "busy" (tone, DLE b after the
    cadence), "loop" (loop-current drop, DLE l), "dialtone" (DLE d), "none"."""
    fxo_cid: bool = True
    audio_stuck: bool = False
    """The audio path query keeps reporting "on" after the call (exercises the re-arm reset)."""
    seed: int = 1


_GSM_SEQ = {"SM", "ME", "MT", "SR"}


class SimModem:
    """See the module docstring."""

    def __init__(self, options: SimOptions | None = None, *, now: float = 0.0) -> None:
        self.opt = options or SimOptions()
        if self.opt.model not in MODELS:
            raise ValueError(f"unknown model {self.opt.model!r}; known: {', '.join(sorted(MODELS))}")
        self.m: SimModel = MODELS[self.opt.model]
        self.rng = random.Random(self.opt.seed)
        self._out_at = bytearray()
        self._out_audio = bytearray()
        self._inbuf = bytearray()
        self._timers: list[tuple[float, int, str, tuple]] = []
        self._tseq = 0
        self._reset_request = False
        self.now = now
        # persistent (survive a module reset: they live on the SIM / in the network)
        self.storage: dict[int, tuple[int, str]] = {}
        self.network_queue: deque[str] = deque()
        self.sent_pdus: list[pdumod.SmsSubmit] = []
        self.sent_messages: list[dict] = []
        self.pin_tries = self.opt.pin_tries
        self.puk_tries = 10
        self.registered = True
        self.log: deque[str] = deque(maxlen=400)
        self.hung: str | None = None
        self.garbage = False
        self.calls_seen: list[dict] = []
        self.capture = au.Capture(2.0)
        self.source_factory = lambda: au.Tone((440,), 0.3)
        self.base_mode = "source"
        self.source: au.Source = self.source_factory()
        self.prompt_samples: list[int] | None = None
        self.mode = "source"
        self._vtr_dle = False
        self._overlay: deque[int] = deque()
        self._echo_delay: deque[int] = deque()
        self.dtmf_heard: list[str] = []
        self._mr = 0
        self.booted_at = now
        self._boot(now, announce=False)

    # ================================================================== state
    def _boot(self, now: float, announce: bool = True) -> None:
        self.echo = True              # V.250: E1 is the factory default
        self.cmee = 0
        self.clip = False
        self.crc = False
        self.creg_n = 0
        self.cereg_n = 0
        self.cmgf = 0
        self.cnmi_mt = 1
        self.ddet = False
        self.dsci = False
        self.moring = False
        self.qind_csq = False
        self.fclass = 0
        self.vls = 0
        self.vcid = False
        self.vsm = 128
        self.in_vtr = False
        self.audio_on = False
        self.audio_reg_report = False
        self.call: dict | None = None
        self.sim_state = ("READY" if not self.opt.pin else "SIM PIN") if self.opt.sim_present else "NOT INSERTED"
        if self.opt.sim_present and self.pin_tries <= 0:
            self.sim_state = "SIM PUK"
        self._timers = [t for t in self._timers if t[2] == "sms_arrive"]
        self._prompt: dict | None = None
        self._frame_next: float | None = None
        self._frame_t0 = 0.0
        self._frames = 0
        self.booted_at = now
        if announce:
            for u in self.m.boot_urcs:
                self._urc(u.format(cpin=f"+CPIN: {self.sim_state}"))
        self._schedule(now + 5.0, "sms_retry")

    def reset(self, now: float) -> None:
        """Power cycle (AT+CFUN=1,1, AT^RESET, ATZ, or the control "power_cycle")."""
        self.now = now
        self.log.append(f"{now:.3f} RESET")
        self.hung = None
        self.garbage = False
        self._out_at.clear()
        self._out_audio.clear()
        self._inbuf.clear()
        self._boot(now, announce=True)

    # ================================================================== host -> modem
    def receive_at(self, data: bytes, now: float) -> None:
        self.now = now
        if self.hung == "total":
            return
        if self.in_vtr:
            data = self._vtr_input(data, now)
            if not data:
                return
        self._inbuf += data
        while True:
            if self._prompt is not None:
                if not self._take_prompt_input():
                    return
                continue
            cut = -1
            for i, b in enumerate(self._inbuf):
                if b == 13:
                    cut = i
                    break
            if cut < 0:
                if len(self._inbuf) > 4096:
                    self._inbuf.clear()
                return
            raw = bytes(self._inbuf[:cut + 1])
            del self._inbuf[:cut + 1]
            line = raw.decode("latin-1").strip("\r\n\x00 ")
            if self.echo and not self.hung:
                self._out_at += raw
            if line:
                self._command(line, now)
            if self.in_vtr:
                rest = bytes(self._inbuf)
                self._inbuf.clear()
                if rest:
                    self._vtr_input(rest, now)
                return

    def receive_audio(self, data: bytes, now: float) -> None:
        """PCM from the host on the GSM audio port (s16le)."""
        self.now = now
        if self.call and self.call.get("state") == "active" and self.audio_on:
            samples = au.s16_decode(data)
            self.capture.add(samples)
            self._echo_delay.extend(samples)

    def take_at(self) -> bytes:
        out = bytes(self._out_at)
        self._out_at.clear()
        return out

    def take_audio(self) -> bytes:
        out = bytes(self._out_audio)
        self._out_audio.clear()
        return out

    def take_reset(self) -> bool:
        r, self._reset_request = self._reset_request, False
        return r

    # ================================================================== time
    def _schedule(self, at: float, what: str, *args) -> None:
        self._tseq += 1
        self._timers.append((at, self._tseq, what, args))

    def _cancel(self, *whats: str) -> None:
        self._timers = [t for t in self._timers if t[2] not in whats]

    def get_timer(self) -> float | None:
        ts = [t[0] for t in self._timers]
        if self._frame_next is not None:
            ts.append(self._frame_next)
        return min(ts) if ts else None

    def handle_timer(self, now: float) -> None:
        self.now = now
        due = sorted(t for t in self._timers if t[0] <= now)
        self._timers = [t for t in self._timers if t[0] > now]
        for _, _, what, args in due:
            getattr(self, "_t_" + what)(*args)
        if self._frame_next is not None and now >= self._frame_next:
            self._frames_due(now)

    # ================================================================== output helpers
    def _resp(self, *lines: str) -> None:
        """A response: each line framed <CR><LF>line<CR><LF> (V.250 5.7.1, ATV1)."""
        if self.hung:
            return
        for line in lines:
            if self.garbage:
                self._out_at += bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(3, 24)))
            else:
                self._out_at += b"\r\n" + line.encode("utf-8") + b"\r\n"

    def _urc(self, line: str, data: str | None = None) -> None:
        if self.hung:
            return
        eol = self.m.urc_eol.encode()
        self._out_at += eol + line.encode("utf-8") + eol
        if data is not None:
            self._out_at += data.encode() + eol

    def _ok(self) -> None:
        self._resp("OK")

    def _err(self, code: int | None = None, cms: bool = False) -> None:
        if code is not None and self.cmee:
            self._resp(f"+{'CMS' if cms else 'CME'} ERROR: {code}")
        else:
            self._resp("ERROR")

    # ================================================================== commands
    def _command(self, line: str, now: float) -> None:
        self.log.append(f"{now:.3f} < {line}")
        m = self.m
        up = line.upper()
        if self.hung == "at":
            if up in (c.upper() for c in m.reset_cmds):
                self._out_at += b"\r\nOK\r\n"
                self._reset_request = True
            return
        if not up.startswith("AT"):
            self._resp("ERROR")
            return
        if up in (c.upper() for c in m.reset_cmds):
            self._ok()
            self._reset_request = True
            return
        if up == "AT":
            return self._ok()
        if up in ("ATE0", "ATE1", "ATE"):
            self.echo = up == "ATE1"
            return self._ok()
        if up == "ATI" or up == "ATI3":
            return self._resp(*[x.format(imei=self.opt.imei) for x in m.ati], "OK")
        if up in ("AT+CGMM", "AT+GMM"):
            return self._resp(m.cgmm, "OK")
        if up in ("AT+CGMR", "AT+GMR"):
            return self._resp(m.cgmr, "OK")
        if up in ("AT+CGMI", "AT+GMI"):
            return self._resp(m.ati[0].split(":")[-1].strip(), "OK")
        if up in m.imei_cmds:
            return self._resp(self.opt.imei, "OK")
        if up.startswith("AT+CMEE="):
            self.cmee = int(up[8:] or 0)
            return self._ok()
        if up == "AT+CLIP=1" or up == "AT+CLIP=0":
            self.clip = up.endswith("1")
            return self._ok()
        if up in ("AT+CRC=1", "AT+CRC=0"):
            self.crc = up.endswith("1")
            return self._ok()
        if m.kind == "fxo":
            return self._command_fxo(line, up, now)
        if up == "AT+CPIN?":
            if not self.opt.sim_present:
                return self._err(10)
            return self._resp(f"+CPIN: {self.sim_state}", "OK")
        if up.startswith("AT+CPIN="):
            return self._enter_pin(line)
        if m.iccid_cmd and up == m.iccid_cmd.upper():
            if not self.opt.sim_present:
                return self._err(10)
            return self._resp(m.iccid_fmt.format(iccid=self.opt.iccid), "OK")
        if m.tries_cmd and up == m.tries_cmd.upper():
            code = self.sim_state if self.sim_state != "NOT INSERTED" else "SIM REMOVED"
            return self._resp(m.tries_fmt.format(pin=self.pin_tries, puk=self.puk_tries, code=code), "OK")
        if up in ("AT+CMGF=0", "AT+CMGF=1"):
            self.cmgf = int(up[-1])
            return self._ok()
        if up.startswith("AT+CPMS"):
            return self._cpms(up)
        if up.startswith("AT+CNMI="):
            f = up[8:].split(",")
            self.cnmi_mt = int(f[1]) if len(f) > 1 and f[1].isdigit() else 0
            return self._ok()
        if re.fullmatch(r"AT\+C(E|G)?REG=[0-2]", up):
            n = int(up[-1])
            if up.startswith("AT+CEREG"):
                if not m.lte:
                    return self._err()
                self.cereg_n = n
            elif up.startswith("AT+CREG"):
                self.creg_n = n
            return self._ok()
        if up in ("AT+CREG?", "AT+CEREG?", "AT+CGREG?"):
            if up == "AT+CEREG?" and not m.lte:
                return self._err()
            n = self.cereg_n if "CEREG" in up else self.creg_n
            name = up[2:-1]
            return self._resp(f"{name}: {n},{self._reg_stat()}", "OK")
        if up == "AT+COPS?":
            if self.registered and self.sim_state == "READY":
                act = 7 if m.lte else 0
                return self._resp(f'+COPS: 0,0,"{self.opt.operator}",{act}', "OK")
            return self._resp("+COPS: 0", "OK")
        if up == "AT+CSQ":
            return self._resp("+CSQ: 21,0" if self.registered else "+CSQ: 99,99", "OK")
        if up.startswith("ATD"):
            return self._dial(line[3:].strip(), now)
        if up == "ATA":
            return self._answer(now)
        if up in ("ATH", "ATH0", "AT+CHUP"):
            return self._hangup_local(now)
        if up.startswith("AT+VTS="):
            if not self.call or self.call["state"] != "active":
                return self._err(3)
            digits = line[7:].strip().strip('"')
            self.dtmf_heard.extend(d for d in digits if d != ",")
            return self._ok()
        if up == "AT+CLCC":
            if self.call:
                c = self.call
                stat = {"active": 0, "dialing": 2, "alerting": 3, "ringing": 4}.get(c["state"], 0)
                d = 0 if c["dir"] == "out" else 1
                return self._resp(f'+CLCC: 1,{d},{stat},0,0,"{c["number"]}",{c["toa"]}', "OK")
            return self._ok()
        if m.dtmf_cmd and up == m.dtmf_cmd.upper():
            self.ddet = True
            return self._ok()
        if up == "AT^DSCI=1" and m.key == "ec25":
            self.dsci = True
            return self._ok()
        if up == "AT+MORING=1" and m.key == "sim800":
            self.moring = True
            return self._ok()
        if up == 'AT+QINDCFG="CSQ",1' and m.key == "ec25":
            self.qind_csq = True
            return self._ok()
        if up in (c.upper() for c in m.audio_on_cmds):
            if not self.call or self.call["state"] != "active":
                return self._err(3) if m.key == "huawei" else self._set_audio(True)
            return self._set_audio(True)
        if up in (c.upper() for c in m.audio_off_cmds):
            return self._set_audio(False)
        if m.audio_query and up == m.audio_query.upper():
            return self._audio_query()
        if up.startswith("AT+CMGS="):
            return self._cmgs_start(up)
        if up.startswith("AT+CMGR="):
            return self._cmgr(up)
        if up.startswith("AT+CMGL"):
            return self._cmgl(up)
        if up.startswith("AT+CMGD="):
            return self._cmgd(up)
        if up.startswith("AT+CUSD"):
            return self._cusd(line)
        if up.upper() in {a.upper() for a in m.accepted}:
            return self._ok()
        self._err()

    # ------------------------------------------------------------------ SIM
    def _enter_pin(self, line: str) -> None:
        val = line.split("=", 1)[1]
        parts = [p.strip().strip('"') for p in val.split(",")]
        if self.sim_state == "SIM PIN":
            if parts[0] == self.opt.pin:
                self.sim_state = "READY"
                self.pin_tries = self.opt.pin_tries
                self._ok()
                self._schedule(self.now + 0.3, "sim_ready")
                return
            self.pin_tries -= 1
            if self.pin_tries <= 0:
                self.sim_state = "SIM PUK"
            return self._err(16)
        if self.sim_state == "SIM PUK":
            if len(parts) == 2 and parts[0] == self.opt.puk:
                self.opt.pin = parts[1]
                self.pin_tries = self.opt.pin_tries
                self.sim_state = "READY"
                return self._ok()
            self.puk_tries -= 1
            return self._err(16)
        self._err(3)

    def _t_sim_ready(self) -> None:
        self._urc("+CPIN: READY")
        if self.m.key == "ec25":
            self._urc("+QIND: SMS DONE")

    # ------------------------------------------------------------------ network
    def _reg_stat(self) -> int:
        if self.sim_state != "READY":
            return 0
        return 1 if self.registered else 2

    def set_network(self, registered: bool, now: float) -> None:
        self.now = now
        if registered == self.registered:
            return
        self.registered = registered
        stat = self._reg_stat()
        if self.creg_n:
            self._urc(f"+CREG: {stat}")
        if self.cereg_n:
            self._urc(f"+CEREG: {stat}")
        if self.m.key == "huawei":
            self._urc(f"^RSSI:{17 if registered else 99}")
        if self.qind_csq:
            self._urc(f'+QIND: "csq",{21 if registered else 99},99')
        if not registered and self.call:
            self._remote_end(now, cause=41)

    # ------------------------------------------------------------------ calls
    def _fate(self, number: str) -> str:
        return self.opt.per_number.get(number, self.opt.outgoing)

    def _dial(self, target: str, now: float) -> None:
        m = self.m
        voice = target.endswith(";")
        number = target.rstrip(";").strip()
        if m.kind == "gsm" and not voice:
            return self._resp("NO CARRIER")
        if self.call is not None:
            return self._err(3)
        if m.kind == "gsm" and (not self.registered or self.sim_state != "READY"):
            return self._resp("NO CARRIER")
        toa = 145 if number.startswith("+") else 129
        self.call = {"dir": "out", "number": number, "toa": toa, "state": "dialing", "start": now}
        self.calls_seen.append({"dir": "out", "number": number, "at": now})
        fate = self._fate(number)
        self.call["fate"] = fate
        if m.kind == "fxo":
            if fate == "no_dialtone":
                self.call = None
                return self._resp("NO DIALTONE")
            # V.253: ATD in voice mode answers VCON when the far end picks up
        else:
            self._ok()
            if m.progress == "huawei":
                self._urc("^ORIG:1,0")
            if self.dsci:
                self._urc(f'^DSCI: 1,0,2,0,"{number}",{toa}')
        self._schedule(now + self.opt.alert_delay, "alerting")
        if fate == "answer":
            self._schedule(now + self.opt.alert_delay + self.opt.answer_delay, "far_answer")
        elif fate == "busy":
            self._schedule(now + self.opt.busy_delay, "far_busy")
        elif fate == "reject":
            self._schedule(now + self.opt.busy_delay, "far_reject")
        else:
            self._schedule(now + self.opt.no_answer_time, "far_no_answer")

    def _t_alerting(self) -> None:
        c = self.call
        if not c or c["dir"] != "out" or c["state"] != "dialing":
            return
        c["state"] = "alerting"
        if self.m.progress == "sim800" and self.moring:
            self._urc("MO RING")
        elif self.m.progress == "huawei":
            self._urc("^CONF:1")
        if self.dsci:
            self._urc(f'^DSCI: 1,0,3,0,"{c["number"]}",{c["toa"]}')

    def _t_far_answer(self) -> None:
        c = self.call
        if not c or c["dir"] != "out" or c["state"] not in ("dialing", "alerting"):
            return
        c["state"] = "active"
        c["connected"] = self.now
        p = self.m.progress
        if p == "v253":
            self._resp("VCON")
        elif p == "sim800":
            if self.moring:
                self._urc("MO CONNECTED")
        elif p == "simcom":
            self._urc("VOICE CALL: BEGIN")
        elif p == "huawei":
            self._urc("^CONN:1,0")
        if self.dsci:
            self._urc(f'^DSCI: 1,0,0,0,"{c["number"]}",{c["toa"]}')
        self._call_audio_start()

    def _t_far_busy(self) -> None:
        self._outgoing_fail("BUSY", 17)

    def _t_far_reject(self) -> None:
        self._outgoing_fail("NO CARRIER", 21)

    def _t_far_no_answer(self) -> None:
        self._outgoing_fail("NO ANSWER", 19)

    def _outgoing_fail(self, result: str, cause: int) -> None:
        c = self.call
        if not c or c["dir"] != "out" or c["state"] not in ("dialing", "alerting"):
            return
        self.call = None
        self._cancel("alerting", "far_answer", "far_busy", "far_reject", "far_no_answer")
        p = self.m.progress
        if p == "v253":
            self._resp(result)
        elif p == "huawei":
            self._urc(f"^CEND:1,0,104,{cause}")
        else:
            if p == "simcom":
                self._urc("VOICE CALL: END: 000000")
            self._urc(result)
        if self.dsci:
            self._urc(f'^DSCI: 1,0,6,0,"{c["number"]}",{c["toa"]}')

    def incoming_call(self, number: str | None, now: float, *, withheld: bool = False,
                      name: str | None = None) -> bool:
        """A call from `number` starts ringing. False if the line is busy or unregistered."""
        self.now = now
        if self.call is not None or (self.m.kind == "gsm" and not self.registered):
            return False
        toa = 145 if number and number.startswith("+") else 129
        self.call = {"dir": "in", "number": number or "", "toa": toa, "state": "ringing",
                     "start": now, "rings": 0, "withheld": withheld, "name": name}
        self.calls_seen.append({"dir": "in", "number": number, "at": now})
        if self.dsci:
            self._urc(f'^DSCI: 1,1,4,0,"{number or ""}",{toa}')
        self._t_ring()
        return True

    def _t_ring(self) -> None:
        c = self.call
        if not c or c["dir"] != "in" or c["state"] != "ringing":
            return
        c["rings"] += 1
        if c["rings"] > self.opt.max_rings:
            self._caller_gives_up()
            return
        self._urc("+CRING: VOICE" if self.crc else "RING")
        if self.m.kind == "gsm" and self.clip:
            num = "" if c["withheld"] else c["number"]
            val = 1 if c["withheld"] else (0 if num else 2)
            self._urc(self.m.clip_fmt.format(num=num, toa=c["toa"] if num else 128, val=val))
        elif self.m.kind == "fxo" and c["rings"] == 1 and self.vcid and self.opt.fxo_cid:
            self._schedule(self.now + 1.0, "fxo_cid")
        self._schedule(self.now + self.opt.ring_interval, "ring")

    def _t_fxo_cid(self) -> None:
        c = self.call
        if not c or c["state"] != "ringing":
            return
        ts = datetime.now()
        self._urc(f"DATE = {ts:%m%d}")
        self._urc(f"TIME = {ts:%H%M}")
        self._urc("NMBR = " + ("P" if c["withheld"] else (c["number"] or "O")))
        if c.get("name"):
            self._urc(f"NAME = {c['name']}")

    def _caller_gives_up(self) -> None:
        c = self.call
        if not c:
            return
        self.call = None
        self._cancel("ring", "fxo_cid")
        p = self.m.progress
        if p == "simcom":
            self._urc(f"MISSED_CALL: {datetime.now():%I:%M%p} {c['number']}")
        elif p == "huawei":
            self._urc("^CEND:1,0,104,16")
        elif p in ("sim800", "quectel", "generic"):
            self._urc("NO CARRIER")
        if self.dsci:
            self._urc(f'^DSCI: 1,1,6,0,"{c["number"]}",{c["toa"]}')

    def _answer(self, now: float) -> None:
        c = self.call
        if not c or c["dir"] != "in" or c["state"] != "ringing":
            return self._resp("NO CARRIER")
        self._cancel("ring", "fxo_cid")
        c["state"] = "active"
        c["connected"] = now
        if self.m.kind == "fxo":
            self.vls = 1
            return self._resp("VCON")
        self._ok()
        p = self.m.progress
        if p == "simcom":
            self._urc("VOICE CALL: BEGIN")
        elif p == "huawei":
            self._urc("^CONN:1,0")
        if self.dsci:
            self._urc(f'^DSCI: 1,1,0,0,"{c["number"]}",{c["toa"]}')
        self._call_audio_start()

    def _hangup_local(self, now: float) -> None:
        c = self.call
        self.call = None
        self._cancel("ring", "fxo_cid", "alerting", "far_answer", "far_busy", "far_reject",
                     "far_no_answer", "far_end_signal")
        self._stop_audio()
        if self.m.kind == "fxo":
            self.vls = 0
            return self._ok()
        self._ok()
        if c is None:
            return
        dur = int(now - c.get("connected", now)) if c.get("connected") else 0
        p = self.m.progress
        if p == "simcom" and c["state"] == "active":
            self._urc(f"VOICE CALL: END: {dur // 3600:02d}{dur // 60 % 60:02d}{dur % 60:02d}")
        elif p == "huawei":
            self._urc(f"^CEND:1,{dur},104,16")
        if self.dsci:
            self._urc(f'^DSCI: 1,{0 if c["dir"] == "out" else 1},6,0,"{c["number"]}",{c["toa"]}')
        if self.m.key == "huawei":
            self.audio_on = False

    def remote_hangup(self, now: float) -> bool:
        """The far end hangs up (or the caller gives up while ringing)."""
        self.now = now
        c = self.call
        if c is None:
            return False
        if c["state"] == "ringing" and c["dir"] == "in":
            self._caller_gives_up()
            return True
        if c["state"] in ("dialing", "alerting"):
            self._outgoing_fail("NO CARRIER", 16)
            return True
        self._remote_end(now, 16)
        return True

    def _remote_end(self, now: float, cause: int = 16) -> None:
        c = self.call
        if c is None:
            return
        if self.m.kind == "fxo":
            # The analog line gives no signalling: the far exchange plays a tone (or drops
            # the loop current); the modem reports it with a DLE code once it recognises it.
            c["state"] = "far_gone"
            sig = self.opt.fxo_hangup_signal
            if sig == "busy":
                self.source = au.Tone((425,), 0.3, cadence=(0.5, 0.5))
                self._schedule(now + 2.0, "far_end_signal", "b")
            elif sig == "dialtone":
                self.source = au.Tone((350, 440), 0.3)
                self._schedule(now + 1.0, "far_end_signal", "d")
            elif sig == "loop":
                self.source = au.Source()
                self._schedule(now + 0.3, "far_end_signal", "l")
            else:
                self.source = au.Tone((425,), 0.3, cadence=(0.5, 0.5))
            return
        self.call = None
        self._stop_audio()
        dur = int(now - c.get("connected", now)) if c.get("connected") else 0
        p = self.m.progress
        if p == "simcom":
            self._urc(f"VOICE CALL: END: {dur // 3600:02d}{dur // 60 % 60:02d}{dur % 60:02d}")
            self._urc("NO CARRIER")
        elif p == "huawei":
            self._urc(f"^CEND:1,{dur},104,{cause}")
            self.audio_on = False
        else:
            self._urc("NO CARRIER")
        if self.dsci:
            self._urc(f'^DSCI: 1,{0 if c["dir"] == "out" else 1},6,0,"{c["number"]}",{c["toa"]}')

    def _t_far_end_signal(self, code: str) -> None:
        if not self.in_vtr:
            return
        self._dle_event(code)
        if code == "b":  # V.253: repeated every 4 s while the tone lasts
            self._schedule(self.now + 4.0, "far_end_signal", "b")

    # ------------------------------------------------------------------ far-end DTMF
    def remote_dtmf(self, digits: str, now: float) -> None:
        """The far end presses keys: in-band tones, plus the module's own report."""
        self.now = now
        for i, d in enumerate(digits):
            if d not in au.DTMF_FREQS:
                continue
            self._overlay.extend(au.dtmf_samples(d, 100) + [0] * 800)
            self._schedule(now + 0.1 + i * 0.2, "dtmf_report", d)

    def _t_dtmf_report(self, d: str) -> None:
        if not self.call or self.call.get("state") != "active":
            return
        if self.m.kind == "fxo":
            if self.in_vtr:
                self._dle_event(d)
            return
        if self.ddet and self.m.dtmf_urc:
            self._urc(self.m.dtmf_urc.format(d=d, ascii=ord(d)))

    # ------------------------------------------------------------------ audio (GSM)
    def _set_audio(self, on: bool) -> None:
        self.audio_reg_report = on or self.opt.audio_stuck and self.audio_reg_report
        if on and self.call and self.call.get("state") == "active":
            self.audio_on = True
            self._start_frames()
        elif not on:
            self.audio_on = False
            if self.m.kind == "gsm":
                self._frame_next = None
        self._ok()

    def _audio_query(self) -> None:
        k = self.m.key
        if k == "sim7600":
            return self._resp(f"+CPCMREG: {1 if self.audio_reg_report else 0}", "OK")
        if k == "ec25":
            return self._resp("+QPCMV: 1,0" if self.audio_reg_report else "+QPCMV: 0", "OK")
        if k == "huawei":
            return self._resp("^CVOICE: 0,8000,16,20" if not self.opt.audio_stuck else "^CVOICE: 1", "OK")
        self._err()

    def _call_audio_start(self) -> None:
        """A connected call: the far end starts talking (the audio flows once enabled)."""
        self._echo_delay.clear()
        self._overlay.clear()
        if self.prompt_samples is not None:
            self.source = au.Samples(list(self.prompt_samples), loop=False)
            self.mode = "prompt_then_echo"
        else:
            self.source = self.source_factory()
            self.mode = self.base_mode

    def _stop_audio(self) -> None:
        if self.m.key == "huawei":
            self.audio_on = False
        if self.m.kind == "gsm" and not self.audio_on:
            self._frame_next = None
        if self.m.kind == "fxo":
            self.in_vtr = False
            self._frame_next = None

    def _start_frames(self) -> None:
        if self._frame_next is None:
            self._frame_t0 = self.now
            self._frames = 0
            self._frame_next = self.now

    def _frames_due(self, now: float) -> None:
        active = self.call is not None and self.call.get("state") in ("active", "far_gone")
        gsm_flow = self.m.kind == "gsm" and self.audio_on and active
        fxo_flow = self.m.kind == "fxo" and self.in_vtr
        if not (gsm_flow or fxo_flow):
            self._frame_next = None
            return
        due = int((now - self._frame_t0) / 0.02 + 1e-6) + 1 - self._frames
        if due > 10:  # we were starved (host slow): skip ahead like a real codec would
            self._frames += due - 1
            due = 1
        for _ in range(due):
            samples = self._next_frame()
            if fxo_flow:
                enc = au.ulaw_encode(samples) if VSM_FORMATS.get(self.vsm) == "ulaw" else au.u8_encode(samples)
                self._out_at += dle_escape(enc)
            else:
                self._out_audio += au.s16_encode(samples)
            self._frames += 1
        self._frame_next = self._frame_t0 + self._frames * 0.02

    def _next_frame(self) -> list[int]:
        n = au.FRAME
        if self.mode == "prompt_then_echo" and isinstance(self.source, au.Samples) and self.source.done:
            self.mode = "echo"
        if self.mode == "echo":
            base = [self._echo_delay.popleft() if self._echo_delay else 0 for _ in range(n)]
            if len(self._echo_delay) > 8000:
                for _ in range(len(self._echo_delay) - 1600):
                    self._echo_delay.popleft()
        else:
            base = self.source.read(n)
        if self._overlay:
            ov = [self._overlay.popleft() if self._overlay else 0 for _ in range(n)]
            base = [max(-32768, min(32767, a + b)) for a, b in zip(base, ov)]
        return base

    # ------------------------------------------------------------------ FXO (V.253)
    def _command_fxo(self, line: str, up: str, now: float) -> None:
        if up == "AT+FCLASS=8":
            self.fclass = 8
            return self._ok()
        if up == "AT+FCLASS?":
            return self._resp(str(self.fclass), "OK")
        if up == "AT+VCID=1":
            self.vcid = True
            return self._ok()
        if up == "AT+VSM=?":
            if self.fclass != 8:
                return self._err()
            return self._resp(*VSM_LIST, "OK")
        if up.startswith("AT+VSM="):
            try:
                cml = int(up[7:].split(",")[0])
            except ValueError:
                return self._err()
            if cml not in (128, 129, 130, 131, 132):
                return self._err()
            self.vsm = cml
            return self._ok()
        if up == "AT+VLS=1":
            c = self.call
            if c and c["dir"] == "in" and c["state"] == "ringing":
                self._cancel("ring", "fxo_cid")
                c["state"] = "active"
                c["connected"] = now
            self.vls = 1
            return self._ok()
        if up == "AT+VLS=0":
            self.vls = 0
            if self.call is not None:
                self._hangup_local(now)
                return
            return self._ok()
        if up == "AT+VLS?":
            return self._resp(str(self.vls), "OK")
        if up == "AT+VTR":
            if self.fclass != 8 or not self.call or self.call["state"] not in ("active", "far_gone"):
                return self._err()
            self._resp("CONNECT")
            self.in_vtr = True
            self._vtr_dle = False
            if self.call["state"] == "active":
                self._call_audio_start()
            self._start_frames()
            return
        if up.startswith("ATD"):
            return self._dial(line[3:].strip(), now)
        if up == "ATA":
            return self._answer(now)
        if up in ("ATH", "ATH0"):
            return self._hangup_local(now)
        if up in {a.upper() for a in self.m.accepted}:
            return self._ok()
        self._err()

    def _vtr_input(self, data: bytes, now: float) -> bytes:
        """Voice data from the host; returns the bytes after the end of the stream."""
        voice = bytearray()
        end_at = -1
        i = 0
        n = len(data)
        while i < n:
            b = data[i]
            i += 1
            if not self._vtr_dle:
                if b == 0x10:
                    self._vtr_dle = True
                else:
                    voice.append(b)
                continue
            self._vtr_dle = False
            if b == 0x10:
                voice.append(0x10)
            elif self._ends_voice(chr(b)):
                end_at = i
                break
        if voice:
            samples = au.ulaw_decode(bytes(voice)) if VSM_FORMATS.get(self.vsm) == "ulaw" \
                else au.u8_decode(bytes(voice))
            self.capture.add(samples)
            self._echo_delay.extend(samples)
        if end_at >= 0:
            self.in_vtr = False
            self._frame_next = None
            self._cancel("far_end_signal")
            self._out_at += b"\x10\x03"
            self._resp("OK")
            return data[end_at:]
        return b""

    def _ends_voice(self, ch: str) -> bool:
        want = self.opt.fxo_end
        table = {"^": "^", "!": "!", "etx": "\x03"}
        if want == "any":
            return ch in ("^", "!", "\x03")
        return ch == table.get(want, "^")

    def _dle_event(self, code: str) -> None:
        self._out_at += bytes((0x10, ord(code)))

    # ------------------------------------------------------------------ SMS
    def _cpms(self, up: str) -> None:
        st = self.m.storage
        used, total = len(self.storage), self.opt.storage_capacity
        if up == "AT+CPMS?":
            return self._resp(f'+CPMS: "{st}",{used},{total},"{st}",{used},{total},"{st}",{used},{total}', "OK")
        mems = re.findall(r'"([A-Z]{2})"', up)
        if not mems or any(x not in _GSM_SEQ for x in mems):
            return self._err(302, cms=True)
        if any(x != st and x != "MT" for x in mems):
            return self._err(302, cms=True)
        self._resp(f"+CPMS: {used},{total},{used},{total},{used},{total}", "OK")

    def deliver_sms(self, sender: str, text: str, now: float, *, ucs2: bool = False,
                    ref16: bool = False, reverse: bool = False, gap: float = 0.05,
                    smsc: str = "+48790998250", when: datetime | None = None) -> int:
        """The network delivers an SMS (all its parts); returns the number of parts."""
        self.now = now
        self._mr = (self._mr + 1) % 256
        pdus = pdumod.encode_deliver(sender, text, timestamp=when or datetime.now(timezone.utc).astimezone(),
                                     smsc=smsc, ref=self.rng.randrange(1, 65535 if ref16 else 255),
                                     force_ucs2=ucs2, ref16=ref16)
        if reverse:
            pdus = list(reversed(pdus))
        for i, p in enumerate(pdus):
            self._schedule(now + i * gap, "sms_arrive", p)
        return len(pdus)

    def deliver_pdu(self, pdu_hex: str, now: float) -> None:
        """The network hands over one raw PDU (SMSC field first)."""
        self._schedule(now, "sms_arrive", pdu_hex)

    def _t_sms_arrive(self, pdu_hex: str) -> None:
        if self.sim_state != "READY" or not self.registered:
            self.network_queue.append(pdu_hex)
            return
        if self.cnmi_mt == 2:
            tpdu_len = len(pdu_hex) // 2 - (int(pdu_hex[:2], 16) + 1)
            self._urc(f"+CMT: ,{tpdu_len}", pdu_hex)
            return
        if len(self.storage) >= self.opt.storage_capacity:
            self.network_queue.append(pdu_hex)  # the SMSC keeps it and retries later
            return
        idx = next(i for i in range(self.opt.storage_capacity) if i not in self.storage)
        self.storage[idx] = (0, pdu_hex)
        if self.cnmi_mt == 1:
            self._urc(f'+CMTI: "{self.m.storage}",{idx}')

    def _t_sms_retry(self) -> None:
        n = len(self.network_queue)
        for _ in range(n):
            if len(self.storage) >= self.opt.storage_capacity or self.sim_state != "READY":
                break
            self._t_sms_arrive(self.network_queue.popleft())
        self._schedule(self.now + 5.0, "sms_retry")

    def _cmgr(self, up: str) -> None:
        try:
            idx = int(up.split("=", 1)[1])
        except ValueError:
            return self._err(321, cms=True)
        if idx not in self.storage:
            return self._ok()  # an empty slot reads as just OK on most modules
        stat, pdu_hex = self.storage[idx]
        self.storage[idx] = (1 if stat == 0 else stat, pdu_hex)
        tpdu_len = len(pdu_hex) // 2 - (int(pdu_hex[:2], 16) + 1)
        self._resp(f"+CMGR: {stat},,{tpdu_len}", pdu_hex, "OK")

    def _cmgl(self, up: str) -> None:
        want = up.split("=", 1)[1] if "=" in up else "4"
        try:
            want_i = int(want)
        except ValueError:
            return self._err(302, cms=True)
        lines = []
        for idx in sorted(self.storage):
            stat, pdu_hex = self.storage[idx]
            if want_i != 4 and stat != want_i:
                continue
            tpdu_len = len(pdu_hex) // 2 - (int(pdu_hex[:2], 16) + 1)
            lines += [f"+CMGL: {idx},{stat},,{tpdu_len}", pdu_hex]
            if stat == 0:
                self.storage[idx] = (1, pdu_hex)
        self._resp(*lines, "OK")

    def _cmgd(self, up: str) -> None:
        try:
            idx = int(up.split("=", 1)[1].split(",")[0])
        except ValueError:
            return self._err(321, cms=True)
        self.storage.pop(idx, None)
        self._ok()

    def _cmgs_start(self, up: str) -> None:
        if self.cmgf != 0:
            return self._err(302, cms=True)
        try:
            n = int(up.split("=", 1)[1])
        except ValueError:
            return self._err(304, cms=True)
        self._prompt = {"len": n}
        self._out_at += b"\r\n> "

    def _take_prompt_input(self) -> bool:
        buf = self._inbuf
        for i, b in enumerate(buf):
            if b in (0x1A, 0x1B):
                data = bytes(buf[:i])
                del buf[:i + 1]
                if self.echo:
                    self._out_at += data + bytes((b,))
                prompt, self._prompt = self._prompt, None
                if b == 0x1B:
                    self._ok()
                    return True
                self._cmgs_finish(data.decode("latin-1").strip(), prompt["len"] if prompt else 0)
                return True
        return False

    def _cmgs_finish(self, hexpdu: str, declared: int) -> None:
        if not self.registered or self.sim_state != "READY":
            return self._err(331, cms=True)
        try:
            msg = pdumod.decode_submit(hexpdu)
            smsc_len = int(hexpdu[:2], 16) + 1
        except (pdumod.PduError, ValueError):
            return self._err(304, cms=True)
        if len(hexpdu) // 2 - smsc_len != declared:
            return self._err(304, cms=True)
        self.sent_pdus.append(msg)
        self._mr = (self._mr + 1) % 256
        self._collect_sent(msg)
        self._resp(f"+CMGS: {self._mr}", "OK")

    def _collect_sent(self, msg: pdumod.SmsSubmit) -> None:
        if msg.concat is None:
            self.sent_messages.append({"number": msg.number.number, "text": msg.text, "parts": 1,
                                       "alphabet": msg.alphabet})
            return
        group = [p for p in self.sent_pdus if p.concat and p.concat.ref == msg.concat.ref
                 and p.number.number == msg.number.number and p.concat.total == msg.concat.total]
        seqs = {p.concat.seq for p in group}
        if len(seqs) == msg.concat.total:
            uniq = {p.concat.seq: p for p in group}
            self.sent_messages.append({"number": msg.number.number, "parts": msg.concat.total,
                                       "text": pdumod.join_parts(list(uniq.values())),
                                       "alphabet": msg.alphabet})

    # ------------------------------------------------------------------ USSD
    def _cusd(self, line: str) -> None:
        arg = line.split("=", 1)[1] if "=" in line else ""
        parts = [p.strip() for p in re.findall(r'"[^"]*"|[^,]+', arg)]
        if not parts:
            return self._ok()
        mode = parts[0]
        if mode == "2" or len(parts) < 2:
            return self._ok()
        if not self.registered or self.sim_state != "READY":
            return self._err(30)
        raw = parts[1].strip('"')
        code = pdumod.decode_ussd(raw, 15, packed=self.m.ussd_packed)
        self._ok()
        self._schedule(self.now + self.opt.ussd_delay, "ussd_reply", code)

    def _t_ussd_reply(self, code: str) -> None:
        ans = self.opt.ussd.get(code)
        if ans is None:
            self._urc("+CUSD: 4")
            return
        text, ucs2 = ans
        if ucs2 or not pdumod.gsm7_encodable(text):
            self._urc(f'+CUSD: 0,"{text.encode("utf-16-be").hex().upper()}",72')
        elif self.m.ussd_packed:
            self._urc(f'+CUSD: 0,"{pdumod.encode_ussd(text, packed=True)}",15')
        else:
            self._urc(f'+CUSD: 0,"{text}",15')

    # ================================================================== faults
    def set_hang(self, mode: str | None) -> None:
        """None: normal; "at": ignores everything but its reset command; "total": dead."""
        self.hung = mode

    def set_garbage(self, on: bool) -> None:
        self.garbage = on

    def set_echo(self, on: bool) -> None:
        self.echo = on

    def emit_garbage(self, n: int = 16) -> None:
        self._out_at += bytes(self.rng.randrange(256) for _ in range(n))

    def set_audio_source(self, factory, mode: str = "source") -> None:
        """What the far end plays on the next calls (and now): `factory()` gives a Source;
        mode "echo" sends back what it hears instead."""
        self.source_factory = factory
        self.base_mode = mode
        self.prompt_samples = None
        self.source = factory()
        self.mode = mode

    def status(self) -> dict:
        c = self.call
        return {
            "model": self.m.key, "imei": self.opt.imei, "echo": self.echo, "hung": self.hung,
            "garbage": self.garbage, "registered": self.registered, "sim": self.sim_state,
            "pin_tries": self.pin_tries, "call": None if c is None else
            {k: v for k, v in c.items() if k in ("dir", "number", "state")},
            "audio_on": self.audio_on, "in_vtr": self.in_vtr, "storage_used": len(self.storage),
            "storage_capacity": self.opt.storage_capacity, "network_queue": len(self.network_queue),
            "sent_messages": list(self.sent_messages), "dtmf_heard": "".join(self.dtmf_heard),
            "captured_seconds": round(self.capture.total / au.RATE, 2),
            "uptime": round(self.now - self.booted_at, 2), "wall": _time.time(),
        }
