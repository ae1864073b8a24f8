"""The simulator as the lead's demo runs it: a subprocess with a link dir and a control socket."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware.aio.modem import ModemLine
from firmware.modem.events import IncomingCall
from firmware.modem.session import SessionConfig
from tests.integration.test_modem_gsm import Recorder
from tools.modem_sim.audio import Tone, dominant_frequency, rms, s16_decode, s16_encode

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


class Control:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.f = self.sock.makefile("rwb")
        self.n = 0

    def __call__(self, cmd: str, **kw):
        self.n += 1
        self.f.write(json.dumps({"id": self.n, "cmd": cmd, **kw}).encode() + b"\n")
        self.f.flush()
        resp = json.loads(self.f.readline())
        assert resp["id"] == self.n
        return resp

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def demo_sim(tmp_path):
    links = tmp_path / "links"
    ctl = tmp_path / "ctl.sock"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "modem_sim" / "run.py"),
                             "--link-dir", str(links), "--control", f"unix:{ctl}", "--demo",
                             "--prompt", "Hello."], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        yield info, Control(str(ctl)), proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_demo_mobile_talks_then_echoes_and_calls_in(demo_sim) -> None:
    info, ctl, proc = demo_sim
    assert info["ready"] and info["modems"][0]["model"] == "ec25"
    at = info["modems"][0]["at"]
    assert os.path.islink(at) and at.endswith("gsm1-usb1-if02")
    assert ctl("bogus")["ok"] is False and "unknown operation" in ctl("bogus")["error"]
    assert ctl("status")["result"]["sim"] == "READY"
    rec = Recorder()
    line = ModemLine("gsm1", "ec25", device=at, on_event=rec, config=SessionConfig(command_timeout=2.0))
    try:
        assert await line.start(wait=20)
        res = await line.dial("+48500111222")
        assert res.answered
        fd = line.audio.fd
        buf = b""
        tone = Tone([600.0], 0.3)
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            os.write(fd, s16_encode(tone.read(160)))
            await asyncio.sleep(0.02)
            try:
                buf += os.read(fd, 65536)
            except BlockingIOError:
                pass
        samples = s16_decode(buf)
        assert rms(samples[:8000]) > 300  # the spoken prompt
        assert abs(dominant_frequency(samples[-8000:]) - 600.0) < 15  # then our own tone, echoed
        await line.hangup()
        assert ctl("incoming_call", number="+48600100200")["result"] is True
        call = await rec.wait(IncomingCall, timeout=10)
        assert call.number == "+48600100200"
        assert ctl("calls")["result"][-1]["dir"] == "in"
    finally:
        await line.stop()
        ctl.close()
    assert proc.poll() is None


def test_command_line_modem_options() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from modem_sim.run import _options

    name, opts = _options('fxo1=voicemodem,imei=867698041234567,answer_delay=0.5,fxo_end="!"')
    assert name == "fxo1" and opts.model == "voicemodem"
    assert opts.imei == "867698041234567" and opts.answer_delay == 0.5 and opts.fxo_end == "!"
    with pytest.raises(Exception, match="unknown option"):
        _options("g=ec25,colour=red")
