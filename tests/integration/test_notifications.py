"""Notices go out: a missed GSM call is reported by a signed webhook, by e-mail and by SMS
through the box's own modem; a brute-force ban by webhook."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port
from tests.integration.test_gsm_calls import (FAST, IMEI, SYSTEM_TOML, Office, extensions_toml,  # noqa: F401
                                              gsm_trunk_toml, sim, wait_until)

pytestmark = pytest.mark.timeout(120)
SECRET = "hook-secret-for-tests"


class Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


class Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to accept one message per connection."""
    mails: list[str] = []

    def handle(self) -> None:
        w = self.wfile.write
        w(b"220 test ESMTP\r\n")
        data, in_data = [], False
        for raw in self.rfile:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if in_data:
                if line == ".":
                    Smtp.mails.append("\n".join(data))
                    in_data = False
                    w(b"250 queued\r\n")
                else:
                    data.append(line)
                continue
            cmd = line[:4].upper()
            if cmd in ("EHLO", "HELO"):
                w(b"250 test\r\n")
            elif cmd == "DATA":
                in_data = True
                w(b"354 go on\r\n")
            elif cmd == "QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")


@pytest.fixture(scope="module")
def servers():
    http = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
    for srv in (http, smtp):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield http.server_address[1], smtp.server_address[1]
    http.shutdown()
    smtp.shutdown()


@pytest.fixture(scope="module")
def office(sim, servers, tmp_path_factory):
    http_port, smtp_port = servers
    h = sim.add_modem("gsm1", model="ec25", imei=IMEI, **FAST)
    toml = SYSTEM_TOML.replace("[system]\n", f"""[system]
""") + f"""
[system.smtp]
host = "127.0.0.1"
port = {smtp_port}
starttls = false
sender = "box@office.example"

[system.security]
ban_attempts = 2
""" + extensions_toml(("201", "202")) + gsm_trunk_toml(h) + f"""
[[route.inbound]]
trunk = "gsm1"
destination = "202"

[[notification]]
kind = "webhook"
target = "http://127.0.0.1:{http_port}/hook"
events = ["missed_call", "ban"]
secret = "{SECRET}"

[[notification]]
kind = "email"
target = "boss@office.example"
events = ["missed_call"]

[[notification]]
kind = "sms"
target = "+48600999888"
events = ["missed_call"]
trunk = "gsm1"
"""
    o = Office(tmp_path_factory.mktemp("notify"), toml)
    o.sim = h
    try:
        wait_until(lambda: "modem ready" in o.box.output(), 20, what="modem ready")
        yield o
    finally:
        o.close()


def test_missed_call_notices_by_webhook_email_and_sms(office):
    h = office.sim
    desk = office.phone("202")                 # rings, nobody answers
    h.incoming_call(number="+48600100200")
    desk.wait_event("incoming", timeout=15)
    time.sleep(1)
    h.remote_hangup()                          # the customer gives up: a missed call
    wait_until(lambda: any(hd.get("X-Officebox-Event") == "missed_call" for hd, _ in Hooks.received), 20,
               what="webhook")
    headers, body = next((hd, b) for hd, b in Hooks.received if hd.get("X-Officebox-Event") == "missed_call")
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Officebox-Signature"] == expected
    notice = json.loads(body)
    assert notice["number"] == "+48600100200" and notice["call_id"]
    wait_until(lambda: Smtp.mails, 20, what="e-mail")
    assert "+48600100200" in Smtp.mails[0] and "boss@office.example" in Smtp.mails[0]
    wait_until(lambda: h.sent_sms(), 30, what="SMS through the modem")
    sms = h.sent_sms()[-1]
    assert sms["number"].endswith("600999888") and "+48600100200" in sms["text"]


def test_ban_is_reported(office):
    from firmware.sip.message import make_request
    port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.33", port))
        s.settimeout(1)
        for i in range(4):
            req = make_request("REGISTER", f"sip:127.0.0.1:{office.sip_port}", from_addr="<sip:201@x>",
                               to_addr="<sip:201@x>", contact=f"<sip:201@127.0.0.33:{port}>")
            req.headers.prepend("Via", f"SIP/2.0/UDP 127.0.0.33:{port};branch=z9hG4bK-ban-{i};rport")
            req.headers.add("Authorization", 'Digest username="201", realm="officebox", nonce="bogus", '
                                             'uri="sip:x", response="00000000000000000000000000000000"')
            s.sendto(bytes(req), ("127.0.0.1", office.sip_port))
            try:
                s.recv(65535)
            except socket.timeout:
                pass
    wait_until(lambda: any(hd.get("X-Officebox-Event") == "ban" for hd, _ in Hooks.received), 20, what="ban notice")
    body = next(b for hd, b in Hooks.received if hd.get("X-Officebox-Event") == "ban")
    assert json.loads(body)["ip"] == "127.0.0.33"
