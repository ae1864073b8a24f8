"""baresip (Debian baresip-core) as a desk phone, driven over its ctrl_tcp module."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path


class Baresip:
    def __init__(self, workdir: Path, *, user: str, password: str, registrar: str, sip_port: int,
                 rtp_lo: int, ctrl_port: int, audio_wav: Path, auto_answer: bool = True,
                 register: bool = True) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rec").mkdir(exist_ok=True)
        (self.dir / "config").write_text(f"""\
sip_listen 127.0.0.1:{sip_port}
net_interface 127.0.0.1
dns_server 127.0.0.1:53
audio_source aufile,{audio_wav}
audio_player aubridge,null{sip_port}
audio_alert aubridge,null{sip_port}
rtp_ports {rtp_lo}-{rtp_lo + 19}
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
snd_path {self.dir / 'rec'}
module_tmp uuid.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
""")
        answer = "auto" if auto_answer else "manual"
        regint = 300 if register else 0
        (self.dir / "accounts").write_text(
            f"<sip:{user}@{registrar}>;auth_pass={password};answermode={answer};regint={regint};"
            f"audio_codecs=pcmu,pcma\n")
        self.log = open(self.dir / "baresip.log", "wb")
        self.proc = subprocess.Popen([shutil.which("baresip") or "baresip", "-f", str(self.dir)],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.ctrl_port = ctrl_port
        self.sock: socket.socket | None = None
        self.buf = b""
        self.events: list[dict] = []
        self.n = 0
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", ctrl_port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("baresip did not start: " + self.output())
                time.sleep(0.1)

    def output(self) -> str:
        return (self.dir / "baresip.log").read_text(errors="replace")

    def _read(self, timeout: float) -> dict:
        assert self.sock
        self.sock.settimeout(max(0.01, timeout))
        while True:
            if b":" in self.buf:
                ln, rest = self.buf.split(b":", 1)
                n = int(ln)
                if len(rest) >= n + 1:
                    msg, self.buf = rest[:n], rest[n + 1:]
                    return json.loads(msg)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("baresip closed ctrl_tcp")
            self.buf += chunk

    def cmd(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        assert self.sock
        self.n += 1
        tok = f"t{self.n}"
        body = json.dumps({"command": command, "params": params, "token": tok}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = self._read(end - time.monotonic())
            if m.get("response") and m.get("token") == tok:
                return m
            self.events.append(m)
        raise TimeoutError(command)

    def wait_event(self, *types: str, timeout: float = 15.0) -> dict:
        for i, e in enumerate(self.events):
            if e.get("type") in types:
                return self.events.pop(i)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                m = self._read(end - time.monotonic())
            except socket.timeout:
                break
            if m.get("event") and m.get("type") in types:
                return m
            self.events.append(m)
        raise TimeoutError(f"baresip: no {types} within {timeout} s; events: {[e.get('type') for e in self.events]}")

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.cmd("quit", timeout=1)
            except Exception:
                pass
            self.sock.close()
            self.sock = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
