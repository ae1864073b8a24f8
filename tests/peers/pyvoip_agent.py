"""pyVoIP 1.6.8 desk phone as a subprocess, driven over JSON lines (see _agent.py).

pyVoIP is deliberately buggy in ways cheap desk phones are (random To-tag on ACK and on
its 200 to BYE, Via branch reused after 401, no 407, no qop): the box must cope with it.
Audio: pyVoIP speaks 8 kHz mono 8-bit unsigned PCM.
"""
from __future__ import annotations

import sys
import threading
import time
import warnings

warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import pyVoIP  # noqa: E402
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPPhone  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _agent import event, serve  # noqa: E402
from audio import dominant_frequency, from_u8, rms, to_u8, tone, write_wav  # noqa: E402

pyVoIP.DEBUG = False


class Phone:
    def __init__(self) -> None:
        self.phone: VoIPPhone | None = None
        self.call = None
        self.auto_answer = False
        self.answer_delay = 0.0
        self.rx = bytearray()
        self.rx_lock = threading.Lock()
        self.dtmf = ""
        self._reader: threading.Thread | None = None

    # -- commands --------------------------------------------------------------------
    def start(self, server: str, port: int, user: str, password: str, sip_port: int,
              rtp_low: int, rtp_high: int, my_ip: str = "127.0.0.1", auto_answer: bool = False,
              answer_delay: float = 0.0, register_timeout: float = 5.0, timeout: float = 0.0) -> dict:
        self.auto_answer, self.answer_delay = auto_answer, answer_delay
        self.phone = VoIPPhone(server, port, user, password, myIP=my_ip, sipPort=sip_port,
                               rtpPortLow=rtp_low, rtpPortHigh=rtp_high, callCallback=self._on_call)
        self.phone.sip.register_timeout = register_timeout
        self.phone.start()
        return {"registered": self.phone.get_status() == PhoneStatus.REGISTERED}

    def dial(self, number: str, wait: float = 15.0, timeout: float = 0.0) -> dict:
        assert self.phone
        self.call = self.phone.call(number)
        t0 = time.monotonic()
        while self.call.state == CallState.DIALING and time.monotonic() - t0 < wait:
            time.sleep(0.02)
        state = self.call.state
        if state == CallState.ANSWERED:
            self._start_reader()
        return {"state": state.name, "answer_s": round(time.monotonic() - t0, 3)}

    def answer(self) -> dict:
        assert self.call is not None
        self.call.answer()
        self._start_reader()
        return {"state": self.call.state.name}

    def hangup(self) -> dict:
        if self.call is not None and self.call.state == CallState.ANSWERED:
            self.call.hangup()
        elif self.call is not None and self.call.state == CallState.RINGING:
            self.call.deny()
        return {"state": self.call.state.name if self.call else None}

    def state(self) -> dict:
        return {"state": self.call.state.name if self.call else None, "dtmf": self.dtmf}

    def play_tone(self, freq: float, seconds: float, amplitude: float = 0.3) -> dict:
        assert self.call is not None
        self.call.write_audio(to_u8(tone(freq, seconds, amplitude)))
        return {}

    def rx_analysis(self, seconds: float, skip_last: float = 0.0, save: str | None = None) -> dict:
        with self.rx_lock:
            data = bytes(self.rx)
        n = int(seconds * 8000)
        end = len(data) - int(skip_last * 8000)
        pcm = from_u8(data[max(0, end - n):max(0, end)])
        if save:
            write_wav(save, from_u8(data))
        return {"freq": dominant_frequency(pcm), "rms": rms(pcm), "total_s": len(data) / 8000}

    def clear_rx(self) -> dict:
        with self.rx_lock:
            self.rx.clear()
        return {}

    def stop(self, timeout: float = 0.0) -> dict:
        if self.phone:
            try:
                if self.call is not None and self.call.state == CallState.ANSWERED:
                    self.call.hangup()
            except Exception:
                pass
            self.phone.sip.register_timeout = 2
            self.phone.stop()
            self.phone = None
        return {}

    # -- internals -------------------------------------------------------------------
    def _on_call(self, call) -> None:  # pyVoIP calls this in a Timer thread
        self.call = call
        event("incoming", frm=call.request.headers["From"]["raw"])
        if self.auto_answer:
            time.sleep(self.answer_delay)
            try:
                call.answer()
            except Exception as e:
                event("answer_failed", error=repr(e))
                return
            self._start_reader()
            event("answered")

    def _start_reader(self) -> None:
        with self.rx_lock:
            self.rx.clear()
        call = self.call

        def run() -> None:
            while call.state == CallState.ANSWERED:
                chunk = call.read_audio(160, blocking=False)
                with self.rx_lock:
                    self.rx += chunk
                d = call.get_dtmf(16)
                if d:
                    self.dtmf += d
                time.sleep(0.02)
            event("ended")

        self._reader = threading.Thread(target=run, daemon=True)
        self._reader.start()


if __name__ == "__main__":
    p = Phone()
    try:
        serve({name: getattr(p, name) for name in
               ("start", "dial", "answer", "hangup", "state", "play_tone", "rx_analysis", "clear_rx", "stop")})
    finally:
        p.stop()
