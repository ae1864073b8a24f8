"""The PBX: joins SIP, modem and media events into calls, and carries out the web page's actions.

`Pbx` implements firmware.api.BoxControl. It owns the registrar, the security policy, the ACD
and the live state; it does no I/O itself: the SIP endpoint, the modem lines and the media
engine are given to it by the composition root (firmware.aio.service).
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from firmware.api import ControlError
from firmware.aio.sysinfo import system_status
from firmware.media.prompts import PromptCache, PromptError
from firmware.pbx.live import LiveState
from firmware.pbx.security import SecurityPolicy

log = logging.getLogger("firmware.pbx")


class Pbx:
    def __init__(self, *, config: Any, calls: Any, recordings: Any, engine: Any, live: LiveState,
                 data_dir: Path, version: str, started_at: float, clock=time.time) -> None:
        self.config = config
        self.calls = calls
        self.recordings = recordings
        self.engine = engine
        self.live = live
        self.data_dir = Path(data_dir)
        self.version = version
        self.started_at = started_at
        self.clock = clock
        self.prompts = PromptCache(self.data_dir / "prompt-cache")
        prov = config.current()
        sec = prov.system.security
        self.security = SecurityPolicy(max_failures=sec.ban_attempts, window_s=sec.ban_window_s,
                                       ban_s=sec.ban_time_s, rate_per_s=sec.rate_limit_per_s,
                                       burst=sec.rate_limit_burst, exempt=tuple(sec.exempt_ips),
                                       scanner_agents=tuple(a.lower() for a in sec.scanner_user_agents),
                                       store=calls)

    async def start(self, *, sip_bind: tuple[str, int], demo: bool = False) -> None:
        self.sip_bind = sip_bind

    async def stop(self) -> None:
        pass

    def on_media_event(self, event: Any) -> None:
        log.debug("media event %s", event)

    # ------------------------------------------------------------------ BoxControl
    def bans(self) -> list[dict[str, Any]]:
        return [{"ip": b.ip, "reason": b.reason, "banned_at": b.banned_at, "until": b.until}
                for b in self.security.bans()]

    def lift_ban(self, ip: str) -> bool:
        return self.security.lift(ip)

    def system_status(self) -> dict[str, Any]:
        st = system_status(str(self.data_dir), self.started_at, self.version)
        st["recording_alarm"] = self.recordings.alarm
        st["engine"] = self.engine.stats().__dict__ if hasattr(self.engine.stats(), "__dict__") else {}
        return st

    async def prompt_preview(self, text: str, language: str) -> bytes:
        try:
            path = await asyncio.get_running_loop().run_in_executor(None, self.prompts.speak, text, language)
        except PromptError as e:
            raise ControlError(str(e)) from None
        return Path(path).read_bytes()
