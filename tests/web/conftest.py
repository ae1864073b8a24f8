"""Fixtures for the web page tests: a real ConfigStore, CallStore and LiveState on a tmp data
dir, a BoxControl stand-in that records the actions it receives, and logged-in clients."""
from __future__ import annotations

import re
import struct
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from firmware.api import BoxAPI, ControlError
from firmware.pbx.live import LiveState
from firmware.store.calls import CallStore
from firmware.store.config_store import ConfigStore
from web_ui.app import create_app
from web_ui.keys import WebOptions

ADMIN_PW = "correct horse battery staple"
MANAGER_PW = "manager-pass-2026-long"
AGENT_PW = "agent-pass-2026-longer"


class RecordingControl:
    """BoxControl for tests: records every action, answers like the box would."""

    def __init__(self) -> None:
        self.actions: list[tuple[Any, ...]] = []
        self.fail_with: str | None = None
        self.banned = [{"ip": "203.0.113.9", "reason": "auth failures", "banned_at": time.time() - 60,
                        "until": time.time() + 3600}]

    def _do(self, *action: Any) -> None:
        if self.fail_with:
            raise ControlError(self.fail_with)
        self.actions.append(action)

    async def originate(self, agent_extension: str, number: str, *, note: str = "") -> str:
        self._do("originate", agent_extension, number)
        return "call-" + number

    async def agent_queue(self, extension: str, queue: str, logged_in: bool) -> None:
        self._do("agent_queue", extension, queue, logged_in)

    async def agent_status(self, extension: str, status: str, reason: str = "") -> None:
        self._do("agent_status", extension, status, reason)

    async def set_override(self, timecondition: str, mode: str) -> None:
        self._do("set_override", timecondition, mode)

    async def listen(self, call_id: str, manager_extension: str, mode: str) -> None:
        self._do("listen", call_id, manager_extension, mode)

    def bans(self) -> list[dict[str, Any]]:
        return list(self.banned)

    def lift_ban(self, ip: str) -> bool:
        before = len(self.banned)
        self.banned = [b for b in self.banned if b["ip"] != ip]
        self.actions.append(("lift_ban", ip))
        return len(self.banned) < before

    def registrations(self) -> list[dict[str, Any]]:
        return [{"extension": "201", "contact": "sip:201@192.0.2.10:5062", "source": "192.0.2.10:5062",
                 "user_agent": "Yealink T46U", "expires_at": time.time() + 300, "reachable": True}]

    def trunks(self) -> list[dict[str, Any]]:
        return [{"name": "gsm1", "type": "gsm", "health": "ok", "signal": 21, "sim": "ready",
                 "registration": "home", "faults": ["no carrier 12:01"]}]

    async def modem_test(self, trunk: str) -> dict[str, Any]:
        self._do("modem_test", trunk)
        return {"at": "ok", "sim": "ready", "signal": 21}

    async def modem_ussd(self, trunk: str, code: str) -> str:
        self._do("modem_ussd", trunk, code)
        return "Balance 12.50"

    async def send_sms(self, trunk: str, number: str, text: str) -> None:
        self._do("send_sms", trunk, number, text)

    def system_status(self) -> dict[str, Any]:
        return {"version": "0.1.0", "uptime_s": 3723, "disk": {"total": 32 * 2**30, "free": 20 * 2**30},
                "cpu_load": [0.12, 0.1, 0.05], "temperature_c": 48.5, "under_voltage": {}, "recording_alarm": ""}

    async def prompt_preview(self, text: str, language: str) -> bytes:
        self._do("prompt_preview", text, language)
        return write_wav_bytes(0.2)


def write_wav_bytes(seconds: float) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        n = int(8000 * seconds)
        w.writeframes(struct.pack(f"<{n}h", *((i * 37) % 2000 - 1000 for i in range(n))))
    return buf.getvalue()


