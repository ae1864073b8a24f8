"""`python -m firmware run --demo` as a newcomer uses it: the printed credentials work, two
softphones register and talk, and the web admin can log in."""
from __future__ import annotations

import re
import socket
import time
import urllib.parse
import urllib.request

from tests.conftest import BoxProcess, free_port
from tests.integration.conftest import free_block
from tests.integration.test_pbx_calls import heard, tone_wav


def credentials(output: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in
            re.finditer(r"(SIP extension|web user)\s+(\S+)\s+password (\S+)", output)}


def test_demo_prints_working_credentials_and_phones_talk(tmp_path):
    from client import PjsuaPhone

    rtp = free_block(400)
    box = BoxProcess(tmp_path, "--rtp-ports", f"{rtp}-{rtp + 399}", demo=True)
    phones = []
    try:
        deadline = time.monotonic() + 20
        while "Ctrl-C to stop" not in box.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        out = box.output()
        creds = credentials(out)
        assert {"201", "202", "203", "admin", "manager", "anna"} <= set(creds), out
        assert f"http://127.0.0.1:{box.web_port}/" in out
        for number in ("201", "202"):
            p = PjsuaPhone(str(tmp_path / f"pj{number}.log"))
            phones.append(p)
            r = p.cmd("start", registrar=f"sip:127.0.0.1:{box.sip_port}", user=number, password=creds[number],
                      sip_port=free_port(socket.SOCK_DGRAM), rtp_port=free_block(40), auto_answer=number == "202",
                      workdir=str(tmp_path))
            assert r["reg_code"] == 200
        a, b = phones
        call = a.cmd("dial", uri=f"sip:202@127.0.0.1:{box.sip_port}", wait_confirmed=10)
        assert call["state"] == "CONFIRMED"
        cb = b.wait_event("incoming")["call"]
        a.cmd("play", call=call["call"], wav=tone_wav(tmp_path, 700))
        b.cmd("sleep", seconds=2.5)
        assert heard(b.cmd("info", call=cb)["record"], 700) > 0.8
        a.cmd("hangup", call=call["call"])
        # the printed admin password logs in to the web page
        url = f"http://127.0.0.1:{box.web_port}"
        jar = urllib.request.HTTPCookieProcessor()
        opener = urllib.request.build_opener(jar)
        page = opener.open(url + "/login", timeout=10).read().decode()
        token = re.search(r'name="_csrf" value="([^"]+)"', page)
        form = {"name": "admin", "password": creds["admin"]}
        if token:
            form["_csrf"] = token.group(1)
        resp = opener.open(urllib.request.Request(url + "/login", data=urllib.parse.urlencode(form).encode(),
                                                  headers={"Origin": url}), timeout=10)
        assert "/login" not in resp.geturl()
    finally:
        for p in phones:
            try:
                p.cmd("stop")
            except Exception:
                pass
            p.close()
        assert box.stop() == 0
    assert "officebox stopped" in box.output()
