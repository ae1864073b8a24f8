"""Test-side client of a phone agent subprocess (pyvoip_agent.py, pjsua_agent.py)."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


class AgentError(RuntimeError):
    pass


class AgentClient:
    def __init__(self, script: str, args: list[str], log_path: str | None = None) -> None:
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, script), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            cwd=HERE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.events: queue.Queue[dict] = queue.Queue()
        self._seen: list[dict] = []
        self._n = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "event" in msg:
                self.events.put(msg)
            else:
                with self._cond:
                    self._replies[msg.get("id")] = msg
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def cmd(self, cmd: str, **kw: Any) -> dict:
        """Run a command in the agent; a `timeout` keyword is the agent's own (e.g. how long
        wait_state waits), and this side waits 30 s longer than that."""
        timeout = float(kw.get("timeout", 0) or 0) + float(kw.get("seconds", 0) or 0) + 30.0
        self._n += 1
        mid = self._n
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"id": mid, "cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AgentError(f"{cmd}: no reply within {timeout} s (agent rc={self.proc.poll()})")
                self._cond.wait(min(left, 0.2))
            reply = self._replies.pop(mid)
        if not reply.get("ok"):
            raise AgentError(f"{cmd}: {reply.get('error')}\n{reply.get('trace', '')}")
        return reply

    def wait_event(self, name: str, timeout: float = 15.0, **match: Any) -> dict:
        for e in self._seen:
            if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
                self._seen.remove(e)
                return e
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} event within {timeout} s; seen: {[e['event'] for e in self._seen]}")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
                return e
            self._seen.append(e)

    def close(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                self.cmd("quit")
            except Exception:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PyVoipPhone(AgentClient):
    """A pyVoIP desk phone in its own process."""

    def __init__(self, log_path: str | None = None) -> None:
        super().__init__("pyvoip_agent.py", [], log_path)


class PjsuaPhone(AgentClient):
    """A pjsua2 (PJSIP) phone in its own process."""

    def __init__(self, log_path: str | None = None) -> None:
        super().__init__("pjsua_agent.py", [], log_path)
