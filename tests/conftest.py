"""Shared test helpers: data loading, free ports, running the box as a real process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
ARTIFACTS = ROOT / "tests" / "artifacts"


def load(name: str) -> bytes:
    """Bytes of a committed test fixture under tests/data/."""
    return (DATA / name).read_bytes()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free for both UDP and TCP right now: SIP peers such as SIPp bind the port
    they are given for either transport, and an ephemeral port free for UDP may still be held by
    a TCP connection (or its TIME_WAIT) of an earlier test."""
    other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, other) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port is free for both UDP and TCP")


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class BoxProcess:
    """`python -m firmware run` as a child process on loopback ports."""

    def __init__(self, tmp: Path, *extra: str, provision: Path | None = None, demo: bool = False) -> None:
        self.data_dir = tmp / "data"
        self.web_port = free_port()
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.log_path = tmp / "box.log"
        args = [sys.executable, "-m", "firmware", "run", "--data-dir", str(self.data_dir),
                "--web-bind", f"127.0.0.1:{self.web_port}", "--sip-bind", f"127.0.0.1:{self.sip_port}",
                *extra]
        if provision:
            args += ["--provision", str(provision)]
        if demo:
            args.append("--demo")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_for_port(self.web_port)
        except TimeoutError:
            self.stop()
            raise AssertionError("box did not start:\n" + self.output())

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 2, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def box_factory(tmp_path):
    boxes: list[BoxProcess] = []

    def make(*extra: str, **kw) -> BoxProcess:
        b = BoxProcess(tmp_path, *extra, **kw)
        boxes.append(b)
        return b

    yield make
    for b in boxes:
        b.stop()
