"""The public API of the firmware for the web page (web_ui imports only this module and the
modules it names: firmware.store.*, firmware.pbx.live, firmware.config).

`BoxAPI` bundles the stores (read and edited directly: they validate), the live state, and
`BoxControl`, the actions on the running box. The composition root (firmware.aio.service)
builds the one BoxAPI of a running box.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from firmware.pbx.live import LiveState


class ControlError(Exception):
    """An action the box refused, with a message for the user (e.g. unknown extension)."""


class BoxControl(Protocol):
    """Actions on the running box. Every method is safe to call from the asyncio thread."""

    async def originate(self, agent_extension: str, number: str, *, note: str = "") -> str:
        """Click-to-call: ring the agent's desk phone; when it answers, dial `number` (an
        extension or an external number through the outbound routes, with the agent's
        permissions). Returns the call record id."""

    async def agent_queue(self, extension: str, queue: str, logged_in: bool) -> None:
        """Log an agent in to / out of a queue (dynamic membership)."""

    async def agent_status(self, extension: str, status: str, reason: str = "") -> None:
        """status: available | paused | dnd (reason shown in reports for paused)."""

    async def set_override(self, timecondition: str, mode: str) -> None:
        """Business-hours override: auto | open | closed."""

    async def listen(self, call_id: str, manager_extension: str, mode: str) -> None:
        """Ring the manager's phone and join the call: listen | whisper | barge."""

    def bans(self) -> list[dict[str, Any]]:
        """Banned IPs: ip, reason, banned_at, until."""

    def lift_ban(self, ip: str) -> bool: ...

    def registrations(self) -> list[dict[str, Any]]:
        """Registered desk phones: extension, contact, source, user_agent, expires_at, reachable."""

    def trunks(self) -> list[dict[str, Any]]:
        """Trunks and modems with their status (signal, SIM, registration, health, faults)."""

    async def modem_test(self, trunk: str) -> dict[str, Any]:
        """Run a modem self-test (AT ping, SIM, network, signal). Returns findings."""

    async def modem_ussd(self, trunk: str, code: str) -> str:
        """Send a USSD request (e.g. *100# balance); returns the network's answer."""

    async def send_sms(self, trunk: str, number: str, text: str) -> None: ...

    def system_status(self) -> dict[str, Any]:
        """version, uptime_s, disk (total/free bytes), cpu load, temperature_c, under_voltage
        flags (Raspberry Pi), recording alarm."""

    async def prompt_preview(self, text: str, language: str) -> bytes:
        """Text-to-speech preview: an 8 kHz mono 16-bit WAV."""


@dataclass
class BoxAPI:
    version: str
    data_dir: Path
    config: Any
    """firmware.store.config_store.ConfigStore"""
    calls: Any
    """firmware.store.calls.CallStore (call records, events, agent states, missed calls)"""
    reports: Any
    """firmware.store.reports.Reports"""
    live: LiveState
    control: BoxControl