class Box:
    """Everything one test needs: the API objects and helpers to fill the stores."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.config = ConfigStore(data_dir)
        self.calls = CallStore(data_dir / "calls.sqlite")
        self.live = LiveState()
        self.control = RecordingControl()
        self.api = BoxAPI(version="0.1.0", data_dir=data_dir, config=self.config, calls=self.calls,
                          reports=_reports(self.calls, self.config), live=self.live, control=self.control)

    def seed_users(self) -> None:
        c = self.config
        c.update("system", "", {"timezone": "Europe/Warsaw", "language": "en"})
        for num, name in (("201", "Anna"), ("202", "Boris"), ("203", "Cvetan")):
            c.create("extension", {"number": num, "name": name})
        c.create("queue", {"number": "600", "name": "Sales", "members": ["201", "202"],
                           "script": "Greet the customer and ask for the order number."})
        c.create("user", {"name": "admin", "password": ADMIN_PW, "role": "admin"})
        c.create("user", {"name": "maria", "password": MANAGER_PW, "role": "manager", "extension": "203"})
        c.create("user", {"name": "anna", "password": AGENT_PW, "role": "agent", "extension": "201"})

    def add_call(self, *, started: float, status: str = "answered", direction: str = "inbound",
                 number: str = "+48601000001", agent: str = "201", queue: str = "600", wait: float = 8.0,
                 talk: float = 95.0, recording: str = "") -> str:
        answered = started + wait if status == "answered" else None
        cid = self.calls.begin_call(direction=direction, started_at=started, caller_number=number,
                                    callee_number="600" if direction == "inbound" else number,
                                    external_number=number, queue=queue,
                                    to_extension=agent if direction == "inbound" else "",
                                    from_extension=agent if direction == "outbound" else "")
        if answered:
            self.calls.update_call(cid, answered_at=answered, answered_by=agent)
        self.calls.add_event(cid, "queue_enter", ts=started + 1, queue=queue)
        if recording:
            self.calls.set_recording(cid, path=recording, state="complete")
        self.calls.end_call(cid, status=status, ended_at=(answered or started + wait) + (talk if answered else 0),
                            wait_s=wait, talk_s=talk if answered else None, hangup_side="caller")
        self.calls.flush()
        return cid

    def close(self) -> None:
        self.calls.close()


def _reports(calls: CallStore, config: ConfigStore) -> Any:
    from firmware.store.reports import Reports

    return Reports(calls, timezone="Europe/Warsaw")


@pytest.fixture
def box(tmp_path: Path):
    b = Box(tmp_path / "data")
    yield b
    b.close()


@pytest.fixture
def seeded(box: Box) -> Box:
    box.seed_users()
    return box


class Client:
    """A test client that keeps the CSRF token of the last page it read."""

    def __init__(self, client: Any) -> None:
        self.c = client
        self.csrf = ""

    def _grab(self, text: str) -> None:
        m = re.search(r'name="csrf-token" content="([^"]+)"', text)
        if m:
            self.csrf = m.group(1)

    async def get(self, path: str, **kw: Any) -> tuple[Any, str]:
        r = await self.c.get(path, **kw)
        text = await r.text() if "text" in r.content_type or "json" in r.content_type else ""
        self._grab(text)
        return r, text

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   **kw: Any) -> tuple[Any, str]:
        if not self.csrf:
            await self.get("/login")
        form = dict(data or {})
        if csrf:
            form.setdefault("_csrf", self.csrf)
        r = await self.c.post(path, data=form, allow_redirects=kw.pop("allow_redirects", False), **kw)
        text = await r.text() if "text" in r.content_type or "json" in r.content_type else ""
        self._grab(text)
        return r, text

    async def login(self, name: str, password: str) -> None:
        await self.get("/login")
        r, _ = await self.post("/login", {"name": name, "password": password})
        assert r.status == 303, r.status
        await self.get("/account")


@pytest.fixture
def make_client(aiohttp_client, box: Box):
    async def make(options: WebOptions | None = None, clock: Any = time.time, *,
                   same_as: Client | None = None) -> Client:
        """A client of a new app, or (same_as) another browser on the same running app."""
        if same_as is not None:
            return Client(await aiohttp_client(same_as.c.server))
        app = create_app(box.api, options=options or WebOptions(print_setup_code=False), clock=clock)
        return Client(await aiohttp_client(app))
    return make
