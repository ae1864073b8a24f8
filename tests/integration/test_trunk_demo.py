"""`python -m firmware run --demo`: the box starts the modem simulator for the demo's GSM
trunk, a softphone on a demo extension calls the simulated mobile (it speaks, then echoes),
and the printed one-liner makes the mobile call the box, whose menu sends it to the
extensions."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BoxProcess, free_port
from tests.integration.conftest import free_block
from tests.integration.test_gsm_calls import heard_at_phone, tone_wav, wait_until
from tests.peers.audio import rms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))

pytestmark = pytest.mark.timeout(120)


def control(path: str, **req) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    assert reply["ok"], reply
    return reply["result"]


def received(path: str, start_s: float, end_s: float) -> np.ndarray:
    data = open(path, "rb").read()[44:]
    mono = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    return mono[int(start_s * 8000):int(end_s * 8000)]


def test_demo_gsm_line_call_out_prompt_then_echo_and_call_in_through_the_menu(tmp_path):
    rtp = free_block(400)
    box = BoxProcess(tmp_path, "--rtp-ports", f"{rtp}-{rtp + 399}", demo=True)
    phone = None
    try:
        wait_until(lambda: "Ctrl-C to stop" in box.output(), 60, what="banner")
        out = box.output()
        password = re.search(r"SIP extension\s+201\s+password (\S+)", out).group(1)
        line = next(x for x in out.splitlines() if "UNIX-CONNECT:" in x)
        one_liner = line.split("box:", 1)[1].strip()
        ctl = one_liner.rsplit("UNIX-CONNECT:", 1)[1]
        assert "trunk gsm1" in out
        wait_until(lambda: "gsm1: modem ready" in box.output(), 20, what="modem ready")
        from client import PjsuaPhone
        phone = PjsuaPhone(str(tmp_path / "pj_201.log"))
        r = phone.cmd("start", registrar=f"sip:127.0.0.1:{box.sip_port}", user="201", password=password,
                      sip_port=free_port(socket.SOCK_DGRAM), rtp_port=free_block(40), workdir=str(tmp_path))
        assert r["reg_code"] == 200
        # out: the simulated mobile answers after 2 s, speaks its prompt, then echoes
        call = phone.cmd("dial", uri=f"sip:+48600100200@127.0.0.1:{box.sip_port}", wait_confirmed=20)
        assert call["state"] == "CONFIRMED", box.output()[-2000:]
        t_answer = time.monotonic()
        phone.cmd("play", call=call["call"], wav=tone_wav(tmp_path, 600))
        time.sleep(14)
        rec = phone.cmd("info", call=call["call"])["record"]
        assert rms(received(rec, 0.5, 3.0)) > 300, "no spoken prompt from the mobile"
        assert heard_at_phone(rec, 600.0, last_s=1.5) > 0.5, "the mobile does not echo"
        phone.cmd("hangup", call=call["call"])
        assert time.monotonic() - t_answer < 30
        wait_until(lambda: not control(ctl, cmd="status", modem="gsm1")["call"], 10, what="line idle")
        # in: the printed one-liner makes the mobile call; the demo menu answers it
        res = subprocess.run(one_liner, shell=True, capture_output=True, text=True, timeout=10)
        assert '"ok": true' in res.stdout, res
        wait_until(lambda: (control(ctl, cmd="status", modem="gsm1")["call"] or {}).get("state") == "active",
                   20, what="the menu answered")
        time.sleep(3)
        assert control(ctl, cmd="heard", modem="gsm1", seconds=2.0)["rms"] > 300   # the menu's prompt
        control(ctl, cmd="remote_dtmf", modem="gsm1", digits="1")   # "for sales, press 1" -> queue 600
        inc = phone.wait_event("incoming", timeout=20)
        assert "600100200" in inc["remote"]
        phone.cmd("answer", call=inc["call"])
        wait_until(lambda: phone.cmd("info", call=inc["call"])["state"] == "CONFIRMED", 10, what="connected")
        control(ctl, cmd="remote_hangup", modem="gsm1")
        assert phone.cmd("wait_state", call=inc["call"], states=["DISCONNECTED"], timeout=10)["state"] == "DISCONNECTED"
    finally:
        if phone is not None:
            try:
                phone.cmd("stop", timeout=10)
            except Exception:
                pass
            phone.close()
        box.stop()
    assert "officebox stopped" in box.output()
    time.sleep(0.5)
    assert not (tmp_path / "data" / "sim" / "control.sock").exists() or \
        subprocess.run(["pgrep", "-f", str(tmp_path / "data" / "sim")], capture_output=True).returncode != 0
